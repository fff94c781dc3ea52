/**
 * The Bun adapter on the real Bun (node_modules/.bin/bun), over loopback TCP: Bun's own idleTimeout
 * kills a quiet SSE stream and a progressing slow upload on a bare server, and spares both with the
 * adapter, which still leaves Bun's timer bounding idle keep-alive connections afterwards. Two
 * servers, one of each, run side by side; the tests run concurrently, each bounded by its gap (10 s).
 *
 * Bun fires idle timers on a 4 s tick: an idleTimeout of N s fires after ceil(N/4) ticks, so 4 to
 * 8 s after the last reset for 8 s (measured; 0 to 4 s for 2 s, which could cut a request before its
 * response, hence 8 here).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const BUN = join(root, "node_modules/.bin/bun");
/** Bun's idleTimeout for both servers, in seconds. */
const IDLE_S = 8;
/** The earliest Bun's timer fires: one 4 s tick less than IDLE_S (less a little for scheduling). */
const EARLIEST_KILL_MS = (IDLE_S - 4) * 1000 - 100;
/** Longer than IDLE_S with a margin: a bare server never lets a connection sit quiet this long. */
const GAP_MS = 10_000;

/** The server under test: `bun server.ts adapter|bare`. The same handler either way. */
const SERVER_SCRIPT = `
import { withBunDeadlines } from ${JSON.stringify(join(root, "adapters/bun.ts"))};
const mode = process.argv[2];
let policyClient = null;
const encoder = new TextEncoder();
async function handler(request, server) {
  const url = new URL(request.url);
  if (url.pathname === "/events") {
    const gap = Number(url.searchParams.get("gap"));
    let sent = 0;
    return new Response(new ReadableStream({
      async pull(controller) {
        if (sent === 2) return controller.close();
        if (sent > 0) await Bun.sleep(gap);
        controller.enqueue(encoder.encode("data: event " + sent++ + "\\n\\n"));
      },
    }, { highWaterMark: 0 }), { headers: { "content-type": "text/event-stream" } });
  }
  if (url.pathname === "/upload") {
    const bytes = (await request.arrayBuffer()).byteLength;
    return Response.json({ bytes, handlerSawAddress: server.requestIP(request)?.address ?? null, policyClient });
  }
  if (url.pathname === "/stream") {
    let sent = 0;
    return new Response(new ReadableStream({
      pull(controller) { if (sent++ === 8) controller.close(); else controller.enqueue(new Uint8Array(16 * 1024)); },
    }, { highWaterMark: 0 }));
  }
  if (url.pathname === "/ws") return server.upgrade(request) ? undefined : new Response("no upgrade", { status: 400 });
  return new Response("hi\\n");
}
const fetch = mode === "adapter"
  ? withBunDeadlines(handler, {
      idleTimeout: ${IDLE_S},
      request: { idle: 2000, minRate: null }, // a slow upload: only the idle limit
      response: { idle: 2000 },
      policy: (request, client) => { if (new URL(request.url).pathname === "/upload") policyClient = client; },
      onTimeout: false,
    })
  : handler;
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: ${IDLE_S}, fetch, websocket: { message(ws, message) { ws.send(message); } } });
console.log("listening on " + server.port);
`;

interface Running {
  child: ChildProcess;
  port: number;
}

const dir = mkdtempSync(join(tmpdir(), "sd-bun-"));
const servers: Partial<Record<"adapter" | "bare", Running>> = {};

