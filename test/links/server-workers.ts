/**
 * The links harness's server on workerd (miniflare), through the Workers adapter:
 *
 *   node --import tsx test/links/server-workers.ts '<options JSON>'
 *
 * Same options and output as test/links/server.ts: `{"event":"listening",…}`, then the worker's JSON lines. No
 * `nodejs_compat`; `enable_request_signal` so that a client that leaves is seen (as the demo runs workerd).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";

const COMPATIBILITY_DATE = "2026-04-20";
const COMPATIBILITY_FLAGS = ["enable_request_signal"];

const options = JSON.parse(process.argv[2] ?? "{}") as {
  port: number;
  hostname: string;
  request: unknown;
  response: unknown;
};
const dir = mkdtempSync(join(tmpdir(), "sd-links-workers-"));
const scriptPath = join(dir, "worker.mjs");
try {
  await build({
    entryPoints: [join(dirname(fileURLToPath(import.meta.url)), "worker-entry.ts")],
    outfile: scriptPath,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    define: { __LINKS_LIMITS__: JSON.stringify({ request: options.request, response: options.response }) },
    logLevel: "warning",
  });
} catch (error) {
  rmSync(dir, { recursive: true, force: true });
  throw error;
}
const mf = new Miniflare({
  modules: true,
  scriptPath,
  modulesRoot: dir,
  compatibilityDate: COMPATIBILITY_DATE,
  compatibilityFlags: COMPATIBILITY_FLAGS,
  host: options.hostname,
  port: options.port,
  handleStructuredLogs({ level, message }: { level: string; message: string }) {
    for (const line of message.split("\n")) (level === "log" ? process.stdout : process.stderr).write(`${line}\n`);
  },
});
await mf.ready;
rmSync(dir, { recursive: true, force: true }); // workerd has loaded the bundle
console.log(JSON.stringify({ event: "listening", runtime: "workers", port: options.port }));

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 2000);
  void mf
    .dispose()
    .catch(() => {})
    .finally(() => process.exit(0));
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
