/**
 * Deadline-aware fetch handlers: `withDeadlines(handler, options)` puts every request under
 * deadlines, and `deadlines(request)` gives the handler the live controls from anywhere that holds
 * the Request (so frameworks need no new parameter).
 */
import {
  type Clock,
  checkClock,
  isolatedClock,
  MAX_TIMER_DELAY,
  systemClock,
  TIMERS_BELONG_TO_REQUESTS,
} from "../engine/clock.ts";
import { type ScheduledEntry, schedulerFor } from "../engine/scheduler.ts";
import {
  type DeadlineController,
  DeadlineTracker,
  type DeadlineStats,
  type GuardState,
  type TrackerOwner,
} from "../engine/tracker.ts";
import { liveCounts } from "../engine/debug-counters.ts";
import type { BodyReader } from "../guards/common.ts";
import { attachInboundGuardToReader } from "../guards/inbound.ts";
import { attachOutboundGuardToReader, type ReadResult } from "../guards/outbound.ts";
import { type DeadlineLimits, type ResolvedLimits, emptyLimits, parseLimits } from "../engine/limits.ts";
import { TimeoutError, formatRate, isTimeoutError } from "../engine/timeout-error.ts";

/** Per-request limits, as returned by `policy` or given as defaults. */
export interface RequestPolicy {
  /** Limits of the request body. */
  request?: DeadlineLimits;
  /** Limits of the response body (`total` counts from the request's arrival). */
  response?: DeadlineLimits;
  /** Time in ms until the handler must return a Response (Go's TimeoutHandler); 0/null: off. */
  handler?: number | null;
  /**
   * For `text/event-stream` responses: after this many ms of a quiet producer, send an SSE comment
   * line (":\n") so proxies and load balancers do not cut the stream. Not client progress: it never
   * counts toward the response's bytes, idle or rate. 0/null: off.
   */
  sseHeartbeat?: number | null;
}

/** What `onTimeout` receives, once per firing. */
export interface TimeoutEvent {
  error: TimeoutError;
  /** The request as the handler saw it. */
  request: Request;
  method: string;
  /** URL path of the request (no query string, so secrets in queries stay out of logs). */
  path: string;
  /** Which deadline: the request body, the response body, or the handler. */
  direction: "request" | "response" | "handler";
  limit: TimeoutError["limit"];
  bytes: number;
  elapsed: number;
  rate: number;
  /** Whether response headers had already gone out (then the client sees an aborted body). */
  afterHeaders: boolean;
}

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
  inMemoryResponse?: (body: Uint8Array, init: { status: number; statusText: string; headers: Headers }) => Response;
  /**
   * `"shared"`: one native timer for every request (the cheapest). `"request"`: one per request, for
   * runtimes whose timers belong to the request that set them (workerd cancels them when it ends).
   * Default: `"request"` on Cloudflare Workers (`navigator.userAgent`), `"shared"` elsewhere.
   */
  timerScope?: "shared" | "request";
}

/** The live controls of one request. */
export interface RequestDeadlines {
  /** The request body's deadlines (an inert, closed controller when the request has no body). */
  readonly request: DeadlineController;
  /** The response body's deadlines: set them before or after returning the Response. */
  readonly response: DeadlineController;
  /** Aborts when any deadline of this request fires (reason: the TimeoutError) or the client goes away. */
  readonly signal: AbortSignal;
  /** Sets the handler deadline, in ms from the request's arrival; 0/null turns it off. */
  setHandlerTimeout(ms: number | null): void;
  /** The handler deadline's error, once it fired. */
  readonly handlerError: TimeoutError | undefined;
}

export const DEFAULT_REQUEST_LIMITS: Readonly<DeadlineLimits> = Object.freeze({
  idle: 30_000,
  minRate: 240,
  grace: 5_000,
});
export const DEFAULT_RESPONSE_LIMITS: Readonly<DeadlineLimits> = Object.freeze({
  idle: 30_000,
  minRate: 240,
  grace: 5_000,
});

/** Every option withDeadlines knows (adapters check their options against it too). */
export const OPTION_KEYS: ReadonlySet<string> = new Set([
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
]);
const POLICY_KEYS = new Set(["request", "response", "handler", "sseHeartbeat"]);
/**
 * Where a Request keeps its controls: a symbol-keyed property rather than a WeakMap, because
 * thousands of short-lived WeakMap keys per second make every garbage collection slower
 * (ephemerons). `Symbol.for`, so two copies of the package find each other's controls.
 */
const CONTROLS = Symbol.for("stream-deadlines.requestDeadlines");

/** The live controls of a request handled by `withDeadlines`. Throws for any other request. */
export function deadlines(request: Request): RequestDeadlines {
  const state = (request as unknown as { [CONTROLS]?: RequestDeadlines } | null)?.[CONTROLS];
  if (state === undefined) {
    throw new TypeError(
      "deadlines(request): this Request is not handled by withDeadlines (pass the Request your handler received)",
    );
  }
  return state;
}

/**
 * The live controls of a request under withDeadlines, or undefined. For framework middleware (the
 * Hono one) that joins an enclosing withDeadlines instead of guarding the bodies twice, without
 * paying for a thrown TypeError on every request.
 */
export function findDeadlines(request: Request): RequestDeadlines | undefined {
  return (request as unknown as { [CONTROLS]?: RequestDeadlines } | null)?.[CONTROLS];
}

/**
 * The timeout response (the `timeoutResponse` option's) when `error` is this request's request-body
 * timeout; undefined for any other error. For frameworks that catch a handler's errors themselves
 * (Hono hands them to `app.onError`), so the timeout never escapes to withDeadlines to become a 408.
 */
