import { describe, expect, it } from "vitest";
import { createVirtualClock, deadlineDebugCounters, guardOutboundStream, OUTBOUND_SLICE_BYTES } from "../src/index.ts";
import { scriptedConsumer, scriptedSource } from "./support/scripted-streams.ts";

/** Reads `readable` to its end, pushing each take's size onto `sizes`; `after(piece)` runs after each take. */
async function readSizes(
  readable: ReadableStream<Uint8Array>,
  sizes: number[],
  after?: (piece: number) => Promise<unknown>,
): Promise<void> {
  const reader = readable.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    sizes.push(value.byteLength);
    await after?.(sizes.length - 1);
  }
}

describe("guardOutboundStream: the clock runs only while a chunk waits for the consumer", () => {
  it("a quiet producer (SSE gaps far beyond idle) never gets its client timed out", async () => {
    const clock = createVirtualClock();
    const events = Array.from({ length: 5 }, (_, i) => ({ at: (i + 1) * 30_000, bytes: 20 }));
    const src = scriptedSource(clock, events);
    const { readable, controller } = guardOutboundStream(src.stream, { clock, idle: 1000, minRate: 100, grace: 1000 });
    const out = scriptedConsumer(clock, readable);
    await clock.advance(200_000);
    expect(out).toMatchObject({ done: true, bytes: 100, error: undefined });
    expect(controller.state).toBe("closed");
    expect(controller.stats.waited).toBe(0);
  });

  it("a consumer that stops taking chunks is cut at the idle limit, and the producer is cancelled", async () => {
    const clock = createVirtualClock();
    const chunks = Array.from({ length: 10 }, () => ({ at: 0, bytes: 1000 }));
    const src = scriptedSource(clock, chunks);
    const { readable, controller } = guardOutboundStream(src.stream, { clock, idle: 2000, subject: "response body" });
    // The consumer takes one chunk, then stalls for a minute.
    const out = scriptedConsumer(clock, readable, { pauseAfter: () => 60_000 });
    await clock.advance(1999);
    expect(controller.state).toBe("active");
    await clock.advance(1);
    const error = controller.error!;
    expect(error).toMatchObject({ limit: "idle", direction: "outbound", bytes: 1000, idleFor: 2000 });
    expect(error.message).toBe(
      "response body stalled: the client took no data for 2.0 s (idle limit 2 s, 1000 B sent)",
    );
    expect(src.cancelReason).toBe(error);
    expect(controller.signal.aborted).toBe(true);
    await clock.advance(60_000);
    expect(out.error).toBe(error);
    expect(out.done).toBe(false);
  });

  it("takes in kernel-sized bursts: a reader at 2× minRate is never cut, one at 0.5× is; a burst earns at most 4 MiB", async () => {
    // The kernel lets a writer go on only once a third of its send buffer drained: an honest slow
    // reader shows up as 2 MiB taken at once, then a wait of 2 MiB / its rate.
    const burst = 2 * 1024 * 1024;
    const read = async (rate: number, limits: { minRate: number; grace: number }) => {
      const clock = createVirtualClock();
      const slices = burst / OUTBOUND_SLICE_BYTES;
      const src = scriptedSource(
        clock,
        Array.from({ length: 3 * slices }, () => ({ at: 0, bytes: OUTBOUND_SLICE_BYTES })),
      );
      const { readable, controller } = guardOutboundStream(src.stream, { clock, ...limits });
      const out = scriptedConsumer(clock, readable, {
        pauseAfter: (i) => (i % slices === slices - 1 ? (burst * 1000) / rate : 0),
      });
      await clock.advance((4 * burst * 1000) / rate);
      return { out, error: controller.error };
    };
    const defaults = { minRate: 240, grace: 5000 }; // 1.2 KB of credit by the grace alone
    expect((await read(480, defaults)).out).toMatchObject({ done: true, bytes: 3 * burst, error: undefined });
    const slow = await read(120, defaults);
    expect(slow.error).toMatchObject({ limit: "minRate" });
    expect(slow.out.bytes).toBe(burst); // cut during the first wait: 2 MiB at 240 B/s is due well before 2 MiB at 120 B/s
    // A burst bigger than 4 MiB earns 4 MiB: a fast start cannot buy more than one socket buffer.
    const clock = createVirtualClock();
    const src = scriptedSource(
      clock,
      Array.from({ length: 200 }, () => ({ at: 0, bytes: OUTBOUND_SLICE_BYTES })),
    );
    const { readable, controller } = guardOutboundStream(src.stream, { clock, minRate: 1024, grace: 1000 });
    scriptedConsumer(clock, readable, { pauseAfter: (i) => (i === 99 ? 1e9 : 0) }); // 6.25 MiB at once, then nothing
    await clock.advance(4096 * 1000 - 1);
    expect(controller.state).toBe("active");
    await clock.advance(2);
    expect(controller.error).toMatchObject({ limit: "minRate" });
  });

  it("reads ahead exactly one chunk", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(
      clock,
      Array.from({ length: 10 }, () => ({ at: 0, bytes: 10 })),
    );
    const { readable } = guardOutboundStream(src.stream, { clock });
    await clock.advance(10);
    expect(src.pulled).toBe(0); // nothing is read before the consumer asks
    const reader = readable.getReader();
    await reader.read();
    await clock.settle();
    expect(src.pulled).toBe(2); // the chunk taken plus one held
    await clock.advance(1000);
    expect(src.pulled).toBe(2);
  });

  it("splits chunks over 64 KiB into views, so a slow reader of one huge chunk is still seen progressing", async () => {
    const clock = createVirtualClock();
    const big = new Uint8Array(OUTBOUND_SLICE_BYTES * 3 + 5).map((_, i) => i & 0xff);
    const source = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(big);
        c.close();
      },
    });
    const { readable, controller } = guardOutboundStream(source, { clock, idle: 1000 });
    const reader = readable.getReader();
    const sizes: number[] = [];
    const received: number[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      sizes.push(value.byteLength);
      received.push(...value);
      expect(value.buffer).toBe(big.buffer); // a view, not a copy
      await clock.advance(900); // each slice taken within idle: never fires
    }
    expect(sizes).toEqual([OUTBOUND_SLICE_BYTES, OUTBOUND_SLICE_BYTES, OUTBOUND_SLICE_BYTES, 5]);
    expect(received).toEqual([...big]);
    expect(controller.state).toBe("closed");
  });

  it("hands a reader that was already asking the producer's 1 MiB chunks whole (one take each)", async () => {
    const clock = createVirtualClock();
    const MiB = 1024 * 1024;
    const src = scriptedSource(clock, [
      { at: 0, bytes: 100 },
      { at: 10, bytes: MiB },
      { at: 20, bytes: MiB },
    ]);
    const { readable, controller } = guardOutboundStream(src.stream, { clock, idle: 1000 });
    const sizes: number[] = [];
    const reading = readSizes(readable, sizes);
    await clock.advance(100);
    await reading;
    expect(sizes).toEqual([100, MiB, MiB]);
    expect(controller.stats).toMatchObject({ state: "closed", bytes: 100 + 2 * MiB, waited: 0 });
  });

  it("hands a reader that keeps 1 MiB chunks waiting 64 KiB pieces, and cuts it at idle as before", async () => {
    const MiB = 1024 * 1024;
    const run = async (pauseAfter: (piece: number) => number) => {
      const clock = createVirtualClock();
      const src = scriptedSource(clock, [
        { at: 0, bytes: 100 },
        { at: 0, bytes: MiB },
        { at: 0, bytes: MiB },
      ]);
      let firedAt: number | undefined;
      const { readable, controller } = guardOutboundStream(src.stream, {
        clock,
        idle: 1000,
        onTimeout: () => (firedAt = clock.now()),
      });
      const sizes: number[] = [];
      const reading = readSizes(readable, sizes, (piece) => clock.sleep(pauseAfter(piece))).catch(() => {});
      await clock.advance(100_000);
      await reading;
      return { sizes, firedAt, controller };
    };
    // 900 ms between takes, under idle: every piece after the first chunk is 64 KiB, and it completes.
    const patient = await run(() => 900);
    expect(patient.sizes).toEqual([100, ...Array(32).fill(OUTBOUND_SLICE_BYTES)]);
    expect(patient.firedAt).toBeUndefined();
    expect(patient.controller.state).toBe("closed");
    // Takes at 0, 900, 1800, 2700, 3600, then nothing: cut at 4600, with 4 pieces of 64 KiB counted.
    const stalled = await run((piece) => (piece < 4 ? 900 : 60_000));
    expect(stalled.firedAt).toBe(4600);
    expect(stalled.controller.error).toMatchObject({ limit: "idle", bytes: 100 + 4 * OUTBOUND_SLICE_BYTES });
  });

  it("minRate: a consumer taking 100 B/s of a 1000 B/s minimum fails once it is grace behind", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(
      clock,
      Array.from({ length: 100 }, () => ({ at: 0, bytes: 100 })),
    );
    const { readable, controller } = guardOutboundStream(src.stream, { clock, minRate: 1000, grace: 1500 });
    scriptedConsumer(clock, readable, { pauseAfter: () => 1000 });
    await clock.advance(10_000);
    // Credit 1500 B; the first second of blame drains 1000, the take at 1 s adds 100 (600 left),
    // which lasts 0.6 s more: gone at 1.6 s with 200 B taken.
    expect(controller.error).toMatchObject({ limit: "minRate", bytes: 200 });
    expect(controller.error!.elapsed).toBeCloseTo(1600, 6);
  });

  it("total fires even while the producer is the one who is quiet", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(clock, [{ at: 50_000, bytes: 1 }]);
    const { readable, controller } = guardOutboundStream(src.stream, { clock, total: 3000 });
    const out = scriptedConsumer(clock, readable);
    await clock.advance(3000);
    expect(controller.error?.limit).toBe("total");
    expect(out.error).toBe(controller.error);
    expect(src.cancelReason).toBe(controller.error);
  });
});

