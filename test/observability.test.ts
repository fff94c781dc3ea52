/**
 * Every firing visible: the diagnostics channels each adapter publishes to (in process, virtual
 * clock), what a publish costs with nobody subscribed, the TimeoutEvent as a log line (JSON, pino),
 * and stream-deadlines/otel where diagnostics_channel is missing. The OpenTelemetry SDK over real
 * sockets (Node) and on Bun: test/adapter-otel.test.ts.
 */
import diagnostics from "node:diagnostics_channel";
import { Writable } from "node:stream";
import { Hono } from "hono";
import pino from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { withBunDeadlines } from "../adapters/bun.ts";
import { withDenoDeadlines } from "../adapters/deno.ts";
import {
  REQUEST_END_CHANNEL,
  REQUEST_START_CHANNEL,
  type RequestEndMessage,
  type RequestStartMessage,
  TIMEOUT_CHANNEL,
} from "../adapters/diagnostics.ts";
import { deadlines as honoDeadlines } from "../adapters/hono.ts";
import { withWorkersDeadlines } from "../adapters/workers.ts";
import {
  type TimeoutEvent,
  type VirtualClock,
  type WithDeadlinesOptions,
  createVirtualClock,
  withDeadlines,
} from "../src/index.ts";
import { scriptedUpload } from "./support/fetch-peers.ts";

type Handler = (request: Request) => Response | Promise<Response>;
/** An adapter (or the middleware) as a function of a Request, with withDeadlines' options. */
type Runner = (handler: Handler, options: WithDeadlinesOptions) => (request: Request) => Promise<Response>;

const RUNNERS: Record<string, Runner> = {
  deno: (handler, options) => {
    const fetch = withDenoDeadlines(handler, options);
    return (request) => fetch(request, { remoteAddr: { hostname: "127.0.0.1" } });
  },
  bun: (handler, options) => {
    const fetch = withBunDeadlines(handler, options);
    return (request) => fetch(request, undefined as never) as Promise<Response>;
  },
  workers: (handler, options) => {
    const fetch = withWorkersDeadlines(handler, options);
    return (request) => fetch(request, {}, { waitUntil() {}, passThroughOnException() {} });
  },
  "hono middleware (owns the exchange)": (handler, options) => {
    const app = new Hono();
    app.use(honoDeadlines(options as Omit<WithDeadlinesOptions, "policy">));
    app.all("*", (c) => handler(c.req.raw));
    return async (request) => app.fetch(request);
  },
  "hono middleware joining the Bun adapter": (handler, options) => {
    const app = new Hono();
    app.use(honoDeadlines({ onTimeout: false }));
    app.all("*", (c) => handler(c.req.raw));
    const fetch = withBunDeadlines(app.fetch, options);
    return (request) => fetch(request, undefined as never) as Promise<Response>;
  },
};

/** Everything published on the three channels, in order. */
function listen() {
  const seen: { channel: string; message: unknown }[] = [];
  const subscribers = [TIMEOUT_CHANNEL, REQUEST_START_CHANNEL, REQUEST_END_CHANNEL].map((name) => {
    const onMessage = (message: unknown) => seen.push({ channel: name, message });
    diagnostics.subscribe(name, onMessage);
    return () => diagnostics.unsubscribe(name, onMessage);
  });
  return {
    seen,
    timeouts: () => seen.filter((s) => s.channel === TIMEOUT_CHANNEL).map((s) => s.message as TimeoutEvent),
    stop: () => {
      for (const stop of subscribers) stop();
    },
  };
}

let stopListening: (() => void) | undefined;
afterEach(() => {
  stopListening?.();
  stopListening = undefined;
  vi.restoreAllMocks();
});

/** A body that always has a chunk ready (64 KiB each), for a client that takes nothing. */
const endlessBody = () =>
  new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(new Uint8Array(64 * 1024));
    },
  });

