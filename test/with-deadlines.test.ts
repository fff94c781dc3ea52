import { Hono } from "hono";
import { describe, expect, it, vi } from "vitest";
import {
  createVirtualClock,
  deadlineDebugCounters,
  deadlines,
  isTimeoutError,
  type TimeoutError,
  withDeadlines,
} from "../src/index.ts";
import { clientRequest, drip, scriptedConsumer, scriptedUpload, trackedProducer } from "./support/fetch-peers.ts";
import { virtualClockAndTimeouts as setup } from "./support/virtual-clock-timeouts.ts";

const KiB = 1024;

describe("withDeadlines: shape", () => {
  it("passes extra arguments through untouched and keeps a bodyless request bodyless", async () => {
    const { clock, onTimeout } = setup();
    const env = { KEY: "v" };
    const ctx = { waitUntil() {} };
    let seen: unknown[] = [];
    const wrapped = withDeadlines(
      (request: Request, e: typeof env, c: typeof ctx) => {
        seen = [request.method, request.headers.get("x-a"), request.body, e, c];
        return new Response("ok");
      },
      { clock, onTimeout },
    );
    const { request } = clientRequest("http://localhost/", { headers: { "x-a": "1" } });
    const response = await wrapped(request, env, ctx);
    expect(seen).toEqual(["GET", "1", null, env, ctx]);
    expect(await (response as Response).text()).toBe("ok");
  });

  it("gives the handler a guarded request body with the same method, URL and headers", async () => {
    const { clock, onTimeout } = setup();
    const upload = scriptedUpload(clock, drip(3000, 1000, 10), {
      headers: { "content-type": "application/octet-stream" },
    });
    const wrapped = withDeadlines(
      async (request: Request) => {
        expect(request).not.toBe(upload.request);
        expect([request.method, request.url, request.headers.get("content-type")]).toEqual([
          "POST",
          "http://localhost/upload",
          "application/octet-stream",
        ]);
        expect(deadlines(request).request.state).toBe("active");
        const bytes = (await request.arrayBuffer()).byteLength;
        expect(deadlines(request).request.stats.bytes).toBe(3000);
        return Response.json({ bytes });
      },
      { clock, onTimeout },
    );
    const pending = wrapped(upload.request);
    await clock.advance(100);
    expect(await ((await pending) as Response).json()).toEqual({ bytes: 3000 });
  });

  it("the request and response options merge field by field over the defaults; null turns a field off", async () => {
    const { clock, onTimeout } = setup();
    const limitsOf = async (options: Parameters<typeof withDeadlines>[1]) => {
      let seen: unknown;
      const wrapped = withDeadlines(
        (request: Request) => {
          seen = [deadlines(request).request.limits, deadlines(request).response.limits];
          return new Response(null);
        },
        { clock, onTimeout, ...options },
      );
      await wrapped(scriptedUpload(clock, drip(10, 10, 1)).request);
      return seen as { idle: number | null; minRate: number | null; grace: number | null }[];
    };
    const [partial] = await limitsOf({ request: { idle: 10_000 } });
    expect(partial).toMatchObject({ idle: 10_000, minRate: 240, grace: 5_000 });
    const [noRate, response] = await limitsOf({ request: { minRate: null }, response: { total: 60_000 } });
    expect(noRate).toMatchObject({ idle: 30_000, minRate: null });
    expect(response).toMatchObject({ idle: 30_000, minRate: 240, grace: 5_000, total: 60_000 });
    const [none] = await limitsOf({ request: { idle: null, minRate: null } });
    expect(none).toMatchObject({ idle: null, minRate: null, total: null });
  });

  it("deadlines() names the mistake for a request it does not know", () => {
    expect(() => deadlines(new Request("http://x/"))).toThrow(/not handled by withDeadlines/);
  });

  it("refuses bad options at wrap time", () => {
    expect(() => withDeadlines("nope" as never)).toThrow(TypeError);
    expect(() => withDeadlines(() => new Response(), { requests: {} } as never)).toThrow(/unknown option "requests"/);
    expect(() => withDeadlines(() => new Response(), { request: { idle: -1 } })).toThrow(/request.*idle.*-1/);
    expect(() => withDeadlines(() => new Response(), { handler: -5 })).toThrow(RangeError);
    expect(() => withDeadlines(() => new Response(), { handler: "5s" as never })).toThrow(TypeError);
  });

  it("a policy returning nonsense is a clear error", async () => {
    const wrapped = withDeadlines(() => new Response(), { policy: () => ({ requst: {} }) as never, onTimeout: false });
    await expect(wrapped(new Request("http://x/"))).rejects.toThrow(/unknown field "requst"/);
    const wrapped2 = withDeadlines(() => new Response(), {
      policy: () => ({ request: { idle: "1" } }) as never,
      onTimeout: false,
    });
    await expect(wrapped2(new Request("http://x/"))).rejects.toThrow(/idle must be a number/);
  });

  it("does not swallow or rewrite handler errors that are not timeouts", async () => {
    const boom = new Error("bug in handler");
    const wrapped = withDeadlines(
      () => {
        throw boom;
      },
      { onTimeout: false },
    );
    await expect(wrapped(new Request("http://x/"))).rejects.toBe(boom);
    const asyncWrapped = withDeadlines(async () => Promise.reject(boom), { onTimeout: false });
    await expect(asyncWrapped(new Request("http://x/"))).rejects.toBe(boom);
  });
});