describe("guardOutboundStream: endings", () => {
  it("a consumer cancel (client went away) cancels the producer at once", async () => {
    const clock = createVirtualClock();
    const src = scriptedSource(
      clock,
      Array.from({ length: 5 }, (_, i) => ({ at: i * 1000, bytes: 10 })),
    );
    const { readable, controller } = guardOutboundStream(src.stream, { clock, idle: 5000 });
    const reader = readable.getReader();
    await reader.read();
    await reader.cancel("client disconnected");
    expect(src.cancelReason).toBe("client disconnected");
    expect(controller.state).toBe("cancelled");
    expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
  });

  it("a producer error reaches the consumer unchanged", async () => {
    const clock = createVirtualClock();
    const boom = new Error("database went away");
    const src = scriptedSource(clock, [{ at: 0, bytes: 10 }], { errorAt: { at: 500, error: boom } });
    const { readable, controller } = guardOutboundStream(src.stream, { clock, idle: 1000 });
    const out = scriptedConsumer(clock, readable);
    await clock.advance(1000);
    expect(out.error).toBe(boom);
    expect(controller.state).toBe("errored");
  });

  it("an async generator producer has its finally run when a deadline fires", async () => {
    const clock = createVirtualClock();
    let finallyRan = false;
    async function* produce() {
      try {
        for (;;) yield new Uint8Array(100);
      } finally {
        finallyRan = true;
      }
    }
    const iterator = produce();
    // A producer backed by an async generator, as frameworks build them (ReadableStream.from is not in every lib typing).
    const source = new ReadableStream<Uint8Array>(
      {
        async pull(c) {
          const { done, value } = await iterator.next();
          if (done) c.close();
          else c.enqueue(value);
        },
        async cancel() {
          await iterator.return(undefined);
        },
      },
      { highWaterMark: 0 },
    );
    const { readable, controller } = guardOutboundStream(source, { clock, idle: 1000 });
    const reader = readable.getReader();
    await reader.read(); // take one, then stall
    await clock.advance(1000);
    expect(controller.state).toBe("timedOut");
    expect(finallyRan).toBe(true);
    await expect(reader.read()).rejects.toBe(controller.error);
  });

  it("enqueues after a firing fail in the producer", async () => {
    const clock = createVirtualClock();
    let producer!: ReadableStreamDefaultController<Uint8Array>;
    const source = new ReadableStream<Uint8Array>({ start: (c) => void (producer = c) });
    const { readable, controller } = guardOutboundStream(source, { clock, total: 100 });
    readable
      .getReader()
      .read()
      .catch(() => {});
    await clock.advance(100);
    expect(controller.state).toBe("timedOut");
    expect(() => producer.enqueue(new Uint8Array(1))).toThrow(TypeError);
  });

  it("a non-byte chunk from the producer is a clear TypeError", async () => {
    const clock = createVirtualClock();
    const source = new ReadableStream<unknown>({ start: (c) => c.enqueue({ hello: 1 }) }) as ReadableStream<Uint8Array>;
    const { readable } = guardOutboundStream(source, { clock, subject: "response body" });
    await expect(readable.getReader().read()).rejects.toThrow("response body: chunks must be Uint8Array, got Object");
  });
});

describe("guardOutboundStream: chunks read before the guard (in-memory bodies)", () => {
  it("the consumer is to blame for read-ahead chunks it does not take", async () => {
    const { attachOutboundGuardToReader } = await import("../src/guards/outbound.ts");
    const { DeadlineTracker } = await import("../src/engine/tracker.ts");
    const clock = createVirtualClock();
    const source = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }, { highWaterMark: 0 });
    const tracker = new DeadlineTracker({
      direction: "outbound",
      subject: "response body",
      limits: { idle: 1000 },
      clock,
    });
    const readable = attachOutboundGuardToReader(
      source.getReader(),
      tracker,
      [new Uint8Array(10), new Uint8Array(10), new Uint8Array(10)],
      undefined,
    );
    const consumer = scriptedConsumer(clock, readable, { pauseAfter: () => 60_000 });
    await clock.advance(1000);
    expect(tracker.error?.limit).toBe("idle");
    expect(consumer.bytes).toBe(10);
  });
});
