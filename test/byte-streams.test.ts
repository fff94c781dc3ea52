/**
 * Guarded bodies are byte streams where their source is one: BYOB readers work on the guarded
 * request body, response body and upstream body as on the unguarded one, and the deadlines keep
 * their meaning during BYOB reads. All on the virtual clock.
 */
import { describe, expect, it } from "vitest";
import {
  createVirtualClock,
  deadlines,
  fetchWithDeadlines,
  type GuardedStream,
  type GuardOptions,
  guardInboundStream,
  guardOutboundStream,
  isTimeoutError,
  upstreamDeadlines,
  type VirtualClock,
  withDeadlines,
} from "../src/index.ts";
import { adapterDeadlines } from "../src/http/adapter-contract.ts";
import { scriptedUpload } from "./support/fetch-peers.ts";
import { type ScriptedChunk, scriptedSource } from "./support/scripted-streams.ts";
import { virtualClockAndTimeouts as setup } from "./support/virtual-clock-timeouts.ts";

const KiB = 1024;
type Guard = (source: ReadableStream<Uint8Array>, options?: GuardOptions) => GuardedStream;
const GUARDS: [string, Guard][] = [
  ["guardInboundStream", guardInboundStream],
  ["guardOutboundStream", guardOutboundStream],
];

const takesByob = (stream: ReadableStream<Uint8Array>): boolean => {
  try {
    stream.getReader({ mode: "byob" }).releaseLock();
    return true;
  } catch {
    return false;
  }
};

/** A byte source whose chunks are all there at once (sizes given), each filled with its index + 1. */
function byteSource(clock: VirtualClock, sizes: number[]) {
  return scriptedSource(
    clock,
    sizes.map((bytes) => ({ at: 0, bytes })),
    { bytes: true },
  );
}

/** One step of a reader script: a BYOB read into a fresh buffer of n bytes, a default read, or a lock swap. */
type Step = { byob: number } | "default" | "release";

/**
 * Runs `steps` on `stream` (then BYOB reads of 1000 to the end); returns what each read gave:
 * "<bytes>x<fill>" (first and last byte's fill), or "done". BYOB results must come back in the
 * caller's own buffer (same size, the caller's copy detached), as the standard requires.
 */
async function runScript(stream: ReadableStream<Uint8Array>, steps: Step[]): Promise<string[]> {
  const log: string[] = [];
  let reader: ReadableStreamBYOBReader | ReadableStreamDefaultReader<Uint8Array> = stream.getReader({ mode: "byob" });
  let byob = true;
  const all: Step[] = [...steps, ...Array.from({ length: 200 }, () => ({ byob: 1000 }))];
  for (const step of all) {
    if (step === "release") {
      reader.releaseLock();
      byob = !byob;
      reader = byob ? stream.getReader({ mode: "byob" }) : stream.getReader();
      continue;
    }
    if (step !== "default" && !byob) {
      reader.releaseLock();
      reader = stream.getReader({ mode: "byob" });
      byob = true;
    }
    let result: ReadableStreamReadResult<Uint8Array>;
    if (step === "default") {
      if (byob) {
        reader.releaseLock();
        reader = stream.getReader();
        byob = false;
      }
      result = await (reader as ReadableStreamDefaultReader<Uint8Array>).read();
    } else {
      const buffer = new ArrayBuffer(step.byob);
      result = await (reader as ReadableStreamBYOBReader).read(new Uint8Array(buffer));
      if (result.value !== undefined) {
        expect(buffer.byteLength).toBe(0); // transferred into the read
        expect(result.value.buffer.byteLength).toBe(step.byob);
        expect(result.value.byteOffset).toBe(0);
      }
    }
    if (result.done) {
      log.push("done");
      return log;
    }
    const v = result.value;
    log.push(`${v.byteLength}x${v[0]}-${v[v.byteLength - 1]}`);
  }
  throw new Error("script did not reach the end");
}

