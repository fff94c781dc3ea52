/**
 * Every public function and option, fuzzed with wrong types and out-of-range values: each must be
 * refused at the call with a TypeError or RangeError whose message names the field (functions that
 * return a Promise reject with it instead), never accepted as a silent default, never a crash later.
 * Valid values must never throw.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { withBunDeadlines, serve as serveBun } from "../adapters/bun.ts";
import { withDenoDeadlines, serve as serveDeno } from "../adapters/deno.ts";
import { createNodeListener, nodeServerLimits, serve as serveNode } from "../adapters/node.ts";
import { withWorkersDeadlines } from "../adapters/workers.ts";
import {
  type Clock,
  createVirtualClock,
  deadlineDebugCounters,
  deadlines,
  defaultTimeoutReporter,
  defaultTimeoutResponse,
  fetchWithDeadlines,
  guardInboundStream,
  guardOutboundStream,
  isolatedClock,
  isTimeoutError,
  type TimeoutEvent,
  TimeoutError,
  upstreamDeadlines,
  withDeadlines,
} from "../src/index.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 200);
const run = <T>(property: fc.IPropertyWithHooks<T>): void => fc.assert(property, { numRuns: RUNS });
const runAsync = <T>(property: fc.IAsyncPropertyWithHooks<T>, numRuns = RUNS): Promise<void> =>
  fc.assert(property, { numRuns });

// ---------------------------------------------------------------------------------------------
// What a refusal must look like

function outcome(call: () => unknown): unknown {
  try {
    call();
  } catch (error) {
    return error;
  }
  return "accepted";
}

function describeValue(value: unknown): string {
  try {
    return typeof value === "symbol" || typeof value === "bigint"
      ? String(value)
      : (JSON.stringify(value) ?? String(value));
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function checkRefusal(error: unknown, field: RegExp | string, value: unknown): void {
  if (!(error instanceof TypeError || error instanceof RangeError)) {
    throw new Error(
      `${describeValue(value)} should be refused with a TypeError or RangeError naming ${String(field)}; got ${error === "accepted" ? "no error" : String(error)}`,
    );
  }
  if (typeof field === "string") expect(error.message).toContain(field);
  else expect(error.message).toMatch(field);
}

/** Synchronous refusal at the call. */
function expectRefused(call: () => unknown, field: RegExp | string, value?: unknown): void {
  checkRefusal(outcome(call), field, value);
}

/** A function returning a Promise: rejected (or thrown at once) with the named error. */
async function expectRejected(call: () => Promise<unknown>, field: RegExp | string, value?: unknown): Promise<void> {
  let error: unknown = "accepted";
  try {
    await call();
  } catch (e) {
    error = e;
  }
  checkRefusal(error, field, value);
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Anything that is not a number (nor null/undefined, which mean "off"/"not given"). */
const notANumber = fc.oneof(
  fc.string(),
  fc.boolean(),
  fc.bigInt(),
  fc.constant(Symbol("s")),
  fc.object({ maxDepth: 1 }),
  fc.array(fc.anything({ maxDepth: 1 }), { maxLength: 3 }),
  fc.func(fc.integer()),
  fc.constant(new Map()),
  fc.constant(new Uint8Array(2)),
  fc.constant(new Date(NaN)),
  fc.integer().map((n) => new Number(n)), // a boxed number is no number
  fc.integer().map(String), // "10" is no number of milliseconds
);
/** A valid Date is a valid `total`; everything else that is not a number is not. */
const notANumberNorValidDate = fc.oneof(notANumber, fc.constant(new Date(NaN)));
const negative = fc.double({ max: -Number.MIN_VALUE, noNaN: true }); // includes -Infinity
const tooLarge = fc.double({ min: 2 ** 53, noNaN: true }); // beyond Number.MAX_SAFE_INTEGER, includes Infinity
const notFinite = fc.constantFrom(NaN, Infinity, -Infinity);
/** Numbers no limit accepts. */
const outOfRange = fc.oneof(negative, tooLarge, notFinite);
const badLimitValue = fc.oneof(notANumberNorValidDate, outOfRange);
const notAFunction = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.boolean(),
  fc.object({ maxDepth: 1 }),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 2 }),
  fc.bigInt(),
);
const notAnObject = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.boolean(),
  fc.bigInt(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.func(fc.integer()),
  fc.constant(Symbol("o")),
);
const notAString = fc.oneof(
  fc.integer(),
  fc.boolean(),
  fc.object({ maxDepth: 1 }),
  fc.constant(null),
  fc.bigInt(),
  fc.array(fc.string(), { maxLength: 2 }),
  fc.constant(Symbol("s")),
);

