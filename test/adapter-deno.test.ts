/**
 * The Deno adapter over real sockets, with the real Deno (node_modules/.bin/deno), in both of
 * Deno.serve's signal modes: the default ("legacy": request.signal also aborts after a successful
 * response) and --unstable-no-legacy-abort (it does not, but also misses a client that leaves while
 * the body streams). A successful exchange must never look like a disconnect; a client that leaves
 * must have its producer cancelled and deadlines(request).signal aborted. Loopback only; short waits
 * with generous margins.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, exchange, requestHead, sleep } from "../harness/raw-http-client.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const DENO = join(root, "node_modules/.bin/deno");

/**
 * The server under test. Each request carries an `id`; the server prints one JSON line per thing it
 * saw. `/plain/...` is served by withDeadlines alone: Deno's own signal behaviour, for contrast.
 */
const FIXTURE = `
import { withDenoDeadlines } from ${JSON.stringify(pathToFileURL(join(root, "adapters/deno.ts")).href)};
import { deadlines, withDeadlines } from ${JSON.stringify(pathToFileURL(join(root, "src/index.ts")).href)};

const note = (o: Record<string, unknown>) => console.log("@ " + JSON.stringify({ t: Date.now(), ...o }));
const reasonOf = (r: unknown) => (r instanceof Error || r instanceof DOMException ? r.name : typeof r === "string" ? r : String(r));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function app(route: string) {
  return async (request: Request, info: Deno.ServeHandlerInfo) => {
    const url = new URL(request.url);
    const id = url.searchParams.get("id");
    const d = deadlines(request);
    d.signal.addEventListener("abort", () => note({ id, route, event: "deadlines-signal", reason: reasonOf(d.signal.reason) }));
    request.signal.addEventListener("abort", () => note({ id, route, event: "request-signal", reason: reasonOf(request.signal.reason) }));
    info.completed?.then(() => note({ id, route, event: "completed" }));
    const path = url.pathname.replace(/^\\/plain/, "");
    if (path === "/upload") return Response.json({ bytes: (await request.arrayBuffer()).byteLength });
    if (path === "/upload-byob") {
      // A parser that reads BYOB, as it may on Deno's own request body.
      const reader = request.body!.getReader({ mode: "byob" });
      let bytes = 0;
      for (;;) {
        const { done, value } = await reader.read(new Uint8Array(1000));
        if (done) break;
        bytes += value.byteLength;
      }
      return Response.json({ bytes });
    }
    if (path === "/wait") {
      await sleep(Number(url.searchParams.get("ms")));
      return new Response("late");
    }
    const count = Number(url.searchParams.get("count") ?? 5);
    const every = Number(url.searchParams.get("every") ?? 0);
    const size = Number(url.searchParams.get("size") ?? 16);
    let sent = 0;
    return new Response(new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === count) {
          controller.close();
          return note({ id, route, event: "producer-done" });
        }
        if (sent > 0 && every > 0) await sleep(every);
        sent++;
        controller.enqueue(new Uint8Array(size).fill(97));
      },
      cancel(reason) {
        note({ id, route, event: "producer-cancelled", sent, reason: reasonOf(reason) });
      },
    }, { highWaterMark: 0 }));
  };
}

const adapted = withDenoDeadlines(app("adapter"), {
  onTimeout: false,
  policy: (request, client) => {
    note({ id: new URL(request.url).searchParams.get("id"), event: "policy", ...client });
    return undefined;
  },
});
const plain = withDeadlines(app("plain"), { onTimeout: false });
Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: ({ port }) => console.log("listening " + port) }, (request, info) =>
  new URL(request.url).pathname.startsWith("/plain/") ? plain(request, info) : adapted(request, info));
`;

interface Seen {
  id: string;
  route?: string;
  event: string;
  t: number;
  [key: string]: unknown;
}

interface DenoServer {
  port: number;
  seen: Seen[];
  stderr: string[];
  /** The first observation of request `id` matching, within `timeoutMs`. */
  waitFor(id: string, event: string, timeoutMs: number): Promise<Seen | undefined>;
  events(id: string): string[];
  stop(): void;
}

let fixtureDir: string;

