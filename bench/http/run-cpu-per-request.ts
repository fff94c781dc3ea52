/**
 * Server CPU time per request for `GET /small`, variant by variant, on one runtime: a measure that
 * does not depend on how busy the rest of the machine is (unlike requests per second on a shared
 * 2-core box). For each variant a server runs (bench/servers/serve-bench-<runtime>.ts --variant NAME); in
 * each round every server gets the same fixed number of requests from autocannon (a separate
 * process), and the server process's CPU time (utime + stime of all its threads, /proc/<pid>/stat)
 * is read before and after. Rounds rotate the order of the variants; figures are medians.
 *
 *   npx tsx bench/http/run-cpu-per-request.ts --runtime deno|bun|workers|node [--variants bare,guarded,subscribed]
 *   (or built: npx tsc -p bench/tsconfig.build.json && node .bench-out/bench/http/run-cpu-per-request.js …,
 *   which runs the Node servers built too, without tsx)
 *        [--requests 20000] [--rounds 8] [--connections 32] [--path /small]
 *        [--transfer download|upload [--bytes 268435456]]
 *
 * Prints `figure cpu.<runtime>.<variant> <µs> us/request` and, for each variant, the ratio
 * bare / variant (what the requests-per-second ratio would be if the server's CPU were the only
 * limit: higher is better, 1.0 = free). For workers the process measured is workerd.
 *
 * With --transfer, each round is one body of --bytes instead (bench/http/http-transfer-client.ts, its own
 * process), and the figure is server CPU per MiB moved: `figure cpu.<runtime>.<transfer>.<variant> <ms> ms/MiB`.
 */
import { type ChildProcess, execFile } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { startListeningServer } from "../servers/bench-server-process.ts";
import { ROOT } from "../shared/paths.ts";
import { serverVariantArgs } from "../shared/subscribe.ts";

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const root = ROOT;

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
const TRANSFER = option("transfer", "") as "" | "download" | "upload";
const BYTES = Number(option("bytes", String(256 * 1024 * 1024)));
const TICK_US = 1e6 / 100;
/** The built bench servers, when this file runs built (node .bench-out/bench/http/run-cpu-per-request.js). */
const here = dirname(fileURLToPath(import.meta.url));
const builtServers = here.includes(`${sep}.bench-out${sep}`) ? join(here, "../servers") : undefined; // USER_HZ: /proc reports CPU time in 1/100 s

function serverCommand(variant: string): [string, string[]] {
  switch (runtime) {
    case "deno":
      return [
        join(root, "node_modules/.bin/deno"),
        ["run", "-A", "--quiet", join(root, "bench/servers/serve-bench-deno.ts"), ...serverVariantArgs(variant)],
      ];
    case "bun":
      return [
        join(root, "node_modules/.bin/bun"),
        [join(root, "bench/servers/serve-bench-bun.ts"), ...serverVariantArgs(variant)],
      ];
    case "workers":
      return [
        process.execPath,
        [
          "--import",
          require.resolve("tsx"),
          join(root, "bench/servers/serve-bench-workers.ts"),
          ...serverVariantArgs(variant),
        ],
      ];
    case "node":
      // Built into .bench-out/ by tsc when this file runs from there: tsx's per-closure name helper adds
      // its own cost to every closure made per request, more of them in the guarded variants.
      return builtServers
        ? [process.execPath, [join(builtServers, "serve-bench-node.js"), ...serverVariantArgs(variant)]]
        : [
            process.execPath,
            [
              "--import",
              require.resolve("tsx"),
              join(root, "bench/servers/serve-bench-node.ts"),
              ...serverVariantArgs(variant),
            ],
          ];
  }
}

interface Server {
  variant: string;
  url: string;
  child: ChildProcess;
  /** The process whose CPU is measured (workerd for workers). */
  pid: number;
  /** Uploads: the mean size of the chunks the handler read, per sample. */
  chunkSizes: number[];
  /** Transfers: throughput seen by the client, per sample. */
  mibPerSecond: number[];
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(
        ...readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number),
      );
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
  return { variant, url, child, pid, chunkSizes: [], mibPerSecond: [] };
}

