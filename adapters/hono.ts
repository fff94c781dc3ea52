/**
 * stream-deadlines as a Hono middleware:
 *
 *   app.use(deadlines({ request: { idle: 10_000, minRate: 1024 }, handler: 30_000 }));
 *   app.post("/upload", deadlines({ request: { idle: 60_000 } }), handler); // per route
 *   deadlinesOf(c).request.set({ ... })   // from the handler (or c.get("deadlines") in a Hono<DeadlinesEnv>)
 *
 * The first `deadlines()` a request meets runs it through withDeadlines' own machinery (no second
 * implementation): `c.req.raw` becomes the Request with the guarded body (so `c.req.json()`,
 * `arrayBuffer()`, `parseBody()` and validators read it under the limits), `c.res` the Response
 * with the guarded body, and a handler deadline or a response `total` that runs out before the
 * handler returned answers 503 at once. Every further `deadlines()` on the same request (a route's
 * own after a global one) guards nothing again: it changes the limits of the one in force, field by
 * field, as a `policy` would. When a runtime adapter (`withBunDeadlines(app.fetch)`,
 * `withWorkersDeadlines(app.fetch)`, the Node `serve`) already guards the request, the middleware
 * joins it the same way.
 *
 * Hono hands every error a handler throws to `app.onError`, so a request-body timeout never reaches
 * withDeadlines as a throw: the middleware looks at `c.error` after the chain. When the request
 * body's deadline fired and the chain ended in an error (the TimeoutError, or what a middleware made
 * of it: Hono's validator turns it into a 400 "Malformed JSON"), the client gets `timeoutResponse`
 * (408, `Connection: close`) whatever onError answered, unless onError answered with the
 * TimeoutError's `getResponse()`. Hono's default error handler does that, as for an HTTPException,
 * so no stack trace is logged for a slow client.
 *
 * Only types are imported from hono: the subpath has no runtime import of it (hono is an optional
 * peer dependency).
 */
import type { Context, MiddlewareHandler, Next } from "hono";
import {
  defaultTimeoutReporter,
  defaultTimeoutResponse,
  isTimeoutError,
  type RequestDeadlines,
  type RequestPolicy,
  type TimeoutError,
  type TimeoutEvent,
  type WithDeadlinesOptions,
} from "../src/index.ts";
import {
  OPTION_KEYS,
  adapterDeadlines,
  checkKeys,
  checkObject,
  fail,
  findDeadlines,
  requestTimeoutResponse,
} from "../src/http/adapter-contract.ts";
import { type BunTimeoutServer, bunIdleAfterAnswer, bunServerOf, checkIdleTimeout, serverFor } from "./bun-idle.ts";
import { diagnosticsHooks, ExchangeHooks, holdDeadlineChannels, isReportedFiring } from "./diagnostics.ts";

// On Bun, hold the diagnostics channels from import (oven-sh/bun#43086: Bun drops subscribed channels
// nobody holds), as the Bun adapter does, for the middleware used on Bun without that adapter.
if ((globalThis as { Bun?: unknown }).Bun !== undefined) holdDeadlineChannels();

export type { RequestDeadlines, RequestPolicy, TimeoutEvent } from "../src/index.ts";

/** The context variable the middleware sets: `c.get("deadlines")`, `c.var.deadlines`. */
export interface DeadlinesVariables {
  deadlines: RequestDeadlines;
}

/**
 * An Env with the middleware's variable: `new Hono<DeadlinesEnv>()`, or
 * `new Hono<{ Bindings: B; Variables: DeadlinesVariables & V }>()`. (No global ContextVariableMap
 * augmentation, as some of Hono's own middleware make: JSR refuses ambient module declarations, and
 * it would type `c.get("deadlines")` in routes the middleware does not run for.) `deadlinesOf(c)`
 * is typed in any app.
 */
export type DeadlinesEnv = { Variables: DeadlinesVariables };