async function startDeno(flags: string[], file = "server.ts"): Promise<DenoServer> {
  const child: ChildProcess = spawn(
    DENO,
    ["run", "--allow-net", "--allow-read", "--quiet", ...flags, join(fixtureDir, file)],
    {
      cwd: fixtureDir,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1" },
    },
  );
  const seen: Seen[] = [];
  const stderr: string[] = [];
  let pending = "";
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`deno did not listen within 20 s: ${stderr.join("")}`)), 20_000);
    child.once("exit", (code) => reject(new Error(`deno exited (${code}): ${stderr.join("")}`)));
    child.stderr!.setEncoding("utf8").on("data", (data: string) => stderr.push(data));
    child.stdout!.setEncoding("utf8").on("data", (data: string) => {
      pending += data;
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (line.startsWith("@ ")) seen.push(JSON.parse(line.slice(2)) as Seen);
        else if (line.startsWith("listening ")) {
          clearTimeout(timer);
          resolve(Number(line.slice(10)));
        }
      }
    });
  });
  return {
    port,
    seen,
    stderr,
    async waitFor(id, event, timeoutMs) {
      const until = performance.now() + timeoutMs;
      for (;;) {
        const found = seen.find((s) => s.id === id && s.event === event);
        if (found || performance.now() > until) return found;
        await sleep(10);
      }
    },
    events: (id) =>
      seen
        .filter((s) => s.id === id)
        .map((s) => `${s.route ?? "-"}:${s.event}${s.reason ? `(${String(s.reason)})` : ""}`),
    stop: () => void child.kill("SIGKILL"),
  };
}

let nextId = 0;
const newId = () => `r${++nextId}`;

/** GET `path` (with an id), read the whole response, then wait until Deno settled the exchange. */
async function completeGet(server: DenoServer, path: string) {
  const id = newId();
  const socket = await connect(server.port);
  const res = await exchange(
    socket,
    requestHead("GET", `${path}${path.includes("?") ? "&" : "?"}id=${id}`, { Connection: "close" }),
    5000,
  ).response;
  socket.destroy();
  await server.waitFor(id, "completed", 3000);
  await sleep(300); // anything Deno does after success happens within a few ms
  return { id, res };
}

/** Starts a streamed GET, lets `afterMs` pass, then leaves as `how`; returns when the client left. */
async function leaveMidStream(
  server: DenoServer,
  path: string,
  how: "fin" | "reset",
  options: { paused?: boolean; afterMs?: number } = {},
) {
  const id = newId();
  const socket = await connect(server.port);
  socket.on("error", () => {});
  const ex = exchange(socket, requestHead("GET", `${path}&id=${id}`), 10_000);
  await ex.headers;
  if (options.paused) socket.pause(); // stop reading: kernel buffers fill and Deno stops pulling
  await sleep(options.afterMs ?? 200);
  const leftAt = Date.now(); // the server's observations carry its Date.now(): same machine
  if (how === "reset") socket.resetAndDestroy();
  else socket.end(() => socket.destroy());
  return { id, leftAt };
}

const MODES = [
  { name: "default (legacy) signal mode", flags: [] as string[] },
  { name: "--unstable-no-legacy-abort", flags: ["--unstable-no-legacy-abort"] },
];

beforeAll(() => {
  fixtureDir = mkdtempSync(join(tmpdir(), "sd-deno-adapter-"));
  writeFileSync(join(fixtureDir, "server.ts"), FIXTURE);
});
afterAll(() => rmSync(fixtureDir, { recursive: true, force: true }));

