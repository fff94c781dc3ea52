/**
 * Guards a stream the peer sends into (a request body, an upstream response body). The clock runs
 * only while the consumer's read is pending and unsatisfied: a handler busy elsewhere never gets
 * its client timed out. Pull-based with no buffer of its own (highWaterMark 0), so a read of the
 * guarded stream is exactly one read of the source.
 */
import { DeadlineTracker } from "./deadline-tracker.ts";
import { type GuardOptions, type GuardedStream, checkSourceStream, isByteChunk, nonByteChunkError, splitGuardOptions } from "./guard-common.ts";

export function guardInboundStream(source: ReadableStream<Uint8Array>, options?: GuardOptions): GuardedStream {
  const { limits, subject = "inbound body", clock, onTimeout } = splitGuardOptions("guardInboundStream", options);
  checkSourceStream("guardInboundStream", source);
  const tracker = new DeadlineTracker({ direction: "inbound", subject, limits, clock, onTimeout });
  return { readable: attachInboundGuard(source, tracker), controller: tracker };
}

/** Puts an existing tracker's deadlines on `source` (the source must be unlocked). */
export function attachInboundGuard(source: ReadableStream<Uint8Array>, tracker: DeadlineTracker): ReadableStream<Uint8Array> {
  const subject = tracker.subject;
  const reader = source.getReader();
  let controller!: ReadableStreamDefaultController<Uint8Array>;

  const release = () => {
    try {
      reader.releaseLock();
    } catch {
      // Already released.
    }
  };

  const onRead = (result: ReadableStreamReadResult<Uint8Array>): Promise<void> | undefined => {
    if (tracker.ended) return undefined; // timed out while the read was pending: the stream already failed
    if (result.done) {
      tracker.finish("closed");
      controller.close();
      release();
      return undefined;
    }
    const chunk: unknown = result.value;
    if (!isByteChunk(chunk)) {
      const error = nonByteChunkError(subject, chunk);
      tracker.finish("errored");
      controller.error(error);
      reader.cancel(error).then(release, release);
      return undefined;
    }
    // An empty chunk is no progress: keep waiting, clock still running.
    if (chunk.byteLength === 0) return reader.read().then(onRead, onReadError);
    tracker.progress(chunk.byteLength);
    controller.enqueue(chunk);
    return undefined;
  };

  const onReadError = (error: unknown): void => {
    if (tracker.ended) return;
    tracker.finish("errored");
    controller.error(error);
    release();
  };

  tracker.failStream = (error) => {
    controller.error(error);
    reader.cancel(error).then(release, release);
  };

  const readable = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
      },
      pull() {
        tracker.startWaiting();
        return reader.read().then(onRead, onReadError);
      },
      cancel(reason) {
        tracker.finish("cancelled");
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