describe("withDeadlines: the request body", () => {
  it("a drip under minRate fails; the handler sees the error; escaping, it becomes 408 with Connection: close", async () => {
    const { clock, events, onTimeout } = setup();
    let seenByHandler: unknown;
    const upload = scriptedUpload(clock, drip(10 * KiB, 100, 100)); // 1000 B/s
    const wrapped = withDeadlines(
      async (request: Request) => {
        try {
          await request.arrayBuffer();
        } catch (error) {
          seenByHandler = error;
          throw error;
        }
        return new Response("done");
      },
      { clock, onTimeout, request: { minRate: 4 * KiB, grace: 2000 } },
    );
    const pending = wrapped(upload.request);
    await clock.advance(10_000);
    const response = (await pending) as Response;
    expect(response.status).toBe(408);
    expect(response.headers.get("connection")).toBe("close");
    expect(isTimeoutError(seenByHandler)).toBe(true);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      method: "POST",
      path: "/upload",
      direction: "request",
      limit: "minRate",
      afterHeaders: false,
    });
    expect(events[0]!.error).toBe(seenByHandler);
    expect(upload.sourceCancelled).toBe(true);
  });

  it("a handler that catches the timeout and answers a success itself is obeyed (an error status becomes the 408)", async () => {
    const { clock, onTimeout } = setup();
    const upload = scriptedUpload(clock, [{ at: 100_000, bytes: 1 }]);
    const wrapped = withDeadlines(
      async (request: Request) => {
        try {
          await request.text();
          return new Response("ok");
        } catch (error) {
          return new Response(`custom: ${(error as TimeoutError).limit}`, { status: 202 });
        }
      },
      { clock, onTimeout, request: { idle: 1000 } },
    );
    const pending = wrapped(upload.request);
    await clock.advance(2000);
    const response = (await pending) as Response;
    expect([response.status, await response.text()]).toEqual([202, "custom: idle"]);
  });

  it("a busy handler that is not reading never gets its client timed out", async () => {
    const { clock, events, onTimeout } = setup();
    const upload = scriptedUpload(clock, drip(1000, 100, 1));
    const wrapped = withDeadlines(
      async (request: Request) => {
        await clock.sleep(60_000); // e.g. waiting on a database before reading the body
        return new Response(String((await request.arrayBuffer()).byteLength));
      },
      { clock, onTimeout, request: { idle: 1000, minRate: 1000 } },
    );
    const pending = wrapped(upload.request);
    await clock.advance(70_000);
    expect(await ((await pending) as Response).text()).toBe("1000");
    expect(events).toHaveLength(0);
  });

  it("relax after authentication: raised limits govern the rest of the upload", async () => {
    const policy = { request: { idle: 5000, minRate: 10 * KiB, grace: 1000 } };
    const handler = async (request: Request) => {
      if (request.headers.get("authorization") === "Bearer demo") {
        deadlines(request).request.set({ idle: 60_000, minRate: 1 * KiB, grace: 5000, total: null });
      }
      return Response.json({ bytes: (await request.arrayBuffer()).byteLength });
    };
    const run = async (headers: HeadersInit) => {
      const { clock, onTimeout } = setup();
      // 2 KiB/s: too slow for the default 10 KiB/s, fine for the authenticated 1 KiB/s.
      const upload = scriptedUpload(clock, drip(40 * KiB, 2 * KiB, 1000), { headers });
      const pending = withDeadlines(handler, { clock, onTimeout, ...policy })(upload.request);
      await clock.advance(60_000);
      return (await pending) as Response;
    };
    expect((await run({})).status).toBe(408);
    const ok = await run({ authorization: "Bearer demo" });
    expect([ok.status, await ok.json()]).toEqual([200, { bytes: 40 * KiB }]);
  });

  it("per-route policy: the policy function sees the request and the extra arguments", async () => {
    const { clock, events, onTimeout } = setup();
    const policy = vi.fn((request: Request, env: { strict: boolean }) =>
      new URL(request.url).pathname === "/strict" && env.strict
        ? { request: { idle: 500 } }
        : { request: { idle: null, minRate: null } },
    );
    const wrapped = withDeadlines(
      async (request: Request, _env: { strict: boolean }) => new Response(await request.text()),
      { clock, onTimeout, policy },
    );
    const strict = scriptedUpload(clock, [{ at: 2000, bytes: 5 }], { url: "http://localhost/strict" });
    const lax = scriptedUpload(clock, [{ at: 2000, bytes: 5 }], { url: "http://localhost/lax" });
    const a = wrapped(strict.request, { strict: true });
    const b = wrapped(lax.request, { strict: true });
    await clock.advance(3000);
    expect(((await a) as Response).status).toBe(408);
    expect(((await b) as Response).status).toBe(200);
    expect(policy).toHaveBeenCalledTimes(2);
    expect(events.map((e) => e.path)).toEqual(["/strict"]);
  });
});

