import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type Clock,
  createVirtualClock,
  deadlineDebugCounters,
  globalTimersClock,
  guardInboundStream,
  guardOutboundStream,
} from "../src/index.ts";
import { DeadlineScheduler, type ScheduledEntry } from "../src/engine/scheduler.ts";

/** A virtual clock that counts native-timer arms. */
function countingClock() {
  const clock = createVirtualClock();
  let arms = 0;
  const counted: Clock = {
    now: clock.now,
    wallNow: clock.wallNow,
    setTimer: (cb, ms) => (arms++, clock.setTimer(cb, ms)),
    clearTimer: clock.clearTimer,
  };
  return { clock, counted, arms: () => arms };
}

const neverEnding = () => new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }, { highWaterMark: 0 });

describe("the shared scheduler", () => {
  it("keeps one native timer for many guarded streams", async () => {
    const clock = createVirtualClock();
    const guards = Array.from({ length: 1000 }, (_, i) => guardInboundStream(neverEnding(), { clock, idle: 1000 + i }));
    const reads = guards.map((g) =>
      g.readable
        .getReader()
        .read()
        .catch(() => "failed"),
    );
    await clock.settle();
    expect(clock.pendingTimers).toBe(1);
    expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(1000);
    await clock.advance(2000);
    expect(await Promise.all(reads)).toEqual(Array(1000).fill("failed"));
    // Each fired exactly at its own due time, in one sweep per distinct time at most.
    expect(guards.map((g) => g.controller.error?.idleFor)).toEqual(guards.map((_, i) => 1000 + i));
    expect(deadlineDebugCounters(clock)).toMatchObject({ scheduledDeadlines: 0, timerArmed: false });
  });

  it("arms no timer per chunk: progress only moves deadlines later, lazily", async () => {
    const { clock, counted, arms } = countingClock();
    let sent = 0;
    const source = new ReadableStream<Uint8Array>(
      {
        pull(c) {
          if (sent++ === 10_000) c.close();
          else c.enqueue(new Uint8Array(16));
        },
      },
      { highWaterMark: 0 },
    );
    const { readable, controller } = guardInboundStream(source, {
      clock: counted,
      idle: 10_000,
      minRate: 1,
      total: 1e9,
    });
    const reader = readable.getReader();
    for (let i = 0; i < 10_000; i++) {
      await reader.read();
      if (i % 1000 === 0) await clock.advance(1); // time moves while data flows
    }
    expect(arms()).toBeLessThanOrEqual(2);
    expect(controller.state).toBe("active");
  });

  it("never fires early when the native timer wakes before the due time", () => {
    let now = 0;
    let pending: (() => void) | undefined;
    const clock: Clock = {
      now: () => now,
      wallNow: () => now,
      setTimer: (cb) => ((pending = cb), 1),
      clearTimer: () => (pending = undefined),
    };
    const scheduler = new DeadlineScheduler(clock);
    const checks: number[] = [];
    const entry: ScheduledEntry = {
      heapIndex: -1,
      scheduledAt: Infinity,
      checkDue: (t) => (checks.push(t), t >= 100 ? Infinity : 100),
    };
    scheduler.schedule(entry, 100);
    now = 99.4; // the platform timer fired 0.6 ms early
    pending!();
    expect(scheduler.size).toBe(1); // looked, not due, re-armed
    now = 100;
    pending!();
    expect(checks).toEqual([99.4, 100]);
    expect(scheduler.size).toBe(0);
    expect(scheduler.armed).toBe(false);
  });

  it("a mass expiry is fired in tasks of at most 32, the rest at once in the next tasks, in due order", () => {
    let now = 0;
    let pending: (() => void) | undefined;
    const delays: number[] = [];
    const clock: Clock = {
      now: () => now,
      wallNow: () => now,
      setTimer: (cb, ms) => ((pending = cb), delays.push(ms), 1),
      clearTimer: () => (pending = undefined),
    };
    const scheduler = new DeadlineScheduler(clock);
    const fired: number[] = [];
    for (let i = 0; i < 100; i++)
      scheduler.schedule(
        { heapIndex: -1, scheduledAt: Infinity, checkDue: () => (fired.push(i), Infinity) },
        10 + i / 100,
      );
    now = 11;
    const perTask: number[] = [];
    while (pending !== undefined) {
      const run = pending;
      pending = undefined;
      const before = fired.length;
      run();
      perTask.push(fired.length - before);
    }
    // One task firing thousands blocks the event loop (measured: bench/scale/run-scale.ts); 32 cuts take ~3 ms.
    expect(perTask).toEqual([32, 32, 32, 4]);
    expect(delays.slice(1)).toEqual([0, 0, 0]);
    expect(fired).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it("a throwing callback during a sweep does not strand the other deadlines", () => {
    let now = 0;
    let pending: (() => void) | undefined;
    const clock: Clock = {
      now: () => now,
      wallNow: () => now,
      setTimer: (cb) => ((pending = cb), 1),
      clearTimer: () => (pending = undefined),
    };
    const scheduler = new DeadlineScheduler(clock);
    const fired: string[] = [];
    const reported: unknown[] = [];
    const original = globalThis.reportError;
    globalThis.reportError = (e: unknown) => void reported.push(e);
    try {
      scheduler.schedule(
        {
          heapIndex: -1,
          scheduledAt: Infinity,
          checkDue: () => {
            throw new Error("listener blew up");
          },
        },
        10,
      );
      scheduler.schedule({ heapIndex: -1, scheduledAt: Infinity, checkDue: () => (fired.push("b"), Infinity) }, 10);
      now = 10;
      pending!();
    } finally {
      globalThis.reportError = original;
    }
    expect(fired).toEqual(["b"]);
    expect(reported).toHaveLength(1);
  });
});

describe("the system clock", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("globalTimersClock is driven by vitest fake timers: one tick call moves everything", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance", "Date"] });
    const source = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }, { highWaterMark: 0 });
    const { readable, controller } = guardOutboundStream(
      new ReadableStream({
        start: (c) => {
          c.enqueue(new Uint8Array(1));
          c.enqueue(new Uint8Array(1));
        },
      }),
      { idle: 5000, clock: globalTimersClock },
    );
    const inbound = guardInboundStream(source, { idle: 3000, clock: globalTimersClock });
    const reader = readable.getReader();
    await reader.read(); // take one; the read-ahead chunk now waits for us
    const pendingRead = inbound.readable
      .getReader()
      .read()
      .catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(2999);
    expect(inbound.controller.state).toBe("active");
    await vi.advanceTimersByTimeAsync(1);
    expect(await pendingRead).toBe(inbound.controller.error);
    await vi.advanceTimersByTimeAsync(2000);
    expect(controller.error?.limit).toBe("idle");
    expect(globalTimersClock.now()).toBe(5000); // fake performance.now()
  });

  it("does not keep a process alive on its own", () => {
    // A child with a guarded stream waiting under a 60 s idle limit must still exit at once.
    const script = `
      import { guardInboundStream } from ${JSON.stringify(new URL("../src/index.ts", import.meta.url).pathname)};
      const { readable } = guardInboundStream(new ReadableStream({ pull: () => new Promise(() => {}) }, { highWaterMark: 0 }), { idle: 60000, total: 3600000 });
      readable.getReader().read();
      console.log("armed");
    `;
    const started = Date.now();
    const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(child.stdout.trim()).toBe("armed");
    expect(child.status).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000); // far below the 60 s limit that was armed
  });
});
