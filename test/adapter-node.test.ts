/**
 * The Node adapter over real sockets: what it changes in Node's own limits, HTTP/2 over TLS,
 * and the client address in the policy. Short real limits (hundreds of ms), generous margins.
 */
import http2 from "node:http2";
import { afterEach, describe, expect, it } from "vitest";
import { generate } from "selfsigned";
import { type NodeServerHandle, nodeServerLimits, serve } from "../adapters/node.ts";
import { deadlines } from "../src/index.ts";
import { connect, exchange, requestHead, sleep } from "../harness/raw-http-client.ts";

let server: NodeServerHandle | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("stream-deadlines/node", () => {
  /** An upload of 1500 bytes over 1.5 s: progressing, never 300 ms without a byte. */
  async function progressingUpload(port: number) {
    const socket = await connect(port);
    socket.on("error", () => {});
    const ex = exchange(socket, requestHead("POST", "/", { "Content-Length": 1500, Connection: "close" }));
    for (let i = 0; i < 15 && !socket.destroyed; i++) {
      socket.write(Buffer.alloc(100));
      await sleep(100);
    }
    return ex.response;
  }
  const countBytes = async (request: Request) => Response.json({ bytes: (await request.arrayBuffer()).byteLength });

  it("turns Node's requestTimeout off: a progressing upload outlives it; the library's limits govern", async () => {
    // Node's own requestTimeout cuts a progressing upload (the documented behaviour the adapter removes) ...
    const http = await import("node:http");
    const { createNodeListener } = await import("../adapters/node.ts");
    const plain = http.createServer(
      { requestTimeout: 800, connectionsCheckingInterval: 100 },
      createNodeListener(countBytes, { onTimeout: false }) as never,
    );
    await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", resolve));
    const cut = await progressingUpload((plain.address() as import("node:net").AddressInfo).port);
    plain.closeAllConnections();
    plain.close();
    expect(cut.status === 408 || cut.ending !== "complete").toBe(true);
    // ... and the adapter's server lets it finish, under the library's idle limit of 300 ms.
    expect(nodeServerLimits()).toMatchObject({ requestTimeout: 0 });
    server = await serve(countBytes, { port: 0, onTimeout: false, request: { idle: 300 } });
    const res = await progressingUpload(server.port);
    expect([res.status, res.body.toString()]).toEqual([200, '{"bytes":1500}']);
  });

  it("headersTimeout bounds a slowloris client that never finishes its headers", async () => {
    server = await serve(() => new Response("ok"), { port: 0, onTimeout: false, headersTimeout: 400 });
    const socket = await connect(server.port);
    socket.on("error", () => {});
    const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(performance.now())));
    const started = performance.now();
    socket.write("GET / HTTP/1.1\r\nHost: x\r\n");
    const drip = setInterval(() => socket.write("X-Slow: y\r\n"), 100);
    const at = await Promise.race([closed, sleep(5000).then(() => Infinity)]);
    clearInterval(drip);
    socket.destroy();
    // Node checks every quarter of headersTimeout (the adapter sets connectionsCheckingInterval).
    expect(at - started).toBeGreaterThanOrEqual(400);
    expect(at - started).toBeLessThan(2000);
  });

  it("refuses a nonsense headersTimeout", () => {
    expect(() => nodeServerLimits(-1)).toThrow(RangeError);
    expect(() => nodeServerLimits(Number.NaN)).toThrow(/headersTimeout/);
  });

  it("gives the policy the client address", async () => {
    const seen: unknown[] = [];
    server = await serve((request) => new Response(JSON.stringify(deadlines(request).request.limits.idle)), {
      port: 0,
      onTimeout: false,
      policy: (_request, client) => {
        seen.push(client);
        return { request: { idle: client.address === "127.0.0.1" ? 1234 : 1 } };
      },
    });
    const res = await fetch(`${server.url}/`, { method: "POST", body: "x" });
    expect(await res.text()).toBe("1234");
    expect(seen).toEqual([{ address: "127.0.0.1", runtime: "node" }]);
  });

  it("serves HTTP/2 over TLS, and resets only the stalled stream", async () => {
    const pems = await generate([{ name: "commonName", value: "127.0.0.1" }], { keyType: "ec" });
    let sent = 0;
    server = await serve(
      (request) => {
        if (new URL(request.url).pathname === "/small") return new Response("hello over h2");
        return new Response(
          new ReadableStream<Uint8Array>(
            { pull: (c) => void ((sent += 65536), c.enqueue(new Uint8Array(65536))) },
            { highWaterMark: 0 },
          ),
        );
      },
      { port: 0, onTimeout: false, http2: true, tls: { key: pems.private, cert: pems.cert }, response: { idle: 300 } },
    );
    const session = http2.connect(server.url, { rejectUnauthorized: false });
    session.on("error", () => {});
    await new Promise<void>((resolve) => session.once("connect", () => resolve()));
    session.setLocalWindowSize(32 * 1024 * 1024);
    const stalled = session.request({ ":path": "/endless" });
    stalled.on("error", () => {});
    stalled.pause();
    const reset = new Promise<number>((resolve) => stalled.once("close", () => resolve(stalled.rstCode ?? -1)));
    const small = session.request({ ":path": "/small" });
    let text = "";
    small.setEncoding("utf8").on("data", (d: string) => (text += d));
    await new Promise<void>((resolve) => small.once("close", () => resolve()));
    expect(text).toBe("hello over h2");
    expect(await Promise.race([reset, sleep(10_000).then(() => -2)])).toBeGreaterThan(0);
    expect(sent).toBeLessThan(64 * 1024 * 1024); // the producer stopped: backpressure reached it
    session.close();
  });

  it("HTTP/2: a stalled upload gets its 408, then its stream is reset with NO_ERROR so the client stops holding it", async () => {
    server = await serve(async (request) => new Response(String((await request.arrayBuffer()).byteLength)), {
      port: 0,
      onTimeout: false,
      http2: "h2c",
      request: { idle: 300 },
    });
    const session = http2.connect(server.url);
    session.on("error", () => {});
    const upload = session.request({ ":path": "/upload", ":method": "POST" }, { endStream: false });
    upload.on("error", () => {});
    upload.write(Buffer.alloc(100)); // then nothing more, and the client never ends its half
    const status = new Promise<number>((resolve) =>
      upload.once("response", (headers) => resolve(Number(headers[":status"]))),
    );
    upload.resume();
    const closed = new Promise<number>((resolve) => upload.once("close", () => resolve(upload.rstCode ?? -1)));
    const warnings: string[] = [];
    const onWarning = (w: Error) => void warnings.push(w.message);
    process.on("warning", onWarning);
    try {
      expect(await Promise.race([status, sleep(5_000).then(() => -2)])).toBe(408);
      expect(await Promise.race([closed, sleep(5_000).then(() => -2)])).toBe(http2.constants.NGHTTP2_NO_ERROR);
      await sleep(50);
    } finally {
      process.off("warning", onWarning);
    }
    // No "connection header is not valid" warning: the HTTP/2 timeout response has no Connection header.
    expect(warnings.filter((w) => /connection header/i.test(w))).toEqual([]);
    session.close();
  });

  it("listens on 127.0.0.1 unless given a hostname", async () => {
    server = await serve(() => new Response("ok"), { port: 0, onTimeout: false });
    expect(server.server.address()).toMatchObject({ address: "127.0.0.1" });
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
  });

  it("refuses HTTP/2 over TLS without a certificate", async () => {
    await expect(serve(() => new Response(), { port: 0, http2: true })).rejects.toThrow(/needs the tls option/);
  });
});