describe("withDeadlines: the handler deadline", () => {
  it("answers 503 with Connection: close at once, aborts the signal, and cancels the body of a Response returned late", async () => {
    const { clock, events, onTimeout } = setup();
    const producer = trackedProducer(clock, drip(1000, 100, 10, 10_000));
    let signal!: AbortSignal;
    const wrapped = withDeadlines(
      async (request: Request) => {
        signal = deadlines(request).signal;
        await clock.sleep(5000); // ignores its signal
        return new Response(producer.stream);
      },
      { clock, onTimeout, handler: 1000 },
    );
    const pending = wrapped(clientRequest("http://localhost/slow").request);
    await clock.advance(1000);
    const response = (await pending) as Response;
    expect(response.status).toBe(503);
    expect(response.headers.get("connection")).toBe("close");
    expect(await response.text()).toBe("Service Unavailable\n");
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toMatchObject({
      name: "TimeoutError",
      limit: "handler",
      code: "ERR_DEADLINE_HANDLER",
      limitValue: 1000,
    });
    expect(events.map((e) => [e.direction, e.limit])).toEqual([["handler", "handler"]]);
    await clock.advance(5000);
    expect(producer.cancelled).toBe(true);
    expect(producer.cancelReason).toBe(signal.reason);
    expect(deadlineDebugCounters(clock)).toMatchObject({ scheduledDeadlines: 0 });
  });

  it("can be set and extended from inside the handler", async () => {
    const { clock, onTimeout } = setup();
    const wrapped = withDeadlines(
      async (request: Request) => {
        deadlines(request).setHandlerTimeout(10_000); // this route is allowed longer
        await clock.sleep(3000);
        return new Response("slow but fine");
      },
      { clock, onTimeout, handler: 1000 },
    );
    const pending = wrapped(new Request("http://localhost/"));
    await clock.advance(4000);
    expect(((await pending) as Response).status).toBe(200);
    expect(() => deadlines(new Request("http://x")).setHandlerTimeout(1)).toThrow();
  });

  it("can be set after the handler's first await, with none configured", async () => {
    const { clock, onTimeout } = setup();
    const wrapped = withDeadlines(
      async (request: Request) => {
        await clock.sleep(10);
        deadlines(request).setHandlerTimeout(500);
        await clock.sleep(60_000);
        return new Response("too late");
      },
      { clock, onTimeout },
    );
    const pending = wrapped(new Request("http://localhost/"));
    await clock.advance(500);
    expect(((await pending) as Response).status).toBe(503);
  });

  it("a response total that runs out before the handler returns answers 503", async () => {
    const { clock, events, onTimeout } = setup();
    const wrapped = withDeadlines(
      async () => {
        await clock.sleep(10_000);
        return new Response("late");
      },
      { clock, onTimeout, response: { total: 2000 } },
    );
    const pending = wrapped(new Request("http://localhost/"));
    await clock.advance(2000);
    expect(((await pending) as Response).status).toBe(503);
    expect(events.map((e) => [e.direction, e.limit, e.afterHeaders])).toEqual([["response", "total", false]]);
  });

  it("uses the timeoutResponse option when given", async () => {
    const { clock, onTimeout } = setup();
    const wrapped = withDeadlines(() => new Promise<Response>(() => {}), {
      clock,
      onTimeout,
      handler: 50,
      timeoutResponse: (event) => new Response(`gave up after ${event.elapsed} ms`, { status: 504 }),
    });
    const pending = wrapped(new Request("http://localhost/"));
    await clock.advance(50);
    const response = (await pending) as Response;
    expect([response.status, await response.text()]).toEqual([504, "gave up after 50 ms"]);
  });
});