async function load(url: string, requests: number): Promise<number> {
  const { stdout } = await run(
    process.execPath,
    [
      require.resolve("autocannon/autocannon.js"),
      "-c",
      String(CONNECTIONS),
      "-a",
      String(requests),
      "-j",
      `${url}${PATH}`,
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  const result = JSON.parse(stdout) as {
    requests: { total: number };
    non2xx: number;
    errors: number;
    duration: number;
  };
  if (result.non2xx || result.errors)
    throw new Error(`autocannon: ${result.non2xx} non-2xx, ${result.errors} errors against ${url}`);
  return result.requests.total;
}

/** One body of BYTES through the transfer client (its own process); returns the bytes moved. */
async function transferOnce(server: Server): Promise<number> {
  const target = TRANSFER === "upload" ? `${server.url}/upload` : `${server.url}/download?bytes=${BYTES}`;
  const { stdout } = await run(
    process.execPath,
    [
      "--import",
      require.resolve("tsx"),
      join(root, "bench/http/http-transfer-client.ts"),
      TRANSFER,
      target,
      String(BYTES),
    ],
    { maxBuffer: 1024 * 1024 },
  );
  const { bytes, ms, chunks } = JSON.parse(stdout) as { bytes: number; ms: number; chunks?: number };
  if (bytes !== BYTES) throw new Error(`${TRANSFER} ${server.url}: moved ${bytes} of ${BYTES} bytes`);
  if (chunks !== undefined) server.chunkSizes.push(bytes / chunks);
  server.mibPerSecond.push(bytes / (1024 * 1024) / (ms / 1000));
  return bytes;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const servers: Server[] = [];
try {
  for (const variant of variants) servers.push(await start(variant));
  // One sample: server CPU per request (µs), or per MiB moved (ms) with --transfer.
  const sample = async (server: Server): Promise<number> => {
    const before = cpuTicks(server.pid);
    const done = TRANSFER ? (await transferOnce(server)) / (1024 * 1024) : await load(server.url, REQUESTS);
    const after = cpuTicks(server.pid);
    return ((after - before) * TICK_US) / done / (TRANSFER ? 1000 : 1);
  };
  for (const server of servers) await sample(server); // warm up (JIT, connections)
  const samples = new Map<string, number[]>(variants.map((v) => [v, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = servers.map((_, i) => servers[(i + round) % servers.length]!);
    for (const server of order) samples.get(server.variant)!.push(await sample(server));
  }
  const what = TRANSFER
    ? `${TRANSFER} of ${BYTES / (1024 * 1024)} MiB per round`
    : `${PATH}; ${REQUESTS} requests per round (autocannon -c ${CONNECTIONS})`;
  console.log(
    `# server CPU: ${runtime} ${what}; ${ROUNDS} rotated rounds; process CPU from /proc/<pid>/stat; median [min–max]`,
  );
  const name = TRANSFER ? `cpu.${runtime}.${TRANSFER}` : `cpu.${runtime}`;
  const unit = TRANSFER ? "ms/MiB" : "us/request";
  const digits = TRANSFER ? 3 : 1;
  const bare = samples.has("bare") ? median(samples.get("bare")!) : undefined;
  for (const [variant, xs] of samples) {
    const m = median(xs);
    const extra =
      bare === undefined || variant === "bare"
        ? ""
        : `  (+${(m - bare).toFixed(digits)}; ratio bare/${variant} ${(bare / m).toFixed(3)})`;
    console.log(
      `figure ${name}.${variant} ${m.toFixed(digits)} ${unit} [${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}]${extra}`,
    );
  }
  // Throughput, from the same transfers (a noisier measure on a shared machine than CPU).
  const bareRate = servers.find((s) => s.variant === "bare")?.mibPerSecond.slice(-ROUNDS);
  for (const server of servers) {
    if (server.mibPerSecond.length === 0) continue;
    const rates = server.mibPerSecond.slice(-ROUNDS);
    const ratio =
      bareRate === undefined || server.variant === "bare"
        ? ""
        : `  (ratio ${server.variant}/bare ${(median(rates) / median(bareRate)).toFixed(3)})`;
    console.log(
      `figure ${name}.${server.variant}.throughput ${median(rates).toFixed(0)} MiB/s [${Math.min(...rates).toFixed(0)}–${Math.max(...rates).toFixed(0)}]${ratio}`,
    );
  }
  // Per sample, CPU per MiB beside the chunk size the handler read: what the spread follows.
  for (const server of servers) {
    if (server.chunkSizes.length === 0) continue;
    const xs = samples.get(server.variant)!;
    const sizes = server.chunkSizes.slice(-xs.length);
    console.log(
      `figure ${name}.${server.variant}.chunk_kib ${(median(sizes) / 1024).toFixed(1)} KiB [${(Math.min(...sizes) / 1024).toFixed(1)}–${(Math.max(...sizes) / 1024).toFixed(1)}]; samples (ms/MiB @ KiB/chunk): ${xs.map((x, i) => `${x.toFixed(2)}@${(sizes[i]! / 1024).toFixed(0)}`).join(" ")}`,
    );
  }
} finally {
  for (const server of servers) server.child.kill("SIGTERM");
}