interface Scenario {
  options: WithDeadlinesOptions;
  handler: Handler;
  request: (clock: VirtualClock) => Request;
  status: number;
  direction: TimeoutEvent["direction"];
  limit: TimeoutEvent["limit"];
  afterHeaders: boolean;
  outcome: RequestEndMessage["outcome"];
}

const SCENARIOS: Record<string, Scenario> = {
  "request idle (408)": {
    options: { request: { idle: 1000 } },
    handler: async (request) => new Response(await request.text()),
    request: (clock) => scriptedUpload(clock, [{ at: 50_000, bytes: 1 }], { url: "http://x/up?token=s" }).request,
    status: 408,
    direction: "request",
    limit: "idle",
    afterHeaders: false,
    outcome: "timedOut",
  },
  "handler deadline (503)": {
    options: { handler: 1000 },
    handler: () => new Promise<Response>(() => {}),
    request: () => new Request("http://x/slow"),
    status: 503,
    direction: "handler",
    limit: "handler",
    afterHeaders: false,
    outcome: "timedOut",
  },
  "response idle after headers": {
    options: { response: { idle: 1000 } },
    handler: () => new Response(endlessBody()),
    request: () => new Request("http://x/download"),
    status: 200,
    direction: "response",
    limit: "idle",
    afterHeaders: true,
    outcome: "timedOut",
  },
};

describe("diagnostics_channel: every firing, exactly once, under every adapter", () => {
  for (const [adapter, run] of Object.entries(RUNNERS)) {
    for (const [name, scenario] of Object.entries(SCENARIOS)) {
      it(`${adapter}: ${name}`, async () => {
        const clock = createVirtualClock();
        const reported: TimeoutEvent[] = [];
        const fetch = run(scenario.handler, {
          ...scenario.options,
          clock,
          onTimeout: (event) => reported.push(event),
        });
        const listener = listen();
        stopListening = listener.stop;
        const request = scenario.request(clock);
        const pending = fetch(request);
        await clock.advance(5000);
        const response = await pending;
        expect(response.status).toBe(scenario.status);
        if (scenario.afterHeaders) {
          // The runtime takes the first chunk, then the client takes nothing more.
          await response.body!.getReader().read();
          await clock.advance(5000);
        }
        const timeouts = listener.timeouts();
        expect(timeouts).toHaveLength(1);
        expect(timeouts[0]).toMatchObject({
          direction: scenario.direction,
          limit: scenario.limit,
          afterHeaders: scenario.afterHeaders,
        });
        // The one event onTimeout got (the middleware joining an adapter reports through the adapter's).
        if (!adapter.includes("joining")) expect(timeouts[0]).toBe(reported[0]);
        const starts = listener.seen.filter((s) => s.channel === REQUEST_START_CHANNEL);
        const ends = listener.seen.filter((s) => s.channel === REQUEST_END_CHANNEL);
        expect(starts).toHaveLength(1);
        expect(ends).toHaveLength(1);
        const started = (starts[0]!.message as RequestStartMessage).request;
        // The start names the handler's Request, the one the firing's event carries.
        expect(timeouts[0]!.request).toBe(started);
        // Under Hono the chain answers the request-body timeout itself (onError, the TimeoutError's
        // getResponse()), with the exchange's own timeout answer: the end says timedOut all the same.
        expect(ends[0]!.message).toEqual({ request: started, outcome: scenario.outcome });
        expect(listener.seen.map((s) => s.channel)).toEqual([
          REQUEST_START_CHANNEL,
          TIMEOUT_CHANNEL,
          REQUEST_END_CHANNEL,
        ]);
      });
    }
  }

  it("ends tell how the exchange ended: answered, closed, threw", async () => {
    const listener = listen();
    stopListening = listener.stop;
    const fetch = RUNNERS.deno!((request) => {
      const path = new URL(request.url).pathname;
      if (path === "/throw") throw new Error("boom");
      return new Response(path === "/big" ? new Uint8Array(256 * 1024) : "small");
    }, {});
    await (await fetch(new Request("http://x/small"))).text();
    await (await fetch(new Request("http://x/big"))).arrayBuffer();
    await expect(fetch(new Request("http://x/throw"))).rejects.toThrow("boom");
    const outcomes = listener.seen
      .filter((s) => s.channel === REQUEST_END_CHANNEL)
      .map((s) => (s.message as RequestEndMessage).outcome);
    expect(outcomes).toEqual(["answered", "closed", "threw"]);
    expect(listener.timeouts()).toHaveLength(0);
  });

  it("withDeadlines alone (no adapter) publishes nothing: the adapters publish", async () => {
    const clock = createVirtualClock();
    const listener = listen();
    stopListening = listener.stop;
    const fetch = withDeadlines(async (r: Request) => new Response(await r.text()), {
      clock,
      onTimeout: false,
      request: { idle: 1000 },
    });
    const pending = fetch(scriptedUpload(clock, [{ at: 50_000, bytes: 1 }]).request);
    await clock.advance(5000);
    expect(((await pending) as Response).status).toBe(408);
    expect(listener.seen).toEqual([]);
  });
});

