import vm from "node:vm";
import { afterEach, describe, expect, it, vi } from "vitest";
import { withBunDeadlines, serve as serveBun } from "../adapters/bun.ts";
import { withDenoDeadlines } from "../adapters/deno.ts";
import { serve as serveNode } from "../adapters/node.ts";
import {
  type Clock,
  createVirtualClock,
  deadlineDebugCounters,
  deadlines,
  fetchWithDeadlines,
  globalTimersClock,
  guardInboundStream,
  guardOutboundStream,
  isolatedClock,
  MAX_TIMER_DELAY,
  systemClock,
  TimeoutError,
  upstreamDeadlines,
  type VirtualClock,
  withDeadlines,
} from "../src/index.ts";
import { scriptedSource } from "./support/scripted-streams.ts";

const never = () => new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }, { highWaterMark: 0 });
const HOUR = 3_600_000;

/** A producer that enqueues `chunks` (anything) and records its cancel reason. */
function producer(chunks: unknown[]) {
  const seen: { cancelReason?: unknown; cancelled: boolean } = { cancelled: false };
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (chunks.length === 0) controller.close();
        else controller.enqueue(chunks.shift() as Uint8Array);
      },
      cancel(reason) {
        seen.cancelled = true;
        seen.cancelReason = reason;
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, seen };
}

async function readAll(readable: ReadableStream<Uint8Array>): Promise<{ bytes: number; error: unknown }> {
  const reader = readable.getReader();
  let bytes = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { bytes, error: undefined };
      bytes += value.byteLength;
    }
  } catch (error) {
    return { bytes, error };
  }
}

/** A virtual clock whose wall clock (only) can be moved, as when the machine's clock is set. */
function jumpingWallClock(): { clock: Clock & Pick<VirtualClock, "advance">; jumpWall(ms: number): void } {
  const base = createVirtualClock({ wallStart: Date.UTC(2030, 0, 1) });
  let jump = 0;
  const clock = {
    now: base.now,
    wallNow: () => base.wallNow() + jump,
    setTimer: base.setTimer,
    clearTimer: base.clearTimer,
    afterTurn: base.afterTurn!,
    advance: base.advance,
  };
  return { clock, jumpWall: (ms) => void (jump += ms) };
}

// ---------------------------------------------------------------------------------------------

