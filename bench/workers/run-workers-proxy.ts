/**
 * `npx tsx bench/workers/run-workers-proxy.ts [--mib N] [--rounds N]`: the CPU time workerd spends proxying
 * a large upstream body (a Worker that returns `fetch(upstream)`), bare and under
 * withWorkersDeadlines, measured side by side in one workerd process: interleaved rounds, medians.
 *
 * CPU time is what Workers bill, and the cost that matters here: in workerd a native body passed
 * through stays in C++, while every JavaScript read of it costs a trip into the isolate. CPU is read
 * from /proc/<workerd pid>/stat (utime + stime) and, at nanosecond resolution, from the sum of
 * /proc/<pid>/task/<tid>/schedstat; both cover the whole process (miniflare's entry worker too,
 * which costs the same in every variant). Loopback only; bounded (each request has a timeout).
 *
 * Prints `ratio workers.proxy.cpu <bare CPU / guarded CPU>` and `figure …` lines.
 */
import { readdirSync, readFileSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { ROOT } from "../shared/paths.ts";

const root = ROOT;
const argv = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const i = argv.indexOf(name);
  const value = i >= 0 ? Number(argv[i + 1]) : fallback;
  if (!Number.isInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
  return value;
};
const MIB = option("--mib", 200);
const ROUNDS = option("--rounds", 5);
const BYTES = MIB * 1024 * 1024;
const REQUEST_TIMEOUT_MS = 20_000;
const DEADLINE_MS = 110_000; // the whole run stays under two minutes, whatever happens

/**
 * Variants, one route each in the same Worker:
 * - bare: `fetch(upstream)` returned as it is (native to native, no JavaScript per chunk);
 * - guarded: withWorkersDeadlines around the same handler (what the adapter ships);
 * - core-only: withDeadlines alone, the native body read with a default reader (workerd hands
 *   JavaScript 4 KiB chunks), no FixedLengthStream: what the adapter avoids;
 * - js-passthrough: the native body through a minimal pull-based JavaScript stream, no deadlines
 *   (the floor of any JavaScript wrapper that reads with a default reader);
 * - byob-passthrough: the same with 1 MiB BYOB reads (the adapter's largest): the least any
 *   JavaScript wrapper that reads the body at all costs, deadlines or not;
 * - byob-sliced: the same, each read handed on as 64 KiB views, as the guard hands chunks on (so
 *   that one huge chunk cannot hide a stalled client): the floor of a guard with that granularity.
 */
const VARIANTS = ["bare", "guarded", "core-only", "js-passthrough", "byob-passthrough", "byob-sliced"] as const;
type Variant = (typeof VARIANTS)[number];

const WORKER_SOURCE = `
import { withWorkersDeadlines } from ${JSON.stringify(join(root, "adapters/workers.ts"))};
import { withDeadlines } from ${JSON.stringify(join(root, "src/index.ts"))};
const upstream = (request) => fetch(new URL(request.url).searchParams.get("upstream"));
const limits = { request: { idle: 10_000 }, response: { idle: 10_000, minRate: 1024, grace: 5_000 }, onTimeout: false };
const guarded = withWorkersDeadlines(upstream, limits);
const coreOnly = withDeadlines(upstream, limits);
async function passthrough(request) {
  const response = await upstream(request);
  const reader = response.body.getReader();
  const body = new ReadableStream({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
  return new Response(body, response);
}
async function byobPassthrough(request, sliced) {
  const response = await upstream(request);
  const reader = response.body.getReader({ mode: "byob" });
  let pending = null; // sliced: what is left of the last read
  const body = new ReadableStream({
    async pull(controller) {
      if (pending === null) {
        const { done, value } = await reader.read(new Uint8Array(1048576));
        if (done) return controller.close();
        if (value.byteLength === 0) return;
        pending = value;
      }
      const piece = sliced ? pending.subarray(0, 65536) : pending;
      pending = piece.byteLength === pending.byteLength ? null : pending.subarray(piece.byteLength);
      controller.enqueue(piece);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
  return new Response(body, response);
}
export default {
  fetch(request, env, ctx) {
    switch (new URL(request.url).pathname) {
      case "/bare": return upstream(request);
      case "/guarded": return guarded(request, env, ctx);
      case "/core-only": return coreOnly(request, env, ctx);
      case "/js-passthrough": return passthrough(request);
      case "/byob-passthrough": return byobPassthrough(request, false);
      case "/byob-sliced": return byobPassthrough(request, true);
      default: return new Response("no such variant", { status: 404 });
    }
  },
};
`;

/** The upstream: `bytes` bytes with a Content-Length, written from one 1 MiB buffer with backpressure. */
function startUpstream(): Promise<http.Server> {
  const block = Buffer.alloc(1024 * 1024, 0x5a);
  const server = http.createServer((req, res) => {
    const total = Number(new URL(req.url ?? "/", "http://x").searchParams.get("bytes"));
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(total) });
    let sent = 0;
    const write = () => {
      while (sent < total) {
        const n = Math.min(block.length, total - sent);
        sent += n;
        if (!res.write(n === block.length ? block : block.subarray(0, n))) return void res.once("drain", write);
      }
      res.end();
    };
    write();
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** GETs `url` and discards the body as fast as the socket gives it; resolves with the byte count. */
function download(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let bytes = 0;
      res.on("data", (chunk: Buffer) => (bytes += chunk.length));
      res.on("end", () => resolve(bytes));
      res.on("error", reject);
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`timeout after ${REQUEST_TIMEOUT_MS} ms: ${url}`)));
    req.on("error", reject);
  });
}

