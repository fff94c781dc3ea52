/**
 * withDeadlines' options and per-request policy: their types, their defaults, and their validation,
 * done once per instance (the defaults) and once per request that has a policy (its result).
 */
import { type Clock, MAX_TIMER_DELAY } from "../engine/clock.ts";
import { type DeadlineLimits, type ResolvedLimits, parseLimits } from "../engine/limits.ts";
import { checkKeys, fail, fieldError } from "../engine/validate.ts";
import type { TimeoutEvent } from "./timeout-answer.ts";

/** Per-request limits, as returned by `policy` or given as defaults. */
export interface RequestPolicy {
  /** Limits of the request body. */
  request?: DeadlineLimits;
  /** Limits of the response body (`total` counts from the request's arrival). */
  response?: DeadlineLimits;
  /**
   * Time in ms until the handler must return a Response (Go's TimeoutHandler), counting the handler's
   * own time only (paused while a read of the request body waits on the client); 0/null: off.
   */
  handler?: number | null;
  /**
   * For `text/event-stream` responses: after this many ms of a quiet producer, send an SSE comment
   * line (":\n") so proxies and load balancers do not cut the stream. Not client progress: it never
   * counts toward the response's bytes, idle or rate. 0/null: off.
   */
  sseHeartbeat?: number | null;
}

/** How a small body already in memory is handed on (see `inMemoryResponse`). */
export type InMemoryResponse = (
  body: Uint8Array,
  init: { status: number; statusText: string; headers: Headers },
) => Response;

export interface WithDeadlinesOptions<Args extends unknown[] = unknown[]> {
  /** Default limits of request bodies. Default: `{ idle: 30_000, minRate: 240, grace: 5_000 }`. */
  request?: DeadlineLimits;
  /** Default limits of response bodies. Default: `{ idle: 30_000, minRate: 240, grace: 5_000 }`. */
  response?: DeadlineLimits;
  /** Default handler deadline in ms. Default: off. */
  handler?: number | null;
  /** Default SSE heartbeat in ms for `text/event-stream` responses (see RequestPolicy). Default: off. */
  sseHeartbeat?: number | null;
  /** Per-request limits (per route, client, method), merged field by field over the defaults. */
  policy?: (request: Request, ...args: Args) => RequestPolicy | undefined | null | void;
  /** Called once per firing. Default: one `console.warn` line. `false` silences it. */
  onTimeout?: ((event: TimeoutEvent) => void) | false;
  /** The response sent when a deadline fires before headers. Default: 408 (request body) or 503. */
  timeoutResponse?: (event: TimeoutEvent) => Response;
  /** Time source; default: the system clock. */
  clock?: Clock;
  /**
   * How a small body found already in memory is handed on (for adapters: a runtime's own fast
   * response class). Default: `new Response(bytes, init)`.
   */
  inMemoryResponse?: InMemoryResponse;
  /**
   * `"shared"`: one native timer for every request (the cheapest). `"request"`: one per request, for
   * runtimes whose timers belong to the request that set them (workerd cancels them when it ends).
   * Default: `"request"` on Cloudflare Workers (`navigator.userAgent`), `"shared"` elsewhere.
   */
  timerScope?: "shared" | "request";
}

export const DEFAULT_REQUEST_LIMITS: Readonly<DeadlineLimits> = /* @__PURE__ */ Object.freeze({
  idle: 30_000,
  minRate: 240,
  grace: 5_000,
});
export const DEFAULT_RESPONSE_LIMITS: Readonly<DeadlineLimits> = /* @__PURE__ */ Object.freeze({
  idle: 30_000,
  minRate: 240,
  grace: 5_000,
});

/** Every option withDeadlines knows (adapters check their options against it too). */
export const OPTION_KEYS: readonly string[] = [
  "request",
  "response",
  "handler",
  "sseHeartbeat",
  "policy",
  "onTimeout",
  "timeoutResponse",
  "clock",
  "timerScope",
  "inMemoryResponse",
];
const POLICY_KEYS = ["request", "response", "handler", "sseHeartbeat"];

/** A handler deadline in ms, or null (off). */
export function checkHandlerMs(where: string, value: unknown, field = "handler"): number | null {
  if (value === undefined || value === null || value === 0) return null;
  if (typeof value !== "number")
    throw fieldError(where, field, "a number of milliseconds (or 0/null to turn it off)", typeof value);
  if (!Number.isFinite(value) || value < 0 || value > Number.MAX_SAFE_INTEGER) {
    throw fieldError(
      where,
      field,
      "a positive finite number of milliseconds, at most Number.MAX_SAFE_INTEGER (or 0/null to turn it off)",
      value,
      RangeError,
    );
  }
  return value;
}

