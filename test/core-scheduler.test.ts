import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type Clock,
  createVirtualClock,
  deadlineDebugCounters,
  globalTimersClock,
  guardInboundStream,
  guardOutboundStream,
  TimeoutError,
  withDeadlines,
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

describe("a stall of our own event loop is not charged to the peer", () => {
  /** An inbound guard whose source the test feeds by hand, with one read pending. */
  function pendingRead(limits: { idle?: number; minRate?: number; grace?: number; total?: number }) {
    const clock = createVirtualClock();
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    const source = new ReadableStream<Uint8Array>({ start: (c) => void (feed = c) }, { highWaterMark: 0 });
    const guard = guardInboundStream(source, { clock, ...limits });
    const reader = guard.readable.getReader();
    const read = reader.read().catch((error: unknown) => error);
    return { clock, feed, guard, reader, read };
  }

  for (const limits of [{ idle: 1000 }, { minRate: 1000, grace: 1000 }]) {
    const limit = Object.keys(limits)[0]!;
    it(`${limit}: bytes that queued during a 3 s stall are read before the deadline is judged`, async () => {
      const { clock, feed, guard, read } = pendingRead(limits);
      const allBefore = deadlineDebugCounters().allStalledMs;
      await clock.advance(500);
      // The loop blocks from 500 ms to 3.5 s: the timer due at 1 s wakes 2.5 s late.
      await clock.stall(3000);
      expect(guard.controller.state).toBe("active");
      expect(deadlineDebugCounters(clock).stalledMs).toBe(2400); // late by 2.5 s, less the 100 ms tolerance
      expect(deadlineDebugCounters().allStalledMs - allBefore).toBe(2400); // over every clock
      // The I/O that queued during the stall runs before the deferred sweep.
      feed.enqueue(new Uint8Array(2000));
      expect(await read).toMatchObject({ done: false });
      await clock.advance(1);
      expect(guard.controller.state).toBe("active");
    });

    it(`${limit}: a peer that stayed silent is still cut, charged the 100 ms tolerance of the stall`, async () => {
      const { clock, guard, read } = pendingRead(limits);
      await clock.advance(500);
      await clock.stall(3000);
      expect(guard.controller.state).toBe("active"); // the sweep waits one timer task
      await clock.advance(0);
      expect(await read).toBeInstanceOf(TimeoutError);
      // Blamed: 3.5 s of wall time less the 2.4 s forgiven.
      expect(guard.controller.error).toMatchObject({ limit, waited: 1100, elapsed: 3500 });
    });
  }

  it("a stall inside a long idle wait charges the peer at most the heartbeat and the tolerance (1.1 s)", async () => {
    const { clock, guard } = pendingRead({ idle: 10_000 });
    await clock.advance(500);
    await clock.stall(5000); // the heartbeat due at 1 s wakes 4.5 s late
    await clock.advance(0);
    expect(deadlineDebugCounters(clock).stalledMs).toBe(4400);
    expect(guard.controller.stats).toMatchObject({ waiting: true, idleFor: 1100 }); // 500 before + 600 of the stall
  });

  it("the handler deadline does not count a stall during a read of the upload either (it was no handler time)", async () => {
    const clock = createVirtualClock();
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (feed = c) }, { highWaterMark: 0 });
    const handler = withDeadlines(
      async (request: Request) => {
        const text = await request.text();
        await clock.sleep(100); // the handler's own work, once the upload is in
        return new Response(text);
      },
      {
        clock,
        handler: 500,
        request: { idle: 1000 },
        onTimeout: false,
      },
    );
    const answer = handler(new Request("http://x/", { method: "POST", body, duplex: "half" } as RequestInit));
    await clock.advance(100);
    await clock.stall(2000);
    feed.enqueue(new TextEncoder().encode("after the stall"));
    feed.close();
    await clock.advance(200);
    const response = (await answer) as Response;
    expect([response.status, await response.text()]).toEqual([200, "after the stall"]);
  });

  it("outbound too: a chunk left waiting across a stall is taken before the idle deadline is judged", async () => {
    const clock = createVirtualClock();
    const source = new ReadableStream<Uint8Array>(
      { pull: (c) => c.enqueue(new Uint8Array(100)) },
      { highWaterMark: 0 },
    );
    const guard = guardOutboundStream(source, { clock, idle: 1000 });
    const reader = guard.readable.getReader();
    await reader.read(); // the guard reads one chunk ahead: from here it waits on the consumer
    await clock.advance(500);
    await clock.stall(3000);
    expect(guard.controller.state).toBe("active");
    expect(await reader.read()).toMatchObject({ done: false }); // the consumer's read, queued during the stall
    await clock.advance(1);
    expect(guard.controller.state).toBe("active");
    await clock.advance(2000); // and a consumer that then stops reading is still cut
    expect(guard.controller.error).toMatchObject({ limit: "idle" });
  });

  it("total is wall time: a stall does not move it", async () => {
    const { clock, guard, read } = pendingRead({ idle: 5000, total: 1000 });
    await clock.stall(3000);
    await clock.advance(0);
    expect(await read).toBeInstanceOf(TimeoutError);
    expect(guard.controller.error).toMatchObject({ limit: "total", elapsed: 3000 });
  });

  it("a loop that stays overloaded still fires: the sweep is put off once, not again and again", async () => {
    const { clock, guard, read } = pendingRead({ idle: 1000 });
    // Every timer wakes 300 ms late, forever.
    for (let i = 0; i < 20 && guard.controller.state === "active"; i++) await clock.stall(300);
    expect(guard.controller.state).toBe("timedOut");
    expect(await read).toBeInstanceOf(TimeoutError);
    const { waited, elapsed } = guard.controller.error!;
    expect(waited).toBeGreaterThanOrEqual(1000);
    expect(elapsed).toBeLessThanOrEqual(2500);
  });

  it("the heartbeat runs only while the next deadline is less than an hour away (a 31-year total alone keeps none)", async () => {
    const { clock, counted, arms } = countingClock();
    const { readable } = guardInboundStream(neverEnding(), { clock: counted, total: 1e12 });
    readable
      .getReader()
      .read()
      .catch(() => {});
    await clock.advance(60_000);
    expect(arms()).toBe(1);
    const judged = guardInboundStream(neverEnding(), { clock: counted, idle: 10_000 });
    judged.readable
      .getReader()
      .read()
      .catch(() => {});
    await clock.advance(9_000);
    expect(arms()).toBe(11); // re-armed every second while the idle deadline is near
  });
});