/** workerd, started by miniflare as a child of this process. */
function workerdPid(): number {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === process.pid && stat.includes("(workerd)")) return Number(entry);
    } catch {
      // the process went away while we looked
    }
  }
  throw new Error("workerd process not found among this process's children");
}

const TICK_MS = 1000 / 100; // USER_HZ is 100 on Linux

/** CPU time of a process in ms: [utime + stime from /proc/pid/stat, sum of its threads' schedstat]. */
function cpuOf(pid: number): [number, number] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // a thread that ended between the listing and the read
    }
  }
  return [ticks * TICK_MS, ns / 1e6];
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const stopAll = setTimeout(() => {
  console.error(`bench: still running after ${DEADLINE_MS} ms, giving up`);
  process.exit(2);
}, DEADLINE_MS);

const dir = mkdtempSync(join(tmpdir(), "sd-workers-bench-"));
const upstreamServer = await startUpstream();
let mf: Miniflare | undefined;
try {
  const scriptPath = join(dir, "worker.mjs");
  await build({
    stdin: { contents: WORKER_SOURCE, loader: "js", resolveDir: root, sourcefile: "bench-worker.js" },
    outfile: scriptPath,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    logLevel: "warning",
  });
  mf = new Miniflare({
    modules: true,
    scriptPath,
    modulesRoot: dir,
    compatibilityDate: "2026-04-20",
    compatibilityFlags: ["enable_request_signal"],
    host: "127.0.0.1",
    port: 0,
    handleStructuredLogs: ({ message }: { message: string }) => process.stderr.write(`${message}\n`),
  });
  const origin = (await mf.ready).origin;
  const pid = workerdPid();
  const upstreamUrl = `http://127.0.0.1:${(upstreamServer.address() as AddressInfo).port}/?bytes=${BYTES}`;
  const urlOf = (variant: Variant) => `${origin}/${variant}?upstream=${encodeURIComponent(upstreamUrl)}`;

  const measure = async (variant: Variant) => {
    const [ticks0, ns0] = cpuOf(pid);
    const started = performance.now();
    const bytes = await download(urlOf(variant));
    const wall = performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 50)); // let workerd finish the request's bookkeeping
    const [ticks1, ns1] = cpuOf(pid);
    if (bytes !== BYTES) throw new Error(`${variant}: received ${bytes} of ${BYTES} bytes`);
    return { statMs: ticks1 - ticks0, schedMs: ns1 - ns0, wall };
  };

  for (const variant of VARIANTS) await measure(variant); // warm-up: JIT, connection setup
  const samples = new Map<Variant, { statMs: number[]; schedMs: number[]; wall: number[] }>(
    VARIANTS.map((v) => [v, { statMs: [], schedMs: [], wall: [] }]),
  );
  for (let round = 0; round < ROUNDS; round++) {
    // Interleaved, with the order rotated each round so no variant always runs first.
    for (let i = 0; i < VARIANTS.length; i++) {
      const variant = VARIANTS[(i + round) % VARIANTS.length]!;
      const m = await measure(variant);
      const s = samples.get(variant)!;
      s.statMs.push(m.statMs);
      s.schedMs.push(m.schedMs);
      s.wall.push(m.wall);
    }
  }
  const cpu = (v: Variant) => median(samples.get(v)!.schedMs);
  for (const variant of VARIANTS) {
    const s = samples.get(variant)!;
    console.log(
      `figure workers.proxy.${variant} cpu_ms=${cpu(variant).toFixed(1)} stat_cpu_ms=${median(s.statMs).toFixed(0)} ` +
        `wall_ms=${median(s.wall).toFixed(0)} cpu_ns_per_byte=${((cpu(variant) * 1e6) / BYTES).toFixed(3)} (${MIB} MiB, median of ${ROUNDS})`,
    );
  }
  console.log(`ratio workers.proxy.cpu ${(cpu("bare") / cpu("guarded")).toFixed(3)}`);
  // The floors: bare over the least any JavaScript reader of the body costs (1 MiB BYOB reads, one
  // stream), and over the least a reader that hands the body on in the guard's 64 KiB pieces costs.
  console.log(`ratio workers.proxy.cpu.floor ${(cpu("bare") / cpu("byob-passthrough")).toFixed(3)}`);
  console.log(`ratio workers.proxy.cpu.floor_sliced ${(cpu("bare") / cpu("byob-sliced")).toFixed(3)}`);
  console.log(
    `figure workers.proxy.guarded_over_floor_sliced ${(cpu("guarded") / cpu("byob-sliced")).toFixed(2)} (CPU of the adapter over that floor)`,
  );
  console.log(
    `figure workers.proxy.core_only_over_guarded ${(cpu("core-only") / cpu("guarded")).toFixed(2)} (CPU of withDeadlines alone over the adapter's)`,
  );
} finally {
  await mf?.dispose().catch(() => {});
  upstreamServer.closeAllConnections();
  upstreamServer.close();
  rmSync(dir, { recursive: true, force: true });
  clearTimeout(stopAll);
}
