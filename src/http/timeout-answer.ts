/**
 * What happens when a deadline fires: the event that describes it, the report (one log line by
 * default), and the answer the client gets when no headers went out yet (408 or 503).
 */
import { type TimeoutError, formatRate, isTimeoutError } from "../engine/timeout-error.ts";
import { fail, kind } from "../engine/validate.ts";
import { isResponse } from "./pass-through.ts";

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
  /**
   * The event for a log line (`JSON.stringify(event)` gives it): flat, stable field names, no
   * Request, the path without its query string, the error as its fields (see TimeoutEventJSON).
   */
  toJSON(): TimeoutEventJSON;
}

/** `TimeoutEvent.toJSON()`: the field names are stable, as error codes are. */
export interface TimeoutEventJSON {
  method: string;
  path: string;
  direction: TimeoutEvent["direction"];
  limit: TimeoutError["limit"];
  afterHeaders: boolean;
  /** Bytes moved before the firing (request body: received; response body: taken by the client). */
  bytes: number;
  /** Wall time since the request arrived, in milliseconds. */
  elapsed: number;
  /** Time the peer was to blame, in milliseconds (0 for the handler deadline). */
  waited: number;
  /** Bytes per second over the blamed time. */
  rate: number;
  /** The error's own fields: name, code, message, subject, limit, limitValue, bytes, elapsed, waited, …. */
  error: ReturnType<TimeoutError["toJSON"]>;
}

/** The event of one firing. A class, so that `toJSON` is one shared method and the fields stay as they were. */
export class Firing implements TimeoutEvent {
  readonly method: string;
  readonly path: string;
  readonly limit: TimeoutError["limit"];
  readonly bytes: number;
  readonly elapsed: number;
  readonly rate: number;

  constructor(
    readonly error: TimeoutError,
    readonly request: Request,
    readonly direction: TimeoutEvent["direction"],
    readonly afterHeaders: boolean,
  ) {
    this.method = request.method;
    this.path = pathOf(request.url);
    this.limit = error.limit;
    this.bytes = error.bytes;
    this.elapsed = error.elapsed;
    this.rate = error.rate;
  }

  toJSON(): TimeoutEventJSON {
    return {
      method: this.method,
      path: this.path,
      direction: this.direction,
      limit: this.limit,
      afterHeaders: this.afterHeaders,
      bytes: this.bytes,
      elapsed: this.elapsed,
      waited: this.error.waited,
      rate: this.rate,
      error: this.error.toJSON(),
    };
  }
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
  if (typeof event !== "object" || event === null) fail(where, `event must be a TimeoutEvent, got ${kind(event)}`);
  if (!isTimeoutError((event as TimeoutEvent).error)) fail(where, "event.error must be a TimeoutError");
}

/** Hands a throw from user code to the host as an uncaught error, without breaking the caller's path. */
export function rethrowLater(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}

/** Tells `onTimeout` of a firing; a throwing reporter does not break the exchange. */
export function report(onTimeout: ((event: TimeoutEvent) => void) | false, event: TimeoutEvent): void {
  if (onTimeout === false) return;
  try {
    onTimeout(event);
  } catch (error) {
    rethrowLater(error);
  }
}

/**
 * The answer to a firing before headers. A `make` that throws or returns no Response would leave the
 * client without an answer (it runs in a timer): the default answer goes out instead, and the
 * mistake is reported as an uncaught error, as a throwing onTimeout is.
 */
export function timeoutAnswer(make: (event: TimeoutEvent) => Response, event: TimeoutEvent): Response {
  let problem: unknown;
  try {
    const response = make(event);
    if (isResponse(response)) return response;
    problem = new TypeError(`withDeadlines: timeoutResponse must return a Response, got ${kind(response)}`);
  } catch (error) {
    problem = error;
  }
  rethrowLater(problem);
  return defaultTimeoutResponse(event);
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
  const headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8" };
  if (connectionClose) headers.connection = "close";
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