export function requestTimeoutResponse(request: Request, error: unknown): Response | undefined {
  const state = findDeadlines(request) as { timeoutResponseFor?(error: unknown): Response | undefined } | undefined;
  return state?.timeoutResponseFor?.(error);
}

function checkHandlerMs(where: string, value: unknown, field = "handler"): number | null {
  if (value === undefined || value === null || value === 0) return null;
  if (typeof value !== "number")
    throw new TypeError(
      `${where}: ${field} must be a number of milliseconds (or 0/null to turn it off), got ${typeof value}`,
    );
  if (!Number.isFinite(value) || value < 0 || value > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(
      `${where}: ${field} must be a positive finite number of milliseconds, at most Number.MAX_SAFE_INTEGER (or 0/null to turn it off), got ${value}`,
    );
  }
  return value;
}

/** An SSE heartbeat interval: like a handler deadline, and it must fit one native timer. */
function checkHeartbeatMs(where: string, value: unknown): number | null {
  const ms = checkHandlerMs(where, value, "sseHeartbeat");
  if (ms !== null && ms > MAX_TIMER_DELAY)
    throw new RangeError(`${where}: sseHeartbeat must be at most ${MAX_TIMER_DELAY} ms, got ${ms}`);
  return ms;
}

/** Whether a response is a server-sent event stream (its media type, parameters aside). */
function isEventStream(headers: Headers): boolean {
  const type = headers.get("content-type");
  return type !== null && /^\s*text\/event-stream\s*(;|$)/i.test(type);
}

/** A controller for a body that does not exist: closed, figures zero, `set` validates and does nothing. */
function inertController(subject: string): DeadlineController {
  const stats: DeadlineStats = {
    state: "closed",
    bytes: 0,
    elapsed: 0,
    waited: 0,
    idleFor: 0,
    waiting: false,
    rate: 0,
    rateCredit: null,
    remaining: null,
  };
  let signal: AbortSignal | undefined;
  return {
    direction: "inbound",
    subject,
    state: "closed",
    get limits(): ResolvedLimits {
      return emptyLimits();
    },
    get stats() {
      return { ...stats };
    },
    get signal() {
      return (signal ??= new AbortController().signal);
    },
    error: undefined,
    set(limits) {
      parseLimits(limits, `${subject} limits`);
    },
    clear() {},
  };
}

/** The handler deadline: one scheduler entry, counted from the request's arrival. */
class HandlerDeadline implements ScheduledEntry {
  heapIndex = -1;
  scheduledAt = Infinity;
  due = Infinity;
  limit = 0;
  constructor(
    private readonly state: RequestState,
    private readonly clock: Clock,
  ) {}
  checkDue(now: number): number {
    if (this.due === Infinity) return Infinity;
    if (now >= this.due) {
      this.due = Infinity;
      this.state.handlerDeadlinePassed(now, this.limit);
      return Infinity;
    }
    return this.due;
  }
  set(ms: number | null, startedAt: number): void {
    const scheduler = schedulerFor(this.clock);
    if (ms === null) {
      this.due = Infinity;
      scheduler.unschedule(this);
      return;
    }
    this.limit = ms;
    this.due = startedAt + ms;
    const now = this.clock.now();
    if (now >= this.due) {
      this.checkDue(now);
      return;
    }
    scheduler.unschedule(this); // the deadline may move later: re-insert at the exact time
    scheduler.schedule(this, this.due);
  }
  stop(): void {
    this.due = Infinity;
    schedulerFor(this.clock).unschedule(this);
  }
}

/**
 * The same request (method, URL, headers, signal, and Workers' `cf`) with another body. Built from
 * its fields rather than `new Request(original, init)`: adapters' lazy Request classes (srvx,
 * @hono/node-server) are not the runtime's own Request, which `new Request(request)` needs.
 */
function requestWithBody(
  original: Request,
  signal: AbortSignal | undefined | null,
  body: ReadableStream<Uint8Array>,
): Request {
  const init: RequestInit & { duplex: "half" } = {
    method: original.method,
    headers: original.headers,
    body,
    duplex: "half",
    signal,
  };
  const cf = (original as { cf?: unknown }).cf;
  if (cf !== undefined) (init as { cf?: unknown }).cf = cf;
  return new Request(original.url, init);
}

/** Everything the wrapper keeps for one request. Built lazily: most requests need little of it. */
class RequestState implements RequestDeadlines, TrackerOwner, InboundBodyGuard {
  readonly startedAt: number;
  /** This request's own clock when timers are per request, made at its first use (most requests never arm a timer). */
  private ownClock: Clock | undefined;
  requestTracker: DeadlineTracker | undefined;
  readonly handlerRequest: Request;
  handlerError: TimeoutError | undefined;
  private responseTracker: DeadlineTracker | undefined;
  /** A response for the client has been chosen (the handler's, or a timeout response). */
  private answered = false;
  private handlerDone = false;
  private earlyResponse: Response | undefined;
  /** Settles the exchange's answer while the handler runs (see answer()). */
  private resolveEarly: ((value: Response) => void) | undefined;
  private abortController: AbortController | undefined;
  private abortReason: unknown;
  private aborted = false;
  private handlerDeadline: HandlerDeadline | undefined;
  private listening = false;
  private inertRequest: DeadlineController | undefined;
  /** The response body is guarded: its end is the end of the exchange. */
  private bodyAttached = false;

