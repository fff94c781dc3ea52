/**
 * The framework recipes on the real packages: an Elysia app on real Bun (examples/elysia-bun.ts)
 * and an h3 v2 app on Node (examples/h3-node.ts), over loopback TCP with short real limits. Each
 * recipe: an upload that stalls gets 408 with `Connection: close` (not the framework's own 400/500);
 * an authenticated upload may pause longer; a quiet SSE stream keeps going across a gap longer
 * than the response idle limit; the per-route policy bounds /login by its total.
 */
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { start } from "../examples/h3-node.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Short limits with wide margins: idle 300 ms by default, 2 s once authenticated, 5 s for the events' gap. */
const LIMITS = {
  defaults: { request: { idle: 300 }, response: { idle: 300 }, handler: 10_000 },
  authenticated: { idle: 2_000, minRate: 0, total: null },
  login: { idle: 2_000, total: 600 },
  eventGap: 900,
};

interface Reply {
  head: string;
  status: number;
  body: string;
  /** ms from the first byte sent to the end of the connection (or of the wait). */
  tookMs: number;
  closed: boolean;
}

/** Sends `steps` (strings, or numbers of ms to wait) on a new connection; collects what comes back. */
function exchange(port: number, steps: (string | number)[], waitMs = 4_000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const started = performance.now();
    let data = "";
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      const [head = "", ...rest] = data.split("\r\n\r\n");
      resolve({
        head,
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0),
        body: rest.join("\r\n\r\n"),
        tookMs: performance.now() - started,
        closed,
      });
    };
    const timer = setTimeout(finish, waitMs);
    socket.on("data", (chunk: Buffer) => {
      data += chunk.toString("latin1");
      // A response that says Connection: close is over when the server closes the connection.
      if (isComplete(data) && !/\r\nconnection: *close/i.test(data.slice(0, data.indexOf("\r\n\r\n")))) finish();
    });
    socket.on("end", () => {
      closed = true;
      finish();
    });
    socket.on("error", (error) => (data ? finish() : reject(error)));
    socket.on("connect", async () => {
      for (const step of steps) {
        if (typeof step === "number") await new Promise((r) => setTimeout(r, step));
        else if (!socket.destroyed) socket.write(step);
      }
    });
  });
}

/** Whether `data` holds a whole response (by its Content-Length, or a chunked body's terminator). */
function isComplete(data: string): boolean {
  const end = data.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const head = data.slice(0, end).toLowerCase();
  const body = data.slice(end + 4);
  const length = /\r\ncontent-length: *(\d+)/.exec(head);
  if (length) return body.length >= Number(length[1]);
  return /\r\ntransfer-encoding: *chunked/.test(head) && body.endsWith("0\r\n\r\n");
}

const post = (path: string, length: number, headers = "") =>
  `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n${headers}Content-Length: ${length}\r\n\r\n`;

function recipeChecks(port: () => number) {
  it("a stalled upload gets 408 with Connection: close, not the framework's own error answer", async () => {
    const reply = await exchange(port(), [post("/upload", 10), "abc"]);
    expect(reply.status, reply.head).toBe(408);
    expect(reply.head.toLowerCase()).toContain("connection: close");
    expect(reply.closed).toBe(true);
    expect(reply.tookMs).toBeGreaterThan(250);
  });

  it("an authenticated upload may pause past the default idle (relaxed before the body is read)", async () => {
    const reply = await exchange(port(), [
      post("/upload", 10, "Authorization: Bearer demo\r\n"),
      "abc",
      700,
      "defghij",
    ]);
    expect(reply.status, reply.head).toBe(200);
    expect(reply.body).toContain('{"bytes":10}');
  });

  it("a quiet SSE stream keeps going across a gap longer than the response idle limit", async () => {
    const reply = await exchange(port(), ["GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n"], 3_000);
    expect(reply.status, reply.head).toBe(200);
    expect(reply.body).toContain("first");
    expect(reply.body).toContain("after a quiet gap");
  });

  it("the per-route policy bounds /login by its total, while the body keeps moving", async () => {
    const drip = Array.from({ length: 10 }, (_, i) => [150, i === 0 ? "{" : " "] as const).flat();
    const reply = await exchange(port(), [post("/login", 11), ...drip]);
    expect(reply.status, reply.head).toBe(408);
    expect(reply.tookMs).toBeGreaterThan(550);
    expect(reply.tookMs).toBeLessThan(1_500);
  });
}

describe("Elysia on Bun (examples/elysia-bun.ts)", () => {
  let child: ChildProcess;
  let port = 0;
  let output = "";
  beforeAll(async () => {
    child = spawn(join(root, "node_modules/.bin/bun"), [join(root, "test/frameworks/serve-elysia.ts")], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1", RECIPE_LIMITS: JSON.stringify(LIMITS) },
    });
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`bun did not start:\n${output}`)), 20_000);
      const onData = (data: Buffer) => {
        output += data.toString();
        const match = /listening on (\d+)/.exec(output);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.once("exit", () => reject(new Error(`bun exited:\n${output}`)));
    });
  }, 30_000);
  afterAll(() => {
    child?.kill();
  });
  recipeChecks(() => port);
});

describe("h3 v2 on Node (examples/h3-node.ts)", () => {
  let handle: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    handle = await start(LIMITS, 0);
  });
  afterAll(() => handle?.close());
  recipeChecks(() => handle.port);
});
