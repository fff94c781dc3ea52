/**
 * `applyNodeServerLimits(server)`: what `serve()` of stream-deadlines/node sets at creation, applied
 * to a server someone else created (a plain node:http server, @hono/node-server's, node:http2's),
 * before or after it listens. Real sockets on loopback, limits of hundreds of ms, wide margins.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { serve as honoServe } from "@hono/node-server";
import { Hono } from "hono";
import { afterEach, describe, expect, it, vi } from "vitest";
import { applyNodeServerLimits } from "../adapters/node.ts";
import { deadlines } from "../adapters/hono.ts";

const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
  vi.restoreAllMocks();
});

function listen(server: http.Server | http2.Http2Server): Promise<number> {
  closers.push(() => {
    (server as http.Server).closeAllConnections?.();
    server.close();
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port)),
  );
}

/** Sends a header line every `every` ms (slowloris); resolves with when the server closed the connection. */
function slowloris(port: number, every: number, giveUpAfter: number): Promise<number> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const started = performance.now();
    socket.write("GET / HTTP/1.1\r\nHost: x\r\n");
    const drip = setInterval(() => socket.write(`X-${Math.random().toString(36).slice(2)}: y\r\n`), every);
    const done = () => {
      clearInterval(drip);
      clearTimeout(timer);
      socket.destroy();
      resolve(performance.now() - started);
    };
    const timer = setTimeout(done, giveUpAfter);
    socket.on("close", done);
    socket.on("error", () => {});
  });
}

/** POSTs `chunks` bytes one every `every` ms; resolves with the status line (or "" on a cut). */
function slowUpload(port: number, chunks: number, every: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    let data = "";
    socket.write(`POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${chunks}\r\n\r\n`);
    let sent = 0;
    const drip = setInterval(() => {
      if (sent < chunks && !socket.destroyed) socket.write("x");
      if (++sent >= chunks) clearInterval(drip);
    }, every);
    socket.on("data", (chunk: Buffer) => {
      data += chunk.toString("latin1");
      if (data.includes("\r\n\r\n")) {
        clearInterval(drip);
        socket.destroy();
        resolve(data.split("\r\n")[0]!);
      }
    });
    socket.on("close", () => resolve(data.split("\r\n")[0] ?? ""));
    socket.on("error", () => {});
  });
}

describe("applyNodeServerLimits on a node:http server created elsewhere", () => {
  const readAll = (req: http.IncomingMessage, res: http.ServerResponse) => {
    let bytes = 0;
    req.on("data", (chunk: Buffer) => (bytes += chunk.length));
    req.on("end", () => res.end(String(bytes)));
  };

  it("a slowloris is cut at headersTimeout plus the check interval, applied after listening; untouched, it is held", async () => {
    const untouched = http.createServer(readAll);
    const port = await listen(untouched);
    const applied = http.createServer(readAll);
    const appliedPort = await listen(applied);
    applyNodeServerLimits(applied, { headersTimeout: 500 });
    const [held, cut] = await Promise.all([slowloris(port, 100, 2_000), slowloris(appliedPort, 100, 2_000)]);
    expect(held).toBeGreaterThanOrEqual(1_900);
    expect(cut).toBeGreaterThan(450);
    expect(cut).toBeLessThan(1_300); // 500 ms + a check every 250 ms, with margin
  });

  it("turns requestTimeout off: an upload that keeps moving outlives the requestTimeout it was created with", async () => {
    const strict = http.createServer({ requestTimeout: 600, connectionsCheckingInterval: 100 }, readAll);
    const port = await listen(strict);
    const relaxed = http.createServer({ requestTimeout: 600, connectionsCheckingInterval: 100 }, readAll);
    applyNodeServerLimits(relaxed); // before listening
    const relaxedPort = await listen(relaxed);
    const [killed, kept] = await Promise.all([slowUpload(port, 10, 120), slowUpload(relaxedPort, 10, 120)]);
    expect(killed).toBe("HTTP/1.1 408 Request Timeout");
    expect(kept).toBe("HTTP/1.1 200 OK");
    expect([relaxed.requestTimeout, relaxed.headersTimeout]).toEqual([0, 10_000]);
  });

  it("refuses what is not a server, and bad options, naming them", () => {
    expect(() => applyNodeServerLimits({} as never)).toThrow(/server must be a node:http/);
    expect(() => applyNodeServerLimits(null as never)).toThrow(/server must be .* got null/);
    const server = http.createServer();
    expect(() => applyNodeServerLimits(server, { headersTimeout: -1 })).toThrow(/headersTimeout .* got -1/);
    expect(() => applyNodeServerLimits(server, { headersTimeout: "1s" as never })).toThrow(TypeError);
    expect(() => applyNodeServerLimits(server, { headerTimeout: 1 } as never)).toThrow(
      /unknown option "headerTimeout"/,
    );
  });
});

