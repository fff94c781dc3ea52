/**
 * `npm run test:links [-- --full] [--runtimes node,deno,bun,workers] [--queue-ms MS] [--response-idle MS]
 *   [--request-grace MS]`
 *
 * Honest and stalled clients over emulated slow links (docs/links.md). It makes two network namespaces joined by one
 * veth pair per link, each shaped by `tc … tbf` (test/links/netns.ts), starts the server of each runtime in one
 * namespace through the runtime's public adapter (test/links/server.ts) and the client in the other
 * (test/links/client.ts), and judges what both saw. Prints one line per check, then `N passed, N failed`; exits
 * non-zero on any failure, and when it cannot make namespaces (it needs root and iproute2). Every namespace it made
 * is gone when it exits, whichever way it exits.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { Job, JobResult } from "./client.ts";
import { checkPrerequisites, installCleanup, type Link, removeStale, Topology, tbfArgs } from "./netns.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(import.meta.url);
const tsx = require.resolve("tsx");
const RUNTIMES = ["node", "deno", "bun", "workers"] as const;
type Runtime = (typeof RUNTIMES)[number];

// ---- command line --------------------------------------------------------------------------------------------
const argv = process.argv.slice(2);
let full = false;
let runtimes: Runtime[] = ["node", "deno", "bun", "workers"];
let responseIdleOverride: number | undefined;
let requestGraceOverride: number | undefined;
let queueMs = 500;
for (let i = 0; i < argv.length; i++) {
  const flag = argv[i];
  if (flag === "--full") full = true;
  else if (flag === "--runtimes") {
    const list = (argv[++i] ?? "").split(",").filter(Boolean);
    for (const name of list)
      if (!(RUNTIMES as readonly string[]).includes(name)) throw new TypeError(`links: unknown runtime "${name}"`);
    runtimes = list as Runtime[];
  } else if (flag === "--queue-ms") {
    queueMs = Number(argv[++i]);
    if (!Number.isInteger(queueMs) || queueMs <= 0) throw new RangeError("links: --queue-ms takes a positive number");
  } else if (flag === "--response-idle") {
    responseIdleOverride = Number(argv[++i]);
    if (!Number.isInteger(responseIdleOverride) || responseIdleOverride <= 0)
      throw new RangeError("links: --response-idle takes a positive number of ms");
  } else if (flag === "--request-grace") {
    requestGraceOverride = Number(argv[++i]);
    if (!Number.isInteger(requestGraceOverride) || requestGraceOverride <= 0)
      throw new RangeError("links: --request-grace takes a positive number of ms");
  } else {
    console.error(
      "usage: npm run test:links [-- --full] [--runtimes node,deno,bun,workers] [--queue-ms MS] [--response-idle MS] [--request-grace MS]",
    );
    process.exit(2);
  }
}

// ---- what is measured ------------------------------------------------------------------------------------------
/** The demo's default limits (README): stricter in every field than withDeadlines' own defaults. */
const LIMITS = {
  request: { idle: 10_000, minRate: 1024, grace: requestGraceOverride ?? 5_000 },
  response: { idle: responseIdleOverride ?? 30_000, minRate: 1024, grace: 5_000 },
};
/** How late a deadline may be seen to fire (docs/resilience.md: timer lateness, sampling, a loaded machine). */
const ACCURACY = 500;
const RATES_KBIT = [64, 256, 2000];
const TEN_MB = 10_000_000;
/** Honest transfers: 10 MB (full mode), or 75 s of the link (2.5 × the response idle), at most 10 MB. */
const honestBytes = (kbit: number) => (full ? TEN_MB : Math.min(TEN_MB, Math.round(((kbit * 1000) / 8) * 75)));
/** A quiet SSE stream on the slowest link: gaps longer than the response idle. */
const SSE = { every: LIMITS.response.idle + 5_000, count: full ? 5 : 3 };
/**
 * Slow application readers on the server namespace's loopback (no link shaping: the kernel's buffers fill). Full:
 * the default 30 s idle. CI: a 3 s idle set on those responses, so that the same boundary (burst / idle) falls at
 * rates that show within a minute.
 */
