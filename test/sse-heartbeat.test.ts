/**
 * The SSE heartbeat (`sseHeartbeat`): comment lines while an event stream's producer is quiet, so
 * intermediaries keep the stream; never counted as the client's progress. Virtual time only.
 */
import { describe, expect, it } from "vitest";
import {
  createVirtualClock,
  deadlines,
  isTimeoutError,
  MAX_TIMER_DELAY,
  type TimeoutEvent,
  type VirtualClock,
  withDeadlines,
} from "../src/index.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A producer the test writes to at chosen virtual times (`write(text)`), ending with `end()`. */
function controlledProducer() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>(
    { start: (c) => void (controller = c), cancel: () => void (cancelled = true) },
    { highWaterMark: 0 },
  );
  return {
    stream,
    write: (text: string) => void (cancelled || controller.enqueue(encoder.encode(text))),
    end: () => controller.close(),
    get cancelled() {
      return cancelled;
    },
  };
}

/** Reads everything, recording what arrived and when (virtual ms). */
function recordingReader(
  clock: VirtualClock,
  body: ReadableStream<Uint8Array>,
  options: { stopAfterEvents?: number } = {},
) {
  const got: { at: number; text: string }[] = [];
  const state = { done: false, error: undefined as unknown, got, text: () => got.map((g) => g.text).join("") };
  const reader = body.getReader();
  void (async () => {
    try {
      for (;;) {
        // The client stops reading after so many of the producer's chunks (heartbeats aside).
        if (
          options.stopAfterEvents !== undefined &&
          got.filter((g) => g.text !== ":\n").length >= options.stopAfterEvents
        )
          return;
        const { done, value } = await reader.read();
        if (done) return void (state.done = true);
        got.push({ at: clock.now(), text: decoder.decode(value) });
      }
    } catch (error) {
      state.error = error;
    }
  })();
  return state;
}

const sseHeaders = { "content-type": "text/event-stream; charset=utf-8" };

async function serveEvents(
  clock: VirtualClock,
  options: { sseHeartbeat?: number | null; contentType?: string; response?: object; policy?: () => object } = {},
) {
  const events: TimeoutEvent[] = [];
  const producer = controlledProducer();
  let request!: Request;
  const wrapped = withDeadlines(
    (r: Request) => {
      request = r;
      return new Response(producer.stream, {
        headers: { "content-type": options.contentType ?? sseHeaders["content-type"] },
      });
    },
    {
      clock,
      onTimeout: (e) => void events.push(e),
      response: (options.response ?? { idle: 1000 }) as never,
      ...(options.sseHeartbeat !== undefined ? { sseHeartbeat: options.sseHeartbeat } : {}),
      ...(options.policy ? { policy: options.policy } : {}),
    },
  );
  const response = (await wrapped(new Request("http://localhost/events"))) as Response;
  return { producer, response, events, controls: () => deadlines(request) };
}