describe("chunks that are not bytes", () => {
  const otherRealmBytes = vm.runInNewContext("new Uint8Array([1, 2, 3])") as Uint8Array;
  const notBytes: [string, unknown, string][] = [
    ["a string", "text", "string"],
    ["a number", 42, "number"],
    ["a plain object", { length: 3 }, "Object"],
    ["an object without prototype", Object.create(null), "object"],
    ["null", null, "null"],
    ["undefined", undefined, "undefined"],
    ["an ArrayBuffer", new ArrayBuffer(4), "ArrayBuffer"],
    ["a Uint16Array", new Uint16Array(2), "Uint16Array"],
    ["an Int8Array", new Int8Array(2), "Int8Array"],
    ["a DataView", new DataView(new ArrayBuffer(2)), "DataView"],
    ["a Blob", new Blob(["x"]), "Blob"],
    [
      "an object whose constructor getter throws",
      Object.defineProperty({}, "constructor", {
        get: () => {
          throw new Error("hostile");
        },
      }),
      "object",
    ],
  ];

  for (const [guardName, guard] of [
    ["inbound", guardInboundStream],
    ["outbound", guardOutboundStream],
  ] as const) {
    for (const [what, chunk, kind] of notBytes) {
      it(`${guardName}: ${what} errors the stream with a TypeError and cancels the source with the same error`, async () => {
        const clock = createVirtualClock();
        const source = producer([new Uint8Array(5), chunk, new Uint8Array(5)]);
        const { readable, controller } = guard(source.stream, {
          clock,
          idle: 1000,
          total: 60_000,
          subject: "response body",
        });
        const result = await readAll(readable);
        expect(result.error).toBeInstanceOf(TypeError);
        expect((result.error as Error).message).toBe(`response body: chunks must be Uint8Array, got ${kind}`);
        expect(result.bytes).toBe(5); // the bytes before it went through
        expect(source.seen.cancelReason).toBe(result.error);
        expect(controller.state).toBe("errored");
        // Not a deadline: no TimeoutError, the signal stays quiet, nothing is left scheduled.
        expect(controller.error).toBeUndefined();
        expect(controller.signal.aborted).toBe(false);
        expect(deadlineDebugCounters(clock)).toMatchObject({ scheduledDeadlines: 0, timerArmed: false });
      });
    }

    it(`${guardName}: Uint8Array subclasses (Buffer) and Uint8Arrays of another realm are bytes`, async () => {
      const clock = createVirtualClock();
      const source = producer([Buffer.from("abc"), otherRealmBytes, new Uint8Array(4)]);
      const { readable, controller } = guard(source.stream, { clock });
      expect(await readAll(readable)).toEqual({ bytes: 10, error: undefined });
      expect(controller.state).toBe("closed");
    });
  }

  it("withDeadlines: a handler's body yielding a string fails after the headers, on both sides, with one TypeError", async () => {
    const clock = createVirtualClock();
    const events: unknown[] = [];
    const big = new Uint8Array(100 * 1024); // more than fits in memory unguarded: the body is guarded
    for (const chunks of [[big, "text"], ["text"]]) {
      const source = producer([...chunks]);
      const request = new Request("http://x/download");
      const wrapped = withDeadlines(() => new Response(source.stream, { headers: { "x-a": "1" } }), {
        clock,
        onTimeout: (e) => void events.push(e),
      });
      const response = (await wrapped(request)) as Response;
      expect([response.status, response.headers.get("x-a")]).toEqual([200, "1"]);
      const result = await readAll(response.body!);
      expect(result.error).toBeInstanceOf(TypeError);
      expect((result.error as Error).message).toBe("response body: chunks must be Uint8Array, got string");
      expect(source.seen.cancelReason).toBe(result.error);
      // The producer's own bug, not a deadline and not a disconnect: the request's signal stays quiet.
      expect(deadlines(request).signal.aborted).toBe(false);
      expect(deadlines(request).response.state).toBe("errored");
    }
    expect(events).toEqual([]);
    expect(deadlineDebugCounters(clock)).toMatchObject({ scheduledDeadlines: 0, timerArmed: false });
  });

  it("fetchWithDeadlines: an upstream body yielding a non-byte chunk errors the body and frees the upstream", async () => {
    const clock = createVirtualClock();
    const source = producer([new Uint8Array(3), 7]);
    const response = await fetchWithDeadlines("http://upstream/", {
      deadlines: { idle: 1000, clock, fetch: async () => new Response(source.stream) },
    });
    const result = await readAll(response.body!);
    expect((result.error as Error).message).toBe("upstream body: chunks must be Uint8Array, got number");
    expect(source.seen.cancelReason).toBe(result.error);
    expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
  });
});

