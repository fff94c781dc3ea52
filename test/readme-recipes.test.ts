/**
 * The README's recipes, with the same limits, run on virtual time: each does what its paragraph says.
 */
import { describe, expect, it } from "vitest";
import { deadlines, fetchWithDeadlines, isTimeoutError, withDeadlines } from "../src/index.ts";
import { clientRequest, drip, scriptedConsumer, scriptedUpload, trackedProducer } from "./support/fetch-peers.ts";
import { virtualClockAndTimeouts as setup } from "./support/virtual-clock-timeouts.ts";

const KiB = 1024;
const encoder = new TextEncoder();

describe("README recipes", () => {
  it("SSE: heartbeats on /events while quiet; a client that stops taking events is cut at idle", async () => {
    const { clock, events, onTimeout } = setup();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const handler = () =>
      new Response(new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) }, { highWaterMark: 0 }), {
        headers: { "content-type": "text/event-stream" },
      });
    const app = withDeadlines(handler, {
      clock,
      onTimeout,
      response: { idle: 30_000, minRate: null },
      policy: (request) => (new URL(request.url).pathname === "/events" ? { sseHeartbeat: 15_000 } : undefined),
    });
    const response = (await app(new Request("http://x/events"))) as Response;
    const reader = response.body!.getReader();
    const received: string[] = [];
    let failure: unknown;
    void (async () => {
      try {
        while (received.length < 3) {
          const { done, value } = await reader.read();
          if (done) return;
          received.push(new TextDecoder().decode(value));
        }
      } catch (error) {
        failure = error;
      }
    })(); // takes three pieces, then stops reading
    controller.enqueue(encoder.encode("data: hello\n\n"));
    await clock.advance(31_000); // an hour-long quiet stream would be fine too: heartbeats at 15 s and 30 s
    expect(received).toEqual(["data: hello\n\n", ":\n", ":\n"]);
    expect(events).toEqual([]);
    controller.enqueue(encoder.encode("data: unread\n\n")); // the client no longer takes events
    await clock.advance(31_000);
    expect(events.map((e) => [e.path, e.limit, e.afterHeaders])).toEqual([["/events", "idle", true]]);
    expect(failure).toBeUndefined();
  });

  it("a large upload after authentication: anonymous slow uploads are cut, the authenticated one may take long", async () => {
    const run = async (authenticated: boolean) => {
      const { clock, events, onTimeout } = setup();
      const authenticate = async (request: Request) => request.headers.get("authorization") === "Bearer ok";
      let stored = 0;
      const store = async (body: ReadableStream<Uint8Array>) => {
        const reader = body.getReader();
        for (let r = await reader.read(); !r.done; r = await reader.read()) stored += r.value.byteLength;
      };
      const app = withDeadlines(
        async (request: Request) => {
          if (!(await authenticate(request))) return new Response("unauthorized", { status: 401 });
          deadlines(request).request.set({ idle: 60_000, minRate: 256, grace: 30_000, total: null });
          await store(request.body!);
          return new Response("stored");
        },
        { clock, onTimeout, request: { idle: 5_000, minRate: 10_240, total: 30_000 } },
      );
      // 1 KiB every 2 s for 10 minutes: slow, but never stalled and above 256 B/s.
      const upload = scriptedUpload(clock, drip(300 * KiB, KiB, 2000), {
        headers: authenticated ? { authorization: "Bearer ok" } : {},
      });
      const pending = app(upload.request);
      await clock.advance(700_000);
      const response = (await pending) as Response;
      return { status: response.status, stored, limits: events.map((e) => e.limit) };
    };
    expect(await run(true)).toEqual({ status: 200, stored: 300 * KiB, limits: [] });
    expect((await run(false)).status).toBe(401);
    // Without the relaxation the same upload breaks the anonymous limits.
    const { clock, events, onTimeout } = setup();
    const strict = withDeadlines(
      async (request: Request) => new Response(String((await request.arrayBuffer()).byteLength)),
      { clock, onTimeout, request: { idle: 5_000, minRate: 10_240, total: 30_000 } },
    );
    const pending = strict(scriptedUpload(clock, drip(300 * KiB, KiB, 2000)).request);
    await clock.advance(700_000);
    expect([((await pending) as Response).status, events.map((e) => e.limit)]).toEqual([408, ["minRate"]]);
  });

  it("a proxy guarding both sides: a stalled origin is cut and aborted; a client that leaves aborts the origin", async () => {
    const run = async (scenario: "origin stalls" | "client leaves") => {
      const { clock, events, onTimeout } = setup();
      const origin = trackedProducer(
        clock,
        scenario === "origin stalls"
          ? [
              { at: 10, bytes: 1000 },
              { at: 100_000, bytes: 1000 },
            ]
          : drip(1024 * KiB, 16 * KiB, 100),
      );
      let upstreamSignal: AbortSignal | undefined;
      const fetch = (_input: RequestInfo | URL, init?: RequestInit) => (
        (upstreamSignal = init?.signal ?? undefined), Promise.resolve(new Response(origin.stream))
      );
      const ORIGIN = "http://origin.internal/";
      const proxy = withDeadlines(
        (request: Request) =>
          fetchWithDeadlines(new URL(new URL(request.url).pathname, ORIGIN), {
            method: request.method,
            body: request.body,
            signal: deadlines(request).signal,
            deadlines: { idle: 15_000, minRate: 4_096, clock, fetch },
          }),
        { clock, onTimeout, response: { idle: 30_000, minRate: 1_024 } },
      );
      const client = clientRequest("http://proxy/file");
      const response = (await proxy(client.request)) as Response;
      const consumer = scriptedConsumer(clock, response.body!);
      if (scenario === "client leaves") {
        await clock.advance(1000);
        client.disconnect();
      }
      await clock.advance(60_000);
      return { consumer, origin, upstreamSignal, events };
    };
    const stalled = await run("origin stalls");
    expect(isTimeoutError(stalled.consumer.error)).toBe(true);
    expect((stalled.consumer.error as Error).message).toMatch(/^upstream body (stalled|too slow)/);
    expect([stalled.upstreamSignal?.aborted, stalled.origin.cancelled]).toEqual([true, true]);
    const left = await run("client leaves");
    expect([left.upstreamSignal?.aborted, left.origin.cancelled, left.events]).toEqual([true, true, []]);
  });

  it("the same proxy forwards a client upload that keeps moving for minutes: the client's pace is not the origin's fault", async () => {
    const { clock, events, onTimeout } = setup();
    // The client uploads 180 KiB at 1 KiB/s (3 minutes); the origin takes each chunk as it comes,
    // then answers after 8 s of work (longer than minRate's 5 s grace, shorter than idle).
    const client = scriptedUpload(clock, drip(180 * KiB, KiB, 1000));
    let received = 0;
    const fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
      const upstreamRequest = new Request(input, init);
      for await (const chunk of upstreamRequest.body as unknown as AsyncIterable<Uint8Array>)
        received += chunk.byteLength;
      await clock.sleep(8000);
      return new Response(`stored ${received}`);
    };
    const ORIGIN = "http://origin.internal/";
    const proxy = withDeadlines(
      (request: Request) =>
        fetchWithDeadlines(new URL(new URL(request.url).pathname, ORIGIN), {
          method: request.method,
          body: request.body,
          signal: deadlines(request).signal,
          deadlines: { idle: 15_000, minRate: 4_096, clock, fetch },
        }),
      { clock, onTimeout, response: { idle: 30_000, minRate: 1_024 } },
    );
    const pending = proxy(client.request);
    let answeredAt: number | undefined;
    void Promise.resolve(pending).then(() => (answeredAt = clock.now()));
    await clock.advance(200_000);
    expect(answeredAt).toBe(188_000);
    const response = (await pending) as Response;
    expect([response.status, await response.text(), events]).toEqual([200, `stored ${180 * KiB}`, []]);
  });

  it("per-route policy: /api/ gets a handler deadline and tight upload limits, /download a minimum rate", async () => {
    const { clock, events, onTimeout } = setup();
    const download = trackedProducer(clock, drip(4096 * KiB, 64 * KiB, 1));
    const handler = async (request: Request) => {
      const { pathname } = new URL(request.url);
      if (pathname === "/api/slow") await clock.sleep(20_000);
      if (pathname === "/download") return new Response(download.stream);
      return new Response("ok");
    };
    const app = withDeadlines(handler, {
      clock,
      onTimeout,
      policy(request) {
        const { pathname } = new URL(request.url);
        if (pathname.startsWith("/api/")) return { request: { idle: 5_000, total: 10_000 }, handler: 10_000 };
        if (pathname === "/download") return { response: { minRate: 64 * 1024, grace: 10_000, total: null } };
      },
    });
    const slow = app(new Request("http://x/api/slow"));
    await clock.advance(10_000);
    expect(((await slow) as Response).status).toBe(503);
    const response = (await app(new Request("http://x/download"))) as Response;
    const reader = scriptedConsumer(clock, response.body!, { pauseAfter: () => 2000 }); // 32 KiB/s: half the minimum
    await clock.advance(60_000);
    expect(isTimeoutError(reader.error)).toBe(true);
    expect(events.map((e) => [e.path, e.direction, e.limit])).toEqual([
      ["/api/slow", "handler", "handler"],
      ["/download", "response", "minRate"],
    ]);
  });
});
