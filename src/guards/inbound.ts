/**
 * Guards a stream the peer sends into (a request body, an upstream response body). The clock runs
 * only while the consumer's read is pending and unsatisfied: a handler busy elsewhere never gets
 * its client timed out. Pull-based with no buffer of its own (highWaterMark 0), so a read of the
 * guarded stream is exactly one read of the source.
 *
 * The guard of a byte stream is a byte stream (see isByteStream): a BYOB read pulls one chunk of
 * the source, which the controller copies into the reader's buffer; what does not fit stays in the
 * controller's queue, as it would in the source's, and later reads take it without a pull (the
 * bytes are here: no wait on the peer, no clock).
 *
 * One object per stream serves as the underlying source (methods on the prototype): per stream
 * there are two bound callbacks and no other closure, which matters at many requests per second.
 */
import type { DeadlineTracker, GuardedSource } from "../engine/tracker.ts";
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
type ReadResult = { done: false; value: Uint8Array } | { done: true; value?: Uint8Array | undefined };

export function guardInboundStream(source: ReadableStream<Uint8Array>, options?: GuardOptions): GuardedStream {
  return createGuardedStream("guardInboundStream", "inbound", source, options, attachInboundGuard);
}

/** Puts an existing tracker's deadlines on `source` (the source must be unlocked). */
export function attachInboundGuard(
  source: ReadableStream<Uint8Array>,
  tracker: DeadlineTracker,
): ReadableStream<Uint8Array> {
  const bytes = isByteStream(source);
  return attachInboundGuardToReader(source.getReader(), tracker, bytes);
}

/**
 * The same on a raw reader: anything with `read()` and `cancel()` (an adapter's reader of a runtime
 * body). `bytes`: make the guarded stream a byte stream; only for a reader whose chunks are its own
 * to give away (a byte stream's reader: the guard's enqueue transfers each chunk's buffer).
 */
export function attachInboundGuardToReader(
  reader: BodyReader,
  tracker: DeadlineTracker,
  bytes = false,
): ReadableStream<Uint8Array> {
  return guardedStream(new InboundGuard(reader, tracker, bytes));
}

// Used as the ReadableStream's underlying source (start/pull/cancel); no `implements`
// UnderlyingDefaultSource, which some runtimes' type packages (workers-types) do not declare.
class InboundGuard implements GuardedSource {
  /** The underlying source's type: "bytes" makes the guarded stream a byte stream. */
  readonly type: "bytes" | undefined;
  #controller!: GuardController;
  #reader: BodyReader;
  #tracker: DeadlineTracker;

  constructor(reader: BodyReader, tracker: DeadlineTracker, bytes: boolean) {
    this.type = bytes ? "bytes" : undefined;
    this.#reader = reader;
    this.#tracker = tracker;
    tracker.source = this;
  }

  start(controller: GuardController): void {
    this.#controller = controller;
  }

  pull(): Promise<void> | undefined {
    if (this.#tracker.failedOnFirstPull()) return undefined; // a total already past: the stream is errored
    this.#tracker.startWaiting();
    return this.#reader.read().then(this.#onRead, this.#onReadError);
  }

  cancel(reason: unknown): Promise<void> {
    this.#tracker.finish("cancelled");
    return this.#reader.cancel(reason);
  }

  /** A deadline fired (or the owner aborted): fail the stream and free the source, same reason. */
  fail(reason: unknown): void {
    this.#controller.error(reason);
    this.#reader.cancel(reason).catch(ignore);
  }

  #onRead = (result: ReadResult): Promise<void> | undefined => {
    const tracker = this.#tracker;
    if (tracker.ended) return undefined; // failed while the read was pending: the stream already errored
    if (result.done) {
      tracker.finish("closed");
      this.#controller.close();
      // A byte stream's pending BYOB read ends only when its request is answered (with 0 bytes, done).
      // (A default stream's controller has no byobRequest.)
      this.#controller.byobRequest?.respond(0);
      return undefined;
    }
    const chunk: unknown = result.value;
    if (!isByteChunk(chunk)) {
      const error = nonByteChunkError(tracker.subject, chunk);
      tracker.finish("errored");
      this.fail(error);
      return undefined;
    }
    // An empty chunk is no progress: keep waiting, clock still running.
    if (chunk.byteLength === 0) return this.#reader.read().then(this.#onRead, this.#onReadError);
    tracker.progress(chunk.byteLength);
    // A byte stream's enqueue transfers the chunk's buffer: one that cannot be (shared memory) fails
    // the body. (A default stream's enqueue cannot throw here: the stream is still readable, as the
    // tracker has not ended.)
    try {
      this.#controller.enqueue(chunk);
    } catch (error) {
      tracker.finish("errored");
      this.fail(error);
    }
    return undefined;
  };

  #onReadError = (error: unknown): void => {
    if (this.#tracker.ended) return;
    this.#tracker.finish("errored");
    this.#controller.error(error);
  };
}
