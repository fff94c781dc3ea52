/**
 * HTTP/2 abuse against stream-deadlines/node's `serve({ http2: "h2c" })`, over real sockets, with node:http2
 * clients: a slow reader with a tiny flow-control window on a connection that also carries honest streams,
 * and rapid reset (CVE-2023-44487), bare against guarded. Short real limits, generous margins.
 * (The same at scale, with figures: bench/h2/run-h2.ts.)
 */
import http2 from "node:http2";
import { toNodeHandler } from "srvx/node";
import { afterEach, describe, expect, it } from "vitest";
import { type NodeServerHandle, serve } from "../adapters/node.ts";
import { deadlineDebugCounters, type TimeoutEvent } from "../src/index.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const CHUNK = new Uint8Array(16 * 1024).fill(0x61);

/** /small: "ok"; /download?bytes=N: N bytes (endless without `bytes`), pulled one chunk at a time. */
function handler(request: Request): Response {
  const url = new URL(request.url);
  if (url.pathname === "/small") return new Response("ok");
  const total = Number(url.searchParams.get("bytes") ?? Number.POSITIVE_INFINITY);
  let sent = 0;
  return new Response(
    new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (sent >= total) return controller.close();
          const size = Math.min(CHUNK.length, total - sent);
          sent += size;
          controller.enqueue(CHUNK.slice(0, size));
        },
      },
      { highWaterMark: 0 },
    ),
  );
}

let server: NodeServerHandle | undefined;
const bareServers: { bare: http2.Http2Server; sessions: Set<http2.ServerHttp2Session> }[] = [];
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const { bare, sessions } of bareServers.splice(0)) {
    for (const session of sessions) session.destroy();
    await new Promise((resolve) => bare.close(resolve));
  }
});

async function connect(url: string, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(url, { settings });
  session.on("error", () => {});
  await new Promise<void>((resolve) => session.once("connect", () => resolve()));
  return session;
}

/** A whole exchange: status and body length. */
function get(session: http2.ClientHttp2Session, path: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":path": path });
    let status = 0;
    let bytes = 0;
    stream.on("response", (headers) => (status = Number(headers[":status"])));
    stream.on("data", (chunk: Buffer) => (bytes += chunk.length));
    stream.on("end", () => resolve({ status, bytes }));
    stream.on("error", reject);
  });
}

describe("HTTP/2 (h2c) on Node: a slow reader is cut without holding its connection's other streams", () => {
  it("a 512-byte window read at 25 B/s is reset at its response idle; siblings on the same connection complete before and after", async () => {
    const fired: TimeoutEvent[] = [];
    server = await serve(handler, {
      port: 0,
      http2: "h2c",
      response: { idle: 300 },
      onTimeout: (event) => void fired.push(event),
    });
    // SETTINGS_INITIAL_WINDOW_SIZE 512 for every stream of this connection (siblings included).
    const session = await connect(server.url, { initialWindowSize: 512 });
    const slow = session.request({ ":path": "/download" });
    slow.on("error", () => {});
    const respondedAt = await new Promise<number>((resolve) => slow.once("response", () => resolve(performance.now())));
    const closed = new Promise<{ at: number; rstCode: number }>((resolve) =>
      slow.once("close", () => resolve({ at: performance.now(), rstCode: slow.rstCode ?? -1 })),
    );
    // Paused (no 'data' listener): 5 bytes every 200 ms. Node opens the window as they are taken.
    let taken = 0;
    const reader = setInterval(() => {
      const chunk = slow.read(5) as Buffer | null;
      if (chunk !== null) taken += chunk.length;
    }, 200);
    try {
      // While the slow stream is held, its siblings complete.
      expect(await get(session, "/small")).toEqual({ status: 200, bytes: 2 });
      expect(await get(session, "/download?bytes=65536")).toEqual({ status: 200, bytes: 65536 });
      expect(slow.closed).toBe(false);
      const { at, rstCode } = await Promise.race([closed, sleep(5000).then(() => ({ at: NaN, rstCode: -2 }))]);
      expect(rstCode).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR); // reset: the client can tell it was cut
      expect(at - respondedAt).toBeGreaterThanOrEqual(300);
      expect(at - respondedAt).toBeLessThan(2500);
      expect(taken).toBeGreaterThan(0); // it was reading, slowly
      // The connection outlives the cut stream.
      expect(await get(session, "/download?bytes=65536")).toEqual({ status: 200, bytes: 65536 });
      expect(session.closed || session.destroyed).toBe(false);
    } finally {
      clearInterval(reader);
      session.close();
    }
    expect(fired.map((e) => [e.direction, e.limit, e.path])).toEqual([["response", "idle", "/download"]]);
    await sleep(50);
    expect(deadlineDebugCounters().liveGuards).toBe(0);
  });
});

interface RapidReset {
  sent: number;
  goawayCode: number;
  lastStreamId: number;
  seconds: number;
}

/** Requests opened and cancelled at once (RST_STREAM CANCEL), 100 per turn, until the server ends the session. */
async function rapidReset(url: string, limit = 20_000): Promise<RapidReset> {
  const session = await connect(url);
  let goawayCode = -1;
  let lastStreamId = -1;
  session.once("goaway", (code, last) => {
    goawayCode = code;
    lastStreamId = last;
  });
  const closed = new Promise<void>((resolve) => session.once("close", () => resolve()));
  const started = performance.now();
  let sent = 0;
  while (sent < limit && goawayCode < 0 && !session.closed && !session.destroyed) {
    for (let i = 0; i < 100 && !session.closed && !session.destroyed; i++, sent++) {
      const stream = session.request({ ":path": "/small" });
      stream.on("error", () => {});
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  const seconds = (performance.now() - started) / 1000;
  const ended = await Promise.race([closed.then(() => true), sleep(3000).then(() => false)]);
  if (!ended) session.destroy();
  return { sent, goawayCode, lastStreamId, seconds };
}

describe("HTTP/2 (h2c) on Node: rapid reset", () => {
  it("the adapter leaves Node's stream-reset rate limit as it is: GOAWAY at the same point, bare and guarded", async () => {
    const bare = http2.createServer(toNodeHandler(handler) as never);
    const sessions = new Set<http2.ServerHttp2Session>();
    bare.on("session", (session: http2.ServerHttp2Session) => void sessions.add(session));
    bareServers.push({ bare, sessions });
    await new Promise<void>((resolve) => bare.listen(0, "127.0.0.1", resolve));
    const bareResult = await rapidReset(`http://127.0.0.1:${(bare.address() as { port: number }).port}`);
    server = await serve(handler, { port: 0, http2: "h2c", onTimeout: false });
    const guarded = await rapidReset(server.url);
    for (const result of [bareResult, guarded]) {
      // Node's defaults (nghttp2's: a burst of 1000 resets, then 33 a second) end the session with GOAWAY.
      expect(result.goawayCode).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
      const streamsAccepted = (result.lastStreamId + 1) / 2; // client stream ids are odd: 1, 3, 5, …
      expect(streamsAccepted).toBeGreaterThanOrEqual(1000);
      expect(streamsAccepted).toBeLessThanOrEqual(1000 + 33 * result.seconds + 200);
      expect(result.sent).toBeLessThan(20_000);
    }
    // The server still serves other connections.
    const session = await connect(server.url);
    expect(await get(session, "/small")).toEqual({ status: 200, bytes: 2 });
    session.close();
  });
});
