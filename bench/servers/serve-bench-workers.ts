/**
 * The HTTP bench server on workerd (miniflare): `node --import tsx bench/servers/serve-bench-workers.ts --bare|--guarded|--variant NAME [--subscribed] [--nodejs-compat]`.
 * Prints "listening on …". Variants other than bare and guarded: bench/shared/http-bench-variants.ts.
 * `--inspector-port N` opens workerd's inspector (for CPU profiles: bench/profile/profile-cdp.ts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { WORKERS_COMPATIBILITY_DATE, WORKERS_COMPATIBILITY_FLAGS } from "../../harness/workers-config.ts";
import { variantName } from "../shared/http-bench-variants.ts";

const variant = variantName(process.argv);
// --subscribed: the worker subscribes at load, which needs nodejs_compat (the flag is added for that server only).
const subscribed = process.argv.includes("--subscribed");
const nodejsCompat = subscribed || process.argv.includes("--nodejs-compat");
const inspectorAt = process.argv.indexOf("--inspector-port");
const inspectorPort = inspectorAt >= 0 ? Number(process.argv[inspectorAt + 1]) : undefined;
const dir = mkdtempSync(join(tmpdir(), "sd-bench-workers-"));
const scriptPath = join(dir, "worker.mjs");
await build({
  entryPoints: [join(dirname(fileURLToPath(import.meta.url)), "worker-bench-entry.ts")],
  outfile: scriptPath,
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  define: { __VARIANT__: JSON.stringify(variant), __SUBSCRIBED__: String(subscribed) },
  logLevel: "warning",
});
const mf = new Miniflare({
  modules: true,
  scriptPath,
  modulesRoot: dir,
  compatibilityDate: WORKERS_COMPATIBILITY_DATE,
  compatibilityFlags: nodejsCompat ? [...WORKERS_COMPATIBILITY_FLAGS, "nodejs_compat"] : WORKERS_COMPATIBILITY_FLAGS,
  host: "127.0.0.1",
  port: 0,
  ...(inspectorPort === undefined ? {} : { inspectorPort }),
});
const origin = (await mf.ready).origin;
rmSync(dir, { recursive: true, force: true }); // workerd has loaded the bundle
console.log(`bench ${variant}${subscribed ? " subscribed" : ""} workers listening on ${origin}`);
const stop = () => void mf.dispose().finally(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
