/**
 * The debug counters the fault tests read from outside the process: scheduled deadlines and armed
 * timers across every clock (per-request clocks, as on workerd, included), and withDeadlines'
 * disconnect listeners.
 */
import { describe, expect, it } from "vitest";
import {
  createVirtualClock,
  deadlineDebugCounters,
  deadlines,
  guardInboundStream,
  isolatedClock,
  withDeadlines,
} from "../../src/index.ts";

const neverEnding = () => new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }, { highWaterMark: 0 });

describe("debug counters across clocks", () => {
  it("count the deadlines and native timers of every clock, and come back to what they were", async () => {
    const base = createVirtualClock();
    const before = deadlineDebugCounters(base);
    // Two per-request clocks on one base, as timerScope "request" makes them: one scheduler, one timer each.
    const clocks = [isolatedClock(base), isolatedClock(base)];
    const guards = clocks.flatMap((clock) => [
      guardInboundStream(neverEnding(), { clock, idle: 1000 }),
      guardInboundStream(neverEnding(), { clock, idle: 2000 }),
    ]);
    const reads = guards.map((g) =>
      g.readable
        .getReader()
        .read()
        .catch(() => "failed"),
    );
    await base.settle();
    const during = deadlineDebugCounters(base);
    expect(during.scheduledDeadlines).toBe(0); // the base clock's own scheduler has none of them
    expect(during.allScheduledDeadlines - before.allScheduledDeadlines).toBe(4);
    expect(during.allTimersArmed - before.allTimersArmed).toBe(2);
    expect(during.liveGuards - before.liveGuards).toBe(4);
    await base.advance(1500);
    expect(deadlineDebugCounters(base).allScheduledDeadlines - before.allScheduledDeadlines).toBe(2);
    expect(deadlineDebugCounters(base).allTimersArmed - before.allTimersArmed).toBe(2);
    await base.advance(1000);
    expect(await Promise.all(reads)).toEqual(["failed", "failed", "failed", "failed"]);
    expect(deadlineDebugCounters(base)).toMatchObject({
      liveGuards: before.liveGuards,
      allScheduledDeadlines: before.allScheduledDeadlines,
      allTimersArmed: before.allTimersArmed,
    });
    expect(base.pendingTimers).toBe(0);
  });

  it("count a running handler's deadline and a guarded response's disconnect listener until the exchange ends", async () => {
    const clock = createVirtualClock();
    const before = deadlineDebugCounters(clock);
    let release!: () => void;
    const handler = withDeadlines(
      async (request: Request) => {
        await new Promise<void>((resolve) => (release = resolve));
        void deadlines(request).signal; // someone listens for the client going away
        let sent = 0;
        return new Response(
          new ReadableStream<Uint8Array>(
            { pull: (c) => (sent++ < 3 ? c.enqueue(new Uint8Array(100_000)) : c.close()) },
            { highWaterMark: 0 },
          ),
        );
      },
      { clock, handler: 5000, timerScope: "request", onTimeout: false },
    );
    const client = new AbortController();
    const pending = handler(new Request("http://x/", { signal: client.signal }));
    await clock.settle();
    // The handler deadline waits in its request's own scheduler.
    expect(deadlineDebugCounters(clock).allScheduledDeadlines - before.allScheduledDeadlines).toBe(1);
    release();
    const response = (await pending) as Response;
    expect(deadlineDebugCounters(clock).disconnectListeners - before.disconnectListeners).toBe(1);
    expect((await response.arrayBuffer()).byteLength).toBe(300_000);
    await clock.settle();
    expect(deadlineDebugCounters(clock)).toMatchObject({
      liveGuards: before.liveGuards,
      allScheduledDeadlines: before.allScheduledDeadlines,
      allTimersArmed: before.allTimersArmed,
      disconnectListeners: before.disconnectListeners,
    });
  });

  it("drop the disconnect listener when the client goes away", async () => {
    const clock = createVirtualClock();
    const before = deadlineDebugCounters(clock).disconnectListeners;
    const handler = withDeadlines(
      () => new Response(new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }, { highWaterMark: 0 })),
      { clock, onTimeout: false },
    );
    const client = new AbortController();
    const response = (await handler(new Request("http://x/", { signal: client.signal }))) as Response;
    const read = response
      .body!.getReader()
      .read()
      .catch(() => "cut");
    expect(deadlineDebugCounters(clock).disconnectListeners - before).toBe(1);
    client.abort();
    expect(await read).toBe("cut");
    expect(deadlineDebugCounters(clock).disconnectListeners).toBe(before);
  });
});