describe("withDeadlines: the response body", () => {
  it("a quiet SSE producer survives gaps beyond idle; a stalled consumer dies with an error, never a clean end", async () => {
    const { clock, events, onTimeout } = setup();
    const sse = trackedProducer(clock, drip(100, 20, 20_000));
    const wrapped = withDeadlines(
      () => new Response(sse.stream, { headers: { "content-type": "text/event-stream" } }),
      { clock, onTimeout, response: { idle: 1000 } },
    );
    const quiet = (await wrapped(new Request("http://localhost/events"))) as Response;
    expect(quiet.headers.get("content-type")).toBe("text/event-stream");
    const reader1 = scriptedConsumer(clock, quiet.body!);
    await clock.advance(200_000);
    expect(reader1).toMatchObject({ done: true, bytes: 100, error: undefined });

    const download = trackedProducer(clock, drip(1024 * KiB, 64 * KiB, 1));
    const stalled = (await withDeadlines(() => new Response(download.stream), {
      clock,
      onTimeout,
      response: { idle: 1000 },
    })(new Request("http://localhost/download"))) as Response;
    const reader2 = scriptedConsumer(clock, stalled.body!, { pauseAfter: () => 100_000 });
    await clock.advance(200_000);
    expect(reader2.done).toBe(false);
    expect(isTimeoutError(reader2.error)).toBe(true);
    expect(download.cancelled).toBe(true);
    expect(events.map((e) => [e.path, e.direction, e.limit, e.afterHeaders])).toEqual([
      ["/download", "response", "idle", true],
    ]);
  });

  it("keeps status, statusText and headers of the handler's Response", async () => {
    const wrapped = withDeadlines(
      () => new Response("teapot", { status: 418, statusText: "I'm a teapot", headers: { "x-y": "z" } }),
      { onTimeout: false },
    );
    const response = (await wrapped(new Request("http://x/"))) as Response;
    expect([response.status, response.statusText, response.headers.get("x-y"), await response.text()]).toEqual([
      418,
      "I'm a teapot",
      "z",
      "teapot",
    ]);
  });

  it("relax for a paying user: raised response limits let a slow download finish", async () => {
    const run = async (paying: boolean) => {
      const { clock, onTimeout } = setup();
      const producer = trackedProducer(clock, drip(256 * KiB, 16 * KiB, 1));
      const wrapped = withDeadlines(
        (request: Request) => {
          if (paying) deadlines(request).response.set({ minRate: 1 * KiB, grace: 10_000, idle: 60_000 });
          return new Response(producer.stream);
        },
        { clock, onTimeout, response: { minRate: 32 * KiB, grace: 1000, idle: 5000 } },
      );
      const response = (await wrapped(new Request("http://localhost/big"))) as Response;
      const consumer = scriptedConsumer(clock, response.body!, { pauseAfter: () => 4000 }); // 4 KiB/s
      await clock.advance(2_000_000);
      return consumer;
    };
    expect(isTimeoutError((await run(false)).error)).toBe(true);
    expect(await run(true)).toMatchObject({ done: true, bytes: 256 * KiB, error: undefined });
  });

  it("passes a body that declares a Content-Length of at most 64 KiB through unwrapped; a larger one is guarded", async () => {
    const small = new Response("x".repeat(64 * 1024), { headers: { "content-length": String(64 * 1024) } });
    const large = new Response("x".repeat(64 * 1024 + 1), { headers: { "content-length": String(64 * 1024 + 1) } });
    const bogus = new Response("x", { headers: { "content-length": "1e3" } });
    const wrap = (r: Response) => withDeadlines(() => r, { onTimeout: false })(new Request("http://x/"));
    expect(await wrap(small)).toBe(small);
    expect(await wrap(large)).not.toBe(large);
    expect(await wrap(bogus)).not.toBe(bogus);
  });

  it("passes through untouched: no body, HEAD, 204, 304, WebSocket responses, Bun's upgrade (undefined)", async () => {
    const cases: [string, () => unknown, RequestInit?][] = [
      ["no body", () => new Response(null, { status: 200 })],
      ["HEAD", () => new Response("x"), { method: "HEAD" }],
      ["204", () => new Response(null, { status: 204 })],
      ["304", () => new Response(null, { status: 304 })],
      ["Workers webSocket", () => Object.assign(new Response("x"), { webSocket: {} })],
      ["101 upgrade (Deno)", () => ({ status: 101, body: null, headers: new Headers({ upgrade: "websocket" }) })],
      ["Bun server.upgrade", () => undefined],
    ];
    for (const [name, make, init] of cases) {
      const value = make();
      const out = await withDeadlines(() => value as Response, { onTimeout: false })(new Request("http://x/", init));
      expect(out, name).toBe(value);
    }
    expect(deadlineDebugCounters().scheduledDeadlines).toBe(0);
  });
});

