/**
 * The one error every deadline raises. `name === "TimeoutError"` so code that already handles
 * `AbortSignal.timeout()` reasons treats it alike; the brand makes `isTimeoutError` and
 * `instanceof` work across two copies of the package (e.g. a framework's and the app's).
 */

/** Which limit fired. */
export type DeadlineLimitName = "idle" | "minRate" | "total" | "handler";

/** inbound: the peer sends (request body, upstream response); outbound: the peer receives. */
export type DeadlineDirection = "inbound" | "outbound";

/** Stable, greppable codes; they never change meaning between versions. */
export const TIMEOUT_ERROR_CODES = {
  idle: "ERR_DEADLINE_IDLE",
  minRate: "ERR_DEADLINE_MIN_RATE",
  total: "ERR_DEADLINE_TOTAL",
  handler: "ERR_DEADLINE_HANDLER",
} as const satisfies Record<DeadlineLimitName, string>;

export type TimeoutErrorCode = (typeof TIMEOUT_ERROR_CODES)[DeadlineLimitName];

export interface TimeoutErrorDetails {
  /** What timed out, in words: "request body", "response body", "handler", "upstream body". */
  subject: string;
  /** null for the handler deadline, which is not a body. */
  direction: DeadlineDirection | null;
  limit: DeadlineLimitName;
  /** The limit's value: milliseconds for idle/total/handler, bytes per second for minRate. */
  limitValue: number;
  /** Grace period of minRate in milliseconds (only for limit "minRate"). */
  grace?: number;
  /** Bytes the peer delivered (inbound) or took (outbound) before the firing. */
  bytes: number;
  /** Wall time since the guard started, in milliseconds. */
  elapsed: number;
  /** Time the peer was to blame (gated clock), in milliseconds. */
  waited: number;
  /** For idle: how long the current wait had lasted, in milliseconds. */
  idleFor: number;
  /** Observed rate in bytes per second over the time the peer was to blame (0 when nothing was waited for). */
  rate: number;
}

import { fail, fieldError, typeOf } from "./validate.ts";

const BRAND = Symbol.for("stream-deadlines.TimeoutError");

/** The details' fields, in the order of `toJSON()` (grace only when given). */
const DETAIL_FIELDS = [
  "subject",
  "direction",
  "limit",
  "limitValue",
  "grace",
  "bytes",
  "elapsed",
  "waited",
  "idleFor",
  "rate",
] as const satisfies readonly (keyof TimeoutErrorDetails)[];
/** Limits, counts and durations: finite and never negative (grace only when given). */
const FIGURES = ["limitValue", "bytes", "elapsed", "waited", "idleFor", "rate", "grace"] as const;

const errorHost = Error as { stackTraceLimit?: number };
let savedStackTraceLimit: number | undefined;

export class TimeoutError extends Error implements TimeoutErrorDetails {
  override readonly name = "TimeoutError";
  // Set by the constructor from the details (declared only: no field initializers to emit).
  declare readonly code: TimeoutErrorCode;
  declare readonly subject: string;
  declare readonly direction: DeadlineDirection | null;
  declare readonly limit: DeadlineLimitName;
  declare readonly limitValue: number;
  declare readonly grace?: number;
  declare readonly bytes: number;
  declare readonly elapsed: number;
  declare readonly waited: number;
  declare readonly idleFor: number;
  declare readonly rate: number;

  constructor(details: TimeoutErrorDetails, options?: { cause?: unknown }) {
    // No stack: a deadline fires from the scheduler, so the trace would only show the scheduler,
    // and capturing it was a third of the cost of a firing (10,000 firing at once: ~9 µs each).
    // `super` is called plainly (JSR's type check of the public API wants a direct super call).
    super(messageWithoutStack(details), options);
    errorHost.stackTraceLimit = savedStackTraceLimit;
    const self = this as unknown as Record<string, unknown>;
    self.code = TIMEOUT_ERROR_CODES[details.limit];
    // Every field is an own property, grace too (undefined when not given), as class fields were.
    for (const field of DETAIL_FIELDS) self[field] = details[field];
  }

