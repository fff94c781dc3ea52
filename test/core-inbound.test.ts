import { describe, expect, it } from "vitest";
import {
  createVirtualClock,
  deadlineDebugCounters,
  guardInboundStream,
  isTimeoutError,
  TimeoutError,
} from "../src/index.ts";
import { scriptedConsumer, scriptedSource } from "./support/scripted-streams.ts";

const KiB = 1024;

describe("guardInboundStream: without limits", () => {
  it("passes every byte through and closes", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(clock, [
      { at: 10, bytes: 100 },
      { at: 20_000, bytes: 50 },
    ]);
    const { readable, controller } = guardInboundStream(src.stream, { clock });
    const out = scriptedConsumer(clock, readable);
    await clock.advance(30_000);
    expect(out).toMatchObject({ bytes: 150, chunks: 2, done: true, error: undefined });
    expect(controller.state).toBe("closed");
    expect(controller.stats.bytes).toBe(150);
    expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
  });
});

describe("guardInboundStream: idle", () => {
  it("fires when a pending read gets no byte for the idle limit, exactly then", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(clock, [
      { at: 0, bytes: 10 },
      { at: 60_000, bytes: 10 },
    ]);
    const { readable, controller } = guardInboundStream(src.stream, { clock, idle: 1000, subject: "request body" });
    let abortedAt: number | undefined;
    controller.signal.addEventListener("abort", () => (abortedAt = clock.now()));
    const out = scriptedConsumer(clock, readable);
    await clock.advance(999.9);
    expect(controller.state).toBe("active");
    await clock.advance(0.2);
    expect(abortedAt).toBe(1000);
    expect(controller.state).toBe("timedOut");
    const error = controller.error!;
    expect(error).toBeInstanceOf(TimeoutError);
    expect(isTimeoutError(error)).toBe(true);
    expect(error).toMatchObject({
      name: "TimeoutError",
      code: "ERR_DEADLINE_IDLE",
      limit: "idle",
      direction: "inbound",
      limitValue: 1000,
      bytes: 10,
      idleFor: 1000,
    });
    expect(error.message).toBe("request body stalled: no data for 1.0 s (idle limit 1 s, 10 B received)");
    // The same error everywhere: the pending read, the source's cancel, the signal.
    expect(out.error).toBe(error);
    expect(src.cancelReason).toBe(error);
    expect(controller.signal.reason).toBe(error);
  });

  it("does not run while the consumer is busy and not reading", async () => {
    const clock = createVirtualClock();
    // The peer's data is there long before the handler reads; the handler pauses 10 s between reads.
    const src = scriptedSource(clock, [
      { at: 0, bytes: 10 },
      { at: 1, bytes: 10 },
      { at: 2, bytes: 10 },
    ]);
    const { readable, controller } = guardInboundStream(src.stream, { clock, idle: 1000 });
    const out = scriptedConsumer(clock, readable, { pauseAfter: () => 10_000 });
    await clock.advance(40_000);
    expect(out).toMatchObject({ bytes: 30, done: true, error: undefined });
    expect(controller.state).toBe("closed");
    expect(controller.stats.waited).toBeLessThan(5);
  });

  it("empty chunks are no progress: the idle clock keeps running through them", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(clock, [
      { at: 0, bytes: 5 },
      { at: 600, bytes: 0 },
      { at: 1200, bytes: 0 },
      { at: 5000, bytes: 5 },
    ]);
    const { readable, controller } = guardInboundStream(src.stream, { clock, idle: 1000 });
    scriptedConsumer(clock, readable);
    await clock.advance(2000);
    expect(controller.error?.limit).toBe("idle");
    expect(controller.error?.idleFor).toBe(1000);
  });
});

