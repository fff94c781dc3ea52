/**
 * Guards a stream the peer receives (a response body). The clock runs only while a chunk is ready
 * and the consumer (the runtime writing to the socket) has not taken it: a producer with nothing to
 * send, like a quiet SSE stream, never gets its client timed out.
 *
 * To see a chunk "waiting for the consumer", the guard reads ahead exactly one chunk from the
 * source once the consumer has asked for the first one. A chunk over 64 KiB that has waited 50 ms or
 * more for the consumer (BURST_GAP_MS: the socket was full) is handed out as 64 KiB views (no copy),
 * and so is the rest of it, so one huge chunk cannot hide a slow client behind a single "take"; so is
 * the body's first chunk. A later chunk the consumer asked for sooner goes whole: a fast reader, such
 * as a proxy's, pays one take per chunk, not one per 64 KiB.
 *
 * The guard of a byte stream is a byte stream (see isByteStream). A BYOB read takes what fits in
 * its buffer (the guard copies it there and answers the read's byobRequest); the rest stays held,
 * still waiting for the consumer. A default read of a byte stream transfers the chunk's buffer, so
 * there the 64 KiB pieces of a larger chunk are copies (the last one goes as a view).
 */
import type { Clock } from "../engine/clock.ts";
import { BURST_GAP_MS, type DeadlineTracker, type GuardedSource } from "../engine/tracker.ts";
import {
  type BodyReader,
  type GuardController,
  type GuardOptions,
  type GuardedStream,
  createGuardedStream,
  guardedStream,
  ignore,
  isByteChunk,
  isByteStream,
  nonByteChunkError,
} from "./common.ts";

/**
 * A read result as every runtime types it (@types/bun narrows the done case differently), spelled out
 * rather than named: `ReadableStreamReadResult` is a DOM lib name that @types/node does not declare.
 */
export type ReadResult = { done: false; value: Uint8Array } | { done: true; value?: Uint8Array | undefined };

/**
 * Keep-alive for server-sent events: when the consumer has waited `every` ms on a quiet producer,
 * the guard sends an SSE comment line (":\n"), which intermediaries see as traffic and clients
 * ignore. It is not the peer's progress: it never counts toward bytes, idle or rate.
 */
export interface OutboundHeartbeat {
  every: number;
  clock: Clock;
}

const HEARTBEAT_LINE = [0x3a, 0x0a]; // ":\n", an SSE comment
const LINE_FEED = 0x0a;

/** Largest piece handed at once to a consumer that kept the chunk waiting; bigger chunks are split into views. */
export const OUTBOUND_SLICE_BYTES = 64 * 1024;

export function guardOutboundStream(source: ReadableStream<Uint8Array>, options?: GuardOptions): GuardedStream {
  return createGuardedStream("guardOutboundStream", "outbound", source, options, attachOutboundGuard);
}

/** Puts an existing tracker's deadlines on `source` (the source must be unlocked). */
export function attachOutboundGuard(
  source: ReadableStream<Uint8Array>,
  tracker: DeadlineTracker,
): ReadableStream<Uint8Array> {
  const bytes = isByteStream(source);
  return attachOutboundGuardToReader(source.getReader(), tracker, [], undefined, undefined, bytes);
}

/**
 * The same, for a source already partly read: `preread` chunks go out first, and `pendingRead` (a
 * read already made on `reader`) is the guard's first read ahead. `bytes`: make the guarded stream
 * a byte stream; only for a reader whose chunks are its own to give away (a byte stream's reader).
 */
export function attachOutboundGuardToReader(
  reader: BodyReader,
  tracker: DeadlineTracker,
  preread: Uint8Array[],
  pendingRead: Promise<ReadResult> | undefined,
  heartbeat?: OutboundHeartbeat,
  bytes = false,
  quietFailure = false,
): ReadableStream<Uint8Array> {
  return guardedStream(new OutboundGuard(reader, tracker, preread, pendingRead, heartbeat, bytes, quietFailure));
}

// The ReadableStream's underlying source (start/pull/cancel), typed structurally (see inbound.ts).
class OutboundGuard implements GuardedSource {
  /** The underlying source's type: "bytes" makes the guarded stream a byte stream. */
  readonly type: "bytes" | undefined;
  #controller!: GuardController;
  #reader: BodyReader;
  #tracker: DeadlineTracker;
  /** Read ahead from the source, not yet taken by the consumer: while set, the consumer is to blame. */
  #held: Uint8Array | undefined = undefined;
  /**
   * Whether `#held` is the rest of a chunk handed out in 64 KiB pieces (its rest goes the same way),
   * or nothing was taken yet: a consumer that has taken nothing has shown nothing of its speed.
   */
  #slicing = true;
  #reading = false;
  #sourceDone = false;
  /** Resolves the pending pull while the consumer waits on the producer. */
  #wakeConsumer: (() => void) | undefined = undefined;
  /** Chunks read before the guard was attached: they go out first. */
  #preread: Uint8Array[];
  /** A read made before the guard was attached: used as the first read ahead. */
  #pendingRead: Promise<ReadResult> | undefined;
  #heartbeat: OutboundHeartbeat | undefined;
  #heartbeatTimer: unknown = undefined;
  /**
   * Whether the bytes sent so far end a line: a heartbeat may only go between lines, or it would
   * join the producer's half-written line (a lone "\r" may be half of "\r\n": not a line end yet).
   */
  #atLineStart = true;
  #quietFailure: boolean;

