/**
 * Imports every subpath of the installed package on one runtime and reports, per subpath, the
 * names it exports or the error its import threw. Node 20, Node 24, Deno and Bun run the same
 * probe module in the consumer project (bare specifiers resolved from its node_modules); workerd
 * runs it as a Worker bundled by esbuild (each subpath in its own chunk, loaded with a dynamic
 * import, so one subpath that cannot load does not stop the Worker) under miniflare.
 */
import { execFile } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { childEnv } from "./stage-and-pack.ts";

const run = promisify(execFile);

export type ProbeResult = { ok: true; exports: string[] } | { ok: false; error: string };
/** Subpath (as in package.json exports, "./node") -> what importing it did. */
export type ProbeReport = Record<string, ProbeResult>;

const MARK = "@probe ";

/** The probe: one literal import() per subpath (bundlers and Deno's loader see every specifier). */
export function probeModuleSource(packageName: string, subpaths: string[], workerd = false): string {
  const loaders = subpaths
    .map((sub) => `  [${JSON.stringify(sub)}, () => import(${JSON.stringify(packageName + sub.slice(1))})],`)
    .join("\n");
  return `const loaders = [
${loaders}
];
async function probe() {
  const out = {};
  for (const [sub, load] of loaders) {
    try {
      const m = await load();
      out[sub] = { ok: true, exports: Object.keys(m).sort() };
    } catch (e) {
      out[sub] = { ok: false, error: String(e && e.name) + ": " + String(e && e.message) };
    }
  }
  return out;
}
${workerd ? "export default { async fetch() { return Response.json(await probe()); } };" : `console.log(${JSON.stringify(MARK)} + JSON.stringify(await probe()));`}
`;
}

/** Runs `command args…` in `cwd` and returns the probe's report from its output. */
export async function probeWithProcess(
  command: string,
  args: string[],
  cwd: string,
  timeoutMs = 30_000,
): Promise<ProbeReport> {
  let stdout = "";
  let stderr = "";
  try {
    ({ stdout, stderr } = await run(command, args, {
      cwd,
      env: childEnv({ DENO_NO_UPDATE_CHECK: "1", BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0" }),
      timeout: timeoutMs,
      maxBuffer: 16 << 20,
    }));
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(" ")} failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
  }
  const line = stdout.split("\n").find((l) => l.startsWith(MARK));
  if (!line) throw new Error(`${command}: no probe report\nstdout:\n${stdout}\nstderr:\n${stderr}`);
  return JSON.parse(line.slice(MARK.length)) as ProbeReport;
}

/**
 * Bundles the probe as a Worker (esbuild with the conditions wrangler uses; node:* left to workerd)
 * and runs it once in workerd through miniflare.
 */
export async function probeOnWorkerd(
  projectDir: string,
  packageName: string,
  subpaths: string[],
  compatibilityDate: string,
  compatibilityFlags: string[],
): Promise<ProbeReport> {
  const tag = compatibilityFlags.join("_") || "plain";
  const entry = join(projectDir, `worker-probe-${tag}.mjs`);
  const outdir = join(projectDir, `worker-out-${tag}`);
  writeFileSync(entry, probeModuleSource(packageName, subpaths, true));
  mkdirSync(outdir, { recursive: true });
  await build({
    absWorkingDir: projectDir,
    entryPoints: { worker: entry },
    outdir,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "neutral",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["browser", "module", "main"],
    target: "es2022",
    external: ["node:*"],
    logLevel: "silent",
  });
  const chunks = readdirSync(outdir).filter((f) => f.endsWith(".js") && f !== "worker.js");
  const mf = new Miniflare({
    modules: [
      { type: "ESModule", path: join(outdir, "worker.js") },
      ...chunks.map((f) => ({ type: "ESModule" as const, path: join(outdir, f) })),
    ],
    modulesRoot: outdir,
    compatibilityDate,
    compatibilityFlags,
  });
  try {
    const response = await mf.dispatchFetch("http://probe.local/");
    const text = await response.text();
    if (!response.ok) throw new Error(`workerd probe answered ${response.status}: ${text}`);
    return JSON.parse(text) as ProbeReport;
  } finally {
    await mf.dispose();
  }
}
