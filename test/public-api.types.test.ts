/** Type tests for the public API (vitest's expectTypeOf): what users write must type-check as intended. */
import { describe, expectTypeOf, it } from "vitest";
import type { createNodeListener } from "../adapters/node.ts";
import {
  type DeadlineController,
  type DeadlineLimits,
  deadlines,
  fetchWithDeadlines,
  guardInboundStream,
  isTimeoutError,
  type RequestDeadlines,
  type TimeoutError,
  type TimeoutEvent,
  type RequestPolicy,
  type WithDeadlinesOptions,
  withDeadlines,
} from "../src/index.ts";

describe("public API types", () => {
  it("withDeadlines keeps the handler's call signature, extra arguments included", () => {
    type Env = { KEY: string };
    type Ctx = { waitUntil(p: Promise<unknown>): void };
    const handler = async (_request: Request, _env: Env, _ctx: Ctx) => new Response("ok");
    const wrapped = withDeadlines(handler, {
      policy: (_request, env) => (env.KEY ? { request: { idle: 1 } } : undefined),
    });
    expectTypeOf(wrapped).parameters.toEqualTypeOf<[Request, Env, Ctx]>();
    expectTypeOf(wrapped).returns.resolves.toEqualTypeOf<Response>();
    // Bun's upgrade path returns undefined: that stays possible.
    const bunLike = withDeadlines((_request: Request): Response | undefined => undefined);
    expectTypeOf(bunLike).returns.resolves.toEqualTypeOf<Response | undefined>();
  });

  it("deadlines(request) gives the live controls", () => {
    expectTypeOf(deadlines).parameter(0).toEqualTypeOf<Request>();
    expectTypeOf(deadlines).returns.toEqualTypeOf<RequestDeadlines>();
    expectTypeOf<RequestDeadlines["request"]>().toEqualTypeOf<DeadlineController>();
    expectTypeOf<RequestDeadlines["signal"]>().toEqualTypeOf<AbortSignal>();
    expectTypeOf<DeadlineController["set"]>().parameter(0).toEqualTypeOf<DeadlineLimits>();
  });

  it("limits take numbers, null, or a Date for total; nothing else", () => {
    expectTypeOf<{ idle: 1000; minRate: null; total: Date }>().toMatchTypeOf<DeadlineLimits>();
    // @ts-expect-error a string is not a duration
    const bad: DeadlineLimits = { idle: "10s" };
    void bad;
  });

  it("sseHeartbeat is a number of ms or null, as an option and in a policy", () => {
    expectTypeOf<WithDeadlinesOptions["sseHeartbeat"]>().toEqualTypeOf<number | null | undefined>();
    expectTypeOf<RequestPolicy["sseHeartbeat"]>().toEqualTypeOf<number | null | undefined>();
    // @ts-expect-error a boolean does not say how often
    const bad: RequestPolicy = { sseHeartbeat: true };
    void bad;
  });

  it("isTimeoutError narrows, and events carry the error", () => {
    const error: unknown = new Error("x");
    if (isTimeoutError(error)) expectTypeOf(error).toEqualTypeOf<TimeoutError>();
    expectTypeOf<TimeoutEvent["error"]>().toEqualTypeOf<TimeoutError>();
    expectTypeOf<TimeoutError["limit"]>().toEqualTypeOf<"idle" | "minRate" | "total" | "handler">();
  });

  it("guards and fetchWithDeadlines return what they say", () => {
    expectTypeOf(guardInboundStream).returns.toEqualTypeOf<{
      readable: ReadableStream<Uint8Array>;
      controller: DeadlineController;
    }>();
    expectTypeOf(fetchWithDeadlines).returns.resolves.toEqualTypeOf<Response>();
  });

  it("the Node adapter's handler gets the raw request and response", () => {
    type Handler = Parameters<typeof createNodeListener>[0];
    expectTypeOf<Parameters<Handler>[1]>().toHaveProperty("req");
    expectTypeOf<Parameters<Handler>[1]>().toHaveProperty("res");
  });
});