/** A positive number of ms (or B/s) a limit accepts. */
const positive = fc.oneof(
  fc.integer({ min: 1, max: 10_000_000 }),
  fc.double({ min: Number.MIN_VALUE, max: Number.MAX_SAFE_INTEGER, noNaN: true }),
  fc.constant(Number.MAX_SAFE_INTEGER),
);
const offOrPositive = fc.oneof(fc.constant(null), fc.constant(0), fc.constant(undefined), positive);
/** A valid limits object (a grace needs a minimum rate that is not explicitly off). */
const validLimits = fc
  .record(
    {
      idle: offOrPositive,
      minRate: offOrPositive,
      grace: fc.oneof(fc.constant(undefined), fc.constant(null), positive),
      total: fc.oneof(offOrPositive, fc.date({ noInvalidDate: true })),
    },
    { requiredKeys: [] },
  )
  .map((limits) =>
    (limits.minRate === 0 || limits.minRate === null) && typeof limits.grace === "number"
      ? { ...limits, grace: undefined }
      : limits,
  );

const LIMIT_FIELDS = ["idle", "minRate", "grace", "total"] as const;
/** A limit field and a value it must refuse. */
const badLimit = fc.oneof(
  fc.tuple(fc.constantFrom(...LIMIT_FIELDS), badLimitValue),
  fc.tuple(fc.constant("grace" as const), fc.constant(0)), // a grace of 0 is no grace
);

function unknownKey(known: readonly string[]): fc.Arbitrary<string> {
  return fc
    .oneof(
      fc.string({ minLength: 1 }),
      fc.constantFrom("idel", "minrate", "Idle", "timeout", "__proto__", "constructor", "prot", "headerTimeout"),
    )
    .filter((key) => !known.includes(key));
}

/** An own property, whatever the key (also "__proto__"). */
function withKey(base: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const out = { ...base };
  Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  return out;
}

const never = () => new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }, { highWaterMark: 0 });
const ok = () => new Response("ok");
const GUARD_OPTION_KEYS = ["idle", "minRate", "grace", "total", "subject", "clock", "onTimeout"];
const WITH_DEADLINES_KEYS = [
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
];

/** A clock-like value that is not a Clock: not an object, or an object missing a method. */
const notAClock = fc.oneof(
  notAnObject,
  fc.record(
    {
      now: fc.oneof(fc.func(fc.integer()), notAFunction),
      wallNow: fc.oneof(fc.func(fc.integer()), notAFunction),
      setTimer: fc.oneof(fc.func(fc.integer()), notAFunction),
      clearTimer: notAFunction,
    },
    { requiredKeys: [] },
  ),
  fc.constant({ now: () => 0, wallNow: () => 0, setTimer: () => 0, clearTimer: () => {}, afterTurn: "soon" }),
);

// ---------------------------------------------------------------------------------------------

describe("fuzz: guardInboundStream / guardOutboundStream", () => {
  const guards = [guardInboundStream, guardOutboundStream];
  const clock = createVirtualClock();

  it("every limit field refuses wrong types and out-of-range values, naming the field", () => {
    run(
      fc.property(fc.constantFrom(...guards), badLimit, (guard, [field, value]) => {
        expectRefused(() => guard(never(), { clock, [field]: value }), new RegExp(`\\b${field}\\b`), value);
      }),
    );
  });

  it("subject, clock and onTimeout refuse what they are not", () => {
    run(
      fc.property(
        fc.constantFrom(...guards),
        fc.oneof(
          fc.tuple(
            fc.constant("subject"),
            notAString.filter((v) => v !== null && v !== undefined),
          ),
          fc.tuple(fc.constant("subject"), fc.constant(null)),
          fc.tuple(fc.constant("clock"), notAClock),
          fc.tuple(fc.constant("onTimeout"), notAFunction),
        ),
        (guard, [field, value]) => expectRefused(() => guard(never(), { [field]: value } as never), field, value),
      ),
    );
  });

  it("unknown option keys are a TypeError naming the key; options that are not an object are refused", () => {
    run(
      fc.property(fc.constantFrom(...guards), unknownKey(GUARD_OPTION_KEYS), fc.anything(), (guard, key, value) => {
        expectRefused(() => guard(never(), withKey({ clock }, key, value) as never), `"${key}"`, key);
      }),
    );
    run(
      fc.property(
        fc.constantFrom(...guards),
        notAnObject.filter((v) => v !== null),
        (guard, options) => {
          expectRefused(() => guard(never(), options as never), "options", options);
        },
      ),
    );
  });

  it("a source that is not an unlocked ReadableStream is a TypeError", () => {
    run(
      fc.property(fc.constantFrom(...guards), fc.oneof(notAnObject, fc.object({ maxDepth: 1 })), (guard, source) => {
        expectRefused(() => guard(source as never, { clock }), /ReadableStream/, source);
      }),
    );
    const locked = never();
    locked.getReader();
    for (const guard of guards) expectRefused(() => guard(locked, { clock }), /locked/);
  });

  it("valid limits never throw, and give the limits back as set", () => {
    run(
      fc.property(fc.constantFrom(...guards), validLimits, fc.option(fc.string()), (guard, limits, subject) => {
        const { controller } = guard(never(), { clock, ...limits, ...(subject === null ? {} : { subject }) });
        expect(controller.state).toBe("active");
        if (typeof limits.idle === "number" && limits.idle > 0) expect(controller.limits.idle).toBe(limits.idle);
        if (typeof limits.total === "number" && limits.total > 0) expect(controller.limits.total).toBe(limits.total);
        controller.clear();
      }),
    );
  });
});

