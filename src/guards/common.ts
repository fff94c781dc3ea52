/** What both stream guards share: their options, their result, and input checks. */
import { type Clock, checkClock } from "../engine/clock.ts";
import { type DeadlineController, DeadlineTracker } from "../engine/tracker.ts";
import type { DeadlineLimits } from "../engine/limits.ts";
import type { TimeoutError } from "../engine/timeout-error.ts";
import { checkOptions, fail, fieldError, typeOf } from "../engine/validate.ts";

export interface GuardOptions extends DeadlineLimits {
  /** Words for messages and reports, e.g. "request body". */
  subject?: string;
  /** Time source and timers; default: performance.now() and setTimeout. */
  clock?: Clock;
  /** Called once when a deadline fires, after the stream has failed. */
  onTimeout?: (error: TimeoutError) => void;
}

export interface GuardedStream {
  /** The stream to hand to the consumer in place of the source. */
  readable: ReadableStream<Uint8Array>;
  /** Read the figures and change the limits while the stream runs. */
  controller: DeadlineController;
}

const OPTION_KEYS = ["idle", "minRate", "grace", "total", "subject", "clock", "onTimeout"];

/** What a guard needs of its source: a reader of the body (a stream's own, or an adapter's). */
export type BodyReader = Pick<ReadableStreamDefaultReader<Uint8Array>, "read" | "cancel">;

/**
 * Whether `stream` is a byte stream (`type: "bytes"`), which takes BYOB readers. Its guard is one
 * too, so a BYOB reader works on the guarded body as on the source. A byte stream also owns the
 * chunks it hands out (it transferred their buffers on enqueue), so the guard may enqueue them in
 * its turn, which transfers them again; a default stream's chunks may still be its producer's (one
 * buffer enqueued over and over), so a guard of a default stream stays a default stream.
 * Asked once per body, before its reader is taken: a default stream costs a thrown TypeError.
 */
export function isByteStream(stream: ReadableStream<Uint8Array>): boolean {
  return withoutStacks(probeByteStream, stream);
}

function probeByteStream(stream: ReadableStream<Uint8Array>): boolean {
  let probe: ReadableStreamBYOBReader;
  try {
    probe = stream.getReader({ mode: "byob" });
  } catch {
    return false;
  }
  probe.releaseLock(); // rejects the probe's `closed` with an error of its own
  return true;
}

type StackLimited = { stackTraceLimit?: number };

/**
 * Runs `fn(arg)` with no stack captured for the errors the runtime makes inside, where they are
 * made only to be dropped (a refused BYOB reader, a released reader's promises): each stack costs
 * microseconds (V8, JavaScriptCore). Synchronous, and the limit is restored whatever happens.
 */
export function withoutStacks<A, R>(fn: (arg: A) => R, arg: A): R {
  const errors = Error as StackLimited;
  const limit = errors.stackTraceLimit;
  try {
    errors.stackTraceLimit = 0;
  } catch {
    return fn(arg); // a frozen Error (hardened realms): pay for the stacks
  }
  try {
    return fn(arg);
  } finally {
    errors.stackTraceLimit = limit;
  }
}

/** A guard's stream controller: a default one, or a byte stream's (which has byobRequest). */
export type GuardController = Pick<ReadableStreamDefaultController<Uint8Array>, "close" | "error"> & {
  enqueue(chunk: Uint8Array): void;
  readonly byobRequest?: ReadableStreamBYOBRequest | null;
};

/**
 * The guarded stream over `guard`, its underlying source: a byte stream when the guard's `type` is
 * "bytes", else a default stream; pull-based with no buffer of its own either way (highWaterMark 0).
 * No autoAllocateChunkSize: a default read takes the source's own chunk as it is (nothing to
 * allocate, no copy), and a BYOB read gets its buffer filled by the controller.
 */
export function guardedStream(guard: { readonly type: "bytes" | undefined }): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(guard as UnderlyingSource<Uint8Array>, { highWaterMark: 0 });
}

/** Byte chunks only, as the Fetch standard requires of bodies; cross-realm Uint8Arrays pass too. */

export function isByteChunk(chunk: unknown): chunk is Uint8Array {
  return (
    chunk instanceof Uint8Array ||
    (ArrayBuffer.isView(chunk) && Object.prototype.toString.call(chunk) === "[object Uint8Array]")
  );
}

export function nonByteChunkError(subject: string, chunk: unknown): TypeError {
  let kind = "object";
  try {
    const name: unknown =
      chunk === null ? "null" : typeof chunk === "object" ? (chunk as object).constructor?.name : typeof chunk;
    if (typeof name === "string") kind = name;
  } catch {
    // a hostile `constructor` getter must not turn the TypeError into its own error: "object" it stays
  }
  return new TypeError(`${subject}: chunks must be Uint8Array, got ${kind}`);
}

export function ignore(): void {}

/** The public guard functions: validate, make the tracker, attach the direction's guard. */
export function createGuardedStream(
  where: string,
  direction: "inbound" | "outbound",
  source: ReadableStream<Uint8Array>,
  options: GuardOptions | undefined,
  attach: (source: ReadableStream<Uint8Array>, tracker: DeadlineTracker) => ReadableStream<Uint8Array>,
): GuardedStream {
  let limits: DeadlineLimits = {};
  let subject: string | undefined;
  let clock: Clock | undefined;
  let onTimeout: ((error: TimeoutError) => void) | undefined;
  if (options != null) {
    checkOptions(where, options, OPTION_KEYS, "idle, minRate, grace, total, subject, clock or onTimeout");
    ({ subject, clock, onTimeout, ...limits } = options);
    if (subject !== undefined && typeof subject !== "string")
      throw fieldError(where, "subject", "a string", typeof subject);
    if (onTimeout !== undefined && typeof onTimeout !== "function")
      throw fieldError(where, "onTimeout", "a function", typeof onTimeout);
    if (clock !== undefined) checkClock(where, "clock", clock);
  }
  if (typeof source !== "object" || source === null || typeof (source as ReadableStream).getReader !== "function")
    fail(where, `expected a ReadableStream, got ${typeOf(source)}`);
  if (source.locked) fail(where, "the stream is already locked to a reader (it is being read elsewhere)");
  const tracker = new DeadlineTracker({ direction, subject: subject ?? `${direction} body`, limits, clock, onTimeout });
  return { readable: attach(source, tracker), controller: tracker };
}