describe("bodies already locked or used", () => {
  it("guarding a locked stream is a TypeError, and leaves the stream to its reader", async () => {
    for (const guard of [guardInboundStream, guardOutboundStream]) {
      const source = producer([new Uint8Array(2)]);
      const reader = source.stream.getReader();
      expect(() => guard(source.stream, { clock: createVirtualClock(), idle: 10 })).toThrow(/already locked/);
      expect((await reader.read()).value?.byteLength).toBe(2); // untouched
    }
  });

  it("a stream already partly read, closed or errored (but not locked) is guarded from where it is", async () => {
    const clock = createVirtualClock();
    const boom = new Error("reset");
    for (const guard of [guardInboundStream, guardOutboundStream]) {
      const partly = producer([new Uint8Array(1), new Uint8Array(2)]);
      const first = partly.stream.getReader();
      await first.read();
      first.releaseLock();
      expect(await readAll(guard(partly.stream, { clock, idle: 10 }).readable)).toEqual({ bytes: 2, error: undefined });
      const closed = guard(new ReadableStream<Uint8Array>({ start: (c) => c.close() }), { clock, idle: 10 });
      expect(await readAll(closed.readable)).toEqual({ bytes: 0, error: undefined });
      expect(closed.controller.state).toBe("closed");
      const errored = guard(new ReadableStream<Uint8Array>({ start: (c) => c.error(boom) }), { clock, idle: 10 });
      expect(await readAll(errored.readable)).toEqual({ bytes: 0, error: boom });
      expect(errored.controller.state).toBe("errored");
    }
    expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
  });

  it("withDeadlines: a Request whose body was already read, or is locked, reaches the handler as it is", async () => {
    const clock = createVirtualClock();
    const used = new Request("http://x/upload", { method: "POST", body: "hello" });
    await used.text();
    const locked = new Request("http://x/upload", { method: "POST", body: "hello" });
    locked.body!.getReader();
    for (const request of [used, locked]) {
      const wrapped = withDeadlines(
        async (r: Request) => {
          expect(r).toBe(request);
          expect(deadlines(r).request.state).toBe("closed"); // an inert controller: there is nothing to guard
          deadlines(r).request.set({ idle: 5 }); // validated, does nothing
          expect(() => deadlines(r).request.set({ idle: -5 })).toThrow(/request body limits: idle .*got -5/);
          const error = await r.text().catch((e: unknown) => e);
          return new Response(error instanceof TypeError ? "unusable" : "read");
        },
        { clock, onTimeout: false, request: { idle: 10 } },
      );
      const response = (await wrapped(request)) as Response;
      expect(await response.text()).toBe("unusable"); // the runtime's own TypeError, as without the wrapper
    }
    await clock.advance(1000);
    expect(deadlineDebugCounters(clock)).toMatchObject({ scheduledDeadlines: 0, timerArmed: false });
  });

  it("withDeadlines: a Response whose body is used or locked is passed through untouched", async () => {
    const clock = createVirtualClock();
    const used = new Response(new Uint8Array(100_000));
    await used.arrayBuffer();
    const locked = new Response(never());
    locked.body!.getReader();
    for (const response of [used, locked]) {
      const wrapped = withDeadlines(() => response, { clock, onTimeout: false, response: { idle: 10 } });
      expect(await wrapped(new Request("http://x/"))).toBe(response);
    }
    expect(deadlineDebugCounters(clock)).toMatchObject({ scheduledDeadlines: 0, timerArmed: false });
  });
});