describe.skipIf(!existsSync(DENO)).each(MODES)("stream-deadlines/deno, $name", ({ flags }) => {
  let server: DenoServer;
  beforeAll(async () => {
    server = await startDeno(flags);
  }, 30_000);
  afterAll(() => server?.stop());

  it("a successful streamed response is never reported as a disconnect, and nothing is cancelled after it", async () => {
    const { id, res } = await completeGet(server, "/stream?count=5&every=20");
    expect([res.status, res.ending, res.body.length]).toEqual([200, "complete", 80]);
    expect(server.events(id)).toEqual(["-:policy", "adapter:producer-done", "adapter:completed"]);
  });

  it("nor are an upload (the handler's request is a copy) and a bodyless small response", async () => {
    const id = newId();
    const socket = await connect(server.port);
    const ex = exchange(
      socket,
      requestHead("POST", `/upload?id=${id}`, { "Content-Length": 3000, Connection: "close" }),
      5000,
    );
    socket.write(Buffer.alloc(3000, 0x61));
    const res = await ex.response;
    socket.destroy();
    await server.waitFor(id, "completed", 3000);
    await sleep(300);
    expect([res.status, res.body.toString()]).toEqual([200, '{"bytes":3000}']);
    expect(server.events(id)).toEqual(["-:policy", "adapter:completed"]);
  });

  it("the handler reads its upload BYOB as on Deno's own body: the guarded body is a byte stream", async () => {
    for (const prefix of ["", "/plain"]) {
      const id = newId();
      const socket = await connect(server.port);
      const ex = exchange(
        socket,
        requestHead("POST", `${prefix}/upload-byob?id=${id}`, { "Content-Length": 300_000, Connection: "close" }),
        5000,
      );
      socket.write(Buffer.alloc(300_000, 0x61));
      const res = await ex.response;
      socket.destroy();
      expect([prefix, res.status, res.body.toString()]).toEqual([prefix, 200, '{"bytes":300000}']);
    }
  });

  it("a client that leaves while the body streams gets its producer cancelled and deadlines(request).signal aborted", async () => {
    const cases = [
      await leaveMidStream(server, "/stream?count=100000&every=50", "fin"),
      await leaveMidStream(server, "/stream?count=100000&every=50", "reset"),
      // Backpressured: Deno cancels the body before (legacy) or instead of (no-legacy) aborting its signal.
      await leaveMidStream(server, "/stream?count=100000&size=65536", "reset", { paused: true, afterMs: 300 }),
    ];
    for (const { id, leftAt } of cases) {
      const cancelled = await server.waitFor(id, "producer-cancelled", 3000);
      const aborted = await server.waitFor(id, "deadlines-signal", 3000);
      const handlerSignal = await server.waitFor(id, "request-signal", 1000);
      expect(
        { cancelled: cancelled?.reason, aborted: aborted?.reason, handlerSignal: handlerSignal?.reason },
        server.events(id).join(" "),
      ).toEqual({
        cancelled: "AbortError",
        aborted: "AbortError",
        handlerSignal: "AbortError",
      });
      expect(cancelled!.t - leftAt).toBeLessThan(1000);
      expect(aborted!.t - leftAt).toBeLessThan(1000);
    }
  });

  /** Sends `head` (and `body`), leaves after 200 ms, and expects both signals to abort within 1 s. */
  async function leaveAndExpectAborts(id: string, head: string, body?: Buffer) {
    const socket = await connect(server.port);
    socket.on("error", () => {});
    exchange(socket, head, 5000);
    if (body) socket.write(body);
    await sleep(200);
    const leftAt = Date.now();
    socket.destroy();
    const aborted = await server.waitFor(id, "deadlines-signal", 3000);
    expect(aborted?.reason).toBe("AbortError");
    expect(aborted!.t - leftAt).toBeLessThan(1000);
    expect(await server.waitFor(id, "request-signal", 1000)).toBeDefined();
  }

  it("a client that leaves before the handler returned aborts the signals at once", async () => {
    const id = newId();
    await leaveAndExpectAborts(id, requestHead("GET", `/wait?ms=1500&id=${id}`));
  });

  it("so does a client that leaves in the middle of its upload", async () => {
    const id = newId();
    await leaveAndExpectAborts(
      id,
      requestHead("POST", `/upload?id=${id}`, { "Content-Length": 100_000 }),
      Buffer.alloc(1000, 0x61),
    );
  });

  it("gives the policy the client address", async () => {
    const { id } = await completeGet(server, "/stream?count=1");
    const policy = server.seen.find((s) => s.id === id && s.event === "policy");
    expect(policy).toMatchObject({ address: "127.0.0.1", runtime: "deno" });
  });
});