const SLOW_READ = full
  ? { idle: LIMITS.response.idle, ratesKBps: [30, 50, 70, 100, 150], bytes: 12 * 1024 * 1024 }
  : { idle: 3_000, ratesKBps: [100, 300, 450, 600, 800, 2000], bytes: 0 };
const slowReadBytes = (kBps: number) => (full ? SLOW_READ.bytes : 6 * 1024 * 1024 + kBps * 1000 * 15);
const WATCHDOG_MS = full ? 45 * 60_000 : 270_000;

// ---- output ----------------------------------------------------------------------------------------------------
interface Check {
  name: string;
  ok: boolean;
  detail: string;
}
const checks: Check[] = [];
const check = (name: string, ok: boolean, detail: string) => {
  checks.push({ name, ok, detail });
  console.log(`${ok ? "ok  " : "FAIL"} ${name}: ${detail}`);
};
const info = (line: string) => console.log(`     ${line}`);
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const kBps = (bytes: number, ms: number) => `${(bytes / ms).toFixed(2)} kB/s`;
const mib = (bytes: unknown) => `${(Number(bytes) / 1048576).toFixed(2)} MiB`;

// ---- set-up --------------------------------------------------------------------------------------------------
let topology: Topology | undefined;
const children = new Set<ChildProcess>();
function stopChildren() {
  for (const child of children)
    try {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    } catch {}
}
installCleanup(() => {
  stopChildren();
  topology?.cleanup();
});
const watchdog = setTimeout(() => {
  console.error(`links: FAIL: the run did not end within ${s(WATCHDOG_MS)}; stopping everything`);
  process.exit(1); // the exit handler removes the namespaces
}, WATCHDOG_MS);

