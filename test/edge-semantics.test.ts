/**
 * The exact semantics at the edges of withDeadlines (virtual time only): the handler deadline
 * blames only the handler, a disconnect is never a timeout, `afterHeaders` is true whenever the
 * response went out, an empty chunk ends no SSE line, nested wrappers report one firing once, and a
 * framework's own error answer to a request-body timeout becomes the timeout answer.
 */
import { describe, expect, it, vi } from "vitest";
import { deadlines, defaultTimeoutReporter, isTimeoutError, withDeadlines } from "../src/index.ts";
import { drip, scriptedConsumer, scriptedUpload, trackedProducer } from "./support/fetch-peers.ts";
import { virtualClockAndTimeouts as setup } from "./support/virtual-clock-timeouts.ts";

const encoder = new TextEncoder();

describe("the handler deadline measures the handler's own time", () => {
  it("pauses while the handler waits on a request-body read the client has not satisfied", async () => {
    const { clock, events, onTimeout } = setup();
    // 20 chunks 300 ms apart: 6 s of upload that keeps moving, under a 1 s handler deadline.
    const upload = scriptedUpload(clock, drip(2000, 100, 300));
    const wrapped = withDeadlines(
      async (request: Request) => Response.json({ bytes: (await request.arrayBuffer()).byteLength }),
      { clock, onTimeout, request: { idle: 500 }, handler: 1000 },
    );
    const pending = wrapped(upload.request);
    await clock.advance(7000);
    const response = (await pending) as Response;
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ bytes: 2000 });
    expect(events).toEqual([]);
  });

  it("counts the handler's own work before and after the read: 600 + (upload) + 400 ms fires", async () => {
    const { clock, events, onTimeout } = setup();
    const upload = scriptedUpload(clock, drip(1000, 100, 300, 0));
    let firedAt = -1;
    const wrapped = withDeadlines(
      async (request: Request) => {
        await clock.sleep(600); // the handler's own work: counted
        await request.arrayBuffer(); // the client's time: paused
        const readAt = clock.now();
        deadlines(request).signal.addEventListener("abort", () => (firedAt = clock.now() - readAt));
        await clock.sleep(1000); // its own work again: the deadline fires 400 ms in
        return new Response("late");
      },
      { clock, onTimeout, request: { idle: 500 }, handler: 1000 },
    );
    const pending = wrapped(upload.request);
    await clock.advance(6000);
    const response = (await pending) as Response;
    expect(response.status).toBe(503);
    expect(events.map((e) => e.direction)).toEqual(["handler"]);
    expect(firedAt).toBeGreaterThanOrEqual(400);
    expect(firedAt).toBeLessThan(450);
  });

  it("a handler that never reads its upload is still bounded (its own time runs)", async () => {
    const { clock, events, onTimeout } = setup();
    const upload = scriptedUpload(clock, drip(1000, 100, 300));
    const wrapped = withDeadlines(() => new Promise<Response>(() => {}), {
      clock,
      onTimeout,
      request: { idle: 500 },
      handler: 1000,
    });
    const pending = wrapped(upload.request);
    await clock.advance(1100);
    expect(((await pending) as Response).status).toBe(503);
    expect(events.map((e) => e.direction)).toEqual(["handler"]);
  });
});

describe("a client that leaves during a stalled upload", () => {
  it("fails the pending read at once with the AbortError, and nothing is reported", async () => {
    const { clock, events, onTimeout } = setup();
    const upload = scriptedUpload(clock, [{ at: 10, bytes: 100 }], { endAt: 1e9 });
    let failure: unknown;
    let failedAt = -1;
    const wrapped = withDeadlines(
      async (request: Request) => {
        try {
          await request.arrayBuffer();
        } catch (error) {
          failure = error;
          failedAt = clock.now();
          throw error;
        }
        return new Response("never");
      },
      { clock, onTimeout, request: { idle: 500 } },
    );
    const pending = wrapped(upload.request).catch((error: unknown) => error);
    await clock.advance(100);
    const reason = new DOMException("The client went away", "AbortError");
    upload.disconnect(reason);
    await clock.advance(1000);
    await pending;
    expect(failedAt).toBe(100);
    expect(failure).toBe(reason);
    expect(isTimeoutError(failure)).toBe(false);
    expect(events).toEqual([]);
    expect(upload.sourceCancelled).toBe(true);
  });
});