describe("guards of byte streams are byte streams", () => {
  for (const [name, guard] of GUARDS) {
    it(`${name}: a byte stream's guard takes a BYOB reader; a default stream's does not, as the source`, () => {
      const clock = createVirtualClock();
      expect(takesByob(guard(byteSource(clock, [10]).stream, { clock }).readable)).toBe(true);
      expect(takesByob(guard(scriptedSource(clock, [{ at: 0, bytes: 10 }]).stream, { clock }).readable)).toBe(false);
    });

    it(`${name}: BYOB reads, partial fills, default reads and lock swaps give what the bare source gives`, async () => {
      const sizes = [100, 1000, 5000, 70 * KiB, 3];
      const scripts: Step[][] = [
        [],
        [{ byob: 50 }, { byob: 4096 }, "default", { byob: 300 }, "release", "default", { byob: 100 * KiB }],
        ["default", "default", { byob: 1 }, "default", { byob: 64 * KiB }, { byob: 8 * KiB }],
        [{ byob: 100 * KiB }, { byob: 100 * KiB }, { byob: 100 * KiB }],
      ];
      for (const steps of scripts) {
        const clock = createVirtualClock();
        const bare = await runScript(byteSource(clock, sizes).stream, steps);
        const { readable, controller } = guard(byteSource(clock, sizes).stream, { clock, idle: 1000 });
        const guarded = await runScript(readable, steps);
        expect(guarded).toEqual(bare);
        expect(controller.state).toBe("closed");
        expect(controller.stats.bytes).toBe(sizes.reduce((a, b) => a + b, 0));
      }
    });

    it(`${name}: a BYOB read pending at the end gets done; cancel and errors go through`, async () => {
      const clock = createVirtualClock();
      const source = byteSource(clock, [10]);
      const reader = guard(source.stream, { clock }).readable.getReader({ mode: "byob" });
      expect((await reader.read(new Uint8Array(100))).value?.byteLength).toBe(10);
      expect((await reader.read(new Uint8Array(100))).done).toBe(true);

      const cancelled = byteSource(clock, [10, 10]);
      const g = guard(cancelled.stream, { clock });
      const r2 = g.readable.getReader({ mode: "byob" });
      await r2.read(new Uint8Array(5));
      await r2.cancel("bye");
      expect([cancelled.cancelReason, g.controller.state]).toEqual(["bye", "cancelled"]);

      const boom = new Error("boom");
      const failing = scriptedSource(clock, [{ at: 0, bytes: 10 }], { bytes: true, errorAt: { at: 5, error: boom } });
      const g3 = guard(failing.stream, { clock });
      const r3 = g3.readable.getReader({ mode: "byob" });
      await r3.read(new Uint8Array(100));
      const failed = r3.read(new Uint8Array(100)).catch((error: unknown) => error);
      await clock.advance(10);
      expect(await failed).toBe(boom);
      expect(g3.controller.state).toBe("errored");
    });

    it(`${name}: tee() of the guarded stream gives what tee() of the source gives`, async () => {
      const clock = createVirtualClock();
      const read = async (stream: ReadableStream<Uint8Array>) => {
        const [a, b] = stream.tee();
        const byob = [takesByob(a), takesByob(b)];
        const sizes = await Promise.all(
          [a, b].map(async (branch) => {
            const reader = branch.getReader();
            let n = 0;
            for (;;) {
              const { done, value } = await reader.read();
              if (done) return n;
              n += value.byteLength;
            }
          }),
        );
        return { byob, sizes };
      };
      const bare = await read(byteSource(clock, [100, 2000]).stream);
      const guarded = await read(guard(byteSource(clock, [100, 2000]).stream, { clock }).readable);
      expect(guarded).toEqual(bare);
      expect(guarded.sizes).toEqual([2100, 2100]);
    });
  }
});

describe("outbound: 64 KiB pieces", () => {
  it("a default reader of a byte stream's guard gets a chunk over 64 KiB in 64 KiB pieces, every byte intact", async () => {
    const clock = createVirtualClock();
    const chunk = new Uint8Array(150 * KiB).map((_, i) => i % 251);
    const expected = chunk.slice();
    const source = new ReadableStream({
      type: "bytes",
      pull(controller) {
        controller.enqueue(chunk);
        controller.close();
      },
    });
    const { readable, controller } = guardOutboundStream(source as ReadableStream<Uint8Array>, { clock });
    const reader = readable.getReader();
    const pieces: Uint8Array[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      pieces.push(value);
    }
    expect(pieces.map((p) => p.byteLength)).toEqual([64 * KiB, 64 * KiB, 22 * KiB]);
    const joined = new Uint8Array(150 * KiB);
    let offset = 0;
    for (const piece of pieces) {
      joined.set(piece, offset);
      offset += piece.byteLength;
    }
    expect(joined.every((b, i) => b === expected[i])).toBe(true);
    expect(controller.state).toBe("closed");
  });
});