function start(mode: "adapter" | "bare"): Promise<Running> {
  const child = spawn(BUN, [join(dir, "server.ts"), mode], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1" },
  });
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bun (${mode}) did not start:\n${output}`)), 20_000);
    const onData = (data: Buffer) => {
      output += data.toString();
      const match = /listening on (\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, port: Number(match[1]) });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", () => reject(new Error(`bun (${mode}) exited:\n${output}`)));
  });
}

interface Transcript {
  /** Everything the server sent. */
  text: string;
  /** Milliseconds from the request to the connection's close (Infinity: still open at the end). */
  closedAfter: number;
  /** Milliseconds from the request to each piece of data. */
  dataAt: number[];
}

/**
 * Opens a connection, writes `head`, then runs `afterHead(socket)`; resolves when the server
 * closes the connection or `waitMs` passed (the client then closes it).
 */
function talk(
  port: number,
  head: string,
  waitMs: number,
  afterHead?: (socket: net.Socket) => Promise<void>,
): Promise<Transcript> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const transcript: Transcript = { text: "", closedAfter: Infinity, dataAt: [] };
    let started = 0;
    let gaveUp = false;
    const timer = setTimeout(() => {
      gaveUp = true;
      socket.destroy();
      resolve(transcript);
    }, waitMs);
    socket.on("data", (data: Buffer) => {
      transcript.text += data.toString("latin1");
      transcript.dataAt.push(performance.now() - started);
    });
    socket.on("error", () => {}); // a reset is a close, measured below
    socket.once("close", () => {
      if (gaveUp) return; // closed by us: still open as far as the server is concerned
      transcript.closedAfter = performance.now() - started;
      clearTimeout(timer);
      resolve(transcript);
    });
    socket.once("connect", () => {
      started = performance.now();
      socket.write(head);
      afterHead?.(socket).catch(reject);
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const events = (text: string) => (text.match(/^data: event \d/gm) ?? []).length;

beforeAll(async () => {
  writeFileSync(join(dir, "server.ts"), SERVER_SCRIPT);
  [servers.adapter, servers.bare] = await Promise.all([start("adapter"), start("bare")]);
}, 30_000);

afterAll(() => {
  for (const server of Object.values(servers)) server?.child.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe.concurrent(`Bun adapter (real Bun, idleTimeout ${IDLE_S} s)`, () => {
  it("with the adapter a WebSocket upgrade passes through (101, echo)", async () => {
    const head =
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const t = await talk(servers.adapter!.port, head, 1500, async (socket) => {
      await sleep(300);
      // A masked text frame "hey" (mask 0): the server echoes it unmasked.
      socket.write(Buffer.from([0x81, 0x83, 0, 0, 0, 0, 0x68, 0x65, 0x79]));
    });
    expect(t.text).toMatch(/^HTTP\/1\.1 101/);
    expect(t.text.endsWith("\x81\x03hey")).toBe(true);
  });

  const sseHead = `GET /events?gap=${GAP_MS} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;

  it("bare Bun.serve kills a quiet SSE stream at its idleTimeout (platform behaviour)", async () => {
    const t = await talk(servers.bare!.port, sseHead, GAP_MS + 3000);
    expect(t.text).toMatch(/^HTTP\/1\.1 200/);
    expect(events(t.text)).toBe(1);
    expect(t.closedAfter).toBeGreaterThanOrEqual(EARLIEST_KILL_MS);
    expect(t.closedAfter).toBeLessThan(GAP_MS - 1000);
  });

  it("with the adapter the same quiet SSE stream survives the gap and ends cleanly", async () => {
    const t = await talk(servers.adapter!.port, sseHead, GAP_MS + 3000);
    expect(t.text).toMatch(/^HTTP\/1\.1 200/);
    expect(events(t.text)).toBe(2);
    expect(t.text.endsWith("0\r\n\r\n")).toBe(true); // the chunked terminator: a clean end
    expect(t.closedAfter).toBeGreaterThanOrEqual(GAP_MS - 50);
  });

  const uploadBytes = 40;
  const uploadHead = `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${uploadBytes}\r\nConnection: close\r\n\r\n`;
  /** One byte every 250 ms: 10 s of steady progress, never idle for the library's 2 s. */
  const drip = async (socket: net.Socket) => {
    for (let i = 0; i < uploadBytes && !socket.destroyed; i++) {
      socket.write("u");
      await sleep(GAP_MS / uploadBytes);
    }
  };

  it("bare Bun.serve kills a progressing slow upload at its idleTimeout (upload bytes do not reset it)", async () => {
    const t = await talk(servers.bare!.port, uploadHead, GAP_MS + 3000, drip);
    expect(t.text).toBe("");
    expect(t.closedAfter).toBeGreaterThanOrEqual(EARLIEST_KILL_MS);
    expect(t.closedAfter).toBeLessThan(GAP_MS - 1000);
  });

  it("with the adapter the slow upload completes; handler and policy see the client address", async () => {
    const t = await talk(servers.adapter!.port, uploadHead, GAP_MS + 3000, drip);
    expect(t.text).toMatch(/^HTTP\/1\.1 200/);
    const body = JSON.parse(t.text.slice(t.text.indexOf("\r\n\r\n") + 4)) as Record<string, unknown>;
    expect(body).toEqual({
      bytes: uploadBytes,
      handlerSawAddress: "127.0.0.1",
      policyClient: { address: "127.0.0.1", runtime: "bun" },
    });
  });

  it("with the adapter Bun's timer still closes idle keep-alive connections, after a plain and after a guarded streamed response", async () => {
    const [plain, streamed] = await Promise.all([
      talk(servers.adapter!.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", GAP_MS + 3000),
      talk(servers.adapter!.port, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", GAP_MS + 3000),
    ]);
    expect(plain.text).toMatch(/^HTTP\/1\.1 200[\s\S]*hi\n$/);
    expect(streamed.text).toMatch(/^HTTP\/1\.1 200/);
    expect(streamed.text.endsWith("0\r\n\r\n")).toBe(true);
    for (const t of [plain, streamed]) {
      expect(t.closedAfter).toBeGreaterThanOrEqual(EARLIEST_KILL_MS);
      expect(t.closedAfter).toBeLessThan(GAP_MS - 1000);
    }
  });
});

/**
 * Bun keeps even subscribed diagnostics channels weakly (oven-sh/bun#43086): a `dc.subscribe(name, fn)`
 * whose Channel nobody holds is dropped at the next full GC. The adapter holds its channels from import.
 */
const DC_SCRIPT = `
import dc from "node:diagnostics_channel";
import { withBunDeadlines } from ${JSON.stringify(join(root, "adapters/bun.ts"))};
const seen = [];
// The form APMs use: subscribe by name, hold nothing.
dc.subscribe("stream-deadlines:request:start", () => seen.push("start"));
dc.subscribe("stream-deadlines:request:end", () => seen.push("end"));
for (let i = 0; i < 3; i++) {
  Bun.gc(true);
  await new Promise((resolve) => setTimeout(resolve, 5));
}
const handler = withBunDeadlines(() => new Response("ok"), { onTimeout: false });
const response = await handler(new Request("http://127.0.0.1/"), undefined);
await response.text();
await new Promise((resolve) => setTimeout(resolve, 20));
console.log(JSON.stringify(seen));
`;

describe("Bun adapter and diagnostics_channel (real Bun)", () => {
  it("a subscription made by name after importing the adapter survives Bun's garbage collection", async () => {
    writeFileSync(join(dir, "dc.ts"), DC_SCRIPT);
    const child = spawn(BUN, [join(dir, "dc.ts")], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code, output).toBe(0);
    expect(JSON.parse(output.trim().split("\n").at(-1)!), output).toEqual(["start", "end"]);
  }, 20_000);
});
