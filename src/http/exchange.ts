/**
 * One exchange (a request and its answer) under deadlines: its trackers, its signal, its handler
 * deadline, and its answer. Built lazily: most requests need little of it.
 *
 * Its lifecycle is one phase value, which only moves forward:
 *
 *   HANDLING ──handler returned──▶ ANSWERED ──guarded body out──▶ STREAMING ──body ended──▶ DONE
 *       │                              └───────body passed on or found in memory──────────▶ DONE
 *       └──────────handler threw, or a deadline answered first (timeout answer)────────────▶ DONE
 *
 * A handler that settles in any phase but HANDLING is late: a deadline answered first, and a late
 * Response has its body cancelled.
 */
import { type Clock, isolatedClock } from "../engine/clock.ts";
import { abortTracker, type DeadlineController, DeadlineTracker, type TrackerOwner } from "../engine/tracker.ts";
import type { TimeoutError } from "../engine/timeout-error.ts";
import type { BodyReader } from "../guards/common.ts";
import { attachInboundGuardToReader } from "../guards/inbound.ts";
import type { AdapterHooks, ExchangeOutcome, InboundBodyGuard } from "./hooks.ts";
import { type ExchangeControls, inertController } from "./controls.ts";
import { HandlerDeadline, type HandlerDeadlineOwner, handlerTimeoutError } from "./handler-deadline.ts";
import { type RequestPolicy, type ResolvedConfig, type ResolvedPolicy, checkHandlerMs } from "./options.ts";
import { cancelLateAnswer, cancelLateBody, ignore, isEventStream, isResponse, isThenable } from "./pass-through.ts";
import { type BodyPeek, Peek } from "./peek.ts";
import { type ClientWatcher, ExchangeSignal, clientWentAwayError } from "./exchange-signal.ts";
import { failedBodyAnswer, goesOutUnread, guardedResponse, inMemoryAnswer, openResponseBody } from "./response-body.ts";
import { guardedRequest } from "./request-copy.ts";
import { Firing, type TimeoutEvent, report, timeoutAnswer } from "./timeout-answer.ts";

/** The handler runs; no answer is chosen yet. */
const HANDLING = 0;
/** The handler's value is the answer; its body is being looked at (the peek). */
const ANSWERED = 1;
/** The guarded response body is out: the exchange ends with it. */
const STREAMING = 2;
/** Over: the disconnect listener and every deadline are freed. */
const DONE = 3;
type Phase = typeof HANDLING | typeof ANSWERED | typeof STREAMING | typeof DONE;

export class Exchange implements ExchangeControls, TrackerOwner, InboundBodyGuard, HandlerDeadlineOwner, ClientWatcher {
  #phase: Phase = HANDLING;
  #startedAt: number;
  /** This request's own clock when timers are per request, made at its first use (most requests never arm a timer). */
  #ownClock: Clock | undefined;
  #requestTracker: DeadlineTracker | undefined;
  readonly handlerRequest: Request;
  handlerError: TimeoutError | undefined;
  #responseTracker: DeadlineTracker | undefined;
  /** The answer a deadline gave before the handler settled. */
  #earlyAnswer: Response | undefined;
  /** The timeout answer made for a framework that caught the request-body timeout (timeoutResponseFor). */
  #madeTimeoutAnswer: Response | undefined;
  /** Settles the exchange's answer while the handler runs (see answer()). */
  #settle: ((value: Response) => void) | undefined;
  #handlerDeadline: HandlerDeadline | undefined;
  #inertRequest: DeadlineController | undefined;
  /**
   * The signal the handler gets, and the watch on the client; made at its first use when the handler
   * has the original Request (a copy's is made at once: the original is not kept).
   */
  #signalOrUndefined: ExchangeSignal | undefined;

  #config: ResolvedConfig;
  #policy: ResolvedPolicy;
  #hooks: AdapterHooks;