describe("afterHeaders", () => {
  it("is true for a request-body firing after the response went out (an echo whose client stalls)", async () => {
    const { clock, events, onTimeout } = setup();
    const upload = scriptedUpload(clock, [{ at: 10, bytes: 100 }], { endAt: 1e9 });
    const wrapped = withDeadlines((request: Request) => new Response(request.body), {
      clock,
      onTimeout,
      request: { idle: 500 },
    });
    const response = (await wrapped(upload.request)) as Response;
    expect(response.status).toBe(200);
    const consumer = scriptedConsumer(clock, response.body!);
    await clock.advance(1000);
    expect(isTimeoutError(consumer.error)).toBe(true);
    expect(events.map((e) => [e.direction, e.afterHeaders])).toEqual([["request", true]]);
    // The default log line says so.
    const lines: string[] = [];
    const warn = vi.spyOn(console, "warn").mockImplementation((line: string) => void lines.push(line));
    try {
      defaultTimeoutReporter(events[0]!);
    } finally {
      warn.mockRestore();
    }
    expect(lines).toEqual([expect.stringContaining("POST /upload request idle timeout after headers: ")]);
  });

  it("is false for a request-body firing before the response (the client gets the 408)", async () => {
    const { clock, events, onTimeout } = setup();
    const upload = scriptedUpload(clock, [{ at: 10, bytes: 100 }], { endAt: 1e9 });
    const wrapped = withDeadlines(async (request: Request) => new Response(await request.arrayBuffer()), {
      clock,
      onTimeout,
      request: { idle: 500 },
    });
    const pending = wrapped(upload.request);
    await clock.advance(1000);
    expect(((await pending) as Response).status).toBe(408);
    expect(events.map((e) => [e.direction, e.afterHeaders])).toEqual([["request", false]]);
  });
});

describe("SSE heartbeats", () => {
  it("an empty first chunk ends no line: heartbeats still go while the producer is quiet", async () => {
    const { clock, onTimeout } = setup();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) }, { highWaterMark: 0 });
    const wrapped = withDeadlines(
      () => {
        controller.enqueue(new Uint8Array(0));
        return new Response(stream, { headers: { "content-type": "text/event-stream" } });
      },
      { clock, onTimeout, sseHeartbeat: 100, response: { idle: 10_000 } },
    );
    const response = (await wrapped(new Request("http://x/events"))) as Response;
    const reader = response.body!.getReader();
    const texts: string[] = [];
    void (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        texts.push(new TextDecoder().decode(value));
      }
    })();
    await clock.advance(650);
    expect(texts.filter((t) => t === ":\n").length).toBeGreaterThanOrEqual(4);
    controller.enqueue(encoder.encode("data: x\n\n"));
    controller.close();
    await clock.advance(10);
  });
});

describe("nested withDeadlines", () => {
  it("a stalled download reader is reported once, not once per layer", async () => {
    const { clock, events, onTimeout } = setup();
    const producer = trackedProducer(clock, drip(1 << 20, 64 * 1024, 1));
    const inner = withDeadlines(() => new Response(producer.stream), { clock, onTimeout, response: { idle: 300 } });
    const outer = withDeadlines(inner, { clock, onTimeout, response: { idle: 500 } });
    const response = (await outer(new Request("http://x/download"))) as Response;
    const reader = response.body!.getReader();
    const first = reader.read(); // one chunk, then the client stops reading
    await clock.advance(10);
    expect((await first).done).toBe(false);
    await clock.advance(2000);
    expect(events.length).toBe(1);
    expect(producer.cancelled).toBe(true);
  });

  it("the inner layer's limits apply to the request it shares with the outer one", async () => {
    const { clock, events, onTimeout } = setup();
    const upload = scriptedUpload(clock, [{ at: 10, bytes: 100 }], { endAt: 1e9 });
    const inner = withDeadlines(async (request: Request) => new Response(await request.arrayBuffer()), {
      clock,
      onTimeout,
      request: { idle: 200 },
    });
    const outer = withDeadlines(inner, { clock, onTimeout, request: { idle: 5000 } });
    const pending = outer(upload.request);
    await clock.advance(300);
    expect(((await pending) as Response).status).toBe(408);
    expect(events.length).toBe(1);
  });
});

