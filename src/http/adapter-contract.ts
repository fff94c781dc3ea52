/**
 * The one contract between the core and the runtime adapters (adapters/*). For adapters only: the
 * package's index does not export it, and a lint rule keeps adapters to the public API and this file.
 *
 * An adapter runs its handler with `adapterDeadlines(handler, options)` and passes, with every
 * request, one object of optional hooks (AdapterHooks). In the spirit of Go's ResponseController,
 * which finds the optional interfaces a ResponseWriter implements, each hook is a capability: an
 * adapter implements those its runtime needs, the core uses those it finds, and an empty object (or
 * a shared one, for hooks that keep nothing per request) is always valid. Hooks are called as
 * methods of the object, so per-request state lives on it. Besides the hooks, nothing passes
 * between them: no marker on a Request or a Response, no extra handler argument.
 *
 * What the core tells the adapter back: `answered(guarded)` says whether the Response handed back
 * carries a body the core guards (and bounds until its end), and `responseBodyEnded(state)` how that
 * body ended.
 */
import type { GuardState } from "../engine/tracker.ts";
import type { BodyReader } from "../guards/common.ts";
import type { AdapterHandler } from "./hooks.ts";
import type { InMemoryResponse, WithDeadlinesOptions } from "./options.ts";
import type { TimeoutEvent } from "./timeout-answer.ts";
import { createDeadlinesHandler } from "./with-deadlines.ts";

export type { AdapterHandler, AdapterHooks, ExchangeOutcome, InboundBodyGuard } from "./hooks.ts";

/**
 * withDeadlines for an adapter: the same options, checked the same way (errors read "withDeadlines:
 * ..."), and a handler that takes the hooks of each request.
 */
export function adapterDeadlines<Args extends unknown[], Result>(
  handler: (request: Request, ...args: Args) => Result | Promise<Result>,
  options: WithDeadlinesOptions<Args>,
): AdapterHandler<Args, Result> {
  return createDeadlinesHandler(handler, options);
}

export type { BodyReader, GuardState, InMemoryResponse, TimeoutEvent };
export { findDeadlines, requestTimeoutResponse } from "./controls.ts";
export { OPTION_KEYS } from "./options.ts";
export { defaultTimeoutAnswer } from "./timeout-answer.ts";
export { declaredContentLength } from "./pass-through.ts";
export { checkFunction, checkKeys, checkObject, fail, fieldError, kind, typeOf } from "../engine/validate.ts";