describe("stream-deadlines/node: small bodies already in memory", () => {
  it("are written in one go with their length, status and headers intact", async () => {
    const s = await serve(() => new Response("hello world\n", { status: 201, headers: { "x-a": "1" } }), {
      port: 0,
      onTimeout: false,
    });
    try {
      const socket = await connect(s.port);
      const res = await exchange(socket, requestHead("GET", "/", { Connection: "close" })).response;
      socket.destroy();
      expect([res.status, res.headers["content-length"], res.headers["x-a"], res.body.toString()]).toEqual([
        201,
        "12",
        "1",
        "hello world\n",
      ]);
    } finally {
      await s.close();
    }
  });
});

describe("stream-deadlines/node: the upload read from the IncomingMessage, inside srvx's request", () => {
  let running: NodeServerHandle | undefined;
  afterEach(async () => {
    await running?.close();
    running = undefined;
  });

  it("hands the handler srvx's own request for an upload (no copy): runtime and ip stay, the body is guarded", async () => {
    running = await serve(
      async (request, context) => {
        const own = (request as { runtime?: { node?: { req?: unknown } } }).runtime?.node?.req === context.req;
        const reader = request.body!.getReader();
        let bytes = 0;
        let plainBytes = true;
        for (let r = await reader.read(); !r.done; r = await reader.read()) {
          bytes += r.value.byteLength;
          // Each chunk is its own bytes: not a view into a larger (pooled) buffer.
          plainBytes &&=
            r.value instanceof Uint8Array &&
            r.value.byteOffset === 0 &&
            r.value.byteLength === r.value.buffer.byteLength;
        }
        return Response.json({
          own,
          ip: (request as { ip?: string }).ip,
          bytes,
          plainBytes,
          used: request.bodyUsed,
          guarded: deadlines(request).request.stats.bytes,
        });
      },
      { port: 0, onTimeout: false },
    );
    const res = await fetch(`${running.url}/`, { method: "POST", body: new Uint8Array(300_000).fill(7) });
    expect(await res.json()).toEqual({
      own: true,
      ip: "127.0.0.1",
      bytes: 300_000,
      plainBytes: true,
      used: true,
      guarded: 300_000,
    });
  });

  it("the guarded upload is a byte stream, as Node's own Request bodies are: a BYOB reader fills its buffer", async () => {
    running = await serve(
      async (request) => {
        const reader = request.body!.getReader({ mode: "byob" });
        let buffer = new ArrayBuffer(16 * 1024);
        let bytes = 0;
        let sum = 0;
        let ownBuffer = true;
        for (;;) {
          const { done, value } = await reader.read(new Uint8Array(buffer));
          if (done) break;
          ownBuffer &&= value.buffer.byteLength === 16 * 1024; // the reader's buffer, handed back
          bytes += value.byteLength;
          for (const byte of value) sum += byte;
          buffer = value.buffer as ArrayBuffer;
        }
        return Response.json({ bytes, sum, ownBuffer, guarded: deadlines(request).request.stats.bytes });
      },
      { port: 0, onTimeout: false },
    );
    const body = new Uint8Array(300_000).map((_, i) => i % 7);
    const expectedSum = body.reduce((a, b) => a + b, 0);
    const res = await fetch(`${running.url}/`, { method: "POST", body });
    expect(await res.json()).toEqual({ bytes: 300_000, sum: expectedSum, ownBuffer: true, guarded: 300_000 });
  });

  it("small pieces Node joins while the handler is busy come as their own bytes, not a slice of Node's shared pool", async () => {
    running = await serve(
      async (request) => {
        await sleep(300); // the pieces pile up in Node's buffer; read() then joins them
        const chunks: Uint8Array[] = [];
        const reader = request.body!.getReader();
        for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(r.value);
        const views = chunks.filter((c) => c.byteOffset !== 0 || c.byteLength !== c.buffer.byteLength).length;
        return Response.json({ chunks: chunks.length, bytes: chunks.reduce((n, c) => n + c.byteLength, 0), views });
      },
      { port: 0, onTimeout: false },
    );
    const socket = await connect(running.port);
    const ex = exchange(socket, requestHead("POST", "/", { "Content-Length": 1000 }));
    for (let i = 0; i < 10; i++) {
      socket.write(Buffer.alloc(100, i));
      await sleep(10);
    }
    const res = await ex.response;
    socket.destroy();
    const body = JSON.parse(res.body.toString()) as { chunks: number; bytes: number; views: number };
    expect(body.bytes).toBe(1000);
    expect(body.chunks).toBeLessThan(10); // joined: the case this is about happened
    expect(body.views).toBe(0);
  });

  it("text(), json(), arrayBuffer() and formData() read through the guard; a second read is refused", async () => {
    running = await serve(
      async (request) => {
        const kind = new URL(request.url).pathname;
        let value: unknown;
        if (kind === "/text") value = await request.text();
        else if (kind === "/json") value = await request.json();
        else if (kind === "/bytes") value = (await request.arrayBuffer()).byteLength;
        else value = (await request.formData()).get("a");
        const again = await request.text().then(
          () => "read twice",
          (error: unknown) => (error as Error).name,
        );
        return Response.json({ value, again, guarded: deadlines(request).request.stats.bytes });
      },
      { port: 0, onTimeout: false },
    );
    const post = async (path: string, body: BodyInit) =>
      (await fetch(`${running!.url}${path}`, { method: "POST", body })).json();
    expect(await post("/text", "hello")).toEqual({ value: "hello", again: "TypeError", guarded: 5 });
    expect(await post("/json", '{"a":[1,2]}')).toEqual({ value: { a: [1, 2] }, again: "TypeError", guarded: 11 });
    expect(await post("/bytes", new Uint8Array(70_000))).toEqual({
      value: 70_000,
      again: "TypeError",
      guarded: 70_000,
    });
    const form = new URLSearchParams({ a: "b" });
    expect(await post("/form", form)).toEqual({ value: "b", again: "TypeError", guarded: 3 });
  });

  it("a stalled upload read with text() is cut at the idle limit with the default 408, and the handler saw the TimeoutError", async () => {
    const seen: string[] = [];
    running = await serve(
      async (request) => {
        try {
          await request.text();
        } catch (error) {
          seen.push((error as Error).name);
          throw error;
        }
        return new Response("unreachable");
      },
      { port: 0, onTimeout: false, request: { idle: 300 } },
    );
    const socket = await connect(running.port);
    socket.on("error", () => {});
    const ex = exchange(socket, requestHead("POST", "/", { "Content-Length": 10_000 }));
    socket.write(Buffer.alloc(100));
    const started = performance.now();
    const res = await ex.response;
    socket.destroy();
    expect([res.status, res.body.toString(), seen]).toEqual([408, "Request Timeout\n", ["TimeoutError"]]);
    expect(res.statusAt - started).toBeGreaterThanOrEqual(295);
  });

  it("a policy that takes the raw body first gets it; the handler then reads a guarded copy", async () => {
    running = await serve(
      async (request) =>
        Response.json({
          text: await request.text(),
          guarded: deadlines(request).request.stats.bytes,
          copy: (request as { runtime?: unknown }).runtime === undefined,
        }),
      { port: 0, onTimeout: false, policy: (request) => (request.body === null ? {} : { request: { idle: 5000 } }) },
    );
    const res = await fetch(`${running.url}/`, { method: "POST", body: "from the client" });
    expect(await res.json()).toEqual({ text: "from the client", guarded: 15, copy: true });
  });

  it("a client that resets mid-upload fails the handler's read (not a hang), and nothing stays scheduled", async () => {
    const { deadlineDebugCounters } = await import("../src/index.ts");
    let failed: (name: string) => void;
    const failure = new Promise<string>((resolve) => (failed = resolve));
    running = await serve(
      async (request) => {
        try {
          await request.arrayBuffer();
          failed("completed");
        } catch (error) {
          failed((error as Error).name || "Error");
        }
        return new Response("done");
      },
      { port: 0, onTimeout: false, request: { idle: 10_000 } },
    );
    const socket = await connect(running.port);
    socket.on("error", () => {});
    socket.write(requestHead("POST", "/", { "Content-Length": 10_000 }));
    socket.write(Buffer.alloc(100));
    await sleep(100);
    socket.resetAndDestroy();
    expect(await Promise.race([failure, sleep(5000).then(() => "hung")])).not.toMatch(/hung|completed/);
    await sleep(50);
    expect(deadlineDebugCounters()).toMatchObject({ liveGuards: 0, scheduledDeadlines: 0 });
  });
});