  /**
   * The client's signal, when the handler's Request is a copy (a guarded body). The original Request
   * itself is not kept: an adapter's (srvx's) holds its own URL, headers and context objects, about
   * 1 KB a request that nothing needs once the copy exists.
   */
  private readonly copiedFromSignal: AbortSignal | undefined | null;
  /** The adapter's, told how the guarded response body ended (RESPONSE_BODY_OBSERVER). */
  private readonly observer: ResponseBodyObserver | undefined;
  /** The handler's Request is a copy of the client's (see copiedFromSignal). */
  private readonly copied: boolean = false;

  constructor(
    original: Request,
    private readonly config: ResolvedConfig,
    private readonly policy: ResolvedPolicy,
  ) {
    this.startedAt = config.clock.now(); // an isolated clock reads the same time
    this.observer = config.responseBodyObserver?.(original);
    if (config.requestBodyInPlace?.(original, this)) {
      this.handlerRequest = original;
    } else {
      const body = original.body;
      if (body !== null && !original.bodyUsed && !body.locked) {
        const signal = original.signal as AbortSignal | undefined | null;
        this.copied = true;
        this.copiedFromSignal = signal;
        const reader = config.requestBodyReader?.(original, body) ?? body.getReader();
        this.handlerRequest = requestWithBody(
          original,
          signal,
          attachInboundGuardToReader(reader, this.newRequestTracker()),
        );
      } else {
        this.handlerRequest = original;
      }
    }
    // A response total runs from the request's arrival, and can fire before the handler returns.
    if (policy.response.total != null || policy.response.totalAt != null) this.ensureResponseTracker();
    if (policy.handler !== null) this.setHandlerTimeout(policy.handler);
  }

  private newRequestTracker(): DeadlineTracker {
    const tracker = new DeadlineTracker({
      direction: "inbound",
      subject: "request body",
      parsedLimits: this.policy.request,
      clock: this.clock,
      owner: this,
      startedAt: this.startedAt,
    });
    this.requestTracker = tracker;
    return tracker;
  }

  /** InboundBodyGuard, for an adapter that guards the body inside its own Request (REQUEST_BODY_IN_PLACE). */
  guardRequestBody(reader: BodyReader): ReadableStream<Uint8Array> {
    if (this.requestTracker !== undefined) throw new Error("stream-deadlines: the request body is guarded already");
    return attachInboundGuardToReader(reader, this.newRequestTracker());
  }

  /** The clock of this request's deadlines: where timers belong to the request that made them (workerd), its own. */
  private get clock(): Clock {
    return this.config.timerScope === "request"
      ? (this.ownClock ??= isolatedClock(this.config.clock))
      : this.config.clock;
  }

  /** The signal of the client's own Request (null or undefined where a runtime gives none). */
  private get clientSignal(): AbortSignal | undefined | null {
    return this.copied ? this.copiedFromSignal : (this.handlerRequest.signal as AbortSignal | undefined | null);
  }

  get request(): DeadlineController {
    return this.requestTracker ?? (this.inertRequest ??= inertController("request body"));
  }

  get response(): DeadlineController {
    return this.ensureResponseTracker();
  }

  get signal(): AbortSignal {
    if (this.abortController === undefined) {
      this.abortController = new AbortController();
      if (this.aborted) this.abortController.abort(this.abortReason);
      else this.listenForDisconnect();
    }
    return this.abortController.signal;
  }

  setHandlerTimeout(ms: number | null): void {
    const value = checkHandlerMs("setHandlerTimeout", ms);
    if (this.handlerDone || this.answered) return;
    this.handlerDeadline ??= new HandlerDeadline(this, this.clock);
    this.handlerDeadline.set(value, this.startedAt);
  }

  private ensureResponseTracker(): DeadlineTracker {
    return (this.responseTracker ??= new DeadlineTracker({
      direction: "outbound",
      subject: "response body",
      parsedLimits: this.policy.response,
      clock: this.clock,
      owner: this,
      startedAt: this.startedAt,
    }));
  }

  /** Listens for the client going away (only once something would react to it). */
  private listenForDisconnect(): void {
    if (this.listening || this.aborted) return;
    const clientSignal = this.clientSignal;
    if (clientSignal == null) return;
    if (clientSignal.aborted) {
      this.clientWentAway();
      return;
    }
    this.listening = true;
    liveCounts.listeners++;
    clientSignal.addEventListener("abort", this, { once: true });
  }

  /** EventListener interface: the client's signal aborted (an object listener needs no closure). */
  handleEvent(): void {
    if (this.listening) liveCounts.listeners--;
    this.listening = false;
    this.clientWentAway();
  }

