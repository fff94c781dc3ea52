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

const BRAND = Symbol.for("stream-deadlines.TimeoutError");

export class TimeoutError extends Error implements TimeoutErrorDetails {
  override readonly name = "TimeoutError";
  readonly code: TimeoutErrorCode;
  readonly subject: string;
  readonly direction: DeadlineDirection | null;
  readonly limit: DeadlineLimitName;
  readonly limitValue: number;
  readonly grace?: number;
  readonly bytes: number;
  readonly elapsed: number;
  readonly waited: number;
  readonly idleFor: number;
  readonly rate: number;

  constructor(details: TimeoutErrorDetails, options?: { cause?: unknown }) {
    // No stack: a deadline fires from the scheduler, so the trace would only show the scheduler,
    // and capturing it was a third of the cost of a firing (10,000 firing at once: ~9 µs each).
    // `super` is called plainly (JSR's type check of the public API wants a direct super call).
    super(messageWithoutStack(details), options);
    restoreStackTraceLimit();
    this.code = TIMEOUT_ERROR_CODES[details.limit];
    this.subject = details.subject;
    this.direction = details.direction;
    this.limit = details.limit;
    this.limitValue = details.limitValue;
    if (details.grace !== undefined) this.grace = details.grace;
    this.bytes = details.bytes;
    this.elapsed = details.elapsed;
    this.waited = details.waited;
    this.idleFor = details.idleFor;
    this.rate = details.rate;
  }

  /** Structured fields for logs (`JSON.stringify(err)` gives them too). */
  toJSON(): TimeoutErrorDetails & { name: string; code: string; message: string } {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      subject: this.subject,
      direction: this.direction,
      limit: this.limit,
      limitValue: this.limitValue,
      ...(this.grace !== undefined ? { grace: this.grace } : {}),
      bytes: this.bytes,
      elapsed: this.elapsed,
      waited: this.waited,
      idleFor: this.idleFor,
      rate: this.rate,
    };
  }

  /** `err instanceof TimeoutError` is true for errors made by any copy of this package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return isTimeoutError(value);
  }
}

Object.defineProperty(TimeoutError.prototype, BRAND, { value: true });

const errorHost = Error as { stackTraceLimit?: number };
let savedStackTraceLimit: number | undefined;

/** Checks the details and turns stack capture off until `restoreStackTraceLimit()` (right after `super`). */
function messageWithoutStack(details: TimeoutErrorDetails): string {
  checkDetails(details);
  const message = describeTimeout(details);
  savedStackTraceLimit = errorHost.stackTraceLimit;
  errorHost.stackTraceLimit = 0;
  return message;
}

function restoreStackTraceLimit(): void {
  errorHost.stackTraceLimit = savedStackTraceLimit;
}

const DIRECTIONS: readonly unknown[] = ["inbound", "outbound", null];
/** Limits, counts and durations: finite and never negative. */
const FIGURES = ["limitValue", "bytes", "elapsed", "waited", "idleFor", "rate"] as const;

/** Bad details throw at once, naming the field, instead of a message reading "undefined". */
function checkDetails(details: unknown): asserts details is TimeoutErrorDetails {
  const where = "new TimeoutError(details)";
  if (typeof details !== "object" || details === null) {
    throw new TypeError(
      `${where}: details must be an object of TimeoutErrorDetails, got ${details === null ? "null" : typeof details}`,
    );
  }
  const d = details as Record<string, unknown>;
  if (typeof d.subject !== "string") throw new TypeError(`${where}: subject must be a string, got ${typeof d.subject}`);
  if (!DIRECTIONS.includes(d.direction))
    throw new TypeError(
      `${where}: direction must be "inbound", "outbound" or null, got ${typeof d.direction === "string" ? JSON.stringify(d.direction) : typeof d.direction}`,
    );
  if (typeof d.limit !== "string" || !Object.hasOwn(TIMEOUT_ERROR_CODES, d.limit)) {
    throw new TypeError(
      `${where}: limit must be "idle", "minRate", "total" or "handler", got ${typeof d.limit === "string" ? JSON.stringify(d.limit) : typeof d.limit}`,
    );
  }
  const check = (field: string, value: unknown) => {
    if (typeof value !== "number") throw new TypeError(`${where}: ${field} must be a number, got ${typeof value}`);
    if (!Number.isFinite(value) || value < 0)
      throw new RangeError(`${where}: ${field} must be a finite number, 0 or more, got ${value}`);
  };
  for (const field of FIGURES) check(field, d[field]);
  if (d.grace !== undefined) check("grace", d.grace);
}

/** True for a TimeoutError from any copy of stream-deadlines (checks a Symbol.for brand). */
export function isTimeoutError(value: unknown): value is TimeoutError {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${round1(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Limits are printed as set: "10 s", "250 ms", "1.5 s". */
function formatLimitMs(ms: number): string {
  if (ms < 1000) return `${round1(ms)} ms`;
  return `${round1(ms / 1000)} s`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${round1(bytes)} B`;
  if (bytes < 1024 * 1024) return `${round1(bytes / 1024)} KiB`;
  if (bytes < 1024 * 1024 * 1024) return `${round1(bytes / (1024 * 1024))} MiB`;
  return `${round1(bytes / (1024 * 1024 * 1024))} GiB`;
}

function round1(x: number): string {
  return String(Math.round(x * 10) / 10);
}

/**
 * Who takes an outbound body: the client, except for a body we send upstream (fetchWithDeadlines'
 * upload, subject "upstream request body"), which the upstream takes.
 */
function receiverOf(subject: string): string {
  return subject.startsWith("upstream ") ? "the upstream" : "the client";
}

function describeTimeout(d: TimeoutErrorDetails): string {
  const moved = d.direction === "outbound" ? "sent" : "received";
  switch (d.limit) {
    case "idle":
      return d.direction === "outbound"
        ? `${d.subject} stalled: ${receiverOf(d.subject)} took no data for ${formatDuration(d.idleFor)} (idle limit ${formatLimitMs(d.limitValue)}, ${formatBytes(d.bytes)} ${moved})`
        : `${d.subject} stalled: no data for ${formatDuration(d.idleFor)} (idle limit ${formatLimitMs(d.limitValue)}, ${formatBytes(d.bytes)} ${moved})`;
    case "minRate":
      return `${d.subject} too slow: ${formatRate(d.rate)} over ${formatDuration(d.waited)}, below the minimum ${formatRate(d.limitValue)} (grace ${formatLimitMs(d.grace ?? 0)}, ${formatBytes(d.bytes)} ${moved})`;
    case "total":
      return `${d.subject} exceeded its total deadline after ${formatDuration(d.elapsed)} (total limit ${formatLimitMs(d.limitValue)}, ${formatBytes(d.bytes)} ${moved})`;
    case "handler":
      return `${d.subject} did not return a response within ${formatLimitMs(d.limitValue)} (handler deadline)`;
  }
}