describe("guardInboundStream: minRate", () => {
  it("a drip below the minimum fails once it is `grace` behind", async () => {
    const clock = createVirtualClock();
    // 100 B/s against a minimum of 1000 B/s, grace 2 s: credit 2000 B drains at 900 B/s net.
    const chunks = Array.from({ length: 100 }, (_, i) => ({ at: (i + 1) * 100, bytes: 10 }));
    const src = scriptedSource(clock, chunks);
    const { readable, controller } = guardInboundStream(src.stream, {
      clock,
      minRate: 1000,
      grace: 2000,
      subject: "request body",
    });
    const out = scriptedConsumer(clock, readable);
    await clock.advance(10_000);
    const error = controller.error!;
    expect(error.limit).toBe("minRate");
    expect(error.code).toBe("ERR_DEADLINE_MIN_RATE");
    // Credit (bytes): 2000 - 1000·t + 10·(chunks by t); after the chunk at 2.2 s it is 20 B, gone at 2.22 s.
    expect(error.elapsed).toBeCloseTo(2220, 6);
    expect(error.bytes).toBe(220);
    expect(error.rate).toBeCloseTo(220 / 2.22, 6);
    expect(error.message).toMatch(/^request body too slow: .* below the minimum 1000 B\/s \(grace 2 s, /);
    expect(out.error).toBe(error);
  });

  it("a peer at twice the minimum never fails", async () => {
    const clock = createVirtualClock();
    const chunks = Array.from({ length: 200 }, (_, i) => ({ at: (i + 1) * 50, bytes: 100 })); // 2000 B/s
    const src = scriptedSource(clock, chunks);
    const { readable, controller } = guardInboundStream(src.stream, { clock, minRate: 1000, grace: 500 });
    const out = scriptedConsumer(clock, readable);
    await clock.advance(20_000);
    expect(out.done).toBe(true);
    expect(controller.state).toBe("closed");
  });

  it("caps banked credit: a fast start cannot buy a long stall", async () => {
    const clock = createVirtualClock();
    // 1 MiB at once, then nothing: at 1000 B/s with grace 3 s the stall may last 3 s, not 1000 s.
    const src = scriptedSource(clock, [
      { at: 0, bytes: 1024 * KiB },
      { at: 100_000, bytes: 1 },
    ]);
    const { readable, controller } = guardInboundStream(src.stream, { clock, minRate: 1000, grace: 3000 });
    scriptedConsumer(clock, readable);
    await clock.advance(10_000);
    expect(controller.error?.limit).toBe("minRate");
    expect(controller.error?.elapsed).toBeCloseTo(3000, 6);
  });

  it("changing minRate mid-stream starts a fresh grace period (relax after authentication)", async () => {
    const clock = createVirtualClock();
    const chunks = Array.from({ length: 100 }, (_, i) => ({ at: (i + 1) * 1000, bytes: 100 })); // 100 B/s
    const src = scriptedSource(clock, chunks);
    const { readable, controller } = guardInboundStream(src.stream, { clock, minRate: 10 * KiB, grace: 2000 });
    const out = scriptedConsumer(clock, readable);
    await clock.advance(1500);
    expect(controller.state).toBe("active");
    controller.set({ minRate: 50, grace: 5000 });
    await clock.advance(200_000);
    expect(out).toMatchObject({ done: true, bytes: 10_000, error: undefined });
  });
});

describe("guardInboundStream: total", () => {
  it("counts wall time whether or not anybody reads", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(clock, [{ at: 0, bytes: 10 }]);
    const { readable, controller } = guardInboundStream(src.stream, { clock, total: 5000, subject: "request body" });
    await clock.advance(5000);
    expect(controller.error).toMatchObject({
      limit: "total",
      code: "ERR_DEADLINE_TOTAL",
      elapsed: 5000,
      limitValue: 5000,
    });
    expect(controller.error!.message).toBe(
      "request body exceeded its total deadline after 5.0 s (total limit 5 s, 0 B received)",
    );
    // A read after the firing rejects with the same error; the source was cancelled with it.
    await expect(readable.getReader().read()).rejects.toBe(controller.error);
    expect(src.cancelReason).toBe(controller.error);
  });

  it("accepts a point in time (Date) and maps it onto the monotonic clock", async () => {
    const clock = createVirtualClock({ wallStart: Date.UTC(2030, 0, 1) });
    const src = scriptedSource(clock, [{ at: 100_000, bytes: 10 }]);
    const { readable, controller } = guardInboundStream(src.stream, {
      clock,
      total: new Date(Date.UTC(2030, 0, 1, 0, 0, 7)),
    });
    scriptedConsumer(clock, readable);
    await clock.advance(6999);
    expect(controller.state).toBe("active");
    await clock.advance(1);
    expect(controller.error).toMatchObject({ limit: "total", elapsed: 7000, limitValue: 7000 });
  });

  it("handles a total beyond the 2^31-1 ms a native timer can take", async () => {
    const clock = createVirtualClock();
    const thirtyDays = 30 * 24 * 3600 * 1000;
    const src = scriptedSource(clock, [{ at: thirtyDays * 2, bytes: 1 }]);
    const { controller } = guardInboundStream(src.stream, { clock, total: thirtyDays });
    await clock.advance(2 ** 31 - 1);
    expect(controller.state).toBe("active");
    await clock.advance(thirtyDays - (2 ** 31 - 1) - 1);
    expect(controller.state).toBe("active");
    await clock.advance(1);
    expect(controller.error?.limit).toBe("total");
  });
});