  constructor(original: Request, config: ResolvedConfig, policy: ResolvedPolicy, hooks: AdapterHooks) {
    this.#config = config;
    this.#policy = policy;
    this.#hooks = hooks;
    this.#startedAt = config.clock.now(); // an isolated clock reads the same time
    const copy = hooks.guardRequestBodyInPlace?.(original, this) ? undefined : guardedRequest(original, hooks, this);
    this.handlerRequest = copy ?? original;
    // A client that leaves fails a pending read of its upload at once (an adapter that guards in
    // place watches its own connection).
    if (copy !== undefined) (this.#signalOrUndefined = new ExchangeSignal({ signal: original.signal }, this)).watch();
    // A response total runs from the request's arrival, and can fire before the handler returns.
    if (policy.response.total != null || policy.response.totalAt != null) this.#ensureResponseTracker();
    if (policy.handler !== null) this.setHandlerTimeout(policy.handler);
  }

  /** InboundBodyGuard: the request body's deadlines on a reader of it (the core's copy, or an adapter's own Request). */
  guardRequestBody(reader: BodyReader, bytes?: boolean): ReadableStream<Uint8Array> {
    if (this.#requestTracker !== undefined) throw new Error("stream-deadlines: the request body is guarded already");
    return attachInboundGuardToReader(reader, (this.#requestTracker = this.#tracker("inbound")), bytes === true);
  }

  /** The clock of this request's deadlines: where timers belong to the request that made them (workerd), its own. */
  get #clock(): Clock {
    return this.#config.timerScope === "request"
      ? (this.#ownClock ??= isolatedClock(this.#config.clock))
      : this.#config.clock;
  }

  get request(): DeadlineController {
    return this.#requestTracker ?? (this.#inertRequest ??= inertController("request body"));
  }

  get response(): DeadlineController {
    return this.#ensureResponseTracker();
  }

  get signal(): AbortSignal {
    return this.#signal.signal;
  }

  get #signal(): ExchangeSignal {
    return (this.#signalOrUndefined ??= new ExchangeSignal(this.handlerRequest, this));
  }

  setHandlerTimeout(ms: number | null): void {
    const value = checkHandlerMs("setHandlerTimeout", ms);
    if (this.#phase !== HANDLING) return;
    this.#handlerDeadline ??= new HandlerDeadline(this, this.#clock, this.#startedAt);
    this.#handlerDeadline.set(value);
  }

  /** HandlerDeadlineOwner: the time the client kept a read of its upload waiting, which the handler deadline does not count. */
  clientTime(now: number): number {
    return this.#requestTracker?.waitedAt(now) ?? 0;
  }

  /** HandlerDeadlineOwner: whether a read of the upload waits on the client now (the handler's clock is paused). */
  get clientToBlame(): boolean {
    return this.#requestTracker?.waitingNow ?? false;
  }

  /** TrackerOwner: a read of the upload was satisfied: the handler's own clock runs again. */
  trackerWaitEnded(tracker: DeadlineTracker): void {
    if (tracker === this.#requestTracker) this.#handlerDeadline?.resume();
  }

  #ensureResponseTracker(): DeadlineTracker {
    return (this.#responseTracker ??= this.#tracker("outbound"));
  }

  /** A body's tracker: the request's (inbound) or the response's, told of its firing and its end. */
  #tracker(direction: "inbound" | "outbound"): DeadlineTracker {
    const inbound = direction === "inbound";
    return new DeadlineTracker({
      direction,
      subject: inbound ? "request body" : "response body",
      parsedLimits: inbound ? this.#policy.request : this.#policy.response,
      clock: this.#clock,
      owner: this,
      startedAt: this.#startedAt,
    });
  }

  /**
   * The exchange's answer: the handler's, unless a deadline answers first (a late Response then has
   * its body cancelled). One promise and two reactions per request, and no async function: at
   * 10,000 stalled uploads every object a pending request keeps counts.
   */
  answer<T>(pending: T | PromiseLike<T>): Promise<T | Response> {
    if (this.#phase !== HANDLING) {
      // Answered while the handler's synchronous part ran (a `set()` or `setHandlerTimeout()` already
      // past): nothing to wait for; whatever the handler returns is late.
      cancelLateAnswer(pending, this.#lateReason());
      return Promise.resolve(this.#earlyAnswer!);
    }
    // A synchronous handler: nothing to race.
    if (!isThenable(pending)) return this.answerNow(pending, false) as Promise<T | Response>;
    return new Promise<T | Response>((resolve, reject) => {
      this.#settle = resolve;
      Promise.resolve(pending).then(
        (value) => {
          if (this.#phase !== HANDLING) return cancelLateBody(value, this.#lateReason());
          try {
            resolve(this.#handlerReturned(value));
          } catch (error) {
            reject(error);
          }
        },
        (error: unknown) => {
          if (this.#phase !== HANDLING) return;
          try {
            resolve(this.#handlerThrew(error));
          } catch (rethrown) {
            reject(rethrown);
          }
        },
      );
    });
  }

  /**
   * The answer to the handler's value (or its error, `threw`: a synchronous throw is the same as a
   * rejection), as a promise: rejected with what that throws.
   */
  answerNow(value: unknown, threw: boolean): Promise<unknown> {
    try {
      return Promise.resolve(threw ? this.#handlerThrew(value) : this.#handlerReturned(value));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #lateReason(): unknown {
    return this.handlerError ?? this.#responseTracker?.error;
  }

  /** The answer to a firing before headers: the adapter's, or the option's. */
  #timeoutAnswer(event: TimeoutEvent): Response {
    const hooks = this.#hooks;
    return timeoutAnswer(
      hooks.timeoutResponse === undefined ? this.#config.timeoutResponse : (e) => hooks.timeoutResponse!(e),
      event,
    );
  }

  /** ExchangeControls: a nested withDeadlines applies its own limits here, field by field. */
  join(fields: readonly (RequestPolicy | undefined | null | void)[]): boolean {
    if (this.#phase !== HANDLING) return false;
    for (const patch of fields) {
      if (patch == null) continue;
      if (patch.request !== undefined) this.request.set(patch.request);
      if (patch.response !== undefined) this.response.set(patch.response);
      if (patch.handler !== undefined) this.setHandlerTimeout(patch.handler);
    }
    return true;
  }

  /** The response for this request's request-body timeout, when `error` is it (see requestTimeoutResponse). */
  timeoutResponseFor(error: unknown): Response | undefined {
    if (!this.#isRequestTimeout(error)) return undefined;
    return (this.#madeTimeoutAnswer = this.#timeoutAnswer(this.#event(error, "request")));
  }

  /** Whether `error` is this request's request-body timeout (a tracker's error is a TimeoutError, or undefined). */
  #isRequestTimeout(error: unknown): error is TimeoutError {
    return error !== undefined && error === this.#requestTracker?.error;
  }

  /** The handler threw: a request-body timeout it let escape becomes a 408; anything else is rethrown. */
  #handlerThrew(error: unknown): Response {
    if (this.#phase !== HANDLING) return this.#earlyAnswer!; // answered already: the throw is late
    if (this.#isRequestTimeout(error)) {
      this.#finish("timedOut");
      this.#hooks.answered?.(false);
      return this.#timeoutAnswer(this.#event(error, "request"));
    }
    this.#finish("threw");
    throw error;
  }

  /** The handler returned: pass the value on, with its body guarded when it has one to guard. */
  #handlerReturned<T>(result: T): T | Response | Promise<Response> {
    const requestError = this.#requestTracker?.error;
    if (
      requestError !== undefined &&
      isResponse(result) &&
      result.status >= 400 &&
      result !== this.#madeTimeoutAnswer // a framework that asked for the timeout answer (Hono) has it already
    ) {
      // The request body's deadline fired before the response, and the handler (a framework's error
      // handler) answered with an error of its own, often with keep-alive and the rest of the upload
      // unread on the connection: the client gets the timeout answer instead (408, Connection: close).
      const event = this.#event(requestError, "request");
      this.#finish("timedOut");
      cancelLateBody(result, requestError);
      this.#hooks.answered?.(false);
      return this.#timeoutAnswer(event);
    }
    this.#moveTo(ANSWERED);
    return !isResponse(result) || goesOutUnread(this.handlerRequest, result, this.#config.inMemoryResponse, this.#hooks)
      ? this.#passOn(result)
      : this.#guardResponseBody(result);
  }

  /** The answer goes out with a body the core does not guard: the exchange is over. */
  #passOn<T>(response: T): T {
    this.#finish("answered");
    this.#hooks.answered?.(false);
    return response;
  }

  /** The body is peeked at (response-body.ts): found in memory or failed at once, it goes out; else its guard does. */
  async #guardResponseBody(result: Response): Promise<Response> {
    const opened = openResponseBody(result, this.#hooks);
    let peek: BodyPeek;
    try {
      peek = await new Peek(opened.reader).run();
    } catch (error) {
      return this.#passOn(failedBodyAnswer(error, opened.head)); // nothing of this request stays behind
    }
    if (peek.done)
      return this.#passOn(inMemoryAnswer(peek.chunks, opened.head, this.#config.inMemoryResponse, this.#hooks));
    // A client gone already is reacted to now; a runtime that never cancels a body (workerd) still frees the producer.
    this.#signal.watch();
    const tracker = this.#ensureResponseTracker();
    if (tracker.ended) {
      // The client went away before the handler returned: free the producer, send no body.
      opened.reader.cancel(this.#signal.reason).catch(ignore);
      return this.#passOn(new Response(null, opened.head));
    }
    this.#moveTo(STREAMING);
    const every = this.#policy.sseHeartbeat;
    const heartbeat = every !== null && isEventStream(result.headers) ? { every, clock: this.#clock } : undefined;
    const guarded = guardedResponse(opened, peek, tracker, heartbeat, this.#hooks);
    this.#hooks.answered?.(true);
    return guarded;
  }

  /**
   * The one place the phase changes. Every call moves it forward: ANSWERED only from HANDLING (its
   * callers check), STREAMING only from ANSWERED (nothing but the peek's own end finishes the exchange
   * while it peeks), and DONE is final.
   */
  #moveTo(phase: Phase): void {
    this.#phase = phase;
    this.#handlerDeadline?.stop(); // the handler is done (or late) in every phase but HANDLING
  }

  #event(error: TimeoutError, direction: TimeoutEvent["direction"]): TimeoutEvent {
    // Once the handler returned, its response's headers are out (or going out): a firing of either
    // body then reaches the client as an aborted body.
    return new Firing(error, this.handlerRequest, direction, this.#phase !== HANDLING);
  }

  /** A deadline answers while the handler runs: the handler's value, when it comes, is late. */
  #answerEarly(event: TimeoutEvent): void {
    this.#finish(undefined); // over; its end is told after the firing's report (see #fired)
    const response = (this.#earlyAnswer = this.#timeoutAnswer(event));
    this.#hooks.answered?.(false);
    this.#settle?.(response);
  }

  trackerFired(tracker: DeadlineTracker, error: TimeoutError): void {
    const direction = tracker === this.#requestTracker ? "request" : "response";
    // The response's total ran out before the handler returned: answer now, as a handler deadline
    // would, and first (see handlerDeadlinePassed).
    this.#fired(error, direction, direction === "response" && this.#phase === HANDLING);
  }

  /**
   * A deadline fired: the answer (when it answers `early`, before the handler returned), then the
   * signals, then the report. An early answer frees both bodies: a handler stuck reading its upload
   * gets the same error. Its end is told last, once the firing is reported (start, timeout, end).
   */
  #fired(error: TimeoutError, direction: TimeoutEvent["direction"], early: boolean): void {
    const event = this.#event(error, direction);
    if (early) this.#answerEarly(event);
    this.#signal.abort(error);
    if (early) {
      abortTracker(this.#requestTracker, error);
      abortTracker(this.#ensureResponseTracker(), error); // a no-op for the response's own firing (it ended)
    }
    this.#hooks.timedOut?.(event);
    report(this.#config.onTimeout, event);
    if (early) this.#hooks.ended?.(this.handlerRequest, "timedOut");
  }

  trackerSettled(tracker: DeadlineTracker): void {
    if (tracker === this.#requestTracker) {
      this.#handlerDeadline?.resume(); // no read waits on the client any more
      return;
    }
    if (tracker !== this.#responseTracker || this.#phase !== STREAMING) return;
    this.#hooks.responseBodyEnded?.(tracker.state);
    // The runtime cancels a response body only when the client went away: say so on the signal.
    if (tracker.state === "cancelled") this.#signal.abort(clientWentAwayError());
    this.#finish(tracker.state as ExchangeOutcome);
  }

  /** TrackerOwner: for an adapter told of the body's end, the producer of a body the client left learns why as an AbortError. */
  cancelReason(tracker: DeadlineTracker, reason: unknown): unknown {
    return tracker === this.#responseTracker &&
      this.#hooks.responseBodyEnded !== undefined &&
      this.#signalOrUndefined?.reason !== undefined
      ? this.#signalOrUndefined.reason
      : reason;
  }

  handlerDeadlinePassed(now: number, limit: number): void {
    if (this.#phase !== HANDLING) return;
    const error = (this.handlerError = handlerTimeoutError(
      limit,
      this.#requestTracker?.stats.bytes ?? 0,
      now - this.#startedAt,
    ));
    // The answer is decided first, before anything the handler's signal listeners or the report can
    // do: on workerd, the first console.warn of an isolate let the handler's late answer win.
    this.#fired(error, "handler", true);
  }

  /** ClientWatcher: the client went away (the signal aborted already, with `why` if first). */
  clientWentAway(why: unknown): void {
    // A pending read of the upload fails at once with the same reason (no deadline fired: no report).
    abortTracker(this.#requestTracker, why);
    abortTracker(this.#ensureResponseTracker(), why);
  }

  /** The exchange is over: free the disconnect listener and every deadline still scheduled. */
  #finish(outcome: ExchangeOutcome | undefined): void {
    const first = this.#phase !== DONE;
    this.#moveTo(DONE);
    this.#signalOrUndefined?.unwatch();
    this.#requestTracker?.retire();
    this.#responseTracker?.retire();
    if (first && outcome !== undefined) this.#hooks.ended?.(this.handlerRequest, outcome);
  }
}