describe("the publish path with nobody subscribed", () => {
  it("publishes nothing (no message is built) until somebody subscribes, then every firing", async () => {
    const channels = [TIMEOUT_CHANNEL, REQUEST_START_CHANNEL, REQUEST_END_CHANNEL].map((n) => diagnostics.channel(n));
    const publishes = channels.map((channel) => vi.spyOn(channel, "publish"));
    const clock = createVirtualClock();
    const scenario = SCENARIOS["request idle (408)"]!;
    const fetch = RUNNERS.workers!(scenario.handler, { ...scenario.options, clock, onTimeout: false });
    const once = async () => {
      const pending = fetch(scenario.request(clock));
      await clock.advance(5000);
      expect((await pending).status).toBe(408);
    };
    expect(channels.map((c) => c.hasSubscribers)).toEqual([false, false, false]);
    await once();
    for (const publish of publishes) expect(publish).not.toHaveBeenCalled();
    // (Node swaps a channel's prototype when it gets a subscriber: the spies go first.)
    vi.restoreAllMocks();
    const listener = listen();
    stopListening = listener.stop;
    await once();
    expect(listener.seen.map((s) => s.channel)).toEqual([REQUEST_START_CHANNEL, TIMEOUT_CHANNEL, REQUEST_END_CHANNEL]);
  });

  it("an adapter loads and runs where diagnostics_channel is missing (workerd without nodejs_compat)", async () => {
    vi.resetModules();
    vi.spyOn(process, "getBuiltinModule").mockReturnValue(undefined as never);
    const { withWorkersDeadlines: fresh } = await import("../adapters/workers.ts");
    const clock = createVirtualClock();
    const reported: TimeoutEvent[] = [];
    const fetch = fresh(async (r: Request) => new Response(await r.text()), {
      clock,
      onTimeout: (e) => reported.push(e),
      request: { idle: 1000 },
    });
    const listener = listen();
    stopListening = listener.stop;
    const pending = fetch(scriptedUpload(clock, [{ at: 50_000, bytes: 1 }]).request, {}, { waitUntil() {} });
    await clock.advance(5000);
    expect((await pending).status).toBe(408);
    expect(reported).toHaveLength(1);
    expect(listener.seen).toEqual([]); // nothing could be published
    expect(process.getBuiltinModule).toHaveBeenCalledWith("node:diagnostics_channel");
  });
});

