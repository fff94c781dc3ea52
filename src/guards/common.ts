/** What both stream guards share: their options, their result, and input checks. */
import { type Clock, checkClock } from "../engine/clock.ts";
import { type DeadlineController, DeadlineTracker } from "../engine/tracker.ts";
import type { DeadlineLimits } from "../engine/limits.ts";
import type { TimeoutError } from "../engine/timeout-error.ts";
import { checkOptions, fail, fieldError } from "../engine/validate.ts";

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

export function splitGuardOptions(
  where: string,
  options: GuardOptions | undefined,
): {
  limits: DeadlineLimits;
  subject: string | undefined;
  clock: Clock | undefined;
  onTimeout: ((error: TimeoutError) => void) | undefined;
} {
  if (options === undefined || options === null)
    return { limits: {}, subject: undefined, clock: undefined, onTimeout: undefined };
  checkOptions(where, options, OPTION_KEYS, "idle, minRate, grace, total, subject, clock or onTimeout");
  const { subject, clock, onTimeout, ...limits } = options;
  if (subject !== undefined && typeof subject !== "string")
    throw fieldError(where, "subject", "a string", typeof subject);
  if (onTimeout !== undefined && typeof onTimeout !== "function")
    throw fieldError(where, "onTimeout", "a function", typeof onTimeout);
  if (clock !== undefined) checkClock(where, "clock", clock);
  return { limits, subject, clock, onTimeout };
}

export function checkSourceStream(where: string, source: unknown): asserts source is ReadableStream<Uint8Array> {
  if (typeof source !== "object" || source === null || typeof (source as ReadableStream).getReader !== "function")
    fail(where, `expected a ReadableStream, got ${source === null ? "null" : typeof source}`);
  if ((source as ReadableStream).locked)
    fail(where, "the stream is already locked to a reader (it is being read elsewhere)");
}

/** What a guard needs of its source: a reader of the body (a stream's own, or an adapter's). */
export type BodyReader = Pick<ReadableStreamDefaultReader<Uint8Array>, "read" | "cancel">;

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
    kind = "object"; // a hostile `constructor` getter must not turn the TypeError into its own error
  }
  return new TypeError(`${subject}: chunks must be Uint8Array, got ${kind}`);
}

export function ignore(): void {}

/** The public guard functions: validate, make the tracker, attach the direction's guard. */
export function createGuardedStream(
  fnName: string,
  direction: "inbound" | "outbound",
  source: ReadableStream<Uint8Array>,
  options: GuardOptions | undefined,
  attach: (source: ReadableStream<Uint8Array>, tracker: DeadlineTracker) => ReadableStream<Uint8Array>,
): GuardedStream {
  const { limits, subject = `${direction} body`, clock, onTimeout } = splitGuardOptions(fnName, options);
  checkSourceStream(fnName, source);
  const tracker = new DeadlineTracker({ direction, subject, limits, clock, onTimeout });
  return { readable: attach(source, tracker), controller: tracker };
}