describe("Hono under @hono/node-server with the middleware and applyNodeServerLimits", () => {
  function honoApp() {
    const app = new Hono();
    app.use(deadlines({ request: { idle: 300 }, onTimeout: false }));
    app.post("/upload", async (c) => c.text(String((await c.req.arrayBuffer()).byteLength)));
    return app;
  }

  it("bounds the header phase (slowloris) and lets a progressing upload finish, while the middleware cuts a stall", async () => {
    const port = await new Promise<number>((resolve) => {
      const server = honoServe({ fetch: honoApp().fetch, port: 0, hostname: "127.0.0.1" }, (info) =>
        resolve(info.port),
      );
      applyNodeServerLimits(server, { headersTimeout: 500 });
      closers.push(() => {
        (server as http.Server).closeAllConnections();
        server.close();
      });
    });
    const [cutAfter, progressing, stalled] = await Promise.all([
      slowloris(port, 100, 2_000),
      slowUpload(port, 8, 150),
      new Promise<string>((resolve) => {
        const socket = net.connect(port, "127.0.0.1");
        socket.write("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
        socket.on("data", (d: Buffer) => {
          socket.destroy();
          resolve(d.toString("latin1").split("\r\n")[0]!);
        });
        socket.on("error", () => {});
      }),
    ]);
    expect(cutAfter).toBeLessThan(1_300);
    expect(progressing).toBe("HTTP/1.1 200 OK");
    expect(stalled).toBe("HTTP/1.1 408 Request Timeout");
  });

  it("a reader that stops is cut short (no chunked terminator), with the report alone: @hono/node-server logs nothing", async () => {
    // @hono/node-server logs (console.error, console.info) what a response body fails with.
    const logged = [vi.spyOn(console, "error"), vi.spyOn(console, "info")];
    const reports: string[] = [];
    let cancelled: unknown;
    const app = new Hono();
    app.use(deadlines({ response: { idle: 300 }, onTimeout: (event) => reports.push(event.limit) }));
    app.get("/events", () => {
      const body = new ReadableStream<Uint8Array>(
        {
          pull: (controller) => controller.enqueue(new Uint8Array(64 * 1024).fill(0x61)),
          cancel: (reason) => void (cancelled = reason),
        },
        { highWaterMark: 0 },
      );
      return new Response(body, { headers: { "content-type": "application/octet-stream" } }); // chunked
    });
    const port = await new Promise<number>((resolve) => {
      const server = honoServe({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) => resolve(info.port));
      applyNodeServerLimits(server);
      closers.push(() => {
        (server as http.Server).closeAllConnections();
        server.close();
      });
    });
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    socket.write("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    let tail = "";
    socket.once("data", () => socket.pause()); // headers and a first chunk, then the client stops reading
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const closed = new Promise((resolve) => socket.once("close", resolve));
    socket.on("data", (chunk: Buffer) => (tail = (tail + chunk.toString("latin1")).slice(-16)));
    socket.resume();
    await closed;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(reports).toEqual(["idle"]);
    expect(cancelled).toMatchObject({ name: "TimeoutError", limit: "idle" });
    expect(tail.endsWith("0\r\n\r\n")).toBe(false); // cut, never a clean end
    for (const spy of logged) expect(spy).not.toHaveBeenCalled();
  });
});

describe("applyNodeServerLimits on a node:http2 server", () => {
  it("Node itself resets with NO_ERROR a stream answered before its upload ended; applying changes nothing of it", async () => {
    // The stream API (the compat API's res.end() resets such a stream itself).
    const answerAtOnce = (stream: http2.ServerHttp2Stream) => {
      stream.respond({ ":status": 200 });
      stream.end("early");
    };
    const untouched = http2.createServer().on("stream", answerAtOnce);
    const applied = applyNodeServerLimits(http2.createServer()).on("stream", answerAtOnce);
    const ports = [await listen(untouched), await listen(applied)];
    const outcomes = await Promise.all(
      ports.map(
        (port) =>
          new Promise<string>((resolve) => {
            const client = http2.connect(`http://127.0.0.1:${port}`);
            client.on("error", () => {});
            const stream = client.request({ ":method": "POST", ":path": "/upload" }, { endStream: false });
            stream.write("abc"); // then the client stalls
            let body = "";
            stream.on("data", (d: Buffer) => (body += d.toString()));
            const timer = setTimeout(() => {
              client.destroy();
              resolve(`open, ${body}`);
            }, 1_000);
            stream.on("close", () => {
              clearTimeout(timer);
              client.close();
              resolve(`closed ${stream.rstCode}, ${body}`);
            });
          }),
      ),
    );
    const reset = `closed ${http2.constants.NGHTTP2_NO_ERROR}, early`;
    expect(outcomes).toEqual([reset, reset]);
  });
});