describe("nested withDeadlines: who reports, which limits", () => {
  it("the outer layer reports and answers; the inner layer's defaults do not override the outer's limits", async () => {
    const { clock, events, onTimeout } = setup();
    const innerEvents: unknown[] = [];
    const upload = scriptedUpload(clock, [{ at: 10, bytes: 100 }], { endAt: 1e9 });
    let innerLimits: unknown;
    // The inner layer gives no request limits: its defaults (idle 30 s) must not replace the outer 400 ms.
    const inner = withDeadlines(
      async (request: Request) => {
        innerLimits = deadlines(request).request.limits;
        return new Response(await request.arrayBuffer());
      },
      {
        clock,
        onTimeout: (event) => innerEvents.push(event),
        timeoutResponse: () => new Response("inner", { status: 418 }),
        handler: 5000,
      },
    );
    const outer = withDeadlines(inner, { clock, onTimeout, request: { idle: 400 } });
    const pending = outer(upload.request);
    await clock.advance(500);
    const response = (await pending) as Response;
    expect(response.status).toBe(408);
    expect(innerLimits).toMatchObject({ idle: 400 });
    expect(events.map((e) => e.direction)).toEqual(["request"]);
    expect(innerEvents).toEqual([]);
  });

  it("the inner layer's handler deadline applies to the shared exchange", async () => {
    const { clock, events, onTimeout } = setup();
    const inner = withDeadlines(() => new Promise<Response>(() => {}), { clock, onTimeout, handler: 300 });
    const outer = withDeadlines(inner, { clock, onTimeout, handler: 5000 });
    const pending = outer(new Request("http://x/slow"));
    await clock.advance(350);
    expect(((await pending) as Response).status).toBe(503);
    expect(events.map((e) => e.direction)).toEqual(["handler"]);
  });
});

describe("a framework's own error answer to a request-body timeout", () => {
  it("becomes the timeout answer (408, Connection: close), so the unread upload does not stay on a kept-alive connection", async () => {
    const { clock, events, onTimeout } = setup();
    const upload = scriptedUpload(clock, [{ at: 10, bytes: 100 }], { endAt: 1e9 });
    // What Elysia, h3 or Express-style error handlers do: catch, answer 400 or 500.
    const frameworkLike = async (request: Request) => {
      try {
        return new Response(await request.arrayBuffer());
      } catch {
        return Response.json({ error: "Bad Request" }, { status: 400 });
      }
    };
    const pending = withDeadlines(frameworkLike, { clock, onTimeout, request: { idle: 500 } })(upload.request);
    await clock.advance(600);
    const response = (await pending) as Response;
    expect(response.status).toBe(408);
    expect(response.headers.get("connection")).toBe("close");
    expect(events.length).toBe(1);
  });

  it("a handler that catches the timeout and answers a success keeps its answer", async () => {
    const { clock, onTimeout } = setup();
    const upload = scriptedUpload(clock, [{ at: 10, bytes: 100 }], { endAt: 1e9 });
    const partial = async (request: Request) => {
      try {
        await request.arrayBuffer();
      } catch {
        return new Response("saved what arrived", { status: 202 });
      }
      return new Response("all");
    };
    const pending = withDeadlines(partial, { clock, onTimeout, request: { idle: 500 } })(upload.request);
    await clock.advance(600);
    expect(((await pending) as Response).status).toBe(202);
  });
});