describe.skipIf(!existsSync(DENO))("Deno.serve without the adapter (why the adapter exists)", () => {
  let server: DenoServer;
  beforeAll(async () => {
    server = await startDeno([]);
  }, 30_000);
  afterAll(() => server?.stop());

  it("in the default mode, the handler's request.signal aborts after a successful response", async () => {
    const { id, res } = await completeGet(server, "/plain/stream?count=5&every=20");
    expect(res.ending).toBe("complete");
    expect(server.events(id)).toContain("plain:request-signal(AbortError)");
    expect(server.events(id)).not.toContain("plain:producer-cancelled");
  });
});

/**
 * Deno ignores `Connection: close` on a response: it sends the header, then keeps the connection open
 * and serves the next request on it, after any response (measured on a bare Deno.serve and through the
 * adapter, for a 200, a handler's 503 and the library's own 503), not only after a 408 whose upload is
 * unfinished (conformance: cut-upload-connection-closed). docs/runtime-deno.md.
 */
const CLOSE_FIXTURE = `
import { withDenoDeadlines } from ${JSON.stringify(pathToFileURL(join(root, "adapters/deno.ts")).href)};

const answer = (status: number) => new Response("answer\\n", { status, headers: { connection: "close" } });
const adapted = withDenoDeadlines(async (request: Request) => {
  if (new URL(request.url).pathname === "/adapter/slow") await new Promise((resolve) => setTimeout(resolve, 1000));
  return answer(200);
}, { handler: 200, onTimeout: false });
Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: ({ port }) => console.log("listening " + port) }, (request, info) => {
  const path = new URL(request.url).pathname;
  if (path === "/bare/503") return answer(503);
  if (path === "/bare/200") return answer(200);
  return adapted(request, info);
});
`;

describe.skipIf(!existsSync(DENO))("Deno and Connection: close", () => {
  let server: DenoServer;
  beforeAll(async () => {
    writeFileSync(join(fixtureDir, "close.ts"), CLOSE_FIXTURE);
    server = await startDeno([], "close.ts");
  }, 30_000);
  afterAll(() => server?.stop());

  it.each([
    ["a bare Deno.serve's 503", "/bare/503", 503],
    ["a bare Deno.serve's 200", "/bare/200", 200],
    ["the handler's 200 through the adapter", "/adapter/ok", 200],
    ["the library's 503 (handler deadline) through the adapter", "/adapter/slow", 503],
  ])(
    "after %s with Connection: close, Deno keeps the connection open and serves the next request on it",
    async (_, path, status) => {
      const socket = await connect(server.port);
      let closed = false;
      socket.once("close", () => (closed = true));
      const first = await exchange(socket, requestHead("GET", path), 5000).response;
      expect([first.status, first.headers.connection, first.ending]).toEqual([status, "close", "complete"]);
      await sleep(1000);
      expect(closed).toBe(false); // Node, Bun and workerd close it at once (conformance matrix)
      const second = await exchange(socket, requestHead("GET", "/bare/200"), 5000).response;
      expect([second.status, second.ending]).toEqual([200, "complete"]);
      socket.destroy();
    },
  );
});

/**
 * Deno.serve hands its `onError` the error a response body fails with after the headers, and its
 * default handler prints it whole: after a deadline cut a body, the TimeoutError onTimeout already
 * reported in one line. `serveOnError()` (which the adapter's `serve()` uses) lets those pass silently
 * and leaves every other error to Deno's behaviour.
 */
const ON_ERROR_FIXTURE = (withServeOnError: boolean) => `
import { serveOnError, withDenoDeadlines } from ${JSON.stringify(pathToFileURL(join(root, "adapters/deno.ts")).href)};

const handler = withDenoDeadlines((request: Request) => {
  const failing = new URL(request.url).pathname === "/failing";
  let sent = 0;
  return new Response(new ReadableStream<Uint8Array>({
    pull(controller) {
      if (failing && sent >= 4) throw new Error("the producer failed");
      sent++;
      controller.enqueue(new Uint8Array(64 * 1024));
    },
  }, { highWaterMark: 0 }));
}, { response: { idle: 300 } });
Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log("listening " + port),
  ${withServeOnError ? "onError: serveOnError()," : ""}
}, handler);
`;