describe("fuzz: DeadlineController.set", () => {
  it("refuses what the guards refuse, and a refused set() changes nothing", () => {
    const clock = createVirtualClock();
    const { controller } = guardInboundStream(never(), { clock, idle: 1000, minRate: 10, total: 5000 });
    run(
      fc.property(badLimit, ([field, value]) => {
        expectRefused(() => controller.set({ [field]: value }), new RegExp(`\\b${field}\\b`), value);
        expect(controller.limits).toMatchObject({ idle: 1000, minRate: 10, total: 5000 });
      }),
    );
    run(
      fc.property(unknownKey(LIMIT_FIELDS as unknown as string[]), fc.anything(), (key, value) => {
        expectRefused(() => controller.set(withKey({}, key, value)), `"${key}"`, key);
      }),
    );
    run(
      fc.property(
        notAnObject.filter((v) => v !== null),
        (limits) => {
          expectRefused(() => controller.set(limits as never), "limits", limits);
        },
      ),
    );
  });

  it("valid patches never throw, on a live stream and on one that has ended", () => {
    const clock = createVirtualClock();
    const live = guardInboundStream(never(), { clock }).controller;
    const ended = guardInboundStream(new ReadableStream({ start: (c) => c.close() }), { clock });
    run(
      fc.property(validLimits, (patch) => {
        live.set({ ...patch, total: patch.total instanceof Date ? null : patch.total }); // a past Date would end it
        ended.controller.set(patch);
        live.clear();
      }),
    );
  });
});

describe("fuzz: withDeadlines options", () => {
  it("request and response limits refuse bad fields, naming the side and the field", () => {
    run(
      fc.property(fc.constantFrom("request", "response"), badLimit, (side, [field, value]) => {
        expectRefused(
          () => withDeadlines(ok, { [side]: { [field]: value } }),
          new RegExp(`${side}.*\\b${field}\\b`),
          value,
        );
      }),
    );
    run(
      fc.property(
        fc.constantFrom("request", "response"),
        notAnObject.filter((v) => typeof v !== "undefined"),
        (side, value) => {
          expectRefused(() => withDeadlines(ok, { [side]: value } as never), side, value);
        },
      ),
    );
  });

  it("handler and sseHeartbeat refuse wrong types and out-of-range values", () => {
    run(
      fc.property(fc.constantFrom("handler", "sseHeartbeat"), fc.oneof(notANumber, outOfRange), (field, value) => {
        expectRefused(() => withDeadlines(ok, { [field]: value } as never), field, value);
      }),
    );
  });

  it("policy, onTimeout, timeoutResponse, inMemoryResponse, clock and timerScope refuse what they are not", () => {
    run(
      fc.property(
        fc.oneof(
          fc.tuple(fc.constant("policy"), notAFunction),
          fc.tuple(
            fc.constant("onTimeout"),
            notAFunction.filter((v) => v !== false),
          ),
          fc.tuple(fc.constant("timeoutResponse"), notAFunction),
          fc.tuple(fc.constant("inMemoryResponse"), notAFunction),
          fc.tuple(fc.constant("clock"), notAClock),
          fc.tuple(
            fc.constant("timerScope"),
            fc.anything().filter((v) => v !== "shared" && v !== "request" && v !== undefined),
          ),
        ),
        ([field, value]) => expectRefused(() => withDeadlines(ok, { [field]: value } as never), field, value),
      ),
    );
  });

  it("unknown keys and non-object options are refused; a handler that is not a function too", () => {
    run(
      fc.property(unknownKey(WITH_DEADLINES_KEYS), fc.anything(), (key, value) => {
        expectRefused(() => withDeadlines(ok, withKey({}, key, value) as never), `"${key}"`, key);
      }),
    );
    run(
      fc.property(notAnObject, (options) =>
        expectRefused(() => withDeadlines(ok, options as never), "options", options),
      ),
    );
    run(
      fc.property(notAFunction, (handler) => expectRefused(() => withDeadlines(handler as never), "handler", handler)),
    );
  });

  it("valid options never throw", () => {
    run(
      fc.property(
        fc.record(
          {
            request: validLimits,
            response: validLimits,
            handler: offOrPositive,
            onTimeout: fc.constantFrom(false, () => {}),
            timerScope: fc.constantFrom("shared", "request"),
            clock: fc.constantFrom(createVirtualClock(), isolatedClock(createVirtualClock())),
          },
          { requiredKeys: [] },
        ),
        (options) => {
          expect(typeof withDeadlines(ok, options as never)).toBe("function");
        },
      ),
    );
  });
});

