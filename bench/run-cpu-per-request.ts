/**
 * Server CPU time per request for `GET /small`, variant by variant, on one runtime: a measure that
 * does not depend on how busy the rest of the machine is (unlike requests per second on a shared
 * 2-core box). For each variant a server runs (bench/serve-bench-<runtime>.ts --variant NAME); in
 * each round every server gets the same fixed number of requests from autocannon (a separate
 * process), and the server process's CPU time (utime + stime of all its threads, /proc/<pid>/stat)
 * is read before and after. Rounds rotate the order of the variants; figures are medians.
 *
 *   npx tsx bench/run-cpu-per-request.ts --runtime deno|bun|workers|node [--variants bare,guarded]
 *        [--requests 20000] [--rounds 8] [--connections 32] [--path /small]
 *
 * Prints `figure cpu.<runtime>.<variant> <µs> us/request` and, for each variant, the ratio
 * bare / variant (what the requests-per-second ratio would be if the server's CPU were the only
 * limit: higher is better, 1.0 = free). For workers the process measured is workerd.
 */
import { type ChildProcess, execFile } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { startListeningServer } from "./bench-server-process.ts";

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

const runtime = option("runtime", "deno") as "deno" | "bun" | "workers" | "node";
const variants = option("variants", "bare,guarded").split(",");
const REQUESTS = Number(option("requests", "20000"));
const ROUNDS = Number(option("rounds", "8"));
const CONNECTIONS = Number(option("connections", "32"));
const PATH = option("path", "/small");
const TICK_US = 1e6 / 100; // USER_HZ: /proc reports CPU time in 1/100 s

function serverCommand(variant: string): [string, string[]] {
  switch (runtime) {
    case "deno":
      return [join(root, "node_modules/.bin/deno"), ["run", "-A", "--quiet", join(root, "bench/serve-bench-deno.ts"), "--variant", variant]];
    case "bun":
      return [join(root, "node_modules/.bin/bun"), [join(root, "bench/serve-bench-bun.ts"), "--variant", variant]];
    case "workers":
      return [process.execPath, ["--import", require.resolve("tsx"), join(root, "bench/serve-bench-workers.ts"), "--variant", variant]];
    case "node":
      return [process.execPath, ["--import", require.resolve("tsx"), join(root, "bench/serve-bench-node.ts"), variant === "bare" ? "--bare" : "--guarded"]];
  }
}

interface Server {
  variant: string;
  url: string;
  child: ChildProcess;
  /** The process whose CPU is measured (workerd for workers). */
  pid: number;
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(...readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // the thread is gone
    }
  }
  return out;
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    return "";
  }
}

/** utime + stime of the process, all threads (living and dead), in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // fields 14 and 15 of stat(5)
}

async function start(variant: string): Promise<Server> {
  const [command, args] = serverCommand(variant);
  const { url, child } = await startListeningServer(command, args, root, `${runtime} ${variant}`);
  let pid = child.pid!;
  if (runtime === "workers") {
    const workerd = childrenOf(pid).find((p) => commandOf(p).includes("workerd"));
    if (workerd === undefined) throw new Error("no workerd child found");
    pid = workerd;
  }
  return { variant, url, child, pid };
}

async function load(url: string, requests: number): Promise<number> {
  const { stdout } = await run(process.execPath, [require.resolve("autocannon/autocannon.js"), "-c", String(CONNECTIONS), "-a", String(requests), "-j", `${url}${PATH}`], { maxBuffer: 64 * 1024 * 1024 });
  const result = JSON.parse(stdout) as { requests: { total: number }; non2xx: number; errors: number; duration: number };
  if (result.non2xx || result.errors) throw new Error(`autocannon: ${result.non2xx} non-2xx, ${result.errors} errors against ${url}`);
  return result.requests.total;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const servers: Server[] = [];
try {
  for (const variant of variants) servers.push(await start(variant));
  for (const server of servers) await load(server.url, REQUESTS); // warm up (JIT, connections)
  const perRequest = new Map<string, number[]>(variants.map((v) => [v, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = servers.map((_, i) => servers[(i + round) % servers.length]!);
    for (const server of order) {
      const before = cpuTicks(server.pid);
      const done = await load(server.url, REQUESTS);
      const after = cpuTicks(server.pid);
      perRequest.get(server.variant)!.push(((after - before) * TICK_US) / done);
    }
  }
  console.log(`# cpu per request: ${runtime} ${PATH}; ${ROUNDS} rotated rounds of ${REQUESTS} requests (autocannon -c ${CONNECTIONS}); server process CPU from /proc/<pid>/stat; median [min–max]`);
  const bare = perRequest.has("bare") ? median(perRequest.get("bare")!) : undefined;
  for (const [variant, xs] of perRequest) {
    const m = median(xs);
    const extra = bare === undefined || variant === "bare" ? "" : `  (+${(m - bare).toFixed(1)} us; ratio bare/${variant} ${(bare / m).toFixed(3)})`;
    console.log(`figure cpu.${runtime}.${variant} ${m.toFixed(1)} us/request [${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}]${extra}`);
  }
} finally {
  for (const server of servers) server.child.kill("SIGTERM");
}