try {
  checkPrerequisites(info);
  removeStale(info);
  topology = new Topology();
} catch (error) {
  console.error(`links: FAIL: cannot set up the links: ${(error as Error).message}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}
const topo = topology;

console.log(
  `links (${full ? "full" : "CI"} mode): ${runtimes.join(", ")}; limits ${JSON.stringify(LIMITS)}; tbf ${RATES_KBIT.map(
    (kbit) => `${kbit}kbit [${tbfArgs(kbit, queueMs).slice(1).join(" ")}]`,
  ).join(", ")}`,
);

/** Spawns a command inside a namespace in its own process group, so that it and its children can be killed. */
function spawnIn(ns: string, command: string, args: string[]): ChildProcess {
  const child = spawn("ip", ["netns", "exec", ns, command, ...args], {
    cwd: root,
    detached: true,
    stdio: ["pipe", "pipe", "pipe"],
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

function serverCommand(runtime: Runtime, options: object): [string, string[]] {
  const json = JSON.stringify(options);
  const entry = join(root, "test/links/server.ts");
  switch (runtime) {
    case "node":
      return [process.execPath, ["--import", tsx, entry, json]];
    case "deno":
      return [join(root, "node_modules/.bin/deno"), ["run", "--allow-net", "--quiet", entry, json]];
    case "bun":
      return [join(root, "node_modules/.bin/bun"), [entry, json]];
    case "workers":
      return [process.execPath, ["--import", tsx, join(root, "test/links/server-workers.ts"), json]];
  }
}

interface ServerEvent {
  event: string;
  id?: string;
  t: number;
  [key: string]: unknown;
}

/**
 * The largest send queue (bytes the server's kernel holds for the client: `ss`'s Send-Q) seen on each server-side
 * connection, keyed by its local address and port (one link and runtime each). Sampled every 500 ms.
 */
const sendQueueMax = new Map<string, number>();
const sampler = setInterval(() => {
  execFile("ip", ["netns", "exec", topo.serverNs, "ss", "-tnH", "state", "established"], (error, stdout) => {
    if (error) return;
    for (const line of stdout.split("\n")) {
      const [, sendQ, local] = line.trim().split(/\s+/);
      if (local === undefined || !local.startsWith("10.200.")) continue;
      sendQueueMax.set(local, Math.max(sendQueueMax.get(local) ?? 0, Number(sendQ)));
    }
  });
}, 500);

// ---- one runtime ---------------------------------------------------------------------------------------------
async function runRuntime(runtime: Runtime, port: number): Promise<void> {
  // One link per transfer, so that each has the link to itself (an upload's ACKs queued behind a download's data
  // on the same slow link stretch its loss recovery: see docs/links.md).
  const down = new Map<number, Link>();
  const up = new Map<number, Link>();
  const stalled = new Map<number, Link>();
  for (const kbit of RATES_KBIT) {
    down.set(kbit, topo.addLink({ name: `${runtime}-down-${kbit}`, rateKbit: kbit, queueMs }));
    up.set(kbit, topo.addLink({ name: `${runtime}-up-${kbit}`, rateKbit: kbit, queueMs }));
    stalled.set(kbit, topo.addLink({ name: `${runtime}-stalled-${kbit}`, rateKbit: kbit, queueMs }));
  }
  const sseLink = topo.addLink({ name: `${runtime}-sse-64`, rateKbit: 64, queueMs });

  const [command, args] = serverCommand(runtime, { port, hostname: "0.0.0.0", ...LIMITS });
  const server = spawnIn(topo.serverNs, command, args);
  const events: ServerEvent[] = [];
  const listeners = new Set<(event: ServerEvent) => void>();
  let serverErr = "";
  server.stderr!.on("data", (chunk: Buffer) => (serverErr += chunk));
  const listening = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${runtime} server did not listen in 60 s: ${serverErr}`)), 60_000);
    server.once("exit", (code) => reject(new Error(`${runtime} server exited (${code}) early: ${serverErr}`)));
    createInterface({ input: server.stdout! }).on("line", (line) => {
      let event: ServerEvent;
      try {
        event = JSON.parse(line) as ServerEvent;
      } catch {
        return; // a runtime's own line (workerd's banner)
      }
      if (event.event === "listening") {
        clearTimeout(timer);
        resolve();
      }
      events.push(event);
      for (const listener of listeners) listener(event);
    });
  });
  try {
    await listening;
  } catch (error) {
    check(`${runtime} server`, false, (error as Error).message);
    return;
  }

  const url = (link: Link | "loopback", path: string) =>
    `http://${link === "loopback" ? "127.0.0.1" : link.serverAddress}:${port}${path}`;
  const jobs: Job[] = [];
  const expected = new Map<string, { job: Job; kbit: number; local?: string }>();
  const add = (job: Job, kbit: number, link?: Link) => {
    jobs.push(job);
    expected.set(job.id, { job, kbit, ...(link ? { local: `${link.serverAddress}:${port}` } : {}) });
  };
  for (const kbit of RATES_KBIT) {
    const bytes = honestBytes(kbit);
    const seconds = bytes / ((kbit * 1000) / 8);
    const timeoutMs = Math.round(seconds * 2500 + 30_000);
    const st = stalled.get(kbit)!;
    add(
      {
        kind: "download",
        id: `down-${kbit}`,
        url: url(down.get(kbit)!, `/download?id=down-${kbit}&bytes=${bytes}`),
        bytes,
        timeoutMs,
      },
      kbit,
      down.get(kbit),
    );
    add({ kind: "upload", id: `up-${kbit}`, url: url(up.get(kbit)!, `/upload?id=up-${kbit}`), bytes, timeoutMs }, kbit);
    add(
      {
        kind: "stalled-download",
        id: `stalled-down-${kbit}`,
        url: url(st, `/download?id=stalled-down-${kbit}&bytes=${TEN_MB}`),
        bytes: TEN_MB,
        timeoutMs: 150_000,
      },
      kbit,
    );
    add(
      {
        kind: "stalled-upload",
        id: `stalled-up-${kbit}`,
        url: url(st, `/upload?id=stalled-up-${kbit}`),
        bytes: TEN_MB,
        sendBytes: 16 * 1024,
        timeoutMs: 60_000,
      },
      kbit,
    );
  }
  add(
    {
      kind: "events",
      id: "sse-64",
      url: url(sseLink, `/events?id=sse-64&every=${SSE.every}&count=${SSE.count}`),
      count: SSE.count,
      timeoutMs: SSE.every * SSE.count + 60_000,
    },
    64,
  );
  const loopJobs: Job[] = SLOW_READ.ratesKBps.map((rate) => {
    const bytes = slowReadBytes(rate);
    return {
      kind: "slow-read",
      id: `slow-read-${rate}`,
      url: url("loopback", `/download?id=slow-read-${rate}&bytes=${bytes}&idle=${SLOW_READ.idle}`),
      bytes,
      rate: rate * 1000,
      timeoutMs: Math.round((bytes / (rate * 1000)) * 1500 + 30_000),
    };
  });

  const results = new Map<string, JobResult>();
  const runClient = (ns: string, list: Job[]) =>
    new Promise<void>((resolve) => {
      const client = spawnIn(ns, process.execPath, [
        "--import",
        tsx,
        join(root, "test/links/client.ts"),
        JSON.stringify(list),
      ]);
      let stderr = "";
      client.stderr!.on("data", (chunk: Buffer) => (stderr += chunk));
      const resume = (event: ServerEvent) => {
        if (event.event === "timeout" && list.some((job) => job.id === event.id && job.kind === "stalled-download"))
          client.stdin!.write(`resume ${event.id}\n`);
      };
      listeners.add(resume);
      createInterface({ input: client.stdout! }).on("line", (line) => {
        const result = JSON.parse(line) as JobResult;
        results.set(result.id, result);
      });
      client.once("exit", (code) => {
        listeners.delete(resume);
        if (code !== 0) check(`${runtime} client in ${ns}`, false, `exited with ${code}: ${stderr.trim()}`);
        resolve();
      });
    });
  await Promise.all([runClient(topo.clientNs, jobs), runClient(topo.serverNs, loopJobs)]);
  await new Promise((resolve) => setTimeout(resolve, 1000)); // the server's last reports
  server.kill("SIGTERM");
  try {
    if (server.pid !== undefined) process.kill(-server.pid, "SIGTERM");
  } catch {}

  judge(runtime, expected, loopJobs, results, events);
  // Deno, Bun and workerd log a body that errors (each cut) on their own: shown shortened, for the record.
  const errLines = serverErr.trim() ? serverErr.trim().split("\n") : [];
  if (errLines.length > 0)
    info(`${runtime} server stderr (${errLines.length} lines), first: ${errLines[0]!.slice(0, 160)}`);
}