describe("fuzz: what a policy returns, and the controls inside the handler", () => {
  it("a policy returning bad limits or fields rejects the request with an error naming them", async () => {
    await runAsync(
      fc.asyncProperty(
        fc.oneof(
          badLimit.map(([field, value]) => ({ policy: { request: { [field]: value } }, field })),
          badLimit.map(([field, value]) => ({ policy: { response: { [field]: value } }, field })),
          fc.oneof(notANumber, outOfRange).map((value) => ({ policy: { handler: value }, field: "handler" })),
          unknownKey(["request", "response", "handler", "sseHeartbeat"]).map((key) => ({
            policy: withKey({}, key, 1),
            field: `"${key}"`,
          })),
          fc.constantFrom("request", "response").map((side) => ({ policy: { [side]: null }, field: side })),
          fc.oneof(fc.string(), fc.integer(), fc.boolean()).map((value) => ({ policy: value, field: "policy" })),
        ),
        async ({ policy, field }) => {
          const wrapped = withDeadlines(ok, {
            policy: () => policy as never,
            onTimeout: false,
            clock: createVirtualClock(),
          });
          await expectRejected(
            () => wrapped(new Request("http://x/")),
            field.startsWith('"') ? field : new RegExp(`\\b${field}\\b`),
            policy,
          );
        },
      ),
    );
  });

  it("setHandlerTimeout and the request/response controllers refuse bad values at the call", async () => {
    const clock = createVirtualClock();
    const wrapped = withDeadlines(
      async (request: Request) => {
        const controls = deadlines(request);
        fc.assert(
          fc.property(fc.oneof(notANumber, outOfRange), (ms) =>
            expectRefused(() => controls.setHandlerTimeout(ms as never), "handler", ms),
          ),
          { numRuns: RUNS },
        );
        for (const controller of [controls.request, controls.response]) {
          fc.assert(
            fc.property(badLimit, ([field, value]) =>
              expectRefused(() => controller.set({ [field]: value }), new RegExp(`\\b${field}\\b`), value),
            ),
            { numRuns: RUNS },
          );
        }
        fc.assert(
          fc.property(offOrPositive, (ms) => void controls.setHandlerTimeout(ms ?? null)),
          { numRuns: RUNS },
        );
        controls.setHandlerTimeout(null);
        return new Response("checked");
      },
      { clock, onTimeout: false },
    );
    const response = (await wrapped(new Request("http://x/", { method: "POST", body: "x" }))) as Response;
    expect(await response.text()).toBe("checked");
  });

  it("the wrapped handler called with anything but a Request rejects with a TypeError", async () => {
    const wrapped = withDeadlines(ok, { onTimeout: false, clock: createVirtualClock() });
    await runAsync(
      fc.asyncProperty(
        fc
          .anything()
          .filter((v) => !(typeof v === "object" && v !== null && "url" in v && "method" in v && "body" in v)),
        async (value) => expectRejected(() => wrapped(value as never), "Request", value),
      ),
    );
  });

  it("deadlines() of anything but a request handled by withDeadlines is a TypeError", () => {
    run(fc.property(fc.anything(), (value) => expectRefused(() => deadlines(value as never), "withDeadlines", value)));
  });

  it("valid per-request policies never make a request hang or crash", async () => {
    await runAsync(
      fc.asyncProperty(
        validLimits,
        validLimits,
        offOrPositive,
        fc.integer({ min: 0, max: 200_000 }),
        async (request, response, handler, bytes) => {
          const clock = createVirtualClock();
          const wrapped = withDeadlines(
            async (req: Request) => {
              await req.text().catch(() => "");
              return new Response(new Uint8Array(bytes));
            },
            {
              clock,
              onTimeout: false,
              request: {},
              response: {},
              policy: () => ({ request, response, handler: handler ?? null }),
            },
          );
          let settled: unknown;
          const pending = wrapped(new Request("http://x/", { method: "POST", body: "hello" })).then(
            async (r) => {
              const response = r as Response;
              if (response.status !== 200) return (settled = response.status);
              settled = await response.arrayBuffer().then(
                (b) => b.byteLength,
                (e: unknown) => (isTimeoutError(e) ? "timeout" : e),
              );
            },
            (e: unknown) => (settled = e),
          );
          await clock.advance(0);
          await clock.advance(10 * 2 ** 31); // beyond any native timer delay: re-armed, never early
          await pending;
          // The body, whole; or a deadline: a timeout answer (408/503) or a body that failed with it.
          expect(settled === bytes || settled === "timeout" || settled === 408 || settled === 503).toBe(true);
        },
      ),
      Math.min(RUNS, 100),
    );
  });
});

