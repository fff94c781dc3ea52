/**
 * `npm run bench:http`: what the deadlines cost over real sockets, side by side with the bare
 * runtime in one run. For each runtime, a bare and a guarded server (the same handler,
 * bench/http-bench-app.ts, with and without stream-deadlines at default limits) run at the same
 * time; load comes from separate processes (autocannon for small requests, a transfer client for
 * 1 GiB bodies), alternating bare and guarded (A B, then B A, ...), median of the rounds.
 *
 * Prints `ratio http.<runtime>.small|download|upload <guarded/bare>` (higher is better, 1.0 = free),
 * `ratio http.node.h2.download`, and `figure` lines; writes .bench-out/http-results.json, from which
 * bench/render-performance.ts draws docs/performance.svg.
 *
 * On Deno, Bun and Workers it also prints `ratio http.<runtime>.small.floor` (see FLOOR_VARIANT).
 *
 *   node .bench-out/bench/run-http.js [--quick] [node node-h2 deno bun workers]
 */
import { type ChildProcess, execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { startListeningServer } from "./bench-server-process.ts";

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url)); // .bench-out/bench
const root = join(here, "../..");
const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 1 : 3;
const SMALL_SECONDS = quick ? 1 : 3;
const TRANSFER_BYTES = quick ? 64 * 1024 * 1024 : 1024 * 1024 * 1024;
const CONNECTIONS = 32;

type Runtime = "node" | "deno" | "bun" | "workers" | "node-h2";
const ALL: Runtime[] = ["node", "node-h2", "deno", "bun", "workers"];
const named = process.argv.slice(2).filter((a) => !a.startsWith("-")) as Runtime[];
const runtimes = named.length ? named : ALL;

/**
 * Besides bare and guarded, on Deno, Bun and Workers a third server runs for /small: the handler's
 * Response with its body read through a reader and handed on in a new Response
 * (bench/http-bench-variants.ts "floor-read-bytes"), which is the least any wrapper pays that has to
 * find out whether a body it cannot see into is small and in memory: `ratio http.<runtime>.small.floor`.
 */
const FLOOR_VARIANT = "floor-read-bytes";
const FLOOR_RUNTIMES = new Set<Runtime>(["deno", "bun", "workers"]);

function serverCommand(runtime: Runtime, variant: string): [string, string[]] {
  const flag = variant === "bare" ? "--bare" : "--guarded";
  const variantArgs = variant === "bare" || variant === "guarded" ? [flag] : ["--variant", variant];
  switch (runtime) {
    case "node":
      return [process.execPath, [join(here, "serve-bench-node.js"), flag]];
    case "node-h2":
      return [process.execPath, [join(here, "serve-bench-node.js"), flag, "--h2c"]];
    case "deno":
      return [join(root, "node_modules/.bin/deno"), ["run", "-A", "--quiet", join(root, "bench/serve-bench-deno.ts"), ...variantArgs]];
    case "bun":
      return [join(root, "node_modules/.bin/bun"), [join(root, "bench/serve-bench-bun.ts"), ...variantArgs]];
    case "workers":
      return [process.execPath, ["--import", require.resolve("tsx"), join(root, "bench/serve-bench-workers.ts"), ...variantArgs]];
  }
}

interface Server {
  url: string;
  child: ChildProcess;
}

function start(runtime: Runtime, variant: string): Promise<Server> {
  const [command, args] = serverCommand(runtime, variant);
  return startListeningServer(command, args, root, `${runtime} ${variant}`);
}