describe("deadlines during BYOB reads", () => {
  it("inbound idle fires while a BYOB read is pending, and the read fails with the TimeoutError", async () => {
    const clock = createVirtualClock();
    const source = scriptedSource(
      clock,
      [
        { at: 10, bytes: 100 },
        { at: 60_000, bytes: 100 },
      ],
      { bytes: true },
    );
    const { readable, controller } = guardInboundStream(source.stream, { clock, idle: 1000 });
    const reader = readable.getReader({ mode: "byob" });
    const first = reader.read(new Uint8Array(1000));
    await clock.advance(10);
    expect((await first).value?.byteLength).toBe(100);
    const second = reader.read(new Uint8Array(1000)).catch((error: unknown) => error);
    await clock.advance(999);
    expect(controller.state).toBe("active");
    await clock.advance(2);
    const error = await second;
    expect(isTimeoutError(error)).toBe(true);
    expect(error).toBe(controller.error);
    expect(controller.error).toMatchObject({ code: "ERR_DEADLINE_IDLE", bytes: 100 });
    expect(source.cancelReason).toBe(error);
  });

  it("inbound: no clock while a BYOB reader pauses, nor while it takes bytes already here", async () => {
    const clock = createVirtualClock();
    const source = scriptedSource(clock, [{ at: 0, bytes: 10_000 }], { bytes: true, endAt: 0 });
    const { readable, controller } = guardInboundStream(source.stream, { clock, idle: 1000 });
    const reader = readable.getReader({ mode: "byob" });
    let bytes = 0;
    for (;;) {
      const { done, value } = await reader.read(new Uint8Array(1000)); // 10 reads from one chunk
      if (done) break;
      bytes += value.byteLength;
      await clock.advance(5000); // the handler is busy: never the client's fault
    }
    expect(bytes).toBe(10_000);
    expect(controller.state).toBe("closed");
    expect(controller.stats.waited).toBe(0);
  });

  it("inbound minRate fires at the same moment for a BYOB reader as for a default reader", async () => {
    const firing = async (byob: boolean) => {
      const clock = createVirtualClock();
      const chunks: ScriptedChunk[] = Array.from({ length: 100 }, (_, i) => ({ at: (i + 1) * 100, bytes: 50 }));
      const source = scriptedSource(clock, chunks, { bytes: true });
      const { readable, controller } = guardInboundStream(source.stream, { clock, minRate: 1000, grace: 2000 });
      let failure: unknown;
      void (async () => {
        try {
          if (byob) {
            const reader = readable.getReader({ mode: "byob" });
            for (;;) if ((await reader.read(new Uint8Array(16))).done) break; // smaller than a chunk
          } else {
            const reader = readable.getReader();
            for (;;) if ((await reader.read()).done) break;
          }
        } catch (error) {
          failure = error;
        }
      })();
      let at = 0;
      while (controller.state === "active" && at < 20_000) {
        await clock.advance(10);
        at += 10;
      }
      expect(failure).toBe(controller.error);
      return { at, code: controller.error?.code, bytes: controller.stats.bytes };
    };
    const withByob = await firing(true);
    expect(withByob.code).toBe("ERR_DEADLINE_MIN_RATE");
    expect(withByob).toEqual(await firing(false));
  });

  it("outbound: a BYOB reader takes only what fits; the rest waits for it, on the clock", async () => {
    const clock = createVirtualClock();
    const source = scriptedSource(clock, [{ at: 0, bytes: 64 * KiB }], { bytes: true, endAt: 0 });
    const { readable, controller } = guardOutboundStream(source.stream, { clock, idle: 1000 });
    const reader = readable.getReader({ mode: "byob" });
    const first = await reader.read(new Uint8Array(1000));
    expect(first.value?.byteLength).toBe(1000);
    expect(controller.stats.bytes).toBe(1000); // taken: what the reader took, not the chunk
    expect(controller.stats.waiting).toBe(true); // the rest waits for the reader
    await clock.advance(999);
    expect(controller.state).toBe("active");
    await clock.advance(2);
    expect(controller.error).toMatchObject({ code: "ERR_DEADLINE_IDLE", direction: "outbound", bytes: 1000 });
    expect(source.cancelReason).toBe(controller.error);
  });

  it("outbound: a quiet producer never runs the clock while a BYOB read waits on it", async () => {
    const clock = createVirtualClock();
    const source = scriptedSource(
      clock,
      [
        { at: 30_000, bytes: 10 },
        { at: 90_000, bytes: 10 },
      ],
      { bytes: true },
    );
    const { readable, controller } = guardOutboundStream(source.stream, { clock, idle: 1000 });
    const reader = readable.getReader({ mode: "byob" });
    const read = reader.read(new Uint8Array(100));
    await clock.advance(30_000);
    expect((await read).value?.byteLength).toBe(10);
    expect(controller.state).toBe("active");
    expect(controller.stats.waited).toBe(0);
  });
});