/** Per-request limits from the context (route, user, method), merged field by field over the options. */
export type HonoPolicy = (c: Context) => RequestPolicy | undefined | null | void;

/** withDeadlines' options, with a policy that gets Hono's context. */
export interface HonoDeadlinesOptions extends Omit<WithDeadlinesOptions, "policy"> {
  policy?: HonoPolicy;
  /**
   * On Bun only: the `idleTimeout` given to `Bun.serve`, in seconds (Bun's default: 10). Where the
   * middleware owns the request on Bun (no stream-deadlines/bun around `app.fetch`), it turns Bun's
   * idle timer off for the request while the library's limits govern, and back on to this before
   * the exchange ends, as stream-deadlines/bun does. 0 means none.
   */
  idleTimeout?: number;
}

const HONO_OPTION_KEYS = [...OPTION_KEYS, "idleTimeout"];

/** The hooks of one exchange the middleware owns on Bun: the diagnostics ones, and whether the core guards the answer's body. */
class BunExchangeHooks extends ExchangeHooks {
  /** Bun prints the reason a response body fails with: fail it with `undefined` (the report is the one line). */
  readonly quietResponseFailure = true;

  constructor(
    private readonly server: BunTimeoutServer,
    private readonly original: Request,
  ) {
    super();
  }

  /** The handler's `c.env.requestIP(c.req.raw)`, `timeout` and `upgrade` accept the library's copy of the Request. */
  handlerArgs(handlerRequest: Request, args: unknown[]): unknown[] {
    if (handlerRequest !== this.original) {
      const c = args[0] as Context;
      c.env = serverFor(this.server, handlerRequest, this.original);
    }
    return args;
  }
}

type Reporter = ((event: TimeoutEvent) => void) | false;
type Responder = (event: TimeoutEvent) => Response;

/** Where the middleware keeps its per-request record: on the Context and on the guarded Request. */
const RECORD = Symbol.for("stream-deadlines.hono");

/** What the middleware keeps for one request. */
class HonoRequestDeadlines {
  /** The controls of the withDeadlines that guards this request. */
  controls!: RequestDeadlines;
  /** The Request those controls are found on (later middleware, like bodyLimit, may replace c.req.raw). */
  keyRequest!: Request;
  /** Per-route replacements set by a later deadlines() (only where a deadlines() owns the request). */
  onTimeout: Reporter | undefined = undefined;
  timeoutResponse: Responder | undefined = undefined;
  /** app.onError answered the request-body timeout with its getResponse(): that answer stands. */
  answerTaken = false;
  /** The owner's answer is chosen (the handler's Response, or a timeout response before it returned). */
  settled = false;
  /** The core guards the body of the Response it handed back. */
  guardedBody = false;
  /** True when a deadlines() middleware owns the request; false when it joined a runtime adapter's. */
  constructor(readonly ownedHere: boolean) {}
}

const recordOf = (holder: object): HonoRequestDeadlines | undefined =>
  (holder as { [RECORD]?: HonoRequestDeadlines })[RECORD];
const keepRecord = (holder: object, record: HonoRequestDeadlines): void => {
  (holder as { [RECORD]?: HonoRequestDeadlines })[RECORD] = record;
};

/** Sets c.res as it is: Hono's setter would copy the previous response's headers into it (a second Response per request). */
function replaceResponse(c: Context, response: Response): void {
  c.res = undefined;
  c.res = response;
}

/**
 * Gives a TimeoutError the `getResponse()` of an HTTPException, so Hono's default error handler
 * answers with it instead of logging a stack trace and answering 500.
 */
function armGetResponse(error: TimeoutError, respond: () => Response): void {
  if ("getResponse" in error) return;
  Object.defineProperty(error, "getResponse", {
    value: respond,
    configurable: true,
    writable: true,
    enumerable: false,
  });
}

