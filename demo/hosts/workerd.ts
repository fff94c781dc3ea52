/**
 * Serves an app (the demo, or the fixture server) on workerd: bundles its Worker module with esbuild
 * (the config injected at bundle time) and serves it with miniflare on 127.0.0.1. Entries:
 * demo/serve-workers.ts (bundles demo/worker-entry.ts), harness/fixture/serve-workers.ts, each run
 * with tsx: `node --import tsx ENTRY --port N [--config FILE.json] [--bare]`.
 *
 * No `nodejs_compat`: the adapter must work on plain Workers. `enable_request_signal` makes
 * `request.signal` abort when the client goes away (without it, workerd never tells the handler).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { demoConfigFrom } from "../demo-app.ts";
import { parseDemoArgs, TRY_THESE } from "../demo-cli.ts";
import { WORKERS_COMPATIBILITY_DATE, WORKERS_COMPATIBILITY_FLAGS } from "../serve-workers-config.ts";

export interface WorkerKind {
  /** The first words of the "… listening on URL" line. */
  title: string;
  /** Whether to print the curl commands to try after that line. */
  hints: boolean;
  /** The Worker module to bundle: it reads `__DEMO_CONFIG__` and `__DEMO_BARE__` (demo/hosts/worker.ts). */
  entry: string;
}

export async function serveOnWorkerd(kind: WorkerKind): Promise<void> {
  const args = parseDemoArgs(process.argv.slice(2));
  const config = demoConfigFrom(args.configFile ? JSON.parse(readFileSync(args.configFile, "utf8")) : undefined);

  // DEMO_WORKERS_FLAGS="" (comma-separated) replaces the flags: to see what workerd does without them.
  const flags =
    process.env.DEMO_WORKERS_FLAGS === undefined
      ? WORKERS_COMPATIBILITY_FLAGS
      : process.env.DEMO_WORKERS_FLAGS.split(",").filter(Boolean);

  const dir = mkdtempSync(join(tmpdir(), "sd-workers-"));
  const scriptPath = join(dir, "worker.mjs");
  await build({
    entryPoints: [kind.entry],
    outfile: scriptPath,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    define: { __DEMO_CONFIG__: JSON.stringify(config), __DEMO_BARE__: JSON.stringify(args.bare) },
    logLevel: "warning",
  });

  const mf = new Miniflare({
    modules: true,
    scriptPath,
    modulesRoot: dir, // module names are relative to it; the bundle lives outside the project
    compatibilityDate: WORKERS_COMPATIBILITY_DATE,
    compatibilityFlags: flags,
    host: "127.0.0.1",
    port: args.port,
    // One structured record per console call: what the app prints comes out as whole lines, unprefixed.
    handleStructuredLogs({ level, message }: { level: string; message: string }) {
      for (const line of message.split("\n")) {
        if (level === "error" || level === "warn") process.stderr.write(`${line}\n`);
        else process.stdout.write(`${line}\n`);
      }
    },
  });
  const url = (await mf.ready).origin;
  // workerd has loaded the bundle: remove it now, so that no exit path (SIGKILL included) leaves it behind.
  rmSync(dir, { recursive: true, force: true });
  console.log(
    `${kind.title} (workerd via miniflare, compatibility date ${WORKERS_COMPATIBILITY_DATE}, flags [${flags.join(", ")}]${args.bare ? ", bare: no stream-deadlines" : ""}) listening on ${url}`,
  );
  if (kind.hints) console.log(TRY_THESE(url));

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void mf
      .dispose()
      .catch(() => {})
      .finally(() => process.exit(0));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}
