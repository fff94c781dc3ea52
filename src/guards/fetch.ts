/**
 * Deadlines on an upstream exchange: a `fetch()` whose clock runs on the upstream only while the
 * upstream is to blame, which is
 *   (a) while a chunk of our request body waits for it to take it (an outbound guard on our upload,
 *       as withDeadlines has on response bodies; a body given whole waits from the call),
 *   (b) while we wait for its response headers after it has taken our whole body, and
 *   (c) while our reader waits on its response body (an inbound guard: like nginx's
 *       `proxy_read_timeout` or undici's `bodyTimeout`, but portable, with a minimum rate, and not
 *       blind under backpressure: while the consumer, say a slow client the body is proxied to, is
 *       not reading, the upstream is not to blame; undici's bodyTimeout fires there: nodejs/undici#5393).
 * Time our own producer takes is never the upstream's fault. `idle` bounds each of the three waits;
 * `minRate` applies to the two bodies, not to the header wait; `total` spans the whole exchange.
 *
 * A firing aborts the upstream request (its connection is freed) and cancels our upload, with the
 * TimeoutError as reason. An abort of the caller's signals (the Request's own and `init.signal`)
 * does the same with the abort reason, as fetch() does.
 */
import { type Clock, checkClock, defaultClock } from "../engine/clock.ts";
import { abortTracker, type DeadlineController, DeadlineTracker, type TrackerOwner } from "../engine/tracker.ts";
import { type BodyReader, ignore, isByteChunk } from "./common.ts";
import { attachInboundGuard } from "./inbound.ts";
import { type ReadResult, attachOutboundGuardToReader } from "./outbound.ts";
import { type DeadlineLimits, type ResolvedLimits, parseLimits } from "../engine/limits.ts";
import type { TimeoutError } from "../engine/timeout-error.ts";

export interface UpstreamDeadlineOptions extends DeadlineLimits {
  /** Words for messages. Default: "upstream body" (our upload's messages say "upstream request body"). */
  subject?: string;
  clock?: Clock;
  onTimeout?: (error: TimeoutError) => void;
  /** The fetch to call. Default: the global `fetch`. */
  fetch?: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
}

export interface FetchWithDeadlinesInit extends RequestInit {
  deadlines?: UpstreamDeadlineOptions;
}

/** The subject of our upload's deadlines (its idle message then says "the upstream took no data"). */
const UPLOAD_SUBJECT = "upstream request body";

const UPSTREAM = Symbol.for("stream-deadlines.upstreamDeadlines");
const UPSTREAM_OPTION_KEYS = new Set(["idle", "minRate", "grace", "total", "subject", "clock", "onTimeout", "fetch"]);

/** The deadline controller of a Response returned by `fetchWithDeadlines` (undefined for any other). */
export function upstreamDeadlines(response: Response): DeadlineController | undefined {
  if (typeof response !== "object" || response === null) {
    throw new TypeError(`upstreamDeadlines: expected a Response, got ${response === null ? "null" : typeof response}`);
  }
  return (response as unknown as { [UPSTREAM]?: DeadlineController })[UPSTREAM];
}

function describe(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
}

function isStream(body: unknown): body is ReadableStream<Uint8Array> {
  return typeof body === "object" && body !== null && typeof (body as ReadableStream).getReader === "function";
}

/** The first read of our upload that is not an empty chunk (an empty chunk is nothing to take). */
function firstChunk(reader: BodyReader): Promise<ReadResult> {
  return reader
    .read()
    .then((result) =>
      !result.done && isByteChunk(result.value) && result.value.byteLength === 0 ? firstChunk(reader) : result,
    );
}

/**
 * `fetch()` with deadlines on the upstream (see the module comment for when its clock runs). The
 * result is a Response with the same status, statusText and headers, whose body is guarded.
 */