/** The Node response @hono/node-server puts in `c.env.outgoing` (a ServerResponse or Http2ServerResponse). */
interface NodeOutgoing {
  destroy(): unknown;
  headersSent: boolean;
}

function nodeOutgoing(env: unknown): NodeOutgoing | undefined {
  const outgoing = (env as { outgoing?: Partial<NodeOutgoing> } | null | undefined)?.outgoing;
  return typeof outgoing?.destroy === "function" && typeof outgoing.headersSent === "boolean"
    ? (outgoing as NodeOutgoing)
    : undefined;
}

/**
 * The guarded response body as @hono/node-server is to send it. That server logs the whole error a
 * response body fails with (console.error), after the one line onTimeout wrote. So when a deadline
 * cuts the body, this stream does not fail: it destroys the Node response (the socket of an HTTP/1.1
 * connection, the stream of an HTTP/2 one: the client sees a short body, never a clean end), and
 * @hono/node-server, seeing its response closed, cancels this stream as it does when a client
 * leaves. Any other error of the body is passed on as it is.
 */
function cutQuietly(body: ReadableStream<Uint8Array>, outgoing: NodeOutgoing): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (error) {
          if (isReportedFiring(error)) outgoing.destroy();
          else controller.error(error);
          return;
        }
        if (result.done) controller.close();
        else controller.enqueue(result.value);
      },
      cancel: (reason) => reader.cancel(reason).catch(() => {}),
    },
    { highWaterMark: 0 },
  );
}

const POLICY_FIELDS = ["request", "response", "handler", "sseHeartbeat"];

function checkPolicyResult(value: unknown): RequestPolicy | undefined {
  if (value === undefined || value === null) return undefined;
  const where = "stream-deadlines/hono: policy(c)";
  if (typeof value !== "object" || Array.isArray(value))
    fail(where, `must return an object like { request, response, handler } or undefined, got ${typeof value}`, " ");
  checkKeys(where, value, POLICY_FIELDS, "request, response or handler", "field", " returned an ");
  return value as RequestPolicy;
}

/** Changes the limits in force, field by field (`0`/`null` turns one off, absent keeps it). */
function adjust(controls: RequestDeadlines, fields: RequestPolicy): void {
  if (fields.request !== undefined) controls.request.set(fields.request);
  if (fields.response !== undefined) controls.response.set(fields.response);
  if (fields.handler !== undefined) controls.setHandlerTimeout(fields.handler);
}

/**
 * The middleware. Takes withDeadlines' options (`request`, `response`, `handler`, `policy(c)`,
 * `onTimeout`, `timeoutResponse`, `clock`, …). On a request that another `deadlines()` (or a
 * runtime adapter) already guards, its `request`, `response`, `handler` and `policy` change the
 * limits in force for this request, and its `onTimeout` and `timeoutResponse` replace the owning
 * `deadlines()`'s (an adapter keeps its own); `clock`, `timerScope` and `sseHeartbeat` are the owner's.
 */
