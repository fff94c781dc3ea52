/**
 * Deadlines on upstream bodies: a `fetch()` whose response body is guarded inbound (the upstream
 * is the peer that sends). Like nginx's `proxy_read_timeout` or undici's `bodyTimeout`, but
 * portable, with a minimum rate as well as idle, and not blind under backpressure: while the
 * consumer (say, a slow client the body is proxied to) is not reading, the upstream is not to
 * blame and its clock does not run (undici's bodyTimeout fires there: nodejs/undici#5393).
 *
 * A firing aborts the upstream request (its connection is freed) with the TimeoutError as reason.
 */
import { type Clock, checkClock } from "./clock.ts";
import { type DeadlineController, DeadlineTracker } from "./deadline-tracker.ts";
import { attachInboundGuard } from "./guard-inbound.ts";
import type { DeadlineLimits } from "./limits.ts";
import type { TimeoutError } from "./timeout-error.ts";

export interface UpstreamDeadlineOptions extends DeadlineLimits {
  /** Words for messages. Default: "upstream body". */
  subject?: string;
  clock?: Clock;
  onTimeout?: (error: TimeoutError) => void;
  /** The fetch to call. Default: the global `fetch`. */
  fetch?: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
}

export interface FetchWithDeadlinesInit extends RequestInit {
  deadlines?: UpstreamDeadlineOptions;
}

const UPSTREAM = Symbol.for("stream-deadlines.upstreamDeadlines");
const UPSTREAM_OPTION_KEYS = new Set(["idle", "minRate", "grace", "total", "subject", "clock", "onTimeout", "fetch"]);

/** The deadline controller of a Response returned by `fetchWithDeadlines` (undefined for any other). */
export function upstreamDeadlines(response: Response): DeadlineController | undefined {
  if (typeof response !== "object" || response === null) {
    throw new TypeError(`upstreamDeadlines: expected a Response, got ${response === null ? "null" : typeof response}`);
  }
  return (response as unknown as { [UPSTREAM]?: DeadlineController })[UPSTREAM];
}

/**
 * `fetch()` with deadlines on the upstream: `idle` also covers the wait for the response headers,
 * `total` counts from the call, and `idle`/`minRate` on the body run only while its reader waits.
 * The result is a Response with the same status, statusText and headers, whose body is guarded.
 */
export async function fetchWithDeadlines(
  input: string | URL | Request,
  init: FetchWithDeadlinesInit = {},
): Promise<Response> {
  const where = "fetchWithDeadlines";
  if (typeof init !== "object" || init === null || Array.isArray(init)) {
    throw new TypeError(
      `${where}: init must be an object (RequestInit), got ${init === null ? "null" : Array.isArray(init) ? "an array" : typeof init}`,
    );
  }
  const { deadlines: options = {}, ...requestInit } = init;
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(
      `${where}: deadlines must be an object of limits, got ${options === null ? "null" : Array.isArray(options) ? "an array" : typeof options}`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!UPSTREAM_OPTION_KEYS.has(key))
      throw new TypeError(
        `${where}: unknown deadlines option "${key}" (expected ${[...UPSTREAM_OPTION_KEYS].join(", ")})`,
      );
  }
  const { subject = "upstream body", clock, onTimeout, fetch: fetchImpl = globalThis.fetch, ...limits } = options;
  if (typeof subject !== "string")
    throw new TypeError(`${where}: deadlines.subject must be a string, got ${typeof subject}`);
  if (clock !== undefined) checkClock(where, "deadlines.clock", clock);
  if (onTimeout !== undefined && typeof onTimeout !== "function")
    throw new TypeError(
      `${where}: deadlines.onTimeout must be a function, got ${onTimeout === null ? "null" : typeof onTimeout}`,
    );
  if (typeof fetchImpl !== "function")
    throw new TypeError(
      `${where}: deadlines.fetch must be a function (default: the global fetch), got ${fetchImpl === null ? "null" : typeof fetchImpl}`,
    );
  const upstream = new AbortController();
  // Before the tracker exists: a bad signal must not leave a deadline armed behind the error.
  const callerSignal = requestInit.signal ?? undefined;
  if (callerSignal !== undefined && !(callerSignal instanceof AbortSignal)) {
    throw new TypeError(`${where}: init.signal must be an AbortSignal, got ${typeof callerSignal}`);
  }
  const signal = callerSignal ? AbortSignal.any([callerSignal, upstream.signal]) : upstream.signal;
  const tracker = new DeadlineTracker({
    direction: "inbound",
    subject,
    limits,
    clock,
    onTimeout: (error) => {
      upstream.abort(error); // frees the upstream connection, whatever is reading or not
      onTimeout?.(error);
    },
  });
  tracker.checkOverdue(); // a total already past (a Date): fail before anything is sent
  if (tracker.ended) throw tracker.error;
  tracker.startWaiting(); // waiting for the headers is waiting on the upstream
  let response: Response;
  try {
    response = await fetchImpl(input, { ...requestInit, signal });
  } catch (error) {
    tracker.finish("errored");
    throw tracker.error ?? error;
  }
  if (tracker.ended) {
    // A deadline fired while the headers were on their way; the fetch resolved anyway.
    response.body?.cancel(tracker.error).catch(() => {});
    throw tracker.error;
  }
  tracker.progress(0); // the headers came: the idle wait ends
  if (response.body === null) {
    tracker.finish("closed");
    return response;
  }
  const guarded = new Response(attachInboundGuard(response.body, tracker), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  Object.defineProperty(guarded, UPSTREAM, { value: tracker });
  return guarded;
}