async function stop(server: Server): Promise<void> {
  if (server.child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => server.child.once("exit", () => resolve()));
  server.child.kill("SIGTERM");
  const killer = setTimeout(() => server.child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(killer);
}

/** Requests per second for /small, from autocannon in its own process. */
async function smallRps(url: string, seconds = SMALL_SECONDS): Promise<number> {
  const { stdout } = await run(process.execPath, [require.resolve("autocannon/autocannon.js"), "-c", String(CONNECTIONS), "-d", String(seconds), "-j", `${url}/small`], { maxBuffer: 64 * 1024 * 1024 });
  const result = JSON.parse(stdout) as { requests: { average: number }; non2xx: number; errors: number };
  if (result.non2xx || result.errors) throw new Error(`autocannon: ${result.non2xx} non-2xx, ${result.errors} errors against ${url}`);
  return result.requests.average;
}

/** Bytes per second of one transfer, from the transfer client in its own process. */
async function transfer(mode: "download" | "upload" | "h2download", url: string, bytes = TRANSFER_BYTES): Promise<number> {
  const target = mode === "upload" ? `${url}/upload` : `${url}/download?bytes=${bytes}`;
  const { stdout } = await run(process.execPath, [join(here, "http-transfer-client.js"), mode, target, String(bytes)], { maxBuffer: 1024 * 1024 });
  const result = JSON.parse(stdout) as { bytes: number; ms: number };
  if (result.bytes !== bytes) throw new Error(`${mode} ${url}: moved ${result.bytes} of ${bytes} bytes`);
  return (result.bytes * 1000) / result.ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const MiB = 1024 * 1024;

interface Measures {
  small?: number;
  download?: number;
  upload?: number;
}

async function measure(runtime: Runtime, url: string): Promise<Measures> {
  if (runtime === "node-h2") return { download: await transfer("h2download", url) };
  return { small: await smallRps(url), download: await transfer("download", url), upload: await transfer("upload", url) };
}

const results: Record<string, { bare: Measures; guarded: Measures; ratio: Measures }> = {};
console.log(`# http bench: node ${process.version}; per runtime ${ROUNDS} interleaved rounds; small: autocannon -c ${CONNECTIONS} -d ${SMALL_SECONDS}; transfers of ${TRANSFER_BYTES / MiB} MiB; ratio = guarded / bare (higher is better)`);
for (const runtime of runtimes) {
  try {
    await benchRuntime(runtime);
  } catch (error) {
    // One runtime failing must not hide the others' figures: say so, and go on.
    console.log(`figure http.${runtime}.error "${String(error instanceof Error ? error.message : error).split("\n")[0]}"`);
    process.exitCode = 1;
  }
}

async function benchRuntime(runtime: Runtime): Promise<void> {
  const bare = await start(runtime, "bare");
  const guarded = await start(runtime, "guarded");
  const floor = FLOOR_RUNTIMES.has(runtime) ? await start(runtime, FLOOR_VARIANT) : undefined;
  try {
    if (floor !== undefined) await smallRps(floor.url, 1);
    // Warm both (JIT, connection pools), then alternate.
    for (const server of [bare, guarded]) {
      if (runtime === "node-h2") await transfer("h2download", server.url, 64 * MiB);
      else {
        await smallRps(server.url, 1);
        await transfer("download", server.url, 64 * MiB);
        await transfer("upload", server.url, 64 * MiB);
      }
    }
    const samples = { bare: [] as Measures[], guarded: [] as Measures[] };
    const floorSmall: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const order: ["bare" | "guarded", Server][] = round % 2 === 0 ? [["bare", bare], ["guarded", guarded]] : [["guarded", guarded], ["bare", bare]];
      if (floor !== undefined && round % 2 === 1) floorSmall.push(await smallRps(floor.url));
      for (const [name, server] of order) samples[name].push(await measure(runtime, server.url));
      if (floor !== undefined && round % 2 === 0) floorSmall.push(await smallRps(floor.url));
    }
    const pick = (list: Measures[], key: keyof Measures) => (list[0]![key] === undefined ? undefined : median(list.map((m) => m[key]!)));
    const summary = { bare: {} as Measures, guarded: {} as Measures, ratio: {} as Measures };
    for (const key of ["small", "download", "upload"] as const) {
      const b = pick(samples.bare, key);
      const g = pick(samples.guarded, key);
      if (b === undefined || g === undefined) continue;
      summary.bare[key] = b;
      summary.guarded[key] = g;
      summary.ratio[key] = g / b;
      const name = runtime === "node-h2" ? `http.node.h2.${key}` : `http.${runtime}.${key}`;
      const unit = key === "small" ? "req/s" : "MiB/s";
      const show = (x: number) => (key === "small" ? x.toFixed(0) : (x / MiB).toFixed(1));
      console.log(`figure ${name}.bare ${show(b)} ${unit}`);
      console.log(`figure ${name}.guarded ${show(g)} ${unit}`);
      console.log(`ratio ${name} ${(g / b).toFixed(3)}`);
    }
    if (floorSmall.length > 0 && summary.bare.small !== undefined) {
      const f = median(floorSmall);
      console.log(`figure http.${runtime}.small.floor ${f.toFixed(0)} req/s (the body read through a reader, a new Response: ${FLOOR_VARIANT})`);
      console.log(`ratio http.${runtime}.small.floor ${(f / summary.bare.small).toFixed(3)}`);
    }
    results[runtime] = summary;
  } finally {
    await stop(bare);
    await stop(guarded);
    if (floor !== undefined) await stop(floor);
  }
}

mkdirSync(join(root, ".bench-out"), { recursive: true });
writeFileSync(join(root, ".bench-out/http-results.json"), JSON.stringify({ date: new Date().toISOString(), node: process.version, quick, results }, null, 2));