describe("totals beyond the 2^31-1 ms a timer can take", () => {
  /** A virtual clock that records the delays the scheduler asks for. */
  function recordingClock() {
    const clock = createVirtualClock({ wallStart: Date.UTC(2030, 0, 1) });
    const delays: number[] = [];
    const recording: Clock = { ...clock, setTimer: (cb, ms) => (delays.push(ms), clock.setTimer(cb, ms)) };
    return { clock, recording, delays };
  }

  const enormous: [string, number | Date][] = [
    ["1e12 ms (31 years)", 1e12],
    ["Number.MAX_SAFE_INTEGER ms", Number.MAX_SAFE_INTEGER],
    ["a Date in the year 9999", new Date("9999-12-31T23:59:59Z")],
  ];
  for (const [what, total] of enormous) {
    it(`${what}: never fires early on the virtual clock, and no timer is asked for more than 2^31-1 ms`, async () => {
      const { clock, recording, delays } = recordingClock();
      const { readable, controller } = guardInboundStream(never(), { clock: recording, total });
      readable
        .getReader()
        .read()
        .catch(() => {});
      await clock.advance(20 * MAX_TIMER_DELAY);
      expect(controller.state).toBe("active");
      expect(delays.length).toBeGreaterThan(1); // re-armed
      expect(Math.max(...delays)).toBeLessThanOrEqual(MAX_TIMER_DELAY);
      expect(controller.stats.remaining).toBeGreaterThan(1e11);
    });
  }

  it("1e12 ms fires exactly at its time after ~466 re-arms (handler and response total too)", async () => {
    const clock = createVirtualClock();
    const { readable, controller } = guardInboundStream(never(), { clock, total: 1e12 });
    readable
      .getReader()
      .read()
      .catch(() => {});
    let handlerAnswered = false;
    const wrapped = withDeadlines(async () => new Promise<Response>(() => {}), {
      clock,
      onTimeout: false,
      handler: 1e12 + 5,
    });
    const pending = wrapped(new Request("http://x/")).then((r) => ((handlerAnswered = true), r as Response));
    await clock.advance(1e12 - 1);
    expect(controller.state).toBe("active");
    await clock.advance(1);
    expect(controller.error).toMatchObject({ limit: "total", elapsed: 1e12 });
    await clock.advance(4);
    expect(handlerAnswered).toBe(false);
    await clock.advance(1);
    expect((await pending).status).toBe(503);
  });

  describe("on the global timers (vitest fake timers mimic Node: a delay over 2^31-1 fires after 1 ms)", () => {
    afterEach(() => void vi.useRealTimers());

    it("the platform overflows, the scheduler does not", async () => {
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance", "Date"] });
      let raw = false;
      setTimeout(() => (raw = true), 2 ** 31);
      await vi.advanceTimersByTimeAsync(1);
      expect(raw).toBe(true); // what an unclamped setTimeout does
      const { readable, controller } = guardInboundStream(never(), { clock: globalTimersClock, total: 1e12 });
      readable
        .getReader()
        .read()
        .catch(() => {});
      await vi.advanceTimersByTimeAsync(2 ** 31);
      expect(controller.state).toBe("active");
      await vi.advanceTimersByTimeAsync(1e12 - 2 ** 31 - 1);
      expect(controller.state).toBe("active");
      await vi.advanceTimersByTimeAsync(1);
      expect(controller.error?.limit).toBe("total");
    });

    it("systemClock clamps what it hands to setTimeout", () => {
      const spy = vi.spyOn(globalThis, "setTimeout");
      const handle = systemClock.setTimer(() => {}, 1e12);
      systemClock.clearTimer(handle);
      expect(spy.mock.calls[0]![1]).toBe(MAX_TIMER_DELAY);
      spy.mockRestore();
    });
  });
});