export function deadlines(options: HonoDeadlinesOptions = {}): MiddlewareHandler<DeadlinesEnv> {
  checkObject("stream-deadlines/hono", options);
  checkKeys("stream-deadlines/hono", options, HONO_OPTION_KEYS);
  const { policy, onTimeout, timeoutResponse, idleTimeout: idleOption, ...rest } = options;
  const idleTimeout = checkIdleTimeout(idleOption, "stream-deadlines/hono");
  if (policy !== undefined && typeof policy !== "function")
    fail("stream-deadlines/hono", "policy must be a function of the context");
  if (onTimeout !== undefined && onTimeout !== false && typeof onTimeout !== "function")
    fail("stream-deadlines/hono", "onTimeout must be a function or false");
  if (timeoutResponse !== undefined && typeof timeoutResponse !== "function")
    fail("stream-deadlines/hono", "timeoutResponse must be a function");
  const baseReport: Reporter = onTimeout === undefined ? defaultTimeoutReporter : onTimeout;
  const baseRespond: Responder = timeoutResponse ?? defaultTimeoutResponse;
  const given: RequestPolicy = { request: options.request, response: options.response, handler: options.handler };

  const respond = (event: TimeoutEvent): Response => (recordOf(event.request)?.timeoutResponse ?? baseRespond)(event);

  const report = (event: TimeoutEvent): void => {
    const record = recordOf(event.request);
    if (!event.afterHeaders) {
      if (event.direction === "request") {
        armGetResponse(event.error, () => {
          if (record !== undefined) record.answerTaken = true;
          // Made by the exchange (with `respond`), so it knows this answer as its own timeout answer.
          return requestTimeoutResponse(event.request, event.error) ?? respond(event);
        });
      } else {
        // A handler deadline (or response total) already answered: this error can only reach
        // onError late, from a handler still running; its answer goes nowhere.
        armGetResponse(event.error, () => defaultTimeoutResponse(event));
      }
    }
    const reporter = record?.onTimeout ?? baseReport;
    if (reporter !== false) reporter(event);
  };

  // The request's path through withDeadlines when this middleware owns it: everything after it in
  // Hono's chain is the "handler". It publishes to the diagnostics channels as the adapters do (when it
  // joins an adapter's exchange instead, the adapter publishes).
  const guarded = adapterDeadlines(
    async (request: Request, c: Context<DeadlinesEnv>, next: Next): Promise<Response | undefined> => {
      const record = recordOf(c)!;
      record.controls = findDeadlines(request)!;
      record.keyRequest = request;
      keepRecord(request, record);
      c.req.raw = request;
      c.set("deadlines", record.controls);
      try {
        await next(); // rejects only when app.onError rethrew
      } catch (error) {
        throw record.controls.request.error ?? error; // withDeadlines answers its request-body timeout (408), rethrows the rest
      }
      // Answered before the chain returned (503): Hono drops a late handler's Response, and c.res may
      // by now be Hono's re-wrap of the 503 on its way out (same body): nothing to hand back.
      if (record.settled) return undefined;
      // The chain ended in an error after the request body timed out: the error is that timeout, or
      // what some middleware made of it (Hono's validator turns it into a 400 "Malformed JSON").
      const timedOut = record.controls.request.error;
      if (c.error !== undefined && timedOut !== undefined && !record.answerTaken) throw timedOut; // → 408
      return c.res;
    },
    {
      ...rest,
      policy: policy === undefined ? undefined : (_request: Request, c: Context) => policy(c),
      onTimeout: report,
      timeoutResponse: respond,
    },
  );

  const join = (c: Context<DeadlinesEnv>, record: HonoRequestDeadlines): void => {
    if (record.ownedHere) {
      if (onTimeout !== undefined) record.onTimeout = onTimeout;
      if (timeoutResponse !== undefined) record.timeoutResponse = timeoutResponse;
    }
    adjust(record.controls, given);
    if (policy !== undefined) {
      const fields = checkPolicyResult(policy(c));
      if (fields !== undefined) adjust(record.controls, fields);
    }
  };

  return async function deadlinesMiddleware(c, next) {
    const existing = recordOf(c);
    if (existing !== undefined) {
      join(c, existing);
      return next();
    }
    const adapters = findDeadlines(c.req.raw);
    if (adapters !== undefined) return joinAdapter(c, next, adapters);
    const record = new HonoRequestDeadlines(true);
    keepRecord(c, record);
    const bun = bunServerOf(c.env);
    if (bun !== undefined) return ownOnBun(c, next, record, bun);
    const outgoing = nodeOutgoing(c.env);
    const hooks =
      outgoing === undefined
        ? diagnosticsHooks
        : { ...diagnosticsHooks, answered: (guardedBody: boolean) => void (record.guardedBody = guardedBody) };
    let response: Response | undefined;
    try {
      response = await guarded(c.req.raw, [c, next], hooks);
    } finally {
      record.settled = true;
    }
    if (response !== undefined && record.guardedBody && outgoing !== undefined && response.body !== null)
      response = new Response(cutQuietly(response.body, outgoing), response);
    if (response !== undefined && response !== c.res) replaceResponse(c, response);
  };

  /**
   * The request on Bun (`c.env` is Bun's server), with what stream-deadlines/bun does at the socket:
   * Bun's idle timer off while the library's limits govern (upload bytes do not reset it, and it
   * kills a quiet SSE stream at ~idleTimeout), back on before the exchange ends, at 1 s when a
   * response deadline fires; and the handler's `c.env` accepts the library's copy of the Request.
   */
  async function ownOnBun(
    c: Context<DeadlinesEnv>,
    next: Next,
    record: HonoRequestDeadlines,
    bun: BunTimeoutServer,
  ): Promise<void> {
    const original = c.req.raw;
    const hooks = new BunExchangeHooks(bun, original);
    bun.timeout(original, 0);
    let response: Response | undefined;
    try {
      response = await guarded(original, [c, next], hooks);
    } catch (error) {
      bun.timeout(original, idleTimeout);
      throw error;
    } finally {
      record.settled = true;
    }
    if (response === undefined) {
      bun.timeout(original, idleTimeout);
      return;
    }
    const signal = () => findDeadlines(original)?.response.signal;
    const answer = bunIdleAfterAnswer(bun, original, idleTimeout, response, hooks.guardedBody, signal);
    if (answer !== c.res) replaceResponse(c, answer);
  }

  /** A runtime adapter's withDeadlines guards this request: adjust its limits, answer what Hono caught. */
  async function joinAdapter(c: Context<DeadlinesEnv>, next: Next, controls: RequestDeadlines): Promise<void> {
    const record = new HonoRequestDeadlines(false);
    record.controls = controls;
    const key = (record.keyRequest = c.req.raw);
    keepRecord(c, record);
    c.set("deadlines", controls);
    join(c, record);
    // Any deadline of the request (the upload's, the handler's) aborts the exchange's signal before
    // its error can reach a read in the handler: give it the getResponse() Hono's default error handler
    // answers with, so that handler logs no stack trace for a firing the adapter reported.
    const signal = controls.signal;
    if (!signal.aborted) {
      signal.addEventListener(
        "abort",
        () => {
          const error = signal.reason as TimeoutError;
          if (!isTimeoutError(error)) return; // the client went away: no firing
          if (error === controls.request.error) {
            armGetResponse(error, () => {
              record.answerTaken = true;
              return (
                requestTimeoutResponse(key, error) ??
                new Response(null, { status: 408, headers: { connection: "close" } })
              );
            });
          } else {
            // The adapter answered already (503): this answer goes nowhere.
            armGetResponse(error, () => new Response(null, { status: 503, headers: { connection: "close" } }));
          }
        },
        { once: true },
      );
    }
    await next();
    const timedOut = controls.request.error;
    if (c.error === undefined || timedOut === undefined || record.answerTaken) return;
    const answer = requestTimeoutResponse(key, timedOut);
    if (answer !== undefined) replaceResponse(c, answer);
  }
}

/**
 * The live controls of this request (`.request`, `.response`, `.signal`, `.setHandlerTimeout()`), as
 * `c.get("deadlines")`, but throwing a clear error when no `deadlines()` (nor a runtime adapter)
 * guards the request.
 */
export function deadlinesOf(c: Context): RequestDeadlines {
  const controls = recordOf(c)?.controls ?? findDeadlines(c.req.raw);
  if (controls === undefined) {
    const fix = "add app.use(deadlines()) before this route, or wrap app.fetch in a stream-deadlines adapter";
    fail("deadlinesOf(c)", `this request is not under deadlines (${fix})`);
  }
  return controls;
}