describe("withDeadlines: the client goes away", () => {
  it("cancels the response producer at once and aborts the request's signal; nothing outlives it", async () => {
    const { clock, events, onTimeout } = setup();
    const producer = trackedProducer(clock, drip(1000, 10, 100));
    const { request, disconnect } = clientRequest("http://localhost/events");
    let signal!: AbortSignal;
    const wrapped = withDeadlines(
      (r: Request) => {
        signal = deadlines(r).signal;
        return new Response(producer.stream);
      },
      { clock, onTimeout, response: { idle: 1000, total: 3_600_000 } },
    );
    const response = (await wrapped(request)) as Response;
    const consumer = scriptedConsumer(clock, response.body!);
    await clock.advance(500);
    disconnect(new DOMException("client closed the connection", "AbortError"));
    await clock.settle();
    expect(producer.cancelled).toBe(true);
    expect(signal.aborted).toBe(true);
    expect((signal.reason as DOMException).name).toBe("AbortError");
    expect(consumer.error).toBe(signal.reason);
    expect(events).toHaveLength(0); // a disconnect is not a timeout
    expect(deadlineDebugCounters(clock)).toMatchObject({ scheduledDeadlines: 0, timerArmed: false });
  });

  it("before the handler returns: the late Response's body is cancelled", async () => {
    const { clock, onTimeout } = setup();
    const producer = trackedProducer(clock, drip(100, 10, 10));
    const { request, disconnect } = clientRequest("http://localhost/");
    const wrapped = withDeadlines(
      async () => {
        await clock.sleep(1000);
        return new Response(producer.stream, { status: 201 });
      },
      { clock, onTimeout },
    );
    const pending = wrapped(request);
    await clock.advance(100);
    disconnect();
    await clock.advance(1000);
    const response = (await pending) as Response;
    expect([response.status, response.body]).toEqual([201, null]);
    expect(producer.cancelled).toBe(true);
  });
});

describe("withDeadlines: reporting", () => {
  it("reports each firing once with a concise console.warn line by default", async () => {
    const clock = createVirtualClock();
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    try {
      const upload = scriptedUpload(clock, [{ at: 50_000, bytes: 1 }]);
      const pending = withDeadlines(async (r: Request) => new Response(await r.text()), {
        clock,
        request: { idle: 1000 },
      })(upload.request);
      await clock.advance(5000);
      expect(((await pending) as Response).status).toBe(408);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn.mock.calls[0]![0]).toMatch(
        /^\[stream-deadlines\] POST \/upload request idle timeout: request body stalled: no data for 1\.0 s .* bytes=0 elapsed_ms=1000 rate=0 B\/s$/,
      );
    } finally {
      warn.mockRestore();
    }
  });

  it("onTimeout: false silences it", async () => {
    const clock = createVirtualClock();
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    try {
      const upload = scriptedUpload(clock, [{ at: 50_000, bytes: 1 }]);
      const pending = withDeadlines(async (r: Request) => new Response(await r.text()), {
        clock,
        request: { idle: 1000 },
        onTimeout: false,
      })(upload.request);
      await clock.advance(5000);
      expect(((await pending) as Response).status).toBe(408);
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });
});