describe("clocks that jump (the machine's wall clock is set)", () => {
  afterEach(() => void vi.useRealTimers());

  it("systemClock reads a monotonic clock: Date.now jumping does not move it", () => {
    const before = systemClock.now();
    const jumped = Date.now() + 10 * HOUR;
    const spy = vi.spyOn(Date, "now").mockReturnValue(jumped);
    try {
      expect(systemClock.now() - before).toBeLessThan(HOUR);
      expect(systemClock.wallNow()).toBe(jumped); // only Date totals are read against the wall clock
    } finally {
      spy.mockRestore();
    }
  });

  for (const jump of [HOUR, -HOUR]) {
    it(`number limits ignore a wall clock jump of ${jump > 0 ? "+" : "-"}1 h (global timers, fake)`, async () => {
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance", "Date"] });
      const idle = guardInboundStream(never(), { clock: globalTimersClock, idle: 5000 });
      idle.readable
        .getReader()
        .read()
        .catch(() => {});
      const total = guardOutboundStream(never(), { clock: globalTimersClock, total: 8000 });
      let handlerStatus: number | undefined;
      const wrapped = withDeadlines(async () => new Promise<Response>(() => {}), {
        clock: globalTimersClock,
        onTimeout: false,
        handler: 6000,
      });
      void wrapped(new Request("http://x/")).then((r) => (handlerStatus = (r as Response).status));
      await vi.advanceTimersByTimeAsync(1000);
      vi.setSystemTime(Date.now() + jump);
      await vi.advanceTimersByTimeAsync(3999);
      expect([idle.controller.state, total.controller.state, handlerStatus]).toEqual(["active", "active", undefined]);
      await vi.advanceTimersByTimeAsync(1);
      expect(idle.controller.error).toMatchObject({ limit: "idle", idleFor: 5000 });
      await vi.advanceTimersByTimeAsync(1000);
      expect(handlerStatus).toBe(503);
      await vi.advanceTimersByTimeAsync(2000);
      expect(total.controller.error).toMatchObject({ limit: "total", elapsed: 8000 });
    });
  }

  it("a Date total is mapped onto the monotonic clock when set: a later jump does not move it; set() again to re-read it", async () => {
    for (const jump of [HOUR, -HOUR]) {
      const { clock, jumpWall } = jumpingWallClock();
      const at = new Date(clock.wallNow() + 10_000);
      const { readable, controller } = guardInboundStream(never(), { clock, total: at });
      readable
        .getReader()
        .read()
        .catch(() => {});
      await clock.advance(1000);
      jumpWall(jump);
      await clock.advance(8999);
      expect(controller.state).toBe("active"); // neither at once (+1 h) nor an hour late (-1 h)
      await clock.advance(1);
      expect(controller.error).toMatchObject({ limit: "total", elapsed: 10_000, limitValue: 10_000 });
    }
    // Re-setting the same Date after a jump maps it against the wall clock as it is now.
    const { clock, jumpWall } = jumpingWallClock();
    const at = new Date(clock.wallNow() + 10_000);
    const { controller } = guardInboundStream(never(), { clock, total: at });
    jumpWall(HOUR);
    controller.set({ total: at });
    expect(controller.error).toMatchObject({ limit: "total", limitValue: 0 }); // already past: fires inside set()
  });

  it("the same with vitest fake timers and globalTimersClock", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance", "Date"] });
    const { readable, controller } = guardInboundStream(never(), {
      clock: globalTimersClock,
      total: new Date(Date.now() + 10_000),
    });
    readable
      .getReader()
      .read()
      .catch(() => {});
    await vi.advanceTimersByTimeAsync(1000);
    vi.setSystemTime(Date.now() + HOUR);
    await vi.advanceTimersByTimeAsync(8999);
    expect(controller.state).toBe("active");
    await vi.advanceTimersByTimeAsync(1);
    expect(controller.error?.limit).toBe("total");
  });
});

// ---------------------------------------------------------------------------------------------