describe("fuzz: fetchWithDeadlines and upstreamDeadlines", () => {
  const fetch = async () => new Response("upstream");

  it("bad limits, options and unknown keys reject naming the field; nothing is left armed", async () => {
    const clock = createVirtualClock();
    await runAsync(
      fc.asyncProperty(
        fc.oneof(
          badLimit.map(([field, value]) => ({ deadlines: { [field]: value }, field })),
          notAString.map((value) => ({ deadlines: { subject: value }, field: "subject" })),
          notAClock.map((value) => ({ deadlines: { clock: value }, field: "clock" })),
          notAFunction.map((value) => ({ deadlines: { onTimeout: value }, field: "onTimeout" })),
          notAFunction.map((value) => ({ deadlines: { fetch: value }, field: "fetch" })),
          unknownKey(["idle", "minRate", "grace", "total", "subject", "clock", "onTimeout", "fetch"]).map((key) => ({
            deadlines: withKey({}, key, 1),
            field: `"${key}"`,
          })),
          notAnObject.filter((v) => v !== undefined).map((value) => ({ deadlines: value, field: "deadlines" })),
        ),
        async ({ deadlines: options, field }) => {
          const init = {
            deadlines:
              options && typeof options === "object" && !Array.isArray(options)
                ? { clock, fetch, ...options }
                : options,
          };
          await expectRejected(() => fetchWithDeadlines("http://upstream/", init as never), field, options);
        },
      ),
    );
    await runAsync(
      fc.asyncProperty(
        notAnObject.filter((v) => v !== undefined),
        async (init) => expectRejected(() => fetchWithDeadlines("http://upstream/", init as never), "init", init),
      ),
    );
    await runAsync(
      fc.asyncProperty(fc.oneof(fc.string(), fc.integer({ min: 1 }), fc.object({ maxDepth: 1 })), async (signal) =>
        expectRejected(
          () =>
            fetchWithDeadlines("http://upstream/", {
              signal: signal as never,
              deadlines: { idle: 1000, clock, fetch },
            }),
          "signal",
          signal,
        ),
      ),
    );
    expect(deadlineDebugCounters(clock)).toMatchObject({ scheduledDeadlines: 0, timerArmed: false });
  });

  it("valid limits never throw", async () => {
    await runAsync(
      fc.asyncProperty(validLimits, async (limits) => {
        const clock = createVirtualClock();
        const response = await fetchWithDeadlines("http://upstream/", {
          deadlines: { ...limits, total: limits.total instanceof Date ? null : limits.total, clock, fetch },
        });
        expect(await response.text()).toBe("upstream");
        expect(upstreamDeadlines(response)?.state).toBe("closed");
      }),
    );
  });

  it("upstreamDeadlines: anything not an object is a TypeError, any other object gives undefined", () => {
    run(
      fc.property(
        notAnObject.filter((v) => typeof v !== "function" && !Array.isArray(v)),
        (value) => expectRefused(() => upstreamDeadlines(value as never), "Response", value),
      ),
    );
    run(
      fc.property(
        fc.object({ maxDepth: 1 }),
        (value) => void expect(upstreamDeadlines(value as never)).toBeUndefined(),
      ),
    );
  });
});