  constructor(
    reader: BodyReader,
    tracker: DeadlineTracker,
    preread: Uint8Array[] = [],
    pendingRead?: Promise<ReadResult>,
    heartbeat?: OutboundHeartbeat,
    bytes = false,
    /** Fail with `undefined` when a deadline fires or the owner aborts (see AdapterHooks.quietResponseFailure). */
    quietFailure = false,
  ) {
    this.type = bytes ? "bytes" : undefined;
    this.#quietFailure = quietFailure;
    this.#reader = reader;
    this.#tracker = tracker;
    // A byte stream refuses an empty chunk (one the peek read ahead): it ends no line, so drop it.
    this.#preread = bytes ? preread.filter((chunk) => !isByteChunk(chunk) || chunk.byteLength > 0) : preread;
    this.#pendingRead = pendingRead;
    this.#heartbeat = heartbeat;
    tracker.source = this;
  }

  start(controller: GuardController): void {
    this.#controller = controller;
  }

  pull(): Promise<void> | undefined {
    if (this.#tracker.failedOnFirstPull()) return undefined; // a total already past: the stream is errored
    if (this.#held !== undefined) {
      this.#deliver(this.#held);
      this.#fill();
      return undefined;
    }
    const early = this.#preread.shift();
    if (early !== undefined) {
      if (!isByteChunk(early)) {
        this.#tracker.finish("errored");
        this.fail(nonByteChunkError(this.#tracker.subject, early));
        return undefined;
      }
      this.#deliver(early);
      // More read ahead and not taken: the consumer is to blame until it asks again.
      if (this.#held === undefined && this.#preread.length > 0) this.#tracker.startWaiting();
      this.#fill();
      return undefined;
    }
    if (this.#sourceDone) return undefined;
    return new Promise<void>((resolve) => {
      this.#wakeConsumer = resolve;
      this.#fill();
      if (this.#wakeConsumer !== undefined) this.#armHeartbeat();
    });
  }

  /** The consumer waits on a quiet producer: plan a heartbeat (SSE only). */
  #armHeartbeat(): void {
    const heartbeat = this.#heartbeat;
    if (heartbeat === undefined || this.#heartbeatTimer !== undefined || !this.#atLineStart) return;
    this.#heartbeatTimer = heartbeat.clock.setTimer(this.#beat, heartbeat.every);
  }

  #beat = (): void => {
    this.#heartbeatTimer = undefined;
    if (this.#wakeConsumer === undefined || this.#tracker.ended || !this.#atLineStart) return;
    // Not progress: the consumer asked and gets bytes, but the peer's figures do not move.
    this.#controller.enqueue(new Uint8Array(HEARTBEAT_LINE));
    this.#resolvePull();
  };

  #stopHeartbeat(): void {
    if (this.#heartbeatTimer === undefined) return;
    this.#heartbeat!.clock.clearTimer(this.#heartbeatTimer);
    this.#heartbeatTimer = undefined;
  }

  cancel(reason: unknown): Promise<void> {
    this.#held = undefined;
    this.#stopHeartbeat();
    // Ends the tracker; the source is cancelled with the owner's reason when it knows the cause
    // better than the runtime said.
    const tracker = this.#tracker;
    const owner = tracker.owner;
    tracker.finish("cancelled");
    const sourceReason = owner?.cancelReason !== undefined ? owner.cancelReason(tracker, reason) : reason;
    this.#resolvePull();
    return this.#reader.cancel(sourceReason);
  }

  /**
   * A deadline fired (or the owner aborted): fail the stream and free the producer, same reason. A
   * quiet guard fails its stream with `undefined` instead, unless the source itself failed ("errored":
   * that error is the app's to see).
   */
  fail(reason: unknown): void {
    this.#held = undefined;
    this.#stopHeartbeat();
    this.#controller.error(this.#quietFailure && this.#tracker.state !== "errored" ? undefined : reason);
    this.#reader.cancel(reason).catch(ignore);
    this.#resolvePull();
  }

  #resolvePull(): void {
    this.#stopHeartbeat();
    const wake = this.#wakeConsumer;
    this.#wakeConsumer = undefined;
    wake?.();
  }

  /**
   * Whether `chunk` goes out in 64 KiB pieces: when it is over 64 KiB and either is the first chunk or
   * the rest of one already going that way, or has kept the consumer to blame for BURST_GAP_MS or more
   * (the engine's sign that the socket was full: a shorter wait is a consumer taking as fast as it is given).
   * Asked before the take (progress ends the wait); only chunks over 64 KiB pay for the question.
   */
  #slices(chunk: Uint8Array): boolean {
    if (chunk.byteLength <= OUTBOUND_SLICE_BYTES) return false;
    const tracker = this.#tracker;
    return this.#slicing || (tracker.waitingNow && tracker.stats.idleFor >= BURST_GAP_MS);
  }

  /** The consumer asked: give it the chunk or one slice of it, keep any remainder held (and the consumer to blame). */
  #deliver(chunk: Uint8Array): void {
    if (this.type !== undefined) {
      this.#deliverBytes(chunk);
      return;
    }
    if ((this.#slicing = this.#slices(chunk))) {
      this.#held = chunk.subarray(OUTBOUND_SLICE_BYTES);
      chunk = chunk.subarray(0, OUTBOUND_SLICE_BYTES);
    } else {
      this.#held = undefined;
    }
    this.#tracker.progress(chunk.byteLength);
    // An empty chunk (one the peek read ahead) ends no line: the line state stays as it was.
    if (this.#heartbeat !== undefined && chunk.byteLength > 0)
      this.#atLineStart = chunk[chunk.byteLength - 1] === LINE_FEED;
    this.#controller.enqueue(chunk);
    if (this.#held !== undefined) this.#tracker.startWaiting();
  }

  /**
   * The same for a byte stream: a BYOB read is filled (fillRequest); a default read gets the chunk,
   * or a 64 KiB copy of it when it is sliced, since enqueue transfers the whole buffer and a view
   * would take the held rest with it. A buffer that cannot be transferred (shared memory) fails the body.
   */
  #deliverBytes(chunk: Uint8Array): void {
    const request = this.#controller.byobRequest;
    if (request != null) {
      this.#fillRequest(request, chunk);
      return;
    }
    let piece = chunk;
    if ((this.#slicing = this.#slices(chunk))) {
      this.#held = chunk.subarray(OUTBOUND_SLICE_BYTES);
      piece = chunk.slice(0, OUTBOUND_SLICE_BYTES);
    } else {
      this.#held = undefined;
    }
    this.#tracker.progress(piece.byteLength);
    if (this.#heartbeat !== undefined) this.#atLineStart = piece[piece.byteLength - 1] === LINE_FEED;
    try {
      this.#controller.enqueue(piece);
    } catch (error) {
      this.#tracker.finish("errored");
      this.fail(error);
      return;
    }
    if (this.#held !== undefined) this.#tracker.startWaiting();
  }

  /** A BYOB read: what fits in the reader's buffer is taken, the rest stays held (the consumer to blame). */
  #fillRequest(request: ReadableStreamBYOBRequest, chunk: Uint8Array): void {
    const view = request.view!;
    const taken = Math.min(view.byteLength, chunk.byteLength);
    new Uint8Array(view.buffer, view.byteOffset, taken).set(
      taken === chunk.byteLength ? chunk : chunk.subarray(0, taken),
    );
    this.#held = taken < chunk.byteLength ? chunk.subarray(taken) : undefined;
    this.#slicing = this.#held !== undefined; // the rest of a chunk cut by a read goes on in pieces
    this.#tracker.progress(taken);
    if (this.#heartbeat !== undefined) this.#atLineStart = chunk[taken - 1] === LINE_FEED;
    request.respond(taken);
    if (this.#held !== undefined) this.#tracker.startWaiting();
  }

  /** Reads ahead one chunk, if none is held or being read. */
  #fill(): void {
    if (
      this.#reading ||
      this.#held !== undefined ||
      this.#preread.length > 0 ||
      this.#sourceDone ||
      this.#tracker.ended
    )
      return;
    this.#reading = true;
    const read = this.#pendingRead ?? this.#reader.read();
    this.#pendingRead = undefined;
    read.then(this.#onRead, this.#onReadError);
  }

  #onRead = (result: ReadResult): void => {
    this.#reading = false;
    const tracker = this.#tracker;
    if (tracker.ended) return;
    if (result.done) {
      this.#sourceDone = true;
      tracker.finish("closed");
      this.#controller.close();
      // A byte stream's pending BYOB read ends only when its request is answered (with 0 bytes, done).
      if (this.type !== undefined) this.#controller.byobRequest?.respond(0);
      this.#resolvePull();
      return;
    }
    const chunk: unknown = result.value;
    if (!isByteChunk(chunk)) {
      tracker.finish("errored");
      this.fail(nonByteChunkError(tracker.subject, chunk));
      return;
    }
    if (chunk.byteLength === 0) {
      this.#fill();
      return;
    }
    if (this.#wakeConsumer !== undefined) {
      this.#deliver(chunk);
      this.#resolvePull();
      this.#fill();
    } else {
      this.#held = chunk;
      tracker.startWaiting();
    }
  };

  #onReadError = (error: unknown): void => {
    this.#reading = false;
    if (this.#tracker.ended) return;
    this.#tracker.finish("errored");
    this.#controller.error(error);
    this.#resolvePull();
  };
}
