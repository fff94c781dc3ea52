/**
 * Workers without the `enable_request_signal` compatibility flag: workerd then neither calls a
 * response body's cancel() on a disconnect nor aborts request.signal, and (with nothing pending in
 * ctx.waitUntil) runs no timer of the request again. The adapter keeps the guarded body's pipe in
 * ctx.waitUntil, so workerd cancels the body and the producer is freed all the same.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKERS_COMPATIBILITY_DATE, WORKERS_COMPATIBILITY_FLAGS } from "../harness/workers-config.ts";
import { runCell } from "./conformance/conformance-runner.ts";
import { launch, type RunningServer } from "../harness/runtime-launchers.ts";
import { CONFORMANCE_CONFIG, SCENARIOS } from "./conformance/scenarios.ts";

describe("stream-deadlines/workers without enable_request_signal", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await launch("workers", CONFORMANCE_CONFIG, 120_000, { DEMO_WORKERS_FLAGS: "" });
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
  });

  it("a client disconnect still cancels the producer promptly", async () => {
    const scenario = SCENARIOS.find((s) => s.id === "client-disconnect")!;
    const cell = await runCell(scenario, "workers", server);
    expect(cell.kind, cell.detail).toBe("ok");
  }, 60_000);

  it("a stalled reader of a declared-length download is still cut and seen truncated", async () => {
    const scenario = SCENARIOS.find((s) => s.id === "stalled-reader")!;
    const cell = await runCell(scenario, "workers", server);
    // The cut itself is right; the cell is a known limit for one reason only: workerd's own log of the
    // cut body, counted exactly (test/conformance/server-output.ts, docs/runtime-workers.md).
    expect(cell.kind, cell.detail).toBe("limit");
    expect(cell.detail).toMatch(/producer cancelled: timeout\/idle; client saw truncated/);
    expect(cell.detail).toMatch(/1 line for 1 firing; plus the runtime's own documented lines$/);
  }, 60_000);
});

/**
 * The first handler deadline in a fresh isolate, with the default report (its first console.warn):
 * the answer must be the 503, decided before the report or the handler's signal listener can run.
 * workerd once let the handler's continuation win here (200 "slow: answered…" on every fresh start).
 * The plain demo runs (not the fixture server: no observation lines), so the report is the isolate's first
 * console output.
 */
describe("stream-deadlines/workers: the first handler deadline of a fresh isolate", () => {
  it("answers 503, not the handler's late answer", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sd-workers-fresh-"));
    const configFile = join(dir, "config.json");
    writeFileSync(configFile, JSON.stringify({ handler: 500 }));
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "demo/run.ts", "--runtime", "workers", "--port", "0", "--config", configFile],
      { cwd: fileURLToPath(new URL("..", import.meta.url)), stdio: ["ignore", "pipe", "pipe"] },
    );
    const output: string[] = [];
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "listening on" line\n${output.join("")}`)), 110_000);
        for (const stream of [child.stdout!, child.stderr!])
          stream.on("data", (data: Buffer) => {
            output.push(data.toString());
            const match = /listening on https?:\/\/[^\s]*:(\d+)/.exec(output.join(""));
            if (match) {
              clearTimeout(timer);
              resolve(Number(match[1]));
            }
          });
      });
      const started = performance.now();
      const response = await fetch(`http://127.0.0.1:${port}/slow?ms=5000`);
      const text = await response.text();
      const after = performance.now() - started;
      expect([response.status, text]).toEqual([503, "Service Unavailable\n"]);
      expect(after).toBeLessThan(500 + 2000);
      // The report still went out, once.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(output.join("").match(/GET \/slow handler handler timeout/g)?.length).toBe(1);
    } finally {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

/**
 * In workerd a read of a native body (even one made from a string) resolves only in a later turn of
 * its event loop, so the in-memory peek bounds its wait with a timer: a small body must still be
 * found in memory (passed on, no pipe kept in ctx.waitUntil), and a streamed one must still be guarded.
 */
describe("stream-deadlines/workers: the in-memory peek in workerd", () => {
  const dir = mkdtempSync(join(tmpdir(), "sd-workers-peek-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("finds every small body in memory, and guards every streamed one", async () => {
    const root = fileURLToPath(new URL("..", import.meta.url));
    const entry = join(dir, "peek.ts");
    writeFileSync(
      entry,
      `import { withWorkersDeadlines } from ${JSON.stringify(join(root, "adapters/workers.ts"))};
const streamed = () =>
  new Response(new ReadableStream({
    async pull(c) { await new Promise((r) => setTimeout(r, 5)); c.enqueue(new Uint8Array(3)); c.close(); },
  }));
const small = () => new Response("hello world\\n", { headers: { "content-type": "text/plain" } });
async function piped(make, times) {
  let pipes = 0;
  const ctx = { waitUntil: () => { pipes++; } };
  const handler = withWorkersDeadlines(make, { onTimeout: false });
  for (let i = 0; i < times; i++) await (await handler(new Request("http://x/"), {}, ctx)).arrayBuffer();
  return pipes;
}
export default {
  async fetch() {
    return Response.json({ small: await piped(small, 50), streamed: await piped(streamed, 10) });
  },
};
`,
    );
    const script = join(dir, "peek.mjs");
    await build({ entryPoints: [entry], outfile: script, bundle: true, format: "esm", logLevel: "warning" });
    const mf = new Miniflare({
      modules: true,
      scriptPath: script,
      modulesRoot: dir,
      compatibilityDate: WORKERS_COMPATIBILITY_DATE,
      compatibilityFlags: WORKERS_COMPATIBILITY_FLAGS,
    });
    try {
      const response = await mf.dispatchFetch("http://worker/");
      expect(await response.json()).toEqual({ small: 0, streamed: 10 });
    } finally {
      await mf.dispose();
    }
  }, 60_000);
});