describe("fuzz: clocks", () => {
  it("createVirtualClock refuses bad start/wallStart, unknown keys and non-objects", () => {
    run(
      fc.property(
        fc.constantFrom("start", "wallStart"),
        fc.oneof(
          notANumber,
          notFinite,
          tooLarge,
          tooLarge.map((v) => -v),
        ),
        (field, value) => {
          expectRefused(() => createVirtualClock({ [field]: value } as never), field, value);
        },
      ),
    );
    run(
      fc.property(unknownKey(["start", "wallStart"]), (key) =>
        expectRefused(() => createVirtualClock(withKey({}, key, 1) as never), `"${key}"`, key),
      ),
    );
    run(
      fc.property(
        notAnObject.filter((v) => v !== undefined),
        (options) => expectRefused(() => createVirtualClock(options as never), "options", options),
      ),
    );
    run(
      fc.property(
        fc.record(
          {
            start: fc.double({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, noNaN: true }),
            wallStart: fc.double({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, noNaN: true }),
          },
          { requiredKeys: [] },
        ),
        (options) => {
          const clock = createVirtualClock(options);
          expect(clock.now()).toBe(options.start ?? 0);
        },
      ),
    );
  });

  it("advance, advanceTo and sleep reject bad durations and times, and time does not move", async () => {
    const clock = createVirtualClock({ start: 100 });
    await runAsync(
      fc.asyncProperty(fc.oneof(notANumber, negative, notFinite), async (ms) => {
        await expectRejected(() => clock.advance(ms as never), "ms", ms);
        await expectRejected(() => clock.sleep(ms as never), "ms", ms);
        await expectRejected(() => clock.advanceTo(ms as never), /time|move back/, ms);
        expect(clock.now()).toBe(100);
        expect(clock.pendingTimers).toBe(0);
      }),
    );
    await runAsync(
      fc.asyncProperty(tooLarge, async (ms) => {
        await expectRejected(() => clock.advance(ms), "ms", ms);
        await expectRejected(() => clock.sleep(ms), "ms", ms);
        expect(clock.now()).toBe(100);
      }),
    );
    await runAsync(
      fc.asyncProperty(fc.double({ min: 0, max: 1e6, noNaN: true }), async (ms) => {
        const before = clock.now();
        await clock.advance(ms);
        expect(clock.now()).toBe(before + ms);
      }),
    );
  });

  it("isolatedClock and deadlineDebugCounters refuse what is not a Clock", () => {
    run(
      fc.property(
        notAClock.filter((v) => v !== undefined),
        (value) => expectRefused(() => isolatedClock(value as never), "base", value),
      ),
    );
    run(
      fc.property(
        notAClock.filter((v) => v !== undefined),
        (value) => expectRefused(() => deadlineDebugCounters(value as never), "clock", value),
      ),
    );
    const clock: Clock = createVirtualClock();
    expect(isolatedClock(clock).now()).toBe(0);
    expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
  });
});

describe("fuzz: TimeoutError, isTimeoutError and the default reporters", () => {
  const validDetails = fc.record({
    subject: fc.string(),
    direction: fc.constantFrom("inbound" as const, "outbound" as const, null),
    limit: fc.constantFrom("idle" as const, "minRate" as const, "total" as const, "handler" as const),
    limitValue: fc.double({ min: 0, max: 1e15, noNaN: true }),
    bytes: fc.nat(),
    elapsed: fc.double({ min: 0, max: 1e12, noNaN: true }),
    waited: fc.double({ min: 0, max: 1e12, noNaN: true }),
    idleFor: fc.double({ min: 0, max: 1e12, noNaN: true }),
    rate: fc.double({ min: 0, max: 1e12, noNaN: true }),
    grace: fc.option(fc.double({ min: 0, max: 1e9, noNaN: true }), { nil: undefined }),
  });
  const NUMERIC = ["limitValue", "bytes", "elapsed", "waited", "idleFor", "rate", "grace"] as const;

  it("valid details never throw and give a message and a stable code", () => {
    run(
      fc.property(validDetails, (details) => {
        const error = new TimeoutError(details);
        expect(error.message.length).toBeGreaterThan(0);
        expect(error.code).toMatch(/^ERR_DEADLINE_/);
        expect(isTimeoutError(error)).toBe(true);
      }),
    );
  });

  it("bad details are refused, naming the field", () => {
    run(
      fc.property(
        validDetails,
        fc.oneof(
          fc.tuple(fc.constantFrom(...NUMERIC), fc.oneof(notANumber, negative, notFinite)),
          fc.tuple(fc.constant("subject"), notAString),
          fc.tuple(
            fc.constant("direction"),
            fc.anything().filter((v) => v !== "inbound" && v !== "outbound" && v !== null),
          ),
          fc.tuple(
            fc.constant("limit"),
            fc.anything().filter((v) => !["idle", "minRate", "total", "handler"].includes(v as string)),
          ),
        ),
        (details, [field, value]) =>
          expectRefused(() => new TimeoutError({ ...details, [field]: value } as never), field, value),
      ),
    );
    run(
      fc.property(notAnObject, (details) =>
        expectRefused(() => new TimeoutError(details as never), "details", details),
      ),
    );
  });

  it("isTimeoutError never throws and says true only for TimeoutErrors", () => {
    run(
      fc.property(
        fc.anything({ withBoxedValues: true, withMap: true, withSet: true }),
        (value) => void expect(isTimeoutError(value)).toBe(false),
      ),
    );
  });

  it("defaultTimeoutResponse and defaultTimeoutReporter refuse what is not a TimeoutEvent", () => {
    run(
      fc.property(fc.oneof(notAnObject, fc.object({ maxDepth: 1 })), (event) => {
        expectRefused(() => defaultTimeoutResponse(event as never), "event", event);
        expectRefused(() => defaultTimeoutReporter(event as never), "event", event);
      }),
    );
    const error = new TimeoutError({
      subject: "s",
      direction: "inbound",
      limit: "idle",
      limitValue: 1,
      bytes: 0,
      elapsed: 1,
      waited: 1,
      idleFor: 1,
      rate: 0,
    });
    const event = {
      error,
      direction: "request",
      method: "GET",
      path: "/",
      limit: "idle",
      bytes: 0,
      elapsed: 1,
      rate: 0,
      afterHeaders: false,
    } as unknown as TimeoutEvent;
    expect(defaultTimeoutResponse(event).status).toBe(408);
  });
});