export async function fetchWithDeadlines(
  input: string | URL | Request,
  init: FetchWithDeadlinesInit = {},
): Promise<Response> {
  const where = "fetchWithDeadlines";
  if (typeof init !== "object" || init === null || Array.isArray(init)) {
    throw new TypeError(`${where}: init must be an object (RequestInit), got ${describe(init)}`);
  }
  const { deadlines: options = {}, ...requestInit } = init;
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`${where}: deadlines must be an object of limits, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!UPSTREAM_OPTION_KEYS.has(key))
      throw new TypeError(
        `${where}: unknown deadlines option "${key}" (expected ${[...UPSTREAM_OPTION_KEYS].join(", ")})`,
      );
  }
  const {
    subject = "upstream body",
    clock: givenClock,
    onTimeout,
    fetch: fetchImpl = globalThis.fetch,
    ...limits
  } = options;
  if (typeof subject !== "string")
    throw new TypeError(`${where}: deadlines.subject must be a string, got ${typeof subject}`);
  if (givenClock !== undefined) checkClock(where, "deadlines.clock", givenClock);
  if (onTimeout !== undefined && typeof onTimeout !== "function")
    throw new TypeError(`${where}: deadlines.onTimeout must be a function, got ${describe(onTimeout)}`);
  if (typeof fetchImpl !== "function")
    throw new TypeError(
      `${where}: deadlines.fetch must be a function (default: the global fetch), got ${describe(fetchImpl)}`,
    );
  const initSignal = requestInit.signal ?? undefined;
  if (initSignal !== undefined && !(initSignal instanceof AbortSignal)) {
    throw new TypeError(`${where}: init.signal must be an AbortSignal, got ${typeof initSignal}`);
  }
  const parsed = parseLimits(limits, `${subject} limits`);
  // Everything is checked: from here on nothing throws before the exchange is set up.

  const request = typeof Request === "function" && input instanceof Request ? input : undefined;
  const callerSignals = [request?.signal, initSignal].filter((s): s is AbortSignal => s !== undefined);
  // The body fetch() will send: init.body if given, else the Request's own (fetch()'s own rule).
  const givenBody = requestInit.body ?? (request !== undefined && !request.bodyUsed ? request.body : null);
  // A stream is our producer's: its chunks are timed one by one. A locked one is left to fetch() to refuse.
  const uploadSource = isStream(givenBody) && !givenBody.locked ? givenBody : undefined;

  const aborted = callerSignals.find((s) => s.aborted);
  if (aborted !== undefined) {
    // As fetch(): nothing is sent, the body is cancelled, the call rejects with the abort reason.
    uploadSource?.cancel(aborted.reason).catch(ignore);
    throw aborted.reason;
  }

  const clock = givenClock ?? defaultClock(); // one clock (on workerd, one per call) for every phase
  const calledAt = clock.now();
  const upstream = new AbortController();
  let stopReason: unknown;
  let stopped = false;
  let rejectCall: ((reason: unknown) => void) | undefined;
  let upload: DeadlineTracker | undefined;
  let body: DeadlineTracker | undefined;

  /** Ends the exchange: the caller left or a deadline fired. Every part stops with `reason`. */
  const stop = (reason: unknown): void => {
    if (stopped) return;
    stopped = true;
    stopReason = reason;
    detach();
    upstream.abort(reason); // frees the upstream connection, whatever is reading or not
    abortTracker(exchange, reason);
    abortTracker(upload, reason); // our upload's stream errors and our producer is cancelled
    abortTracker(body, reason); // a pending read of the response body rejects at once
    rejectCall?.(reason);
  };
  const fired = (error: TimeoutError): void => {
    stop(error);
    onTimeout?.(error);
  };
  const onCallerAbort = function (this: AbortSignal): void {
    stop(this.reason);
  };
  const detach = (): void => {
    for (const signal of callerSignals) signal.removeEventListener("abort", onCallerAbort);
  };

  // Until the headers come: `total` from the call, and `idle` on the header wait (never minRate).
  const exchange = new DeadlineTracker({
    direction: "inbound",
    subject,
    parsedLimits: pick(parsed, ["idle", "total", "totalAt"]),
    clock,
    startedAt: calledAt,
    onTimeout: fired,
  });
  exchange.checkOverdue(); // a total already past (a Date): fail before anything is sent
  if (stopped) {
    uploadSource?.cancel(stopReason).catch(ignore);
    throw stopReason;
  }
  for (const signal of callerSignals) signal.addEventListener("abort", onCallerAbort);

  const fetchInit: RequestInit & { duplex?: "half" } = { ...requestInit, signal: upstream.signal };
  if (uploadSource !== undefined) {
    // Our upload is timed as withDeadlines times a response body: the upstream is to blame while a
    // chunk waits for it. The first chunk is read at once: a chunk ready before the runtime asks
    // for it (while it connects) waits on the upstream too. `total` is watched by the exchange
    // until the headers come, then by the response body (both count from the call).
    const whenTaken: TrackerOwner = {
      trackerFired: ignore,
      trackerSettled: (tracker) => {
        // The upstream took our whole body: from now on, waiting for its headers is its fault.
        if (tracker.state === "closed") exchange.startWaiting();
      },
    };
    upload = new DeadlineTracker({
      direction: "outbound",
      subject: UPLOAD_SUBJECT,
      parsedLimits: pick(parsed, ["idle", "minRate", "grace"]),
      clock,
      startedAt: calledAt,
      onTimeout: fired,
      owner: whenTaken,
    });
    const reader = uploadSource.getReader();
    const first = firstChunk(reader);
    const tracker = upload;
    // Registered before the guard's own callback on `first`: the wait begins before any take.
    first.then((result) => {
      if (!result.done && isByteChunk(result.value)) tracker.startWaiting();
    }, ignore);
    fetchInit.body = attachOutboundGuardToReader(reader, upload, [], first);
    fetchInit.duplex = "half"; // fetch() requires it for a stream body
  } else {
    // No body, or one given whole (string, Blob, ArrayBuffer, FormData, URLSearchParams): all of it
    // is there at once, so the upstream is to blame from the call.
    exchange.startWaiting();
  }

  let response: Response;
  try {
    response = await new Promise<Response>((resolve, reject) => {
      rejectCall = reject;
      let call: Promise<Response>;
      try {
        call = Promise.resolve(fetchImpl(input, fetchInit));
      } catch (error) {
        call = Promise.reject(error);
      }
      call.then(resolve, reject);
      // Settled after a stop: a late Response's body is released.
      call.then((late) => {
        if (stopped) late?.body?.cancel(stopReason).catch(ignore);
      }, ignore);
    });
  } catch (error) {
    if (!stopped) {
      // fetch() failed on its own (a network error, a refused input): nothing else may fire later.
      detach();
      exchange.finish("errored");
      abortTracker(upload, error);
    }
    throw stopped ? stopReason : error;
  }
  rejectCall = undefined;
  if (stopped) {
    // Stopped after the Response came but before this continuation ran: release it too.
    response.body?.cancel(stopReason).catch(ignore);
    throw stopReason;
  }
  exchange.finish("closed"); // the headers came: the header wait ends
  const source = response.body; // a getter: read once
  if (source === null) {
    detach();
    upload?.retire();
    return response;
  }
  const ended: TrackerOwner = {
    trackerFired: ignore,
    trackerSettled: () => {
      // The response is over: the exchange is done, an upload still running is no longer bounded.
      detach();
      upload?.retire();
    },
  };
  // The body's limits as given; its total counts from the call.
  body = new DeadlineTracker({
    direction: "inbound",
    subject,
    parsedLimits: parsed,
    clock,
    startedAt: calledAt,
    onTimeout: fired,
    owner: ended,
  });
  // A byte stream where fetch()'s body is one (undici's, Deno's, Bun's, workerd's): BYOB reads work on it.
  const guarded = new Response(attachInboundGuard(source, body), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  Object.defineProperty(guarded, UPSTREAM, { value: body });
  return guarded;
}

function pick(limits: Partial<ResolvedLimits>, keys: (keyof ResolvedLimits)[]): Partial<ResolvedLimits> {
  const out: Partial<ResolvedLimits> = {};
  for (const key of keys) if (limits[key] !== undefined) (out as Record<string, unknown>)[key] = limits[key];
  return out;
}