describe("withDeadlines with Hono", () => {
  it("withDeadlines(app.fetch) with deadlines(c.req.raw) inside a route", async () => {
    const { clock, events, onTimeout } = setup();
    const app = new Hono();
    app.post("/upload", async (c) => {
      if (c.req.header("authorization") === "Bearer demo") deadlines(c.req.raw).request.set({ idle: 60_000 });
      const body = await c.req.arrayBuffer();
      return c.json({ bytes: body.byteLength });
    });
    // Hono turns thrown errors into 500s; rethrowing timeouts lets withDeadlines answer 408.
    app.onError((error, c) => {
      if (isTimeoutError(error)) throw error;
      return c.text("error", 500);
    });
    const fetch = withDeadlines(app.fetch, { clock, onTimeout, request: { idle: 2000 } });
    const slowAuthed = scriptedUpload(clock, [{ at: 5000, bytes: 10 }], { headers: { authorization: "Bearer demo" } });
    const slowAnon = scriptedUpload(clock, [{ at: 5000, bytes: 10 }]);
    const a = fetch(slowAuthed.request);
    const b = fetch(slowAnon.request);
    await clock.advance(10_000);
    const [ra, rb] = [(await a) as Response, (await b) as Response];
    expect([ra.status, await ra.json()]).toEqual([200, { bytes: 10 }]);
    expect(rb.status).toBe(408);
    expect(events).toHaveLength(1);
  });
});

describe("withDeadlines: nothing outlives a request", () => {
  it("after 250 requests ending every way, no guard, deadline, timer or listener is left", async () => {
    const { getEventListeners } = (await import("node:events")) as unknown as {
      getEventListeners(target: EventTarget, type: string): unknown[];
    };
    const { clock, onTimeout } = setup();
    const before = deadlineDebugCounters(clock).liveGuards;
    const signals: AbortSignal[] = [];
    const wrapped = withDeadlines(
      async (request: Request) => {
        const kind = new URL(request.url).pathname;
        if (kind === "/upload") return new Response(await request.text());
        if (kind === "/slow") await clock.sleep(10_000);
        return new Response(trackedProducer(clock, drip(300, 100, 10)).stream);
      },
      { clock, onTimeout, request: { idle: 1000 }, response: { idle: 1000 }, handler: 5000 },
    );
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 250; i++) {
      const kind = i % 5;
      if (kind === 0 || kind === 1) {
        const upload = scriptedUpload(clock, kind === 0 ? drip(300, 100, 10) : [{ at: 50_000, bytes: 1 }]);
        signals.push(upload.request.signal);
        pending.push(wrapped(upload.request).then((r) => (r as Response).text()));
      } else {
        const { request, disconnect } = clientRequest(`http://localhost/${kind === 2 ? "slow" : "download"}`);
        signals.push(request.signal);
        pending.push(
          wrapped(request).then((r) => {
            const response = r as Response;
            if (kind === 4) {
              scriptedConsumer(clock, response.body!);
              clock.setTimer(() => disconnect(), 15);
              return;
            }
            return kind === 3
              ? void scriptedConsumer(clock, response.body!, { pauseAfter: () => 100_000 })
              : response.text();
          }),
        );
      }
    }
    await clock.advance(200_000);
    await Promise.all(pending);
    expect(deadlineDebugCounters(clock)).toMatchObject({
      liveGuards: before,
      scheduledDeadlines: 0,
      timerArmed: false,
    });
    // Only our own listener counts: undici's derived Request (the one with the guarded body) follows
    // the original signal through a listener that undici itself removes when the Request is collected.
    const ours = (s: AbortSignal) => getEventListeners(s, "abort").filter((l) => typeof l === "object");
    expect(signals.filter((s) => ours(s).length > 0)).toHaveLength(0);
    // The check can fail: while a response is still streaming, the listener is there.
    const { request } = clientRequest("http://localhost/download");
    const open = (await wrapped(request)) as Response;
    expect(ours(request.signal)).toHaveLength(1);
    await open.body!.cancel();
    expect(ours(request.signal)).toHaveLength(0);
  });
});