/** An SSE heartbeat interval: like a handler deadline, and it must fit one native timer. */
function checkHeartbeatMs(where: string, value: unknown): number | null {
  const ms = checkHandlerMs(where, value, "sseHeartbeat");
  if (ms !== null && ms > MAX_TIMER_DELAY)
    throw fieldError(where, "sseHeartbeat", `at most ${MAX_TIMER_DELAY} ms`, ms, RangeError);
  return ms;
}

/** The limits of one request: the defaults, with its policy's fields merged over them. */
export interface ResolvedPolicy {
  /** Raw limits, for merging a policy's fields over them. */
  rawRequest: DeadlineLimits;
  rawResponse: DeadlineLimits;
  /** The same, validated once. */
  request: Partial<ResolvedLimits>;
  response: Partial<ResolvedLimits>;
  handler: number | null;
  sseHeartbeat: number | null;
}

/**
 * A limits object merged field by field over `base` (raw, and as parsed), parsed once: the merge of
 * the parsed override over the parsed base is what parsing the raw merge would give.
 */
function mergeLimits(
  where: string,
  base: DeadlineLimits,
  parsedBase: Partial<ResolvedLimits>,
  override: DeadlineLimits | undefined,
): [DeadlineLimits, Partial<ResolvedLimits>] {
  if (override === undefined) return [base, parsedBase];
  if (override === null)
    fail(
      where,
      "limits must be an object like { idle, minRate, grace, total } (a field null turns that limit off), got null",
    );
  const patch = parseLimits(override, where);
  const merged: DeadlineLimits = { ...base };
  const parsed = { ...parsedBase, ...patch };
  // A field given as undefined keeps the base's value, as in set(): it never turns a limit off.
  for (const [key, value] of Object.entries(override))
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
  // Turning minRate off drops the default's grace with it (a grace alone is refused).
  if (!merged.minRate && override.grace === undefined) {
    delete merged.grace;
    delete parsed.grace;
  } else if (typeof override.grace === "number" && (merged.minRate === 0 || merged.minRate === null)) {
    fail(
      where,
      `grace is ${override.grace} but minRate is ${merged.minRate}: a grace period needs a minimum rate`,
      ": ",
      RangeError,
    );
  }
  return [merged, parsed];
}

/** The instance's defaults, validated once. */
export function defaultPolicy(options: WithDeadlinesOptions<never>): ResolvedPolicy {
  // The options' limits are merged field by field over the library's defaults, as a policy's are over
  // the options' (null turns a field off): `request: { idle: 10_000 }` keeps the default minRate.
  const [rawRequest, request] = mergeLimits(
    "withDeadlines: request",
    ...mergeLimits("withDeadlines: request", {}, {}, DEFAULT_REQUEST_LIMITS),
    options.request,
  );
  const [rawResponse, response] = mergeLimits(
    "withDeadlines: response",
    ...mergeLimits("withDeadlines: response", {}, {}, DEFAULT_RESPONSE_LIMITS),
    options.response,
  );
  return {
    rawRequest,
    rawResponse,
    request,
    response,
    handler: checkHandlerMs("withDeadlines", options.handler),
    sseHeartbeat: checkHeartbeatMs("withDeadlines", options.sseHeartbeat),
  };
}

/** One request's policy result over the defaults: each limits object is parsed once. */
export function resolvePolicy(base: ResolvedPolicy, override: RequestPolicy | undefined | null | void): ResolvedPolicy {
  const where = "withDeadlines: policy()";
  if (override === undefined || override === null) return base;
  if (typeof override !== "object")
    fail(where, `must return an object like { request, response, handler } or undefined, got ${typeof override}`, " ");
  checkKeys(where, override, POLICY_KEYS, "request, response, handler or sseHeartbeat", "field", " returned an ");
  const [rawRequest, request] = mergeLimits(`${where} request`, base.rawRequest, base.request, override.request);
  const [rawResponse, response] = mergeLimits(`${where} response`, base.rawResponse, base.response, override.response);
  return {
    rawRequest,
    rawResponse,
    request,
    response,
    handler: override.handler === undefined ? base.handler : checkHandlerMs(where, override.handler),
    sseHeartbeat:
      override.sseHeartbeat === undefined ? base.sseHeartbeat : checkHeartbeatMs(where, override.sseHeartbeat),
  };
}

/** What an instance of withDeadlines resolved from its options, once. */
export interface ResolvedConfig {
  onTimeout: ((event: TimeoutEvent) => void) | false;
  timeoutResponse: (event: TimeoutEvent) => Response;
  clock: Clock;
  timerScope: "shared" | "request";
  /** The user's option, when given (it comes before an adapter's). */
  inMemoryResponse: InMemoryResponse | undefined;
}
