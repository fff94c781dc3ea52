/** Peers and producers scripted on a virtual clock, for the core tests. */
import type { VirtualClock } from "../../src/index.ts";

export interface ScriptedChunk {
  /** Virtual time at which the chunk is available. */
  at: number;
  bytes: number;
}

export interface ScriptedSource {
  stream: ReadableStream<Uint8Array>;
  /** The reason the source was cancelled with, once it was. */
  readonly cancelReason: unknown;
  readonly cancelled: boolean;
  /** Closed, errored or cancelled: nothing of it is left running. */
  readonly finished: boolean;
  /** Chunks handed out so far. */
  readonly pulled: number;
}

/**
 * A source whose chunk i becomes available at `chunks[i].at` (pull waits for it), then ends at
 * `endAt` (default: right after the last chunk). Optionally errors instead of ending. `bytes`: a
 * byte stream (`type: "bytes"`, as fetch() bodies are), which takes BYOB readers.
 */
export function scriptedSource(
  clock: VirtualClock,
  chunks: ScriptedChunk[],
  options: { endAt?: number; errorAt?: { at: number; error: unknown }; bytes?: boolean } = {},
): ScriptedSource {
  let index = 0;
  let cancelReason: unknown;
  let cancelled = false;
  let ended = false;
  const waitUntil = (at: number) => (at > clock.now() ? clock.sleep(at - clock.now()) : Promise.resolve());
  const source = {
    type: options.bytes ? ("bytes" as const) : undefined,
    async pull(controller: ReadableStreamDefaultController<Uint8Array> & { byobRequest?: ReadableStreamBYOBRequest }) {
      if (index < chunks.length) {
        const chunk = chunks[index++]!;
        await waitUntil(chunk.at);
        if (cancelled) return;
        controller.enqueue(new Uint8Array(chunk.bytes).fill(index & 0xff));
        return;
      }
      if (options.errorAt) {
        await waitUntil(options.errorAt.at);
        if (!cancelled) controller.error(options.errorAt.error);
        ended = true;
        return;
      }
      await waitUntil(options.endAt ?? 0);
      if (!cancelled) {
        controller.close();
        controller.byobRequest?.respond(0); // a pending BYOB read ends only when answered
      }
      ended = true;
    },
    cancel(reason: unknown) {
      cancelled = true;
      cancelReason = reason;
    },
  };
  const stream = new ReadableStream<Uint8Array>(source as UnderlyingDefaultSource<Uint8Array>, { highWaterMark: 0 });
  return {
    stream,
    get cancelReason() {
      return cancelReason;
    },
    get cancelled() {
      return cancelled;
    },
    get finished() {
      return ended || cancelled;
    },
    get pulled() {
      return index;
    },
  };
}

export interface ConsumerResult {
  bytes: number;
  chunks: number;
  error: unknown;
  done: boolean;
  /** Virtual time at which the consumer saw the end or the error. */
  endedAt: number | undefined;
}

/**
 * Reads `readable`, starting at `startAt`, pausing `pauseAfter(i)` ms after chunk i before the next
 * read; with `byob`, in BYOB reads of that many bytes. Returns a live result object (fields fill in
 * as the clock advances).
 */
export function scriptedConsumer(
  clock: VirtualClock,
  readable: ReadableStream<Uint8Array>,
  options: { startAt?: number; pauseAfter?: (chunkIndex: number) => number; byob?: number } = {},
): ConsumerResult {
  const result: ConsumerResult = { bytes: 0, chunks: 0, error: undefined, done: false, endedAt: undefined };
  const byob = options.byob;
  // With `byob`: BYOB reads into a buffer of that many bytes (the same memory, handed back each time).
  const reader = byob === undefined ? readable.getReader() : readable.getReader({ mode: "byob" });
  let buffer = new ArrayBuffer(byob ?? 0);
  const read = (): Promise<ReadableStreamReadResult<Uint8Array>> =>
    byob === undefined
      ? (reader as ReadableStreamDefaultReader<Uint8Array>).read()
      : (reader as ReadableStreamBYOBReader).read(new Uint8Array(buffer)).then((r) => {
          if (r.value !== undefined) buffer = r.value.buffer as ArrayBuffer;
          return r as ReadableStreamReadResult<Uint8Array>;
        });
  void (async () => {
    if (options.startAt && options.startAt > clock.now()) await clock.sleep(options.startAt - clock.now());
    try {
      for (;;) {
        const { done, value } = await read();
        if (done) {
          result.done = true;
          break;
        }
        result.bytes += value.byteLength;
        const pause = options.pauseAfter?.(result.chunks) ?? 0;
        result.chunks++;
        if (pause > 0) await clock.sleep(pause);
      }
    } catch (error) {
      result.error = error;
    }
    result.endedAt = clock.now();
  })();
  return result;
}

export const bytesOf = (n: number, fill = 1) => new Uint8Array(n).fill(fill);