describe("stream-deadlines/otel where diagnostics_channel is missing", () => {
  it("installOpenTelemetry throws a clear error (Workers without nodejs_compat)", async () => {
    const { installOpenTelemetry } = await import("../adapters/otel.ts");
    vi.spyOn(process, "getBuiltinModule").mockReturnValue(undefined as never);
    expect(() => installOpenTelemetry()).toThrow(
      "stream-deadlines/otel: installOpenTelemetry needs node:diagnostics_channel (process.getBuiltinModule), " +
        "which this runtime lacks (on Cloudflare Workers, enable the nodejs_compat compatibility flag)",
    );
    vi.restoreAllMocks();
    const uninstall = installOpenTelemetry();
    expect(diagnostics.channel(TIMEOUT_CHANNEL).hasSubscribers).toBe(true);
    uninstall();
    expect(diagnostics.channel(TIMEOUT_CHANNEL).hasSubscribers).toBe(false);
  });
});

/** One request-body firing under the Deno adapter, its URL with a query string. */
async function oneFiring(onTimeout: (event: TimeoutEvent) => void) {
  const clock = createVirtualClock();
  const fetch = RUNNERS.deno!(async (r) => new Response(await r.text()), {
    clock,
    onTimeout,
    request: { idle: 1000 },
  });
  const upload = scriptedUpload(
    clock,
    [
      { at: 500, bytes: 10 },
      { at: 50_000, bytes: 1 },
    ],
    {
      url: "http://example.test/upload/42?token=secret#frag",
    },
  );
  const pending = fetch(upload.request);
  await clock.advance(5000);
  expect((await pending).status).toBe(408);
}

describe("structured logs", () => {
  it("a TimeoutEvent serializes to flat, stable fields: no Request, no query string, the error's fields", async () => {
    const lines: string[] = [];
    await oneFiring((event) => lines.push(JSON.stringify(event)));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toEqual({
      method: "POST",
      path: "/upload/42",
      direction: "request",
      limit: "idle",
      afterHeaders: false,
      bytes: 10,
      elapsed: 1500,
      waited: 1500,
      rate: 10 / 1.5,
      error: {
        name: "TimeoutError",
        code: "ERR_DEADLINE_IDLE",
        message: "request body stalled: no data for 1.0 s (idle limit 1 s, 10 B received)",
        subject: "request body",
        direction: "inbound",
        limit: "idle",
        limitValue: 1000,
        bytes: 10,
        elapsed: 1500,
        waited: 1500,
        idleFor: 1000,
        rate: 10 / 1.5,
      },
    });
    expect(lines[0]).not.toContain("secret");
  });

  it("with nothing configured, one console.warn line per firing, as before", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    for (const scenario of Object.values(SCENARIOS)) {
      const clock = createVirtualClock();
      const { onTimeout: _, ...options } = scenario.options;
      const response = RUNNERS.deno!(scenario.handler, { ...options, clock })(scenario.request(clock));
      await clock.advance(5000);
      if (scenario.afterHeaders) await (await response).body!.getReader().read();
      await clock.advance(5000);
      expect((await response).status).toBe(scenario.status);
    }
    expect(warn.mock.calls.map((call) => call[0])).toEqual([
      expect.stringMatching(/^\[stream-deadlines\] POST \/up request idle timeout: .* bytes=0 /),
      expect.stringMatching(/^\[stream-deadlines\] GET \/slow handler handler timeout: /),
      expect.stringMatching(/^\[stream-deadlines\] GET \/download response idle timeout after headers: /),
    ]);
  });

  it("the pino recipe: logger.warn({ deadline: event }, ...) writes one JSON line with the event's fields", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const logger = pino({ base: undefined, timestamp: false }, sink);
    await oneFiring((event) => logger.warn({ deadline: event }, "deadline fired"));
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({
      level: 40,
      msg: "deadline fired",
      deadline: {
        method: "POST",
        path: "/upload/42",
        direction: "request",
        limit: "idle",
        bytes: 10,
        error: { code: "ERR_DEADLINE_IDLE", limitValue: 1000 },
      },
    });
    expect(line.deadline).not.toHaveProperty("request");
    expect(lines[0]).not.toContain("secret");
  });
});