// ---- judging -------------------------------------------------------------------------------------------------
function judge(
  runtime: Runtime,
  expected: Map<string, { job: Job; kbit: number; local?: string }>,
  loopJobs: Job[],
  results: Map<string, JobResult>,
  events: ServerEvent[],
): void {
  const of = (id: string, name: string) => events.find((event) => event.id === id && event.event === name);
  const timeoutOf = (id: string) => of(id, "timeout");
  for (const [id, { job, kbit, local }] of expected) {
    const name = `${runtime} ${id.replace(/-\d+$/, "")} over ${kbit} kbit`;
    const result = results.get(id);
    if (result === undefined) {
      check(name, false, "the client reported nothing");
      continue;
    }
    const ms = result.endAt - result.startAt;
    const linkBps = (kbit * 1000) / 8;
    const timeout = timeoutOf(id);
    const fired = timeout
      ? `, but the server fired ${timeout.direction} ${timeout.limit} after ${timeout.bytes} B`
      : "";
    if (job.kind === "download" || job.kind === "upload") {
      const bytes =
        job.kind === "upload" ? ((result.answer as { bytes?: number } | undefined)?.bytes ?? -1) : result.bytes;
      const share = bytes / (ms / 1000) / linkBps;
      const done = of(id, job.kind === "download" ? "download-complete" : "upload-complete");
      const queue = local !== undefined ? sendQueueMax.get(local) : undefined;
      const gap = `${
        done ? `; longest wait between ${job.kind === "download" ? "takes" : "chunks"} ${s(Number(done.maxGap))}` : ""
      }${queue !== undefined ? `; server's send queue up to ${(queue / 1000).toFixed(0)} kB` : ""}`;
      const ok =
        result.status === 200 &&
        bytes === job.bytes &&
        result.sha256Match === true &&
        timeout === undefined &&
        share > 0.5 &&
        share < 1.1;
      check(
        name,
        ok,
        [
          `${result.status} ${bytes} of ${job.bytes} B in ${s(ms)}`,
          ` (${kBps(bytes, ms)}, ${(share * 100).toFixed(0)}% of the link),`,
          ` sha256 ${result.sha256Match ? "ok" : "WRONG"}${gap}${fired}${result.error ? `; ${result.error}` : ""}`,
        ].join(""),
      );
    } else if (job.kind === "stalled-download" || job.kind === "stalled-upload") {
      const limits = job.kind === "stalled-download" ? LIMITS.response : LIMITS.request;
      const progress =
        job.kind === "stalled-download"
          ? Number(of(id, "download-cancelled")?.lastPullAt ?? Number.NaN)
          : Number(of(id, "upload-failed")?.lastChunkAt ?? Number.NaN);
      const wait = timeout ? timeout.t - progress : Number.NaN;
      const earliest = Math.min(limits.idle, limits.grace) - ACCURACY;
      const direction = job.kind === "stalled-download" ? "response" : "request";
      const clientCut =
        job.kind === "stalled-download"
          ? !result.complete && result.bytes < job.bytes
          : result.status === 408 || result.error !== undefined;
      const ok = timeout?.direction === direction && wait >= earliest && wait <= limits.idle + ACCURACY && clientCut;
      check(
        name,
        ok,
        timeout
          ? [
              `${direction} ${timeout.limit} fired ${s(wait)} after the last `,
              job.kind === "stalled-download" ? "take" : "chunk",
              ` (limits: idle ${s(limits.idle)}, minRate ${limits.minRate} B/s × grace ${s(limits.grace)};`,
              ` accuracy ${ACCURACY} ms), ${s(timeout.t - result.startAt)} after the request,`,
              ` ${timeout.bytes} B moved; the client saw `,
              job.kind === "stalled-download"
                ? `${result.bytes} of ${job.bytes} B, ${result.complete ? "a complete body" : "a cut body"}`
                : `${result.status ?? result.error}`,
            ].join("")
          : `no deadline fired (client: ${result.status} ${result.bytes} B${result.error ? `, ${result.error}` : ""})`,
      );
    } else if (job.kind === "events") {
      const times = result.eventTimes ?? [];
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      const ok =
        result.status === 200 &&
        result.complete &&
        result.answer === job.count &&
        timeout === undefined &&
        gaps.length === job.count - 1 &&
        gaps.every((gap) => gap > LIMITS.response.idle);
      check(
        `${runtime} quiet SSE over ${kbit} kbit`,
        ok,
        [
          `${result.answer} of ${job.count} events, quiet gaps ${gaps.map(s).join(", ")}`,
          ` (response idle ${s(LIMITS.response.idle)}), ${result.complete ? "clean end" : "NOT a clean end"}`,
          `${fired}${result.error ? `; ${result.error}` : ""}`,
        ].join(""),
      );
    }
  }

  // Slow application readers on loopback: where the idle limit cuts them.
  const rows: string[] = [];
  const cut = new Map<number, boolean>();
  for (const job of loopJobs) {
    if (job.kind !== "slow-read") continue;
    const result = results.get(job.id);
    const timeout = timeoutOf(job.id);
    const done = of(job.id, "download-complete") ?? of(job.id, "download-cancelled");
    const rate = job.rate / 1000;
    if (result === undefined) {
      check(`${runtime} slow reader at ${rate} kB/s on loopback`, false, "the client reported nothing");
      continue;
    }
    const wasCut = timeout !== undefined || !result.complete;
    cut.set(rate, wasCut);
    const ms = result.endAt - result.startAt;
    const cutAt = Number(timeout?.t) - result.startAt;
    const outcome = wasCut
      ? [
          `cut (${timeout?.limit ?? "?"}) ${s(cutAt)} after the request, when the runtime had taken`,
          ` ${mib(timeout?.bytes)} and the client had read about ${mib(rate * cutAt)};`,
          ` the client then read what was queued: ${mib(result.bytes)} in all`,
        ].join("")
      : `kept, ${mib(result.bytes)} in ${s(ms)}, sha256 ${result.sha256Match ? "ok" : "WRONG"}`;
    rows.push(`${rate} kB/s: ${outcome}; longest wait between takes before: ${done ? s(Number(done.maxGap)) : "?"}`);
  }
  info(`${runtime} slow readers on loopback, response idle ${s(SLOW_READ.idle)}:`);
  for (const row of rows) info(`  ${row}`);
  const rates = [...cut.keys()].sort((a, b) => a - b);
  const slowest = rates[0];
  const fastest = rates[rates.length - 1];
  if (slowest !== undefined && fastest !== undefined) {
    // Cut by its idle, and only once the runtime had taken at least 1 MiB (the kernel's buffers fill first).
    const slowestCut = timeoutOf(`slow-read-${slowest}`);
    const taken = Number(slowestCut?.bytes ?? 0);
    check(
      `${runtime} slow reader at ${slowest} kB/s on loopback`,
      slowestCut?.limit === "idle" && taken >= 1024 * 1024,
      `${slowestCut ? `cut (${slowestCut.limit})` : "NOT cut"} by the ${s(SLOW_READ.idle)} idle, once the runtime had taken ${(
        taken / 1048576
      ).toFixed(2)} MiB (at least 1 MiB: the kernel's buffers fill first)`,
    );
    const fastestResult = results.get(`slow-read-${fastest}`);
    check(
      `${runtime} reader at ${fastest} kB/s on loopback`,
      cut.get(fastest) === false && fastestResult?.sha256Match === true,
      `${cut.get(fastest) ? "CUT" : "kept"} (${mib(fastestResult?.bytes)}, sha256 ${fastestResult?.sha256Match ? "ok" : "wrong"})`,
    );
    const boundaryLow = rates.filter((rate) => cut.get(rate)).pop();
    const boundaryHigh = rates.find((rate) => !cut.get(rate));
    info(
      `${runtime} boundary at idle ${s(SLOW_READ.idle)}: cut at ${boundaryLow ?? "none"} kB/s, kept from ${boundaryHigh ?? "none"} kB/s`,
    );
  }
}

// ---- main ----------------------------------------------------------------------------------------------------
const started = Date.now();
let exitCode = 0;
try {
  await Promise.all(runtimes.map((runtime, i) => runRuntime(runtime, 8700 + i)));
} catch (error) {
  check("links harness", false, (error as Error).stack ?? String(error));
}
clearInterval(sampler);
stopChildren();
topo.cleanup();
const left = topo.leftovers();
if (left.length > 0) check("links clean-up", false, `namespaces left: ${left.join(", ")}`);
const failed = checks.filter((c) => !c.ok).length;
if (checks.length === 0) check("links harness", false, "no check ran");
console.log(`links: ${s(Date.now() - started)}`);
console.log(`${checks.length - failed} passed, ${failed} failed`);
if (failed > 0 || checks.length === 0) exitCode = 1;
clearTimeout(watchdog);
process.exit(exitCode);
