/**
 * Guards a stream the peer receives (a response body). The clock runs only while a chunk is ready
 * and the consumer (the runtime writing to the socket) has not taken it: a producer with nothing to
 * send, like a quiet SSE stream, never gets its client timed out.
 *
 * To see a chunk "waiting for the consumer", the guard reads ahead exactly one chunk from the
 * source once the consumer has asked for the first one. Chunks over 64 KiB are handed out as
 * 64 KiB views (no copy), so one huge chunk cannot hide a slow client behind a single "take".
 */
import { DeadlineTracker } from "./deadline-tracker.ts";
import { type GuardOptions, type GuardedStream, checkSourceStream, isByteChunk, nonByteChunkError, splitGuardOptions } from "./guard-common.ts";

/** Largest piece handed to the consumer at once; bigger chunks are split into views. */
export const OUTBOUND_SLICE_BYTES = 64 * 1024;

export function guardOutboundStream(source: ReadableStream<Uint8Array>, options?: GuardOptions): GuardedStream {
  const { limits, subject = "outbound body", clock, onTimeout } = splitGuardOptions("guardOutboundStream", options);
  checkSourceStream("guardOutboundStream", source);
  const tracker = new DeadlineTracker({ direction: "outbound", subject, limits, clock, onTimeout });
  return { readable: attachOutboundGuard(source, tracker), controller: tracker };
}

/** Puts an existing tracker's deadlines on `source` (the source must be unlocked). */
export function attachOutboundGuard(source: ReadableStream<Uint8Array>, tracker: DeadlineTracker): ReadableStream<Uint8Array> {
  const subject = tracker.subject;
  const reader = source.getReader();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  /** Read ahead from the source, not yet taken by the consumer: while set, the consumer is to blame. */
  let held: Uint8Array | undefined;
  let reading = false;
  let sourceDone = false;
  /** Resolves the pending pull while the consumer waits on the producer. */
  let wakeConsumer: (() => void) | undefined;

  const release = () => {
    try {
      reader.releaseLock();
    } catch {
      // Already released.
    }
  };

  const resolvePull = () => {
    const wake = wakeConsumer;
    wakeConsumer = undefined;
    wake?.();
  };

  const closeNow = () => {
    tracker.finish("closed");
    controller.close();
    release();
    resolvePull();
  };

  /** The consumer asked: give it one slice, keep any remainder held (and the consumer to blame). */
  const deliver = (chunk: Uint8Array) => {
    if (chunk.byteLength > OUTBOUND_SLICE_BYTES) {
      held = chunk.subarray(OUTBOUND_SLICE_BYTES);
      chunk = chunk.subarray(0, OUTBOUND_SLICE_BYTES);
    } else {
      held = undefined;
    }
    tracker.progress(chunk.byteLength);
    controller.enqueue(chunk);
    if (held !== undefined) tracker.startWaiting();
  };

  const fill = () => {
    if (reading || held !== undefined || sourceDone || tracker.ended) return;
    reading = true;
    reader.read().then(onRead, onReadError);
  };

  const onRead = (result: ReadableStreamReadResult<Uint8Array>) => {
    reading = false;
    if (tracker.ended) return;
    if (result.done) {
      sourceDone = true;
      closeNow();
      return;
    }
    const chunk: unknown = result.value;
    if (!isByteChunk(chunk)) {
      const error = nonByteChunkError(subject, chunk);
      tracker.finish("errored");
      controller.error(error);
      reader.cancel(error).then(release, release);
      resolvePull();
      return;
    }
    if (chunk.byteLength === 0) {
      fill();
      return;
    }
    if (wakeConsumer !== undefined) {
      deliver(chunk);
      resolvePull();
      fill();
    } else {
      held = chunk;
      tracker.startWaiting();
    }
  };

  const onReadError = (error: unknown) => {
    reading = false;
    if (tracker.ended) return;
    tracker.finish("errored");
    controller.error(error);
    release();
    resolvePull();
  };

  tracker.failStream = (error) => {
    held = undefined;
    controller.error(error);
    reader.cancel(error).then(release, release);
    resolvePull();
  };

  const readable = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
      },
      pull() {
        if (held !== undefined) {
          deliver(held);
          fill();
          return undefined;
        }
        if (sourceDone) return undefined;
        return new Promise<void>((resolve) => {
          wakeConsumer = resolve;
          fill();
        });
      },
      cancel(reason) {
        held = undefined;
        tracker.finish("cancelled");
        resolvePull();
        return reader.cancel(reason).then(release, (error: unknown) => {
          release();
          throw error;
        });
      },
    },
    { highWaterMark: 0 },
  );
  return readable;
}