describe("withDeadlines and fetchWithDeadlines: BYOB on guarded bodies", () => {
  it("the handler reads a byte-stream upload with a BYOB reader; its request idle still fires during one", async () => {
    const { clock, events, onTimeout } = setup();
    const upload = scriptedUpload(
      clock,
      [
        { at: 10, bytes: 3000 },
        { at: 60_000, bytes: 10 },
      ],
      { bytes: true },
    );
    const seen: number[] = [];
    const wrapped = withDeadlines(
      async (request: Request) => {
        const reader = request.body!.getReader({ mode: "byob" });
        for (;;) {
          const { done, value } = await reader.read(new Uint8Array(1024));
          if (done) break;
          seen.push(value.byteLength);
        }
        return new Response("done");
      },
      { clock, onTimeout, request: { idle: 1000 } },
    );
    const pending = wrapped(upload.request);
    await clock.advance(2000);
    const response = (await pending) as Response;
    expect(seen).toEqual([1024, 1024, 952]);
    expect(response.status).toBe(408);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ direction: "request", limit: "idle" });
    expect(upload.sourceCancelled).toBe(true);
  });

  it("a streaming response from a byte stream is a byte stream; BYOB reads get every byte", async () => {
    const { clock, onTimeout } = setup();
    let controls: ReturnType<typeof deadlines> | undefined;
    const wrapped = withDeadlines(
      (request: Request) => {
        controls = deadlines(request);
        // The first chunk comes after the in-memory peek gave up: its read must not be lost.
        const source = scriptedSource(
          clock,
          [
            { at: 50, bytes: 100 * KiB },
            { at: 60, bytes: 10 },
          ],
          { bytes: true },
        );
        return new Response(source.stream);
      },
      { clock, onTimeout, response: { idle: 1000 } },
    );
    const response = (await wrapped(new Request("http://localhost/"))) as Response;
    const reader = response.body!.getReader({ mode: "byob" });
    const reading = (async () => {
      let bytes = 0;
      for (;;) {
        const { done, value } = await reader.read(new Uint8Array(48 * KiB));
        if (done) return bytes;
        bytes += value.byteLength;
      }
    })();
    await clock.advance(100);
    expect(await reading).toBe(100 * KiB + 10);
    expect(controls!.response.state).toBe("closed");
    expect(controls!.response.stats.bytes).toBe(100 * KiB + 10);
  });

  it("where the runtime sends the body (an adapter's responseToRuntime hook), the guard stays a default stream", async () => {
    const { clock, onTimeout } = setup();
    const handler = () => new Response(scriptedSource(clock, [{ at: 50, bytes: 100 * KiB }], { bytes: true }).stream);
    const inProcess = (await withDeadlines(handler, { clock, onTimeout })(
      new Request("http://localhost/"),
    )) as Response;
    const toRuntime = (await adapterDeadlines(handler, { clock, onTimeout })(new Request("http://localhost/"), [], {
      responseToRuntime: true,
    })) as Response;
    expect([takesByob(inProcess.body!), takesByob(toRuntime.body!)]).toEqual([true, false]);
    await clock.advance(100);
    expect((await toRuntime.arrayBuffer()).byteLength).toBe(100 * KiB);
  });

  it("an adapter's quietResponseFailure hook: a firing fails the runtime's body with undefined (reported once); the producer's own error stays", async () => {
    const run = async (quiet: boolean, chunks: ScriptedChunk[], errorAt?: { at: number; error: unknown }) => {
      const { clock, events, onTimeout } = setup();
      const handler = () => new Response(scriptedSource(clock, chunks, { errorAt }).stream);
      const response = (await adapterDeadlines(handler, { clock, onTimeout, response: { idle: 1000 } })(
        new Request("http://localhost/"),
        [],
        { responseToRuntime: true, quietResponseFailure: quiet },
      )) as Response;
      const reader = response.body!.getReader();
      const first = reader.read(); // the first chunk is taken; the second then waits on this consumer
      await clock.advance(100);
      await first;
      await clock.advance(1500);
      const failure = await reader.read().then(
        () => "no failure",
        (reason: unknown) => reason,
      );
      return { failure, reports: events.length };
    };
    const stalled: ScriptedChunk[] = [
      { at: 50, bytes: 10 },
      { at: 60, bytes: 10 },
    ];
    expect(await run(false, stalled)).toEqual({
      failure: expect.objectContaining({ name: "TimeoutError", limit: "idle" }),
      reports: 1,
    });
    expect(await run(true, stalled)).toEqual({ failure: undefined, reports: 1 });
    const broken = new Error("the producer failed");
    expect(await run(true, [{ at: 50, bytes: 10 }], { at: 60, error: broken })).toEqual({
      failure: broken,
      reports: 0,
    });
  });

  it("where an adapter reads the response body (its responseBodyReader hook), the guard stays a default stream", async () => {
    const { clock, onTimeout } = setup();
    const handler = () => new Response(scriptedSource(clock, [{ at: 50, bytes: 100 * KiB }], { bytes: true }).stream);
    let reads = 0;
    const hooks = {
      responseBodyReader(body: ReadableStream<Uint8Array>) {
        const reader = body.getReader(); // the stream's own reader (it could be released), counted
        const read = reader.read.bind(reader);
        reader.read = () => (reads++, read());
        return reader;
      },
    };
    const wrapped = adapterDeadlines(handler, { clock, onTimeout });
    const response = (await wrapped(new Request("http://localhost/"), [], hooks)) as Response;
    expect(takesByob(response.body!)).toBe(false);
    const body = response.arrayBuffer();
    await clock.advance(100);
    expect((await body).byteLength).toBe(100 * KiB);
    expect(reads).toBeGreaterThan(1); // the guard read through the adapter's reader
  });

  it("a streaming response from a default stream stays one, as the handler's stream", async () => {
    const { clock, onTimeout } = setup();
    const wrapped = withDeadlines(() => new Response(scriptedSource(clock, [{ at: 50, bytes: 100 * KiB }]).stream), {
      clock,
      onTimeout,
    });
    const response = (await wrapped(new Request("http://localhost/"))) as Response;
    expect(takesByob(response.body!)).toBe(false);
    await clock.advance(100);
    expect((await response.arrayBuffer()).byteLength).toBe(100 * KiB);
  });

  it("fetchWithDeadlines: the upstream body takes a BYOB reader, and its idle fires during a BYOB read", async () => {
    const clock = createVirtualClock();
    const source = scriptedSource(
      clock,
      [
        { at: 10, bytes: 500 },
        { at: 60_000, bytes: 10 },
      ],
      { bytes: true },
    );
    const fetch = async () => new Response(source.stream, { status: 200 });
    const response = await fetchWithDeadlines("http://upstream/", { deadlines: { idle: 1000, clock, fetch } });
    const reader = response.body!.getReader({ mode: "byob" });
    const first = reader.read(new Uint8Array(300));
    await clock.advance(10);
    expect((await first).value?.byteLength).toBe(300);
    expect((await reader.read(new Uint8Array(300))).value?.byteLength).toBe(200); // already here: no wait
    const third = reader.read(new Uint8Array(300)).catch((error: unknown) => error);
    await clock.advance(1001);
    const error = await third;
    expect(isTimeoutError(error)).toBe(true);
    expect(upstreamDeadlines(response)?.error).toBe(error);
    expect(source.cancelReason).toBe(error);
  });

  it("fetchWithDeadlines: a byte-stream body from fetch() stays one, a default-stream body stays default", async () => {
    const clock = createVirtualClock();
    const upstream = (bytes: boolean) => async () =>
      new Response(scriptedSource(clock, [{ at: 10, bytes: 100 }], { bytes }).stream, { status: 200 });
    const asBytes = await fetchWithDeadlines("http://upstream/", { deadlines: { clock, fetch: upstream(true) } });
    const asDefault = await fetchWithDeadlines("http://upstream/", { deadlines: { clock, fetch: upstream(false) } });
    expect([takesByob(asBytes.body!), takesByob(asDefault.body!)]).toEqual([true, false]);
    const texts = Promise.all([asBytes.arrayBuffer(), asDefault.arrayBuffer()]);
    await clock.advance(20);
    expect((await texts).map((b) => b.byteLength)).toEqual([100, 100]);
  });
});