describe("guardInboundStream: the live controller", () => {
  it("relaxing idle while a read waits takes effect at once", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(clock, [{ at: 3000, bytes: 10 }]);
    const { readable, controller } = guardInboundStream(src.stream, { clock, idle: 1000 });
    const out = scriptedConsumer(clock, readable);
    await clock.advance(900);
    controller.set({ idle: 5000 });
    await clock.advance(10_000);
    expect(out).toMatchObject({ done: true, bytes: 10 });
  });

  it("tightening below the time already waited fires inside set()", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(clock, [{ at: 3000, bytes: 10 }]);
    const { readable, controller } = guardInboundStream(src.stream, { clock, idle: 10_000 });
    scriptedConsumer(clock, readable);
    await clock.advance(2000);
    controller.set({ idle: 1500 });
    expect(controller.state).toBe("timedOut");
    expect(controller.error).toMatchObject({ limit: "idle", idleFor: 2000, limitValue: 1500 });
  });

  it("clear() turns every limit off; stats report the figures", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(clock, [
      { at: 0, bytes: 100 },
      { at: 9000, bytes: 100 },
    ]);
    const { readable, controller } = guardInboundStream(src.stream, { clock, idle: 1000, minRate: 10, total: 2000 });
    scriptedConsumer(clock, readable);
    await clock.advance(500);
    expect(controller.stats).toMatchObject({
      bytes: 100,
      elapsed: 500,
      waited: 500,
      idleFor: 500,
      waiting: true,
      rate: 200,
      remaining: 500,
    });
    controller.clear();
    expect(controller.limits).toMatchObject({ idle: null, minRate: null, total: null });
    expect(controller.stats.remaining).toBeNull();
    await clock.advance(10_000);
    expect(controller.state).toBe("closed");
  });

  it("a new deadline after a firing does not revive the stream", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(clock, [{ at: 5000, bytes: 10 }]);
    const { readable, controller } = guardInboundStream(src.stream, { clock, idle: 1000 });
    const out = scriptedConsumer(clock, readable);
    await clock.advance(1000);
    const error = controller.error;
    controller.set({ idle: null, total: null });
    await clock.advance(10_000);
    expect(controller.state).toBe("timedOut");
    expect(controller.error).toBe(error);
    expect(out.error).toBe(error);
    // Input is still validated after the end.
    expect(() => controller.set({ idle: -1 })).toThrow(RangeError);
  });

  it("fires exactly once even when several limits are due at once", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(clock, [{ at: 50_000, bytes: 1 }]);
    const reports: unknown[] = [];
    const { readable, controller } = guardInboundStream(src.stream, {
      clock,
      idle: 1000,
      total: 1000,
      minRate: 1,
      grace: 1000,
      onTimeout: (e) => reports.push(e),
    });
    scriptedConsumer(clock, readable);
    let aborts = 0;
    controller.signal.addEventListener("abort", () => aborts++);
    await clock.advance(5000);
    controller.set({ idle: 1 });
    expect(reports).toEqual([controller.error]);
    expect(aborts).toBe(1);
  });
});

describe("guardInboundStream: endings", () => {
  it("a consumer cancel cancels the source with the same reason and frees the deadline", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(clock, [{ at: 5000, bytes: 10 }]);
    const { readable, controller } = guardInboundStream(src.stream, { clock, idle: 1000 });
    const reader = readable.getReader();
    const pending = reader.read();
    await clock.advance(10);
    await reader.cancel("handler gave up");
    await expect(pending).resolves.toEqual({ done: true, value: undefined });
    expect(src.cancelReason).toBe("handler gave up");
    expect(controller.state).toBe("cancelled");
    expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
  });

  it("a source error reaches the consumer unchanged", async () => {
    const clock = createVirtualClock();
    const boom = new Error("connection reset");
    const src = scriptedSource(clock, [{ at: 0, bytes: 10 }], { errorAt: { at: 100, error: boom } });
    const { readable, controller } = guardInboundStream(src.stream, { clock, idle: 1000 });
    const out = scriptedConsumer(clock, readable);
    await clock.advance(200);
    expect(out.error).toBe(boom);
    expect(controller.state).toBe("errored");
  });

  it("a non-byte chunk errors the stream with a clear TypeError and cancels the source", async () => {
    const clock = createVirtualClock();
    let cancelReason: unknown;
    const source = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue("text" as unknown as Uint8Array);
      },
      cancel(reason) {
        cancelReason = reason;
      },
    });
    const { readable } = guardInboundStream(source, { clock, subject: "request body" });
    const error = await readable
      .getReader()
      .read()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe("request body: chunks must be Uint8Array, got string");
    expect(cancelReason).toBe(error);
  });

  it("refuses a locked stream, a non-stream and bad options at once", () => {
    const locked = new ReadableStream();
    locked.getReader();
    expect(() => guardInboundStream(locked)).toThrow(/already locked/);
    expect(() => guardInboundStream("body" as never)).toThrow(TypeError);
    expect(() => guardInboundStream(new ReadableStream(), { idel: 5 } as never)).toThrow(/unknown option "idel"/);
    expect(() => guardInboundStream(new ReadableStream(), { idle: -5 })).toThrow(RangeError);
  });
});
