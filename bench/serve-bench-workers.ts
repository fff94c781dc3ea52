/**
 * The HTTP bench server on workerd (miniflare): `node --import tsx bench/serve-bench-workers.ts --bare|--guarded`.
 * Prints "listening on …" and, on stderr at exit, nothing else. `pid workerd <n>` is printed too, for CPU figures.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { WORKERS_COMPATIBILITY_DATE, WORKERS_COMPATIBILITY_FLAGS } from "../demo/serve-workers-config.ts";

const bare = process.argv.includes("--bare");
const dir = mkdtempSync(join(tmpdir(), "sd-bench-workers-"));
const scriptPath = join(dir, "worker.mjs");
await build({
  entryPoints: [join(dirname(fileURLToPath(import.meta.url)), "worker-bench-entry.ts")],
  outfile: scriptPath,
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  define: { __BARE__: String(bare) },
  logLevel: "warning",
});
const mf = new Miniflare({ modules: true, scriptPath, modulesRoot: dir, compatibilityDate: WORKERS_COMPATIBILITY_DATE, compatibilityFlags: WORKERS_COMPATIBILITY_FLAGS, host: "127.0.0.1", port: 0 });
console.log(`bench ${bare ? "bare" : "guarded"} workers listening on ${(await mf.ready).origin}`);
const stop = () => void mf.dispose().finally(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
