/**
 * Deadline-aware fetch handlers: `withDeadlines(handler, options)` puts every request under
 * deadlines, and `deadlines(request)` (controls.ts) gives the handler the live controls from anywhere
 * that holds the Request (so frameworks need no new parameter).
 */
import { TIMERS_BELONG_TO_REQUESTS, checkClock, systemClock } from "../engine/clock.ts";
import { checkFunction, checkOptions, fail, kind, typeOf } from "../engine/validate.ts";
import type { AdapterHandler, AdapterHooks } from "./hooks.ts";
import { type ExchangeControls, findDeadlines, keepControls } from "./controls.ts";
import { Exchange } from "./exchange.ts";
import {
  OPTION_KEYS,
  type RequestPolicy,
  type ResolvedConfig,
  type WithDeadlinesOptions,
  defaultPolicy,
  resolvePolicy,
} from "./options.ts";
import { defaultTimeoutReporter, defaultTimeoutResponse } from "./timeout-answer.ts";

/** The public API uses no adapter capability. */
const NO_HOOKS: AdapterHooks = /* @__PURE__ */ Object.freeze({});

/** Checks the options once, and returns the handler of one exchange (see adapter-contract.ts). */
export function createDeadlinesHandler<Args extends unknown[], Result>(
  handler: (request: Request, ...args: Args) => Result | Promise<Result>,
  options: WithDeadlinesOptions<Args>,
): AdapterHandler<Args, Result> {
  const where = "withDeadlines";
  checkFunction(where, handler);
  checkOptions(where, options, OPTION_KEYS);
  const {
    policy,
    onTimeout = defaultTimeoutReporter,
    timeoutResponse = defaultTimeoutResponse,
    clock = systemClock,
    // Per request where timers belong to requests (workerd: see clock.ts), shared elsewhere.
    timerScope = TIMERS_BELONG_TO_REQUESTS ? "request" : "shared",
    inMemoryResponse,
  } = options;
  if (timerScope !== "shared" && timerScope !== "request")
    fail(
      where,
      `timerScope must be "shared" or "request", got ${typeof timerScope === "string" ? JSON.stringify(timerScope) : typeOf(timerScope)}`,
    );
  if (policy !== undefined && typeof policy !== "function") fail(where, "policy must be a function");
  if (onTimeout !== false && typeof onTimeout !== "function") fail(where, "onTimeout must be a function or false");
  if (typeof timeoutResponse !== "function") fail(where, "timeoutResponse must be a function");
  checkClock(where, "clock", clock);
  const defaults = defaultPolicy(options as WithDeadlinesOptions<never>);
  if (inMemoryResponse !== undefined && typeof inMemoryResponse !== "function")
    fail(where, "inMemoryResponse must be a function");
  const config: ResolvedConfig = { onTimeout, timeoutResponse, clock, timerScope, inMemoryResponse };
  /**
   * The fields this layer gives explicitly: what it changes in an enclosing layer's exchange it joins
   * (a field left undefined is skipped there).
   */
  const explicit: RequestPolicy = { request: options.request, response: options.response, handler: options.handler };

  return function handleWithDeadlines(request, args, hooks) {
    // Structural and getter-free (`in`), so lazy Request classes (srvx) pay nothing for it.
    if (
      typeof request !== "object" ||
      request === null ||
      !("url" in request && "method" in request && "body" in request)
    ) {
      return Promise.reject(
        new TypeError(`${where}: the wrapped handler must be called with a Request, got ${kind(request)}`),
      );
    }
    // Nested (an adapter, a middleware, an app): join the enclosing layer's exchange rather than guard
    // the bodies twice; this layer's limits apply to it field by field, and its report and answer are
    // the enclosing layer's (one report per firing).
    const enclosing = findDeadlines(request) as Partial<ExchangeControls> | undefined;
    if (enclosing?.join !== undefined) {
      try {
        const own = policy === undefined ? undefined : policy(request, ...args);
        if (own != null) resolvePolicy(defaults, own); // checked as for a request of its own
        if (enclosing.join([explicit, own])) return Promise.resolve(handler(request, ...args));
      } catch (error) {
        return Promise.reject(error); // the policy's, the join's (a limit refused) or the handler's
      }
    }
    let exchange: Exchange;
    try {
      const limits = policy === undefined ? defaults : resolvePolicy(defaults, policy(request, ...args));
      exchange = new Exchange(request, config, limits, hooks);
      keepControls(exchange.handlerRequest, exchange);
      if (exchange.handlerRequest !== request) keepControls(request, exchange);
    } catch (error) {
      return Promise.reject(error);
    }
    hooks.started?.(exchange.handlerRequest);
    const handlerArgs =
      hooks.handlerArgs === undefined ? args : (hooks.handlerArgs(exchange.handlerRequest, args) as Args);
    let pending: Result | Promise<Result>;
    try {
      pending = handler(exchange.handlerRequest, ...handlerArgs);
    } catch (error) {
      return exchange.answerNow(error, true) as Promise<Response>;
    }
    return exchange.answer(pending);
  };
}

/**
 * Wraps a fetch handler so every request runs under deadlines. Extra arguments (Workers `env`/`ctx`,
 * Deno's `info`, Bun's `server`) pass through untouched.
 */
export function withDeadlines<Args extends unknown[], Result>(
  handler: (request: Request, ...args: Args) => Result | Promise<Result>,
  options: WithDeadlinesOptions<Args> = {},
): (request: Request, ...args: Args) => Promise<Result | Response> {
  const handle = createDeadlinesHandler(handler, options);
  return (request, ...args) => handle(request, args, NO_HOOKS);
}