describe.skipIf(!existsSync(DENO)).each([
  { name: "with onError: serveOnError()", withServeOnError: true },
  { name: "with Deno's default onError", withServeOnError: false },
])("Deno.serve $name", ({ withServeOnError }) => {
  let server: DenoServer;
  beforeAll(async () => {
    const file = `on-error-${withServeOnError}.ts`;
    writeFileSync(join(fixtureDir, file), ON_ERROR_FIXTURE(withServeOnError));
    server = await startDeno([], file);
  }, 30_000);
  afterAll(() => server?.stop());

  // Deno's own once-per-process notice about request.signal (docs/runtime-deno.md) is not a firing's.
  const stderrLines = () =>
    server.stderr
      .join("")
      .split("\n")
      .filter((line) => line !== "" && !line.startsWith("Deno.serve: request.signal aborts on successful responses"));

  it(`a body cut by its deadline prints ${withServeOnError ? "the report alone" : "the report, then the whole TimeoutError"}`, async () => {
    const before = stderrLines().length;
    const socket = await connect(server.port);
    const ex = exchange(socket, requestHead("GET", "/stalled"), 10_000);
    await ex.headers;
    socket.pause(); // the client stops reading: the response deadline fires
    await sleep(2000);
    socket.destroy(); // Deno meets the failed body once its writes to the socket end
    await sleep(500);
    const lines = stderrLines().slice(before);
    expect(lines[0]).toMatch(/^\[stream-deadlines\] GET \/stalled response idle timeout after headers: /);
    if (withServeOnError) expect(lines, lines.join("\n")).toHaveLength(1);
    else
      expect(lines.slice(1).join("\n")).toMatch(/TimeoutError: response body stalled[\s\S]*code: "ERR_DEADLINE_IDLE"/);
  });

  it("a producer's own error is printed as Deno prints it", async () => {
    const before = stderrLines().length;
    const socket = await connect(server.port);
    const res = await exchange(socket, requestHead("GET", "/failing"), 10_000).response;
    socket.destroy();
    await sleep(300);
    expect(res.ending).not.toBe("complete");
    expect(stderrLines().slice(before).join("\n")).toMatch(/Error: the producer failed/);
  });
});

/**
 * Deno sends a body made from a string or bytes straight from memory ("serve fast"): the adapter finds
 * such a body in Deno's own fields (no body getter, which would make a stream of it), and a small one
 * goes out as the handler's own Response, unread. Anything else still goes through withDeadlines.
 */
describe.skipIf(!existsSync(DENO))("stream-deadlines/deno: small bodies in memory", () => {
  it("a small string or bytes body is handed back untouched; a large or streamed one is not", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sd-deno-memory-"));
    const script = join(dir, "memory.ts");
    writeFileSync(
      script,
      `
import { withDenoDeadlines } from ${JSON.stringify(pathToFileURL(join(root, "adapters/deno.ts")).href)};
const info = { remoteAddr: { hostname: "127.0.0.1" } };
const cases: Record<string, () => Response> = {
  text: () => new Response("hello world\\n", { headers: { "content-type": "text/plain" } }),
  bytes: () => new Response(new Uint8Array(1000).fill(97)),
  json: () => Response.json({ ok: true }),
  large: () => new Response("x".repeat(100 * 1024)),
  stream: () => new Response(new ReadableStream({ pull(c) { c.enqueue(new Uint8Array(3)); c.close(); } })),
};
const out: Record<string, unknown> = {};
for (const [name, make] of Object.entries(cases)) {
  let made: Response | undefined;
  const handler = withDenoDeadlines(() => (made = make()));
  const returned = await handler(new Request("http://x/" + name), info);
  out[name] = { same: returned === made, bytes: (await returned.arrayBuffer()).byteLength };
}
console.log(JSON.stringify(out));
`,
    );
    try {
      const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
        const child = spawn(DENO, ["run", "-A", "--quiet", script], { stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
        child.once("exit", (code) => (code === 0 ? resolve({ stdout }) : reject(new Error(stderr))));
      });
      expect(JSON.parse(stdout)).toEqual({
        text: { same: true, bytes: 12 },
        bytes: { same: true, bytes: 1000 },
        json: { same: true, bytes: 11 },
        large: { same: false, bytes: 100 * 1024 },
        stream: { same: false, bytes: 3 },
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