  /**
   * The exchange's answer: the handler's, unless a deadline answers first (a late Response then has
   * its body cancelled). One promise and two reactions per request, and no async function: at
   * 10,000 stalled uploads every object a pending request keeps counts.
   */
  answer<T>(pending: T | PromiseLike<T>): Promise<T | Response> {
    if (this.earlyResponse !== undefined) {
      // Answered while the handler's synchronous part ran (a `set()` or `setHandlerTimeout()` already
      // past): nothing to wait for; whatever the handler returns is late.
      const reason = this.handlerError ?? this.responseTracker?.error;
      if (isThenable(pending)) Promise.resolve(pending).then((value) => cancelLateBody(value, reason), ignoreRejection);
      else cancelLateBody(pending, reason);
      return Promise.resolve(this.earlyResponse);
    }
    if (!isThenable(pending)) {
      // A synchronous handler: nothing to race.
      try {
        return Promise.resolve(this.handlerReturned(pending));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise<T | Response>((resolve, reject) => {
      this.resolveEarly = resolve;
      Promise.resolve(pending).then(
        (value) => {
          if (this.earlyResponse !== undefined)
            return cancelLateBody(value, this.handlerError ?? this.responseTracker?.error);
          this.resolveEarly = undefined;
          try {
            resolve(this.handlerReturned(value));
          } catch (error) {
            reject(error);
          }
        },
        (error: unknown) => {
          if (this.earlyResponse !== undefined) return;
          this.resolveEarly = undefined;
          try {
            resolve(this.handlerThrew(error));
          } catch (rethrown) {
            reject(rethrown);
          }
        },
      );
    });
  }

  /** The response for this request's request-body timeout, when `error` is it (see requestTimeoutResponse). */
  timeoutResponseFor(error: unknown): Response | undefined {
    if (!isTimeoutError(error) || this.requestTracker === undefined || error !== this.requestTracker.error)
      return undefined;
    return this.config.timeoutResponse(this.event(error, "request"));
  }

  /** The handler threw: a request-body timeout it let escape becomes a 408; anything else is rethrown. */
  handlerThrew(error: unknown): Response {
    if (this.earlyResponse !== undefined) return this.earlyResponse; // answered already: the throw is late
    this.handlerFinished();
    if (isTimeoutError(error) && this.requestTracker !== undefined && error === this.requestTracker.error) {
      this.answered = true;
      this.finishRequest();
      return this.config.timeoutResponse(this.event(error, "request"));
    }
    this.finishRequest();
    throw error;
  }

  /** The handler returned: pass the value on, with its body guarded when it has one to guard. */
  private handlerReturned<T>(result: T): T | Response | Promise<Response> {
    this.handlerFinished();
    this.answered = true;
    if (!isResponse(result) || passThroughUntouched(this.handlerRequest, result)) {
      this.finishRequest();
      return result;
    }
    return this.guardResponseBody(result);
  }

  private async guardResponseBody(result: Response): Promise<Response> {
    const init = { status: result.status, statusText: result.statusText, headers: result.headers };
    const reader = this.config.bodyReader?.(result.body!) ?? result.body!.getReader();
    // A body already in memory (a string, bytes) and small needs no guard: it fits the socket's
    // buffer. Hand it on as bytes, which every runtime sends on its fast path, instead of paying a
    // stream and a Response more per request.
    let peek: BodyPeek;
    try {
      peek = await peekBodyInMemory(reader, UNGUARDED_DECLARED_LENGTH);
    } catch (error) {
      // The body failed at once: the client gets the status and headers, and a failed body, as it
      // would have without the peek; nothing of this request stays behind.
      this.finishRequest();
      return new Response(new ReadableStream<Uint8Array>({ start: (c) => c.error(error) }), init);
    }
    if (peek.done) {
      this.finishRequest();
      const bytes = peek.chunks.length === 1 ? peek.chunks[0]! : concatBytes(peek.chunks);
      return this.config.inMemoryResponse(bytes, init);
    }
    if (this.clientSignal?.aborted) this.clientWentAway();
    const tracker = this.ensureResponseTracker();
    if (tracker.ended) {
      // The client went away before the handler returned: free the producer, send no body.
      reader.cancel(this.abortReason).catch(() => {});
      this.finishRequest();
      return new Response(null, init);
    }
    this.bodyAttached = true;
    const every = this.policy.sseHeartbeat;
    const heartbeat = every !== null && isEventStream(result.headers) ? { every, clock: this.clock } : undefined;
    const guarded = new Response(
      attachOutboundGuardToReader(reader, tracker, peek.chunks, peek.pending, heartbeat),
      init,
    );
    this.listenForDisconnect(); // a runtime that never cancels a body (workerd) still frees the producer
    return guarded;
  }

  private handlerFinished(): void {
    this.handlerDone = true;
    this.handlerDeadline?.stop();
  }

  private abortAll(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.abortReason = reason;
    this.abortController?.abort(reason);
  }

  private event(error: TimeoutError, direction: TimeoutEvent["direction"]): TimeoutEvent {
    return {
      error,
      request: this.handlerRequest,
      method: this.handlerRequest.method,
      path: pathOf(this.handlerRequest.url),
      direction,
      limit: error.limit,
      bytes: error.bytes,
      elapsed: error.elapsed,
      rate: error.rate,
      afterHeaders: direction === "response" && this.answered,
    };
  }

  private report(event: TimeoutEvent): void {
    const onTimeout = this.config.onTimeout;
    if (onTimeout === false) return;
    try {
      onTimeout(event);
    } catch (error) {
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  private answerEarly(response: Response): void {
    this.answered = true;
    this.earlyResponse = response;
    const resolve = this.resolveEarly;
    this.resolveEarly = undefined;
    resolve?.(response);
  }

  trackerFired(tracker: DeadlineTracker, error: TimeoutError): void {
    const direction = tracker === this.requestTracker ? "request" : "response";
    const event = this.event(error, direction);
    this.abortAll(error);
    this.report(event);
    // The response's total ran out before the handler returned: answer now, as a handler deadline would.
    if (direction === "response" && !this.answered && !this.handlerDone) {
      this.handlerFinished();
      this.requestTracker?.abort(error);
      this.answerEarly(this.config.timeoutResponse(event));
      this.finishRequest();
    }
  }

  trackerSettled(tracker: DeadlineTracker): void {
    if (tracker !== this.responseTracker || !this.bodyAttached) return;
    this.observer?.responseBodySettled(tracker.state);
    // The runtime cancels a response body only when the client went away: say so on the signal.
    if (tracker.state === "cancelled" && !this.aborted)
      this.abortAll(new DOMException("The client went away", "AbortError"));
    this.finishRequest();
  }

  /** TrackerOwner: with an adapter's observer, the producer of a body the client left learns why as an AbortError. */
  cancelReason(tracker: DeadlineTracker, reason: unknown): unknown {
    return tracker === this.responseTracker && this.observer !== undefined && this.aborted ? this.abortReason : reason;
  }

  handlerDeadlinePassed(now: number, limit: number): void {
    if (this.handlerDone || this.answered) return;
    const error = new TimeoutError({
      subject: "handler",
      direction: null,
      limit: "handler",
      limitValue: limit,
      bytes: this.requestTracker?.stats.bytes ?? 0,
      elapsed: now - this.startedAt,
      waited: 0,
      idleFor: 0,
      rate: 0,
    });
    this.handlerError = error;
    const event = this.event(error, "handler");
    this.abortAll(error);
    // A handler stuck reading its upload gets the same error, and the upload is freed.
    this.requestTracker?.abort(error);
    this.ensureResponseTracker().abort(error);
    this.report(event);
    this.handlerFinished();
    this.answerEarly(this.config.timeoutResponse(event));
    this.finishRequest();
  }

  private clientWentAway(): void {
    const reason: unknown = this.clientSignal?.reason;
    const why = reason ?? new DOMException("The client went away", "AbortError");
    this.abortAll(why);
    this.ensureResponseTracker().abort(why);
  }

  /** The exchange is over: free the disconnect listener and every deadline still scheduled. */
  private finishRequest(): void {
    this.handlerDeadline?.stop();
    if (this.listening) {
      this.listening = false;
      liveCounts.listeners--;
      this.clientSignal!.removeEventListener("abort", this);
    }
    this.requestTracker?.retire();
    this.responseTracker?.retire();
  }
}

interface ResolvedPolicy {
  /** Raw limits, for merging a policy's fields over them. */
  rawRequest: DeadlineLimits;
  rawResponse: DeadlineLimits;
  /** The same, validated once. */
  request: Partial<ResolvedLimits>;
  response: Partial<ResolvedLimits>;
  handler: number | null;
  sseHeartbeat: number | null;
}

interface ResolvedConfig {
  onTimeout: ((event: TimeoutEvent) => void) | false;
  timeoutResponse: (event: TimeoutEvent) => Response;
  clock: Clock;
  timerScope: "shared" | "request";
  inMemoryResponse: (body: Uint8Array, init: { status: number; statusText: string; headers: Headers }) => Response;
  bodyReader: ((body: ReadableStream<Uint8Array>) => BodyReader | undefined) | undefined;
  requestBodyInPlace: RequestBodyInPlace | undefined;
  requestBodyReader: ((request: Request, body: ReadableStream<Uint8Array>) => BodyReader | undefined) | undefined;
  responseBodyObserver: ((request: Request) => ResponseBodyObserver | undefined) | undefined;
}

/** What the peek and the guards need of a reader of a body (one type with the guards'). */
export type { BodyReader };

/**
 * For adapters only (a symbol key: no public option, no validation by name): how the response body
 * is read, for the peek and the guard; a function returning undefined falls back to `getReader()`.
 * The Workers adapter reads workerd's native bodies with large BYOB reads here, which costs a small
 * body nothing more (a wrapping stream and Response would).
 */
export const RESPONSE_BODY_READER: unique symbol = Symbol("stream-deadlines: response body reader");
/**
 * For adapters only: guards a request's body inside the adapter's own Request, instead of a copy of
 * the Request carrying a wrapped body. Called first, before anything reads `request.body`; returns
 * false to let the core copy as usual. When it returns true, it has called `guard` with a reader of
 * the raw body (and made the stream `guard` returns the request's body), or found no body to guard.
 * The Node adapter does this for srvx's lazy request: its raw body is Node's IncomingMessage, and a
 * web stream of it plus a copy of the Request weighed 6 KB per pending upload (bench/run-scale.ts).
 */
export type RequestBodyInPlace = (request: Request, guard: InboundBodyGuard) => boolean;
export interface InboundBodyGuard {
  /** Puts the request's deadlines on `reader`: returns the stream the handler is to read. */
  guardRequestBody(reader: BodyReader): ReadableStream<Uint8Array>;
}
export const REQUEST_BODY_IN_PLACE: unique symbol = Symbol("stream-deadlines: request body in place");

/**
 * For adapters only: how the request body is read when the core copies the Request (a function
 * returning undefined falls back to `getReader()`). The Deno adapter watches Deno's read errors here
 * with a reader, where a watching stream would cost one more stream per upload.
 */
export const REQUEST_BODY_READER: unique symbol = Symbol("stream-deadlines: request body reader");

/**
 * For adapters only: told how the guarded response body of a request ended, inside the guard's own
 * end (a runtime's `cancel()` is reported before the producer is cancelled). Asked once per request,
 * with the Request the adapter passed in. The Deno adapter turns Deno's cancel into the abort of its
 * `request.signal` here, where a watching stream would cost one more stream per download. With an
 * observer, a producer cancelled because the client left gets the exchange's abort reason (an
 * AbortError), not the runtime's own (Deno's is the string "resource closed").
 */
export const RESPONSE_BODY_OBSERVER: unique symbol = Symbol("stream-deadlines: response body observer");
export interface ResponseBodyObserver {
  responseBodySettled(state: GuardState): void;
}

export interface AdapterInternals {
  [RESPONSE_BODY_OBSERVER]?: (request: Request) => ResponseBodyObserver | undefined;
  [RESPONSE_BODY_READER]?: (body: ReadableStream<Uint8Array>) => BodyReader | undefined;
  [REQUEST_BODY_IN_PLACE]?: RequestBodyInPlace;
  [REQUEST_BODY_READER]?: (request: Request, body: ReadableStream<Uint8Array>) => BodyReader | undefined;
}

/** An adapter's hook (a symbol-keyed option), checked to be a function when given. */
function adapterHook<K extends keyof AdapterInternals>(options: object, key: K, what: string): AdapterInternals[K] {
  const hook = (options as AdapterInternals)[key];
  if (hook !== undefined && typeof hook !== "function")
    throw new TypeError(`withDeadlines: the adapter's ${what} must be a function`);
  return hook;
}

const bytesResponse = (body: Uint8Array, init: ResponseInit): Response =>
  new Response(body as Uint8Array<ArrayBuffer>, init);

/** Per request where timers belong to requests (workerd: see clock.ts), shared elsewhere. */
function defaultTimerScope(): "shared" | "request" {
  return TIMERS_BELONG_TO_REQUESTS ? "request" : "shared";
}

function pathOf(url: string): string {
  // Cheaper than new URL() and enough for logs: the part after the host, before "?" or "#".
  const afterScheme = url.indexOf("://");
  const pathStart = afterScheme >= 0 ? url.indexOf("/", afterScheme + 3) : 0;
  if (pathStart < 0) return "/";
  const end = url.slice(pathStart).search(/[?#]/);
  return end < 0 ? url.slice(pathStart) : url.slice(pathStart, pathStart + end);
}

function checkEvent(where: string, event: unknown): asserts event is TimeoutEvent {
  if (typeof event !== "object" || event === null)
    throw new TypeError(`${where}: event must be a TimeoutEvent, got ${event === null ? "null" : typeof event}`);
  if (!isTimeoutError((event as TimeoutEvent).error))
    throw new TypeError(`${where}: event.error must be a TimeoutError`);
}

/**
 * A user's timeoutResponse that throws or returns no Response would leave the client without an
 * answer (it runs in a timer): the default answer goes out instead, and the mistake is reported
 * as an uncaught error, as a throwing onTimeout is.
 */
function checkedTimeoutResponse(make: (event: TimeoutEvent) => Response): (event: TimeoutEvent) => Response {
  if (make === defaultTimeoutResponse) return make;
  return (event) => {
    let problem: unknown;
    try {
      const response = make(event);
      if (isResponse(response)) return response;
      problem = new TypeError(
        `withDeadlines: timeoutResponse must return a Response, got ${response === null ? "null" : typeof response}`,
      );
    } catch (error) {
      problem = error;
    }
    queueMicrotask(() => {
      throw problem;
    });
    return defaultTimeoutResponse(event);
  };
}

/** 408 with `Connection: close` for a request body that timed out; 503 otherwise. */
export function defaultTimeoutResponse(event: TimeoutEvent): Response {
  checkEvent("defaultTimeoutResponse", event);
  const { status, body, headers } = defaultTimeoutAnswer(event);
  return new Response(body, { status, headers });
}

/**
 * The parts of `defaultTimeoutResponse`'s answer, for an adapter that builds it with its runtime's
 * cheaper Response class (Node: srvx's FastResponse, written without a stream).
 */
export function defaultTimeoutAnswer(
  event: TimeoutEvent,
  connectionClose = true,
): { status: number; body: string; headers: Record<string, string> } {
  const headers: Record<string, string> = connectionClose
    ? { "content-type": "text/plain; charset=utf-8", connection: "close" }
    : { "content-type": "text/plain; charset=utf-8" };
  return event.direction === "request"
    ? { status: 408, body: "Request Timeout\n", headers }
    : { status: 503, body: "Service Unavailable\n", headers };
}

/** One concise line per firing: who, what, which limit, and the figures. */
export function defaultTimeoutReporter(event: TimeoutEvent): void {
  checkEvent("defaultTimeoutReporter", event);
  console.warn(
    `[stream-deadlines] ${event.method} ${event.path} ${event.direction} ${event.limit} timeout` +
      `${event.afterHeaders ? " after headers" : ""}: ${event.error.message}` +
      ` bytes=${event.bytes} elapsed_ms=${Math.round(event.elapsed)} rate=${formatRate(event.rate)}`,
  );
}

function mergeLimits(where: string, base: DeadlineLimits, override: DeadlineLimits | undefined): DeadlineLimits {
  if (override === undefined) return base;
  if (override === null)
    throw new TypeError(
      `${where}: limits must be an object like { idle, minRate, grace, total } ({} for none), got null`,
    );
  parseLimits(override, where);
  const merged: DeadlineLimits = { ...base };
  // A field given as undefined keeps the base's value, as in set(): it never turns a limit off.
  for (const [key, value] of Object.entries(override))
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
  // Turning minRate off drops the default's grace with it (a grace alone is refused).
  if (!merged.minRate && override.grace === undefined) delete merged.grace;
  return merged;
}

function resolvedPolicy(
  where: string,
  rawRequest: DeadlineLimits,
  rawResponse: DeadlineLimits,
  handler: number | null,
  sseHeartbeat: number | null,
): ResolvedPolicy {
  return {
    rawRequest,
    rawResponse,
    request: parseLimits(rawRequest, `${where} request`),
    response: parseLimits(rawResponse, `${where} response`),
    handler,
    sseHeartbeat,
  };
}

function resolvePolicy(base: ResolvedPolicy, override: RequestPolicy | undefined | null | void): ResolvedPolicy {
  const where = "withDeadlines: policy()";
  if (override === undefined || override === null) return base;
  if (typeof override !== "object")
    throw new TypeError(
      `${where} must return an object like { request, response, handler } or undefined, got ${typeof override}`,
    );
  for (const key of Object.keys(override)) {
    if (!POLICY_KEYS.has(key))
      throw new TypeError(
        `${where} returned an unknown field "${key}" (expected request, response, handler or sseHeartbeat)`,
      );
  }
  return resolvedPolicy(
    where,
    mergeLimits(`${where} request`, base.rawRequest, override.request),
    mergeLimits(`${where} response`, base.rawResponse, override.response),
    override.handler === undefined ? base.handler : checkHandlerMs(where, override.handler),
    override.sseHeartbeat === undefined ? base.sseHeartbeat : checkHeartbeatMs(where, override.sseHeartbeat),
  );
}

/**
 * A response that declares a Content-Length up to this size goes out unwrapped: it fits the
 * socket's send buffer (and an HTTP/2 stream's initial window), so no outbound idle or rate clock
 * could ever run on it, while wrapping would cost a stream and a Response per request.
 */
export const UNGUARDED_DECLARED_LENGTH = 64 * 1024;

/** A declared Content-Length as a number, or undefined: digits only, as RFC 9110 writes it ("1e3" or "12, 12" is none). */
export function declaredContentLength(response: Response): number | undefined {
  const declared = response.headers.get("content-length");
  if (declared === null || declared.length > 15 || !/^\d+$/.test(declared)) return undefined;
  return Number(declared);
}

function declaresSmallLength(response: Response): boolean {
  const length = declaredContentLength(response);
  return length !== undefined && length <= UNGUARDED_DECLARED_LENGTH;
}

interface BodyPeek {
  /** Chunks read (they still have to go out, first). */
  chunks: Uint8Array[];
  /** The whole body was read (and is at most `limit` bytes). */
  done: boolean;
  /** A read that had not resolved yet: the guard's first read ahead. */
  pending: Promise<ReadResult> | undefined;
}

/**
 * Microtask hops the whole peek may take (reads of up to 3 chunks and the end) and still find the
 * body "already there". Measured for a body made from a string or bytes: Node and Deno 3, Bun 2,
 * Deno's Blob bodies 8; a streaming body's first read stays pending, and costs it this many hops.
 */
const PEEK_HOPS = 12;

/**
 * Reads what a body already holds, without waiting for more: an in-memory body (string, bytes)
 * resolves its reads within a few microtasks; a streaming one does not, and its pending read is
 * kept for the guard. Stops past `limit` bytes (a large body is guarded, in memory or not).
 * workerd resolves a read of its native bodies (even one made from a string) only in a later turn
 * of its event loop, never within microtasks: there a zero timer per read bounds the wait (cleared
 * when the read wins; without it no small body on Workers was ever found in memory, and each one
 * paid the whole guard: bench/run-cpu-per-request.ts). One object per peek, callbacks made once:
 * no promise race, array or closure per read (the peek runs for every response with a body).
 */
class Peek {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;
  private reads = 0;
  private hops = 0;
  private finished = false;
  private pending: Promise<ReadResult> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private resolve!: (peek: BodyPeek) => void;
  private reject!: (error: unknown) => void;

  constructor(
    private readonly reader: BodyReader,
    private readonly limit: number,
  ) {}

  run(): Promise<BodyPeek> {
    return new Promise<BodyPeek>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.next();
      if (!TIMERS_BELONG_TO_REQUESTS) queueMicrotask(this.tick);
    });
  }

  private next(): void {
    const read = (this.pending = this.reader.read());
    read.then(this.onRead, this.onError);
    if (TIMERS_BELONG_TO_REQUESTS) this.timer = setTimeout(this.giveUp, 0);
  }

  private finish(done: boolean, pending: Promise<ReadResult> | undefined): void {
    this.finished = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.resolve({ chunks: this.chunks, done, pending });
  }

  private readonly onRead = (result: ReadResult): void => {
    if (this.finished) return; // given up: the guard takes this read as its first
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (result.done) {
      this.finish(true, undefined);
      return;
    }
    const chunk: unknown = result.value;
    this.chunks.push(chunk as Uint8Array);
    if (!(chunk instanceof Uint8Array)) {
      this.finish(false, undefined); // the guard refuses it
      return;
    }
    this.size += chunk.byteLength;
    if (++this.reads >= 3 || this.size > this.limit) {
      this.finish(false, undefined);
      return;
    }
    this.next();
  };

  private readonly onError = (error: unknown): void => {
    if (this.finished) return; // given up: the guard sees the failure on the pending read
    this.finished = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.reject(error);
  };

  private readonly giveUp = (): void => {
    if (!this.finished) this.finish(false, this.pending);
  };

  private readonly tick = (): void => {
    if (this.finished) return;
    if (++this.hops >= PEEK_HOPS) this.finish(false, this.pending);
    else queueMicrotask(this.tick);
  };
}

function peekBodyInMemory(reader: BodyReader, limit: number): Promise<BodyPeek> {
  return new Peek(reader, limit).run();
}

function concatBytes(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** Bodies that reach the runtime as they are: nothing to bound, or not HTTP any more. */
function passThroughUntouched(request: Request, response: Response): boolean {
  const body = response.body;
  return (
    body === null ||
    declaresSmallLength(response) ||
    request.method === "HEAD" ||
    response.status === 101 ||
    response.status === 204 ||
    response.status === 304 ||
    response.type === "error" ||
    (response as { webSocket?: unknown }).webSocket != null ||
    response.bodyUsed ||
    body.locked
  );
}

/**
 * Whether withDeadlines guards the body of what a handler returned (adapters that prepare such
 * bodies, like the Workers one, ask the same rule rather than keeping a copy of it).
 */
export function guardsResponseBody(request: Request, result: unknown): result is Response {
  return isResponse(result) && !passThroughUntouched(request, result);
}

/** Structural, so a Response from another realm (or a framework's lightweight class) counts. */
function isResponse(value: unknown): value is Response {
  return (
    value instanceof Response ||
    (typeof value === "object" &&
      value !== null &&
      typeof (value as Response).status === "number" &&
      "body" in value &&
      typeof (value as Response).headers?.get === "function")
  );
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value instanceof Promise ||
    (typeof value === "object" && value !== null && typeof (value as PromiseLike<unknown>).then === "function")
  );
}

function ignoreRejection(): void {}

function cancelLateBody(response: unknown, reason: unknown): void {
  if (isResponse(response) && response.body !== null && !response.body.locked)
    response.body.cancel(reason).catch(() => {});
}

/**
 * Wraps a fetch handler so every request runs under deadlines. Extra arguments (Workers `env`/`ctx`,
 * Deno's `info`, Bun's `server`) pass through untouched.
 */
export function withDeadlines<Args extends unknown[], Result>(
  handler: (request: Request, ...args: Args) => Result | Promise<Result>,
  options: WithDeadlinesOptions<Args> = {},
): (request: Request, ...args: Args) => Promise<Result | Response> {
  if (typeof handler !== "function")
    throw new TypeError(`withDeadlines: handler must be a function, got ${typeof handler}`);
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(
      `withDeadlines: options must be an object, got ${options === null ? "null" : Array.isArray(options) ? "an array" : typeof options}`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key))
      throw new TypeError(`withDeadlines: unknown option "${key}" (expected ${[...OPTION_KEYS].join(", ")})`);
  }
  const {
    policy,
    onTimeout = defaultTimeoutReporter,
    timeoutResponse = defaultTimeoutResponse,
    clock = systemClock,
    timerScope = defaultTimerScope(),
  } = options;
  if (timerScope !== "shared" && timerScope !== "request")
    throw new TypeError(
      `withDeadlines: timerScope must be "shared" or "request", got ${typeof timerScope === "string" ? JSON.stringify(timerScope) : timerScope === null ? "null" : typeof timerScope}`,
    );
  if (policy !== undefined && typeof policy !== "function")
    throw new TypeError("withDeadlines: policy must be a function");
  if (onTimeout !== false && typeof onTimeout !== "function")
    throw new TypeError("withDeadlines: onTimeout must be a function or false");
  if (typeof timeoutResponse !== "function") throw new TypeError("withDeadlines: timeoutResponse must be a function");
  checkClock("withDeadlines", "clock", clock);
  const defaults = resolvedPolicy(
    "withDeadlines:",
    mergeLimits("withDeadlines: request", {}, options.request === undefined ? DEFAULT_REQUEST_LIMITS : options.request),
    mergeLimits(
      "withDeadlines: response",
      {},
      options.response === undefined ? DEFAULT_RESPONSE_LIMITS : options.response,
    ),
    checkHandlerMs("withDeadlines", options.handler),
    checkHeartbeatMs("withDeadlines", options.sseHeartbeat),
  );
  const inMemoryResponse = options.inMemoryResponse === undefined ? bytesResponse : options.inMemoryResponse;
  if (typeof inMemoryResponse !== "function") throw new TypeError("withDeadlines: inMemoryResponse must be a function");
  const bodyReader = adapterHook(options, RESPONSE_BODY_READER, "body reader");
  const requestBodyInPlace = adapterHook(options, REQUEST_BODY_IN_PLACE, "request body hook");
  const requestBodyReader = adapterHook(options, REQUEST_BODY_READER, "request body reader");
  const responseBodyObserver = adapterHook(options, RESPONSE_BODY_OBSERVER, "response body observer");
  const config: ResolvedConfig = {
    onTimeout,
    timeoutResponse: checkedTimeoutResponse(timeoutResponse),
    clock,
    timerScope,
    inMemoryResponse,
    bodyReader,
    requestBodyInPlace,
    requestBodyReader,
    responseBodyObserver,
  };

  return function handleWithDeadlines(request: Request, ...args: Args): Promise<Result | Response> {
    // Structural and getter-free (`in`), so lazy Request classes (srvx) pay nothing for it.
    if (
      typeof request !== "object" ||
      request === null ||
      !("url" in request && "method" in request && "body" in request)
    ) {
      return Promise.reject(
        new TypeError(
          `withDeadlines: the wrapped handler must be called with a Request, got ${request === null ? "null" : typeof request}`,
        ),
      );
    }
    let state: RequestState;
    let pending: Result | Promise<Result>;
    try {
      const limits = policy === undefined ? defaults : resolvePolicy(defaults, policy(request, ...args));
      state = new RequestState(request, config, limits);
      (state.handlerRequest as unknown as Record<symbol, RequestDeadlines>)[CONTROLS] = state;
      if (state.handlerRequest !== request) (request as unknown as Record<symbol, RequestDeadlines>)[CONTROLS] = state;
    } catch (error) {
      return Promise.reject(error);
    }
    try {
      pending = handler(state.handlerRequest, ...args);
    } catch (error) {
      try {
        return Promise.resolve(state.handlerThrew(error));
      } catch (rethrown) {
        return Promise.reject(rethrown);
      }
    }
    return state.answer(pending);
  };
}