  /** Structured fields for logs (`JSON.stringify(err)` gives them too). */
  toJSON(): TimeoutErrorDetails & { name: string; code: string; message: string } {
    const json: Record<string, unknown> = { name: this.name, code: this.code, message: this.message };
    for (const field of DETAIL_FIELDS) if (this[field] !== undefined) json[field] = this[field];
    return json as unknown as TimeoutErrorDetails & { name: string; code: string; message: string };
  }

  /** `err instanceof TimeoutError` is true for errors made by any copy of this package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return isTimeoutError(value);
  }
}

Object.defineProperty(TimeoutError.prototype, BRAND, { value: true });

/** Checks the details and turns stack capture off until the constructor restores it (right after `super`). */
function messageWithoutStack(details: TimeoutErrorDetails): string {
  checkDetails(details);
  const message = describeTimeout(details);
  savedStackTraceLimit = errorHost.stackTraceLimit;
  errorHost.stackTraceLimit = 0;
  return message;
}

/** Bad details throw at once, naming the field, instead of a message reading "undefined". */
function checkDetails(details: unknown): void {
  const d = details as Record<string, unknown>;
  const where = "new TimeoutError(details)";
  if (typeof d !== "object" || d === null)
    fail(where, `details must be an object of TimeoutErrorDetails, got ${typeOf(d)}`);
  if (typeof d.subject !== "string") throw fieldError(where, "subject", "a string", typeof d.subject);
  const quoted = (value: unknown) => (typeof value === "string" ? JSON.stringify(value) : typeof value);
  if (d.direction !== "inbound" && d.direction !== "outbound" && d.direction !== null)
    throw fieldError(where, "direction", '"inbound", "outbound" or null', quoted(d.direction));
  if (typeof d.limit !== "string" || !Object.hasOwn(TIMEOUT_ERROR_CODES, d.limit))
    throw fieldError(where, "limit", '"idle", "minRate", "total" or "handler"', quoted(d.limit));
  for (const field of FIGURES) {
    const value = d[field];
    if (field === "grace" && value === undefined) continue;
    if (typeof value !== "number") throw fieldError(where, field, "a number", typeof value);
    if (!(value >= 0 && value < Infinity))
      throw fieldError(where, field, "a finite number, 0 or more", value, RangeError);
  }
}

/** True for a TimeoutError from any copy of stream-deadlines (checks a Symbol.for brand). */
export function isTimeoutError(value: unknown): value is TimeoutError {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

/** A duration: "250 ms", "1.5 s"; `asSet` (a limit, printed as set): "10 s", not "10.0 s". */
export function formatDuration(ms: number, asSet?: boolean): string {
  return ms < 1000 ? `${round1(ms)} ms` : `${asSet ? round1(ms / 1000) : (ms / 1000).toFixed(1)} s`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB"];

export function formatBytes(bytes: number): string {
  let unit = 0;
  for (; bytes >= 1024 && unit < 3; unit++) bytes /= 1024; // exact: a power of two
  return `${round1(bytes)} ${BYTE_UNITS[unit]}`;
}

function round1(x: number): string {
  return String(Math.round(x * 10) / 10);
}

/**
 * The message: what stalled and the figures, then the limit in brackets with the bytes moved. Who
 * takes an outbound body: the client, except for a body we send upstream (fetchWithDeadlines'
 * upload, subject "upstream request body"), which the upstream takes.
 */
function describeTimeout(d: TimeoutErrorDetails): string {
  const { subject, limit, direction } = d;
  const setting = formatDuration(d.limitValue, true);
  if (limit === "handler") return `${subject} did not return a response within ${setting} (handler deadline)`;
  const receiver = subject.startsWith("upstream ") ? "the upstream" : "the client";
  const what =
    limit === "idle"
      ? `stalled: ${direction === "outbound" ? `${receiver} took no` : "no"} data for ${formatDuration(d.idleFor)}`
      : limit === "minRate"
        ? `too slow: ${formatRate(d.rate)} over ${formatDuration(d.waited)}, below the minimum ${formatRate(d.limitValue)}`
        : `exceeded its total deadline after ${formatDuration(d.elapsed)}`;
  const limitText = limit === "minRate" ? `grace ${formatDuration(d.grace ?? 0, true)}` : `${limit} limit ${setting}`;
  return `${subject} ${what} (${limitText}, ${formatBytes(d.bytes)} ${direction === "outbound" ? "sent" : "received"})`;
}