describe("sseHeartbeat", () => {
  it("sends a comment line each time the producer has been quiet that long, between events, and stops when the stream ends", async () => {
    const clock = createVirtualClock();
    const { producer, response, controls } = await serveEvents(clock, { sseHeartbeat: 1000 });
    const client = recordingReader(clock, response.body!);
    producer.write("data: one\n\n");
    await clock.advance(3500); // quiet: heartbeats at 1000, 2000, 3000
    producer.write("data: two\n\n");
    await clock.advance(500); // the clock restarts from the event: none yet
    producer.end();
    await clock.advance(5000);
    expect(client.done).toBe(true);
    expect(client.text()).toBe("data: one\n\n:\n:\n:\ndata: two\n\n");
    expect(client.got.filter((g) => g.text === ":\n").map((g) => g.at)).toEqual([1000, 2000, 3000]);
    // Not the client's progress: the response's figures count the producer's bytes only.
    expect(controls().response.stats.bytes).toBe("data: one\n\ndata: two\n\n".length);
    expect(clock.pendingTimers).toBe(0);
  });

  it("is off by default, and only for text/event-stream responses", async () => {
    for (const options of [
      {},
      { sseHeartbeat: null },
      { sseHeartbeat: 0 },
      { sseHeartbeat: 1000, contentType: "text/plain" },
      { sseHeartbeat: 1000, contentType: "application/x-text/event-stream" },
    ]) {
      const clock = createVirtualClock();
      const { producer, response } = await serveEvents(clock, options);
      const client = recordingReader(clock, response.body!);
      producer.write("data: one\n\n");
      await clock.advance(10_000);
      producer.end();
      await clock.advance(10);
      expect(client.text(), JSON.stringify(options)).toBe("data: one\n\n");
    }
  });

  it("never splits a line the producer has not finished (nor a CRLF split after its CR)", async () => {
    const clock = createVirtualClock();
    const { producer, response } = await serveEvents(clock, { sseHeartbeat: 1000 });
    const client = recordingReader(clock, response.body!);
    producer.write("data: hal");
    await clock.advance(5000);
    producer.write("f\r");
    await clock.advance(5000);
    producer.write("\n\n");
    await clock.advance(1500);
    producer.end();
    await clock.advance(10);
    expect(client.text()).toBe("data: half\r\n\n:\n");
  });

  it("is not progress: a client that stops reading is cut exactly as without heartbeats", async () => {
    const firing = async (sseHeartbeat: number | null) => {
      const clock = createVirtualClock();
      const { producer, response, events } = await serveEvents(clock, {
        sseHeartbeat,
        response: { idle: 2000, minRate: 100, grace: 1000 },
      });
      const client = recordingReader(clock, response.body!, { stopAfterEvents: 2 });
      producer.write("data: first\n\n");
      await clock.advance(2400); // quiet, heartbeats flow while the client reads
      for (let i = 0; i < 20; i++) {
        producer.write(`data: ${"x".repeat(500)}\n\n`); // then the client stops taking them
        await clock.advance(250);
      }
      await clock.advance(10_000);
      expect(isTimeoutError(client.error) || !client.done).toBe(true);
      return {
        event: events.map((e) => ({ limit: e.limit, at: Math.round(e.elapsed), bytes: e.bytes })),
        cancelled: producer.cancelled,
        timers: clock.pendingTimers,
      };
    };
    const without = await firing(null);
    const withHeartbeat = await firing(100);
    expect(without.event).toHaveLength(1);
    expect(withHeartbeat).toEqual(without);
    expect(withHeartbeat.cancelled).toBe(true);
    expect(withHeartbeat.timers).toBe(0);
  });

  it("frees its timer when the client goes away mid-quiet", async () => {
    const clock = createVirtualClock();
    const { producer, response } = await serveEvents(clock, { sseHeartbeat: 1000 });
    const reader = response.body!.getReader();
    const first = reader.read();
    producer.write("data: one\n\n");
    await first;
    void reader.read().catch(() => {});
    await clock.advance(500);
    expect(clock.pendingTimers).toBeGreaterThan(0);
    await reader.cancel(new Error("client left"));
    await clock.settle();
    expect(producer.cancelled).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });

  it("can be set per route by the policy", async () => {
    const clock = createVirtualClock();
    const { producer, response } = await serveEvents(clock, { policy: () => ({ sseHeartbeat: 300 }) });
    const client = recordingReader(clock, response.body!);
    producer.write("data: one\n\n");
    await clock.advance(1000);
    producer.end();
    await clock.advance(10);
    expect(client.text()).toBe("data: one\n\n:\n:\n:\n");
  });

  it("refuses bad values, naming the field", async () => {
    const handler = () => new Response("x");
    expect(() => withDeadlines(handler, { sseHeartbeat: -1 })).toThrow(/sseHeartbeat.*-1/);
    expect(() => withDeadlines(handler, { sseHeartbeat: Number.NaN })).toThrow(RangeError);
    expect(() => withDeadlines(handler, { sseHeartbeat: "15s" as never })).toThrow(/sseHeartbeat must be a number/);
    expect(() => withDeadlines(handler, { sseHeartbeat: MAX_TIMER_DELAY + 1 })).toThrow(/sseHeartbeat must be at most/);
    const wrapped = withDeadlines(handler, { policy: () => ({ sseHeartbeat: true as never }), onTimeout: false });
    await expect(wrapped(new Request("http://x/"))).rejects.toThrow(/policy\(\).*sseHeartbeat/);
  });
});