describe("withDeadlines: a runtime that cancels the response body", () => {
  it("aborts deadlines(request).signal: the client went away, even where request.signal says nothing", async () => {
    const { clock, events, onTimeout } = setup();
    const producer = trackedProducer(clock, drip(1000, 10, 100));
    let signal!: AbortSignal;
    const wrapped = withDeadlines(
      (r: Request) => {
        signal = deadlines(r).signal;
        return new Response(producer.stream);
      },
      { clock, onTimeout },
    );
    const response = (await wrapped(new Request("http://localhost/events"))) as Response;
    await response.body!.cancel("runtime: socket closed");
    expect(producer.cancelReason).toBe("runtime: socket closed");
    expect(signal.aborted).toBe(true);
    expect((signal.reason as DOMException).name).toBe("AbortError");
    expect(events).toHaveLength(0);
  });
});

describe("withDeadlines: timerScope", () => {
  it('"request" gives each request its own scheduler (workerd cancels a request\'s timers when it ends)', async () => {
    const { clock, onTimeout } = setup();
    const wrapped = withDeadlines(async (r: Request) => new Response(await r.text()), {
      clock,
      onTimeout,
      timerScope: "request",
      request: { idle: 1000 },
    });
    const upload = scriptedUpload(clock, [{ at: 50_000, bytes: 1 }]);
    const pending = wrapped(upload.request);
    await clock.advance(10);
    // The deadline is armed, but not in the shared scheduler of the clock: in the request's own.
    expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
    expect(clock.pendingTimers).toBeGreaterThan(0);
    await clock.advance(1000);
    expect(((await pending) as Response).status).toBe(408);
    expect(() => withDeadlines(() => new Response(), { timerScope: "global" as never })).toThrow(
      /timerScope must be "shared" or "request"/,
    );
  });
});

describe("withDeadlines: bodies already in memory", () => {
  it("a small in-memory body goes out as bytes, unguarded; a large one is guarded; a stream keeps its order", async () => {
    const { clock, events, onTimeout } = setup();
    const before = deadlineDebugCounters(clock).liveGuards;
    const small = (await withDeadlines(() => new Response("hello world\n", { headers: { "x-a": "1" } }), {
      clock,
      onTimeout,
    })(new Request("http://x/"))) as Response;
    expect(deadlineDebugCounters(clock).liveGuards).toBe(before); // no guard was made for it
    expect([small.headers.get("x-a"), await small.text()]).toEqual(["1", "hello world\n"]);

    const big = new Uint8Array(256 * 1024).map((_, i) => i & 0xff);
    const large = (await withDeadlines(() => new Response(big), { clock, onTimeout, response: { idle: 1000 } })(
      new Request("http://x/big"),
    )) as Response;
    const stalled = scriptedConsumer(clock, large.body!, { pauseAfter: () => 100_000 });
    await clock.advance(200_000);
    expect(isTimeoutError(stalled.error)).toBe(true); // held in memory, yet a stalled client is cut
    expect(events.map((e) => e.path)).toEqual(["/big"]);

    // A stream whose first chunk is there at once and the rest later: all of it, in order.
    const parts = ["first,", "second,", "third"];
    let i = 0;
    const streaming = new ReadableStream<Uint8Array>(
      {
        start: (c) => c.enqueue(new TextEncoder().encode(parts[i++]!)),
        pull: async (c) => {
          await clock.sleep(10);
          if (i < parts.length) c.enqueue(new TextEncoder().encode(parts[i++]!));
          else c.close();
        },
      },
      { highWaterMark: 0 },
    );
    const response = (await withDeadlines(() => new Response(streaming), { clock, onTimeout })(
      new Request("http://x/s"),
    )) as Response;
    const text = response.text();
    await clock.advance(100);
    expect(await text).toBe("first,second,third");
  });
});

describe("withDeadlines: a response body that fails at once", () => {
  it("keeps status and headers and fails the body with the same error; nothing stays behind", async () => {
    const { clock, onTimeout } = setup();
    const before = deadlineDebugCounters(clock).liveGuards;
    const boom = new Error("producer failed at once");
    const failing = new ReadableStream<Uint8Array>({ start: (c) => c.error(boom) });
    const response = (await withDeadlines(() => new Response(failing, { status: 202, headers: { "x-a": "1" } }), {
      clock,
      onTimeout,
    })(new Request("http://x/"))) as Response;
    expect([response.status, response.headers.get("x-a")]).toEqual([202, "1"]);
    await expect(response.text()).rejects.toBe(boom);
    expect(deadlineDebugCounters(clock).liveGuards).toBe(before);
  });
});
