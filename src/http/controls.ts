/**
 * The live controls of one request, and where they are found: on the Request itself, so a handler
 * (or a framework) reaches them from anything that holds the Request, with no new parameter.
 */
import { type ResolvedLimits, emptyLimits, parseLimits } from "../engine/limits.ts";
import type { DeadlineController, DeadlineStats } from "../engine/tracker.ts";
import type { TimeoutError } from "../engine/timeout-error.ts";
import { fail } from "../engine/validate.ts";
import type { RequestPolicy } from "./options.ts";

/** The live controls of one request. */
export interface RequestDeadlines {
  /** The request body's deadlines (an inert, closed controller when the request has no body). */
  readonly request: DeadlineController;
  /** The response body's deadlines: set them before or after returning the Response. */
  readonly response: DeadlineController;
  /** Aborts when any deadline of this request fires (reason: the TimeoutError) or the client goes away. */
  readonly signal: AbortSignal;
  /**
   * Sets the handler deadline, in ms of the handler's own time since the request's arrival (paused
   * while a read of the request body waits on the client); 0/null turns it off.
   */
  setHandlerTimeout(ms: number | null): void;
  /** The handler deadline's error, once it fired. */
  readonly handlerError: TimeoutError | undefined;
}

/** The controls as the exchange keeps them: also the answer to a request-body timeout a framework caught. */
export interface ExchangeControls extends RequestDeadlines {
  timeoutResponseFor(error: unknown): Response | undefined;
  /**
   * A nested withDeadlines joins this exchange instead of guarding the bodies again: `fields` are
   * applied field by field (limits through `set`, the handler deadline through `setHandlerTimeout`).
   * False when the exchange's handler is no longer running (the nested layer then runs on its own).
   */
  join(fields: readonly (RequestPolicy | undefined | null | void)[]): boolean;
}

/**
 * Where a Request keeps its controls: a symbol-keyed property rather than a WeakMap, because
 * thousands of short-lived WeakMap keys per second make every garbage collection slower
 * (ephemerons). `Symbol.for`, so two copies of the package find each other's controls.
 */
const CONTROLS = Symbol.for("stream-deadlines.requestDeadlines");

/** Puts the controls on a Request (the handler's, and the adapter's when they differ). */
export function keepControls(request: Request, controls: ExchangeControls): void {
  (request as unknown as { [CONTROLS]?: ExchangeControls })[CONTROLS] = controls;
}

/**
 * The live controls of a request under withDeadlines, or undefined. For framework middleware (the
 * Hono one) that joins an enclosing withDeadlines instead of guarding the bodies twice, without
 * paying for a thrown TypeError on every request.
 */
export function findDeadlines(request: Request): RequestDeadlines | undefined {
  return (request as unknown as { [CONTROLS]?: ExchangeControls } | null)?.[CONTROLS];
}

/** The live controls of a request handled by `withDeadlines`. Throws for any other request. */
export function deadlines(request: Request): RequestDeadlines {
  const controls = findDeadlines(request);
  if (controls === undefined)
    fail("deadlines(request)", "this Request is not handled by withDeadlines (pass the Request your handler received)");
  return controls;
}

/**
 * The timeout response (the `timeoutResponse` option's) when `error` is this request's request-body
 * timeout; undefined for any other error. For frameworks that catch a handler's errors themselves
 * (Hono hands them to `app.onError`), so the timeout never escapes to withDeadlines to become a 408.
 */
export function requestTimeoutResponse(request: Request, error: unknown): Response | undefined {
  return (findDeadlines(request) as Partial<ExchangeControls> | undefined)?.timeoutResponseFor?.(error);
}

/** A controller for a body that does not exist: closed, figures zero, `set` validates and does nothing. */
export function inertController(subject: string): DeadlineController {
  let signal: AbortSignal | undefined;
  return {
    direction: "inbound",
    subject,
    state: "closed",
    get limits(): ResolvedLimits {
      return emptyLimits();
    },
    get stats(): DeadlineStats {
      return {
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
