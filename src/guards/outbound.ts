/**
 * Guards a stream the peer receives (a response body). The clock runs only while a chunk is ready
 * and the consumer (the runtime writing to the socket) has not taken it: a producer with nothing to
 * send, like a quiet SSE stream, never gets its client timed out.
 *
 * To see a chunk "waiting for the consumer", the guard reads ahead exactly one chunk from the
 * source once the consumer has asked for the first one. Chunks over 64 KiB are handed out as
 * 64 KiB views (no copy), so one huge chunk cannot hide a slow client behind a single "take".
 */
import type { Clock } from "../engine/clock.ts";
import type { DeadlineTracker, GuardedSource } from "../engine/tracker.ts";
import {
  type BodyReader,
  type GuardOptions,
  type GuardedStream,
  createGuardedStream,
  ignore,
  isByteChunk,
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

/** Largest piece handed to the consumer at once; bigger chunks are split into views. */
export const OUTBOUND_SLICE_BYTES = 64 * 1024;

export function guardOutboundStream(source: ReadableStream<Uint8Array>, options?: GuardOptions): GuardedStream {
  return createGuardedStream("guardOutboundStream", "outbound", source, options, attachOutboundGuard);
}

/** Puts an existing tracker's deadlines on `source` (the source must be unlocked). */
export function attachOutboundGuard(
  source: ReadableStream<Uint8Array>,
  tracker: DeadlineTracker,
): ReadableStream<Uint8Array> {
  return attachOutboundGuardToReader(source.getReader(), tracker, [], undefined);
}

/**
 * The same, for a source already partly read: `preread` chunks go out first, and `pendingRead` (a
 * read already made on `reader`) is the guard's first read ahead.
 */
export function attachOutboundGuardToReader(
  reader: BodyReader,
  tracker: DeadlineTracker,
  preread: Uint8Array[],
  pendingRead: Promise<ReadResult> | undefined,
  heartbeat?: OutboundHeartbeat,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(new OutboundGuard(reader, tracker, preread, pendingRead, heartbeat), {
    highWaterMark: 0,
  });
}

// The ReadableStream's underlying source (start/pull/cancel), typed structurally (see guard-inbound.ts).
class OutboundGuard implements GuardedSource {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private readonly reader: BodyReader;
  private readonly tracker: DeadlineTracker;
  /** Read ahead from the source, not yet taken by the consumer: while set, the consumer is to blame. */
  private held: Uint8Array | undefined = undefined;
  private reading = false;
  private sourceDone = false;
  /** Resolves the pending pull while the consumer waits on the producer. */
  private wakeConsumer: (() => void) | undefined = undefined;
  /** Chunks read before the guard was attached: they go out first. */
  private readonly preread: Uint8Array[];
  /** A read made before the guard was attached: used as the first read ahead. */
  private pendingRead: Promise<ReadResult> | undefined;
  private readonly heartbeat: OutboundHeartbeat | undefined;
  private heartbeatTimer: unknown = undefined;
  /**
   * Whether the bytes sent so far end a line: a heartbeat may only go between lines, or it would
   * join the producer's half-written line (a lone "\r" may be half of "\r\n": not a line end yet).
   */
  private atLineStart = true;

  constructor(
    reader: BodyReader,
    tracker: DeadlineTracker,
    preread: Uint8Array[] = [],
    pendingRead?: Promise<ReadResult>,
    heartbeat?: OutboundHeartbeat,
  ) {
    this.reader = reader;
    this.tracker = tracker;
    this.preread = preread;
    this.pendingRead = pendingRead;
    this.heartbeat = heartbeat;
    tracker.source = this;
  }

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.controller = controller;
  }

  pull(): Promise<void> | undefined {
    if (this.tracker.failedOnFirstPull()) return undefined; // a total already past: the stream is errored
    if (this.held !== undefined) {
      this.deliver(this.held);
      this.fill();
      return undefined;
    }
    const early = this.preread.shift();
    if (early !== undefined) {
      if (!isByteChunk(early)) {
        this.tracker.finish("errored");
        this.fail(nonByteChunkError(this.tracker.subject, early));
        return undefined;
      }
      this.deliver(early);
      // More read ahead and not taken: the consumer is to blame until it asks again.
      if (this.held === undefined && this.preread.length > 0) this.tracker.startWaiting();
      this.fill();
      return undefined;
    }
    if (this.sourceDone) return undefined;
    return new Promise<void>((resolve) => {
      this.wakeConsumer = resolve;
      this.fill();
      if (this.wakeConsumer !== undefined) this.armHeartbeat();
    });
  }

  /** The consumer waits on a quiet producer: plan a heartbeat (SSE only). */
  private armHeartbeat(): void {
    const heartbeat = this.heartbeat;
    if (heartbeat === undefined || this.heartbeatTimer !== undefined || !this.atLineStart) return;
    this.heartbeatTimer = heartbeat.clock.setTimer(this.beat, heartbeat.every);
  }

  private readonly beat = (): void => {
    this.heartbeatTimer = undefined;
    if (this.wakeConsumer === undefined || this.tracker.ended || !this.atLineStart) return;
    // Not progress: the consumer asked and gets bytes, but the peer's figures do not move.
    this.controller.enqueue(new Uint8Array(HEARTBEAT_LINE));
    this.resolvePull();
  };

  private stopHeartbeat(): void {
    if (this.heartbeatTimer === undefined) return;
    this.heartbeat!.clock.clearTimer(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  cancel(reason: unknown): Promise<void> {
    this.held = undefined;
    this.stopHeartbeat();
    const sourceReason = this.tracker.cancelledByConsumer(reason);
    this.resolvePull();
    return this.reader.cancel(sourceReason);
  }

  /** A deadline fired (or the owner aborted): fail the stream and free the producer, same reason. */
  fail(reason: unknown): void {
    this.held = undefined;
    this.stopHeartbeat();
    this.controller.error(reason);
    this.reader.cancel(reason).catch(ignore);
    this.resolvePull();
  }

  private resolvePull(): void {
    this.stopHeartbeat();
    const wake = this.wakeConsumer;
    this.wakeConsumer = undefined;
    wake?.();
  }

  /** The consumer asked: give it one slice, keep any remainder held (and the consumer to blame). */
  private deliver(chunk: Uint8Array): void {
    if (chunk.byteLength > OUTBOUND_SLICE_BYTES) {
      this.held = chunk.subarray(OUTBOUND_SLICE_BYTES);
      chunk = chunk.subarray(0, OUTBOUND_SLICE_BYTES);
    } else {
      this.held = undefined;
    }
    this.tracker.progress(chunk.byteLength);
    // An empty chunk (one the peek read ahead) ends no line: the line state stays as it was.
    if (this.heartbeat !== undefined && chunk.byteLength > 0)
      this.atLineStart = chunk[chunk.byteLength - 1] === LINE_FEED;
    this.controller.enqueue(chunk);
    if (this.held !== undefined) this.tracker.startWaiting();
  }

  /** Reads ahead one chunk, if none is held or being read. */
  private fill(): void {
    if (this.reading || this.held !== undefined || this.preread.length > 0 || this.sourceDone || this.tracker.ended)
      return;
    this.reading = true;
    const read = this.pendingRead ?? this.reader.read();
    this.pendingRead = undefined;
    read.then(this.onRead, this.onReadError);
  }

  private readonly onRead = (result: ReadResult): void => {
    this.reading = false;
    const tracker = this.tracker;
    if (tracker.ended) return;
    if (result.done) {
      this.sourceDone = true;
      tracker.finish("closed");
      this.controller.close();
      this.resolvePull();
      return;
    }
    const chunk: unknown = result.value;
    if (!isByteChunk(chunk)) {
      tracker.finish("errored");
      this.fail(nonByteChunkError(tracker.subject, chunk));
      return;
    }
    if (chunk.byteLength === 0) {
      this.fill();
      return;
    }
    if (this.wakeConsumer !== undefined) {
      this.deliver(chunk);
      this.resolvePull();
      this.fill();
    } else {
      this.held = chunk;
      tracker.startWaiting();
    }
  };

  private readonly onReadError = (error: unknown): void => {
    this.reading = false;
    if (this.tracker.ended) return;
    this.tracker.finish("errored");
    this.controller.error(error);
    this.resolvePull();
  };
}