describe("regressions: each of these failed before its fix", () => {
  it("a Date total already past fails the first read, before any byte (it used to fire inside the constructor, before the stream was attached: reads hung)", async () => {
    for (const guard of [guardInboundStream, guardOutboundStream]) {
      const clock = createVirtualClock();
      const source = producer([new Uint8Array(1)]);
      const { readable, controller } = guard(source.stream, { clock, total: new Date(0) });
      expect(controller.state).toBe("active"); // nobody to tell yet: it fires once the stream is read (or on the next timer tick)
      const result = await readAll(readable);
      expect(controller.error).toMatchObject({ limit: "total", limitValue: 0, elapsed: 0 });
      expect(result).toEqual({ bytes: 0, error: controller.error });
      expect(source.seen.cancelReason).toBe(controller.error);
      // fetchWithDeadlines: no request goes out.
      let fetched = false;
      const fetch = async () => ((fetched = true), new Response("x"));
      await expect(
        fetchWithDeadlines("http://u/", { deadlines: { clock, fetch, total: new Date(0) } }),
      ).rejects.toMatchObject({ limit: "total" });
      expect(fetched).toBe(false);
      // Unread, it fires on the scheduler's next tick.
      const unread = guard(never(), { clock, total: new Date(0) });
      await clock.advance(0);
      expect(unread.controller.error?.limit).toBe("total");
    }
  });

  it("a total shorter than the time since the request arrived, or a past Date, for withDeadlines' request body: the handler's read fails, 408", async () => {
    const clock = createVirtualClock({ start: 5000 });
    const source = scriptedSource(clock, [{ at: 60_000, bytes: 1 }]);
    const request = new Request("http://x/upload", {
      method: "POST",
      body: source.stream,
      duplex: "half",
    } as RequestInit);
    const events: { direction: string }[] = [];
    const wrapped = withDeadlines(async (r: Request) => new Response(await r.text()), {
      clock,
      onTimeout: (e) => void events.push(e),
      request: { total: new Date(0) },
    });
    const pending = wrapped(request);
    await clock.advance(0);
    expect(((await pending) as Response).status).toBe(408);
    expect(events).toMatchObject([{ direction: "request" }]); // not mislabelled "response"
  });

  it("a response total or handler deadline already past in the handler's synchronous part answers 503 (the request used to hang)", async () => {
    const clock = createVirtualClock({ start: 1000 });
    const cases: ((request: Request) => void)[] = [
      (request) => deadlines(request).response.set({ total: new Date(0) }),
      // As a handler that works 5 ms synchronously, then sets 1 ms (time stands still on a virtual clock):
      (request) => deadlines(request).setHandlerTimeout(1e-14), // 1000 + 1e-14 === 1000: due already
    ];
    for (const expire of cases) {
      const body = producer([new Uint8Array(1)]);
      const asyncHandler = withDeadlines(
        async (request: Request) => {
          expire(request);
          await clock.sleep(10);
          return new Response(body.stream);
        },
        { clock, onTimeout: false },
      );
      const pending = asyncHandler(new Request("http://x/"));
      await clock.advance(100);
      expect(((await Promise.race([pending, "hung"])) as Response).status).toBe(503);
      expect(body.seen.cancelled).toBe(true); // the late Response's body is cancelled
      const syncHandler = withDeadlines(
        (request: Request) => {
          expire(request);
          return new Response("late");
        },
        { clock, onTimeout: false },
      );
      expect(((await syncHandler(new Request("http://x/"))) as Response).status).toBe(503); // used to be the handler's 200 with no body
      const throwing = withDeadlines(
        (request: Request) => {
          expire(request);
          throw new Error("after the answer");
        },
        { clock, onTimeout: false },
      );
      expect(((await throwing(new Request("http://x/"))) as Response).status).toBe(503);
    }
  });

  it("a minRate or grace so large that minRate × grace overflowed is refused (the rate limit used to never fire)", () => {
    expect(() => guardInboundStream(never(), { minRate: 1e308 })).toThrow(
      /minRate must be at most Number.MAX_SAFE_INTEGER/,
    );
    expect(() => guardInboundStream(never(), { minRate: 1000, grace: 1e306 })).toThrow(
      /grace .*at most Number.MAX_SAFE_INTEGER/,
    );
    expect(() => withDeadlines(() => new Response(), { handler: 1e300 })).toThrow(
      /handler .*at most Number.MAX_SAFE_INTEGER/,
    );
  });

  it("a policy field given as undefined keeps the default (it used to turn the default idle off)", async () => {
    const clock = createVirtualClock();
    const source = scriptedSource(clock, [{ at: 60_000, bytes: 1 }]);
    const request = new Request("http://x/upload", {
      method: "POST",
      body: source.stream,
      duplex: "half",
    } as RequestInit);
    const wrapped = withDeadlines(async (r: Request) => new Response(await r.text()), {
      clock,
      onTimeout: false,
      request: { idle: 1000 },
      policy: () => ({ request: { idle: undefined, total: 30_000 } }),
    });
    const pending = wrapped(request);
    await clock.advance(1000);
    expect(((await pending) as Response).status).toBe(408);
    expect(deadlines(request).request.limits).toMatchObject({ idle: 1000, total: 30_000 });
  });

  it("withDeadlines options that used to be silent defaults or crash later are refused at wrap time", () => {
    const ok = () => new Response();
    expect(() => withDeadlines(ok, { request: null as never })).toThrow(/request: limits must be an object .*got null/); // used to give the defaults
    expect(() => withDeadlines(ok, { response: null as never })).toThrow(/response/);
    expect(() => withDeadlines(ok, { inMemoryResponse: null as never })).toThrow(/inMemoryResponse must be a function/); // used to give the default
    expect(() => withDeadlines(ok, { clock: "system" as never })).toThrow(/clock must be a Clock/); // used to crash on the first request
    expect(() => withDeadlines(ok, { clock: { now: () => 0 } as never })).toThrow(
      /without wallNow, setTimer, clearTimer/,
    );
    expect(() => withDeadlines(ok, [] as never)).toThrow(/options must be an object, got an array/);
    expect(() => withDeadlines(ok, { timerScope: { toString: 0 } as never })).toThrow(
      /timerScope must be "shared" or "request", got object/,
    ); // used to throw "Cannot convert object to primitive value"
  });

  it("a guard's clock must be a whole Clock (one without clearTimer used to crash later, in the scheduler)", () => {
    expect(() => guardInboundStream(never(), { clock: { now: () => 0, setTimer: () => 1 } as never, idle: 5 })).toThrow(
      /clock must be a Clock .*without wallNow, clearTimer/,
    );
    expect(() => guardOutboundStream(never(), { clock: { ...createVirtualClock(), afterTurn: 5 } as never })).toThrow(
      /afterTurn is not a function/,
    );
  });

  it("fetchWithDeadlines: bad options reject at the call and leave nothing armed", async () => {
    const clock = createVirtualClock();
    const fetch = async () => new Response("x");
    await expect(fetchWithDeadlines("http://u/", null as never)).rejects.toThrow(/init must be an object/);
    await expect(fetchWithDeadlines("http://u/", [] as never)).rejects.toThrow(/init must be an object .*array/); // used to call the real fetch
    await expect(
      fetchWithDeadlines("http://u/", { deadlines: { clock, fetch, onTimeout: 5 as never } }),
    ).rejects.toThrow(/deadlines.onTimeout must be a function/);
    await expect(fetchWithDeadlines("http://u/", { deadlines: { clock, fetch, subject: 5 as never } })).rejects.toThrow(
      /deadlines.subject must be a string/,
    );
    await expect(fetchWithDeadlines("http://u/", { deadlines: { clock, fetch, idel: 5 } as never })).rejects.toThrow(
      /unknown deadlines option "idel" \(expected idle, minRate, grace, total, subject, clock, onTimeout, fetch\)/,
    );
    await expect(
      fetchWithDeadlines("http://u/", { signal: "x" as never, deadlines: { clock, fetch, idle: 1000 } }),
    ).rejects.toThrow(/init.signal must be an AbortSignal/);
    // The bad signal used to leave the idle deadline armed: it fired a minute later, reporting a timeout.
    expect(deadlineDebugCounters(clock)).toMatchObject({ scheduledDeadlines: 0, timerArmed: false });
  });

  it("virtual clocks refuse what used to corrupt them", async () => {
    expect(() => createVirtualClock({ start: "5" as never })).toThrow(/start must be a number/); // time became a string
    expect(() => createVirtualClock(null as never)).toThrow(/options must be an object/);
    expect(() => createVirtualClock({ wallstart: 1 } as never)).toThrow(/unknown option "wallstart"/);
    const clock = createVirtualClock();
    await expect(clock.advance("5" as never)).rejects.toThrow(/ms must be a number/); // now() became "05"
    await expect(clock.sleep(NaN)).rejects.toThrow(/ms must be a finite number/); // a timer that never ran
    expect([clock.now(), clock.pendingTimers]).toEqual([0, 0]);
  });

  it("TimeoutError, isolatedClock, deadlineDebugCounters, upstreamDeadlines and the default reporters name what is wrong", () => {
    const details = {
      subject: "s",
      direction: "inbound" as const,
      limit: "idle" as const,
      limitValue: 1,
      bytes: 0,
      elapsed: 0,
      waited: 0,
      idleFor: 0,
      rate: 0,
    };
    expect(() => new TimeoutError({ ...details, limit: "nope" as never })).toThrow(
      /limit must be "idle", "minRate", "total" or "handler", got "nope"/,
    ); // message "" and code undefined
    expect(() => new TimeoutError({ ...details, bytes: -1 })).toThrow(RangeError);
    expect(() => new TimeoutError(null as never)).toThrow(/details must be an object/);
    expect(() => isolatedClock(null as never)).toThrow(/base must be a Clock/);
    expect(() => deadlineDebugCounters("x" as never)).toThrow(/clock must be a Clock/); // "Invalid value used as weak map key"
    expect(() => upstreamDeadlines(null as never)).toThrow(/expected a Response, got null/);
  });

  it("a timeoutResponse that throws or returns no Response: the client still gets the default answer, and the mistake is reported", async () => {
    const clock = createVirtualClock();
    const reported: unknown[] = [];
    const queue = vi.spyOn(globalThis, "queueMicrotask").mockImplementation((callback) => {
      try {
        callback();
      } catch (error) {
        reported.push(error);
      }
    });
    try {
      for (const timeoutResponse of [
        () => "nope" as never,
        () => {
          throw new Error("template missing");
        },
      ]) {
        const wrapped = withDeadlines(() => new Promise<Response>(() => {}), {
          clock,
          onTimeout: false,
          handler: 100,
          timeoutResponse,
        });
        const pending = wrapped(new Request("http://x/"));
        await clock.advance(100);
        expect(((await Promise.race([pending, "hung"])) as Response).status).toBe(503); // used to hang
      }
    } finally {
      queue.mockRestore();
    }
    expect(reported.map((e) => (e as Error).message)).toEqual([
      "withDeadlines: timeoutResponse must return a Response, got string",
      "template missing",
    ]);
  });

  it("adapters: options that are not objects, unknown keys and bad server options name the adapter and the field", async () => {
    const ok = () => new Response();
    expect(() => withDenoDeadlines(ok, null as never)).toThrow(
      /stream-deadlines\/deno: options must be an object, got null/,
    ); // "Cannot read properties of null"
    expect(() => withDenoDeadlines(ok, { timeoutResponse: null as never })).toThrow(
      /timeoutResponse must be a function/,
    ); // used to give the default
    expect(() => withBunDeadlines(ok, { idleTimeot: 5 } as never)).toThrow(
      /stream-deadlines\/bun: unknown option "idleTimeot" \(expected idleTimeout, request/,
    );
    expect(() => withBunDeadlines(ok, { idleTimeout: "10" as never })).toThrow(TypeError);
    await expect(serveNode(ok, { http2: "yes" as never })).rejects.toThrow(/http2 must be true, false or "h2c"/); // used to mean true
    await expect(serveNode(ok, { tls: null as never })).rejects.toThrow(/tls must be \{ key, cert \}/); // used to start HTTPS without a certificate
    await expect(serveNode(ok, { http2: "h2c", headersTimeout: -1 })).rejects.toThrow(/headersTimeout/); // used to be ignored for HTTP/2
    await expect(serveNode(ok, { port: 70_000 })).rejects.toThrow(/port must be a whole number from 0 to 65535/);
    await expect(serveNode(ok, { prot: 80 } as never)).rejects.toThrow(
      /stream-deadlines\/node: serve: unknown option "prot" \(expected port, hostname, http2, tls, headersTimeout, request/,
    );
    await expect(serveBun(ok, { bunOptions: null as never })).rejects.toThrow(/bunOptions must be an object/); // used to throw after Bun.serve had started
  });
});