describe("fuzz: runtime adapters", () => {
  const adapters: [string, (options: unknown) => unknown][] = [
    ["stream-deadlines/node", (options) => createNodeListener(ok, options as never)],
    ["stream-deadlines/deno", (options) => withDenoDeadlines(ok, options as never)],
    ["stream-deadlines/bun", (options) => withBunDeadlines(ok, options as never)],
    ["stream-deadlines/workers", (options) => withWorkersDeadlines(ok, options as never)],
  ];

  it("every adapter refuses bad limits and options as withDeadlines does, unknown keys naming the adapter", () => {
    run(
      fc.property(
        fc.constantFrom(...adapters),
        fc.constantFrom("request", "response"),
        badLimit,
        ([, wrap], side, [field, value]) => {
          expectRefused(() => wrap({ [side]: { [field]: value } }), new RegExp(`${side}.*\\b${field}\\b`), value);
        },
      ),
    );
    run(
      fc.property(
        fc.constantFrom(...adapters),
        unknownKey([...WITH_DEADLINES_KEYS, "idleTimeout"]),
        ([name, wrap], key) => {
          expectRefused(
            () => wrap(withKey({}, key, 1)),
            new RegExp(`^${name}: unknown option "${key.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&")}"`),
            key,
          );
        },
      ),
    );
    run(
      fc.property(
        fc.constantFrom(...adapters),
        notAnObject.filter((v) => v !== undefined),
        ([, wrap], options) => expectRefused(() => wrap(options), "options", options),
      ),
    );
    run(
      fc.property(fc.constantFrom(...adapters), notAFunction, ([, wrap], policy) =>
        expectRefused(() => wrap({ policy }), "policy", policy),
      ),
    );
    run(
      fc.property(fc.constantFrom(...adapters), fc.oneof(notANumber, outOfRange), ([, wrap], handler) =>
        expectRefused(() => wrap({ handler }), "handler", handler),
      ),
    );
    run(
      fc.property(
        fc.constantFrom(...adapters),
        fc.oneof(
          fc.tuple(
            fc.constant("onTimeout"),
            notAFunction.filter((v) => v !== false),
          ),
          fc.tuple(fc.constant("timeoutResponse"), notAFunction),
          fc.tuple(fc.constant("clock"), notAClock),
          fc.tuple(
            fc.constant("timerScope"),
            fc.anything().filter((v) => v !== "shared" && v !== "request" && v !== undefined),
          ),
        ),
        ([, wrap], [field, value]) => expectRefused(() => wrap({ [field]: value }), field, value),
      ),
    );
  });

  it("valid options never throw", () => {
    run(
      fc.property(
        fc.constantFrom(...adapters),
        validLimits,
        validLimits,
        offOrPositive,
        ([, wrap], request, response, handler) => {
          expect(typeof wrap({ request, response, handler, onTimeout: false, policy: () => undefined })).toBe(
            "function",
          );
        },
      ),
    );
    run(fc.property(fc.integer({ min: 0, max: 255 }), (idleTimeout) => void withBunDeadlines(ok, { idleTimeout })));
  });

  it("nodeServerLimits: headersTimeout must be a positive whole number of ms", () => {
    run(
      fc.property(
        fc.oneof(
          notANumber,
          outOfRange,
          fc.constant(0),
          fc.double({ min: 0.001, max: 1e9, noNaN: true }).filter((v) => !Number.isInteger(v)),
        ),
        (value) => {
          expectRefused(() => nodeServerLimits(value as never), "headersTimeout", value);
        },
      ),
    );
    run(
      fc.property(
        fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        (ms) => void expect(nodeServerLimits(ms).headersTimeout).toBe(ms),
      ),
    );
  });

  it("Bun: idleTimeout must be a whole number of seconds from 0 to 255", () => {
    run(
      fc.property(
        fc.oneof(
          notANumber,
          outOfRange,
          fc.integer({ min: 256 }),
          fc.double({ min: 0.001, max: 255, noNaN: true }).filter((v) => !Number.isInteger(v)),
        ),
        (value) => {
          expectRefused(() => withBunDeadlines(ok, { idleTimeout: value as never }), "idleTimeout", value);
        },
      ),
    );
  });

  it("serve() of node, deno and bun reject bad server options naming the field, before anything listens", async () => {
    const notAPort = fc.oneof(
      notANumber,
      outOfRange,
      fc.integer({ min: 65536 }),
      fc.double({ min: 0.001, max: 65535, noNaN: true }).filter((v) => !Number.isInteger(v)),
    );
    const notAHostname = fc.oneof(
      notAString.filter((v) => v !== undefined),
      fc.constant(""),
    );
    const serves: [string, (options: unknown) => Promise<unknown>][] = [
      ["node", (options) => serveNode(ok, options as never)],
      ["deno", (options) => serveDeno(ok, options as never)],
      ["bun", (options) => serveBun(ok, options as never)],
    ];
    await runAsync(
      fc.asyncProperty(
        fc.constantFrom(...serves),
        fc.oneof(
          fc.tuple(fc.constant("port"), notAPort),
          fc.tuple(fc.constant("hostname"), notAHostname),
          fc.tuple(
            fc.constant("request"),
            badLimit.map(([f, v]) => ({ [f]: v })),
          ),
        ),
        async ([, serve], [field, value]) => expectRejected(() => serve({ [field]: value }), field, value),
      ),
    );
    await runAsync(
      fc.asyncProperty(
        fc.oneof(
          fc.tuple(
            fc.constant("http2"),
            fc.anything().filter((v) => typeof v !== "boolean" && v !== "h2c" && v !== undefined),
          ),
          fc.tuple(
            fc.constant("tls"),
            fc
              .anything()
              .filter(
                (v) =>
                  v !== undefined &&
                  !(
                    typeof v === "object" &&
                    v !== null &&
                    typeof (v as { key?: unknown }).key === "string" &&
                    typeof (v as { cert?: unknown }).cert === "string"
                  ),
              ),
          ),
          fc.tuple(fc.constant("headersTimeout"), fc.oneof(notANumber, outOfRange, fc.constant(0))),
        ),
        async ([field, value]) =>
          expectRejected(
            () => serveNode(ok, { [field]: value, ...(field === "headersTimeout" ? { http2: "h2c" } : {}) } as never),
            field,
            value,
          ),
      ),
    );
    await runAsync(
      fc.asyncProperty(
        fc.anything().filter((v) => v !== undefined && !(v instanceof AbortSignal)),
        async (signal) => expectRejected(() => serveDeno(ok, { signal } as never), "signal", signal),
      ),
    );
    await runAsync(
      fc.asyncProperty(
        notAnObject.filter((v) => v !== undefined),
        async (bunOptions) => expectRejected(() => serveBun(ok, { bunOptions } as never), "bunOptions", bunOptions),
      ),
    );
    await runAsync(
      fc.asyncProperty(
        fc.constantFrom(...serves),
        unknownKey([
          "port",
          "hostname",
          "http2",
          "tls",
          "headersTimeout",
          "signal",
          "bunOptions",
          "idleTimeout",
          ...WITH_DEADLINES_KEYS,
        ]),
        async ([name, serve], key) =>
          expectRejected(
            () => serve(withKey({}, key, 1)),
            new RegExp(
              `^stream-deadlines/${name}: serve: unknown option "${key.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&")}"`,
            ),
            key,
          ),
      ),
    );
  });
});
