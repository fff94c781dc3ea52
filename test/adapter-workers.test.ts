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
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
    expect(cell.kind, cell.detail).toBe("ok");
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
