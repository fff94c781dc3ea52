/**
 * Deadlines on upstream bodies: a `fetch()` whose response body is guarded inbound (the upstream
 * is the peer that sends). Like nginx's `proxy_read_timeout` or undici's `bodyTimeout`, but
 * portable, with a minimum rate as well as idle, and not blind under backpressure: while the
 * consumer (say, a slow client the body is proxied to) is not reading, the upstream is not to
 * blame and its clock does not run (undici's bodyTimeout fires there: nodejs/undici#5393).
 *
 * A firing aborts the upstream request (its connection is freed) with the TimeoutError as reason.
 */
import type { Clock } from "./clock.ts";
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
  fetch?: (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;
}

export interface FetchWithDeadlinesInit extends RequestInit {
  deadlines?: UpstreamDeadlineOptions;
}

const UPSTREAM = Symbol.for("stream-deadlines.upstreamDeadlines");

/** The deadline controller of a Response returned by `fetchWithDeadlines` (undefined for any other). */
export function upstreamDeadlines(response: Response): DeadlineController | undefined {
  return (response as unknown as { [UPSTREAM]?: DeadlineController })[UPSTREAM];
}

/**
 * `fetch()` with deadlines on the upstream: `idle` also covers the wait for the response headers,
 * `total` counts from the call, and `idle`/`minRate` on the body run only while its reader waits.
 * The result is a Response with the same status, statusText and headers, whose body is guarded.
 */
export async function fetchWithDeadlines(input: RequestInfo | URL, init: FetchWithDeadlinesInit = {}): Promise<Response> {
  const { deadlines: options = {}, ...requestInit } = init;
  if (typeof options !== "object" || options === null) throw new TypeError("fetchWithDeadlines: deadlines must be an object of limits");
  const { subject = "upstream body", clock, onTimeout, fetch: fetchImpl = globalThis.fetch, ...limits } = options;
  if (typeof fetchImpl !== "function") throw new TypeError("fetchWithDeadlines: no fetch to call");
  const upstream = new AbortController();
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
  const callerSignal = requestInit.signal ?? undefined;
  const signal = callerSignal ? AbortSignal.any([callerSignal, upstream.signal]) : upstream.signal;
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
