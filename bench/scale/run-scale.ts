/**
 * Scale bench on Node: N (default 10,000) concurrent stalled uploads against one server on
 * 127.0.0.1, once bare and once guarded by stream-deadlines, server and load generator in separate
 * processes. What it measures:
 *   - memory the library costs per guarded request: (guarded − bare) / N of the heap and of the RSS
 *     growth from each server's own warmed-up baseline to "all N uploads open and stalled", read in
 *     the server after gc(), before any deadline can fire;
 *   - how late after its due time each stalled request was cut (seen by the client), and that none
 *     was cut early;
 *   - the server's event-loop delay during the mass expiry (monitorEventLoopDelay, 10 ms resolution;
 *     delay = each measured interval minus those 10 ms, the raw interval printed beside it);
 *   - that the server still answers afterwards.
 *
 * Run: bash bench/scale/run-scale.sh [--n N] [--idle MS]   (builds with tsc, raises the fd limit per process)
 * Output: `figure scale.node.…` lines on stdout; progress and diagnostics on stderr.
 */
import { EventLines, type Json } from "../shared/event-lines.ts";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const N = Number(arg("n", "10000"));
const IDLE = Number(arg("idle", "5000"));
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SERVER_JS = path.join(HERE, "scale-server.js");
const CLIENT_JS = path.join(HERE, "scale-client.js");
const RUN_LIMIT_MS = 230_000;

const log = (line: string) => process.stderr.write(`run-scale: ${line}\n`);
const figure = (name: string, value: string) => process.stdout.write(`figure scale.node.${name} ${value}\n`);

// ---- file descriptors: each process holds N sockets (plus a margin), raised per child with ulimit.
function fdLimitToUse(): number {
  const needed = N + 1024;
  const hard = execFileSync("bash", ["-c", "ulimit -Hn"], { encoding: "utf8" }).trim();
  const hardN = hard === "unlimited" ? Infinity : Number(hard);
  if (!(hardN >= needed)) {
    process.stdout.write(
      `figure scale.node.fd_limit_ok 0\n` +
        `run-scale: CANNOT RUN: the hard limit on open files is ${hard}, and ${N} connections need at least ${needed} ` +
        `per process. Raise it (e.g. \`ulimit -Hn 65536\` as root, or LimitNOFILE= in the service), or pass --n ${Math.max(0, hardN - 1024)}.\n`,
    );
    process.exit(2);
  }
  return Math.min(hardN, 65536);
}
const FD_LIMIT = fdLimitToUse();

// ---- children
const children = new Set<ChildProcess>();

/** `--server-node PATH`: another Node for the server (e.g. tools/node24's), the client stays on this one. */
const SERVER_NODE = arg("server-node", "node");

function spawnLimited(args: string[], stdin: "pipe" | "ignore", nodeBinary = "node"): ChildProcess {
  const quoted = [nodeBinary, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
  // `exec`: the pid we hold is node's own, so killing it by pid leaves nothing behind.
  const child = spawn(
    "bash",
    [
      "-c",
      `ulimit -n ${FD_LIMIT} || { echo "run-scale: cannot raise the open-files limit to ${FD_LIMIT}" >&2; exit 3; }; exec ${quoted}`,
    ],
    {
      stdio: [stdin, "pipe", "inherit"],
    },
  );
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

function killAll(): void {
  for (const child of children) if (child.pid !== undefined && child.exitCode === null) child.kill("SIGKILL");
}
process.on("exit", killAll);
const watchdog = setTimeout(() => {
  log(`the run took over ${RUN_LIMIT_MS / 1000} s: stopping`);
  killAll();
  process.exit(1);
}, RUN_LIMIT_MS);
watchdog.unref();

/** The server's JSON event lines, awaited by name. */
class ServerProcess {
  readonly child: ChildProcess;
  private readonly lines: EventLines;
  private exited = false;

  constructor(mode: string) {
    // SCALE_SERVER_FLAGS: extra node flags for the server (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
    const extra = (process.env.SCALE_SERVER_FLAGS ?? "").split(/\s+/).filter(Boolean);
    this.child = spawnLimited(
      ["--expose-gc", ...extra, SERVER_JS, "--mode", mode, "--n", String(N), "--idle", String(IDLE)],
      "pipe",
      SERVER_NODE,
    );
    this.lines = new EventLines(this.child.stdout!, log);
    this.child.once("exit", (code, signal) => {
      this.exited = true;
      if (code !== 0) log(`server (${mode}) exited with ${code ?? signal}`);
    });
  }

  next(name: string, timeoutMs: number): Promise<Json> {
    return this.lines.next(name, timeoutMs);
  }

  send(command: string): void {
    this.child.stdin!.write(`${command}\n`);
  }

  async quit(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.send("quit");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}

function runClient(port: number, waitMs: number): Promise<Json> {
  const child = spawnLimited(
    [CLIENT_JS, "--port", String(port), "--n", String(N), "--idle", String(IDLE), "--wait-ms", String(waitMs)],
    "ignore",
  );
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => {
      try {
        if (code !== 0) throw new Error(`client exited with ${code}`);
        resolve(JSON.parse(out.trim().split("\n").pop()!) as Json);
      } catch (error) {
        reject(error);
      }
    });
  });
}

function request(port: number, method: string, urlPath: string, body?: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request({ host: "127.0.0.1", port, method, path: urlPath, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.once("end", () => resolve(res.statusCode ?? 0));
      res.once("error", () => resolve(0));
    });
    req.once("timeout", () => req.destroy());
    req.once("error", () => resolve(0));
    req.end(body);
  });
}

/** A few hundred complete requests, so the baseline is read with the code paths warmed up. */
async function warmUp(port: number): Promise<void> {
  const body = Buffer.alloc(4096, 0x61);
  for (let round = 0; round < 10; round++) {
    const statuses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        i % 3 === 0 ? request(port, "GET", "/small") : request(port, "POST", "/upload", body),
      ),
    );
    if (statuses.some((s) => s !== 200))
      throw new Error(`warm-up: unexpected statuses ${[...new Set(statuses)].join(",")}`);
  }
}

interface ModeResult {
  baseline: Json;
  loaded: Json;
  client: Json;
  loop: Json;
  reaped?: Json;
  answersAfter: boolean;
}

async function runMode(mode: "bare" | "floor" | "cut-floor" | "guarded"): Promise<ModeResult> {
  const cuts = mode === "guarded" || mode === "cut-floor";
  log(`${mode}: starting the server (fd limit ${FD_LIMIT})`);
  const server = new ServerProcess(mode);
  try {
    const listening = await server.next("listening", 15_000);
    const port = listening.port as number;
    log(`${mode}: listening on 127.0.0.1:${port} (node ${listening.node}); ${listening.fdLimit}`);
    await warmUp(port);
    server.send("baseline");
    const baseline = await server.next("baseline", 10_000);
    // The bare server never cuts: the client waits 1.5 s past the due times, then resets its sockets.
    const clientDone = runClient(port, cuts ? 20_000 : 1500);
    const loaded = await server.next("loaded", 60_000);
    log(
      `${mode}: loaded (${loaded.openRequests} open, heap read ${loaded.marginBeforeResetMs.toFixed(0)} ms before the first due time, gc ${loaded.gcMs.toFixed(0)} ms)`,
    );
    let reaped: Json | undefined;
    let loop: Json;
    if (cuts) {
      reaped = await server.next("reaped", IDLE + 60_000);
      loop = reaped.loop as Json;
      log(`${mode}: reaped on the server: ${JSON.stringify(reaped)}`);
    }
    const client = await clientDone;
    log(`${mode}: client ${JSON.stringify(client)}`);
    if (!cuts) {
      server.send("loop");
      loop = (await server.next("loop", 10_000)).loop as Json;
    }
    // Let the server see the client's resets, then ask it something.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const answersAfter = (await request(port, "GET", "/small")) === 200;
    return { baseline, loaded, client, loop: loop!, ...(reaped === undefined ? {} : { reaped }), answersAfter };
  } finally {
    await server.quit();
  }
}

const fmt = (x: number | null | undefined, digits = 1) =>
  x === null || x === undefined || !Number.isFinite(x) ? "NaN" : x.toFixed(digits);

/** `--only guarded|cut-floor`: that mode alone, its reaping and loop figures (for experiments). */
async function runOnly(mode: "guarded" | "cut-floor"): Promise<void> {
  const result = await runMode(mode);
  const name = mode === "guarded" ? "" : "cut_floor.";
  figure(`${name}reaped`, `${result.client.reaped}/${N}`);
  figure(`${name}early`, String(result.client.early));
  figure(`${name}reap_late_p99`, `${fmt(result.client.lateP99)} ms (intake ${fmt(result.loaded.arrivalSpreadMs)} ms)`);
  figure(`${name}reap_late_from_arrival_p99`, `${fmt(result.reaped?.serverLate?.p99)} ms`);
  figure(`${name}loop_delay_p50`, `${fmt(result.loop.p50)} ms`);
  figure(`${name}loop_delay_p99`, `${fmt(result.loop.p99)} ms`);
  figure(`${name}loop_delay_max`, `${fmt(result.loop.max)} ms`);
  figure(`${name}loop_interval_p99`, `${fmt(result.loop.intervalP99)} ms (timer every ${result.loop.resolution} ms)`);
  figure(`${name}reap_spread`, `${fmt(result.reaped?.spreadMs)} ms`);
  figure(`${name}answers_after`, result.answersAfter ? "1" : "0");
}

async function main(): Promise<void> {
  log(`N=${N} idle=${IDLE} ms, node ${process.version}`);
  const only = arg("only", "");
  if (only !== "") {
    if (only !== "guarded" && only !== "cut-floor")
      throw new Error(`run-scale: --only must be guarded or cut-floor, got ${only}`);
    return runOnly(only);
  }
  const bare = await runMode("bare");
  const floor = await runMode("floor");
  const guarded = await runMode("guarded");
  const cutFloor = await runMode("cut-floor");

  const growth = (r: ModeResult, key: string) => (r.loaded.mem[key] as number) - (r.baseline.mem[key] as number);
  const perStream = (key: string) => (growth(guarded, key) - growth(bare, key)) / N;
  const loadedPerStream = (key: string) => ((guarded.loaded.mem[key] as number) - (bare.loaded.mem[key] as number)) / N;

  figure("fd_limit", String(FD_LIMIT));
  figure("bytes_per_stream", `${Math.round(perStream("heapUsed"))} B`);
  figure("rss_per_stream", `${Math.round(perStream("rss"))} B`);
  figure("external_per_stream", `${Math.round(perStream("external"))} B`);
  figure("bytes_per_stream_raw", `${Math.round(loadedPerStream("heapUsed"))} B`);
  figure("rss_per_stream_raw", `${Math.round(loadedPerStream("rss"))} B`);
  // The floor: a pass-through stream and a Request per upload, what any WHATWG-level wrapper pays.
  figure("floor_per_stream", `${Math.round((growth(floor, "heapUsed") - growth(bare, "heapUsed")) / N)} B`);
  figure(
    "library_beyond_floor_per_stream",
    `${Math.round((growth(guarded, "heapUsed") - growth(floor, "heapUsed")) / N)} B`,
  );
  figure("bare.heap_per_stream", `${Math.round(growth(bare, "heapUsed") / N)} B`);
  figure("bare.rss_per_stream", `${Math.round(growth(bare, "rss") / N)} B`);
  figure("guarded.heap_per_stream", `${Math.round(growth(guarded, "heapUsed") / N)} B`);
  figure("guarded.rss_per_stream", `${Math.round(growth(guarded, "rss") / N)} B`);
  figure(
    "measured_before_due",
    String(
      bare.loaded.marginBeforeResetMs > 0 &&
        guarded.loaded.marginBeforeResetMs > 0 &&
        guarded.loaded.endedBeforeMeasure === 0
        ? 1
        : 0,
    ),
  );
  figure("open_at_measure", `${guarded.loaded.openRequests}/${N} guarded, ${bare.loaded.openRequests}/${N} bare`);

  const c = guarded.client;
  figure("reaped", `${c.reaped}/${N}`);
  figure("reaped_408", `${c.got408}/${N}`);
  figure("early", String(c.early));
  figure("reap_late_p50", `${fmt(c.lateP50)} ms`);
  figure("reap_late_p99", `${fmt(c.lateP99)} ms`);
  figure("reap_late_max", `${fmt(c.lateMax)} ms`);
  figure("reap_earliest", `${fmt(c.earliestMs, 2)} ms`);
  figure("send_spread", `${fmt(c.sendMs)} ms`);
  figure("intake_spread", `${fmt(guarded.loaded.arrivalSpreadMs)} ms (bare ${fmt(bare.loaded.arrivalSpreadMs)} ms)`);
  figure("reap_late_from_arrival_p50", `${fmt(guarded.reaped?.serverLate?.p50)} ms`);
  figure("reap_late_from_arrival_p99", `${fmt(guarded.reaped?.serverLate?.p99)} ms`);
  figure("loop_delay_p50", `${fmt(guarded.loop.p50)} ms`);
  figure("loop_delay_p99", `${fmt(guarded.loop.p99)} ms`);
  figure("loop_delay_max", `${fmt(guarded.loop.max)} ms`);
  figure(
    "loop_interval_p99",
    `${fmt(guarded.loop.intervalP99)} ms (timer every ${guarded.loop.resolution} ms; delay = interval - that)`,
  );
  figure("reap_spread", `${fmt(guarded.reaped?.spreadMs)} ms`);
  figure("live_guards_after", String(guarded.reaped?.liveGuards));
  figure("scheduled_after", String(guarded.reaped?.scheduledDeadlines));
  figure("timer_wakeups", String(guarded.reaped?.timerWakeups));
  figure("answers_after", guarded.answersAfter ? "1" : "0");

  figure("bare.reaped", `${bare.client.reaped}/${N}`);
  figure("bare.loop_delay_p50", `${fmt(bare.loop.p50)} ms`);
  figure("bare.loop_delay_p99", `${fmt(bare.loop.p99)} ms`);
  figure("bare.loop_delay_max", `${fmt(bare.loop.max)} ms`);
  figure("bare.loop_interval_p99", `${fmt(bare.loop.intervalP99)} ms`);
  figure("bare.answers_after", bare.answersAfter ? "1" : "0");
  // The same mass expiry without the library: a timer per upload that answers 408 and closes.
  figure("cut_floor.reaped", `${cutFloor.client.reaped}/${N}`);
  figure("cut_floor.loop_delay_p50", `${fmt(cutFloor.loop.p50)} ms`);
  figure("cut_floor.loop_delay_p99", `${fmt(cutFloor.loop.p99)} ms`);
  figure("cut_floor.loop_delay_max", `${fmt(cutFloor.loop.max)} ms`);
  figure("cut_floor.loop_interval_p99", `${fmt(cutFloor.loop.intervalP99)} ms`);
  figure(
    "cut_floor.reap_late_p99",
    `${fmt(cutFloor.client.lateP99)} ms (intake ${fmt(cutFloor.loaded.arrivalSpreadMs)} ms)`,
  );
  figure("cut_floor.reap_spread", `${fmt(cutFloor.reaped?.spreadMs)} ms`);

  const failures: string[] = [];
  if (c.reaped !== N) failures.push(`reaped ${c.reaped}/${N}`);
  if (c.early !== 0) failures.push(`${c.early} early`);
  if (!guarded.answersAfter) failures.push("no answer after");
  if (guarded.loaded.endedBeforeMeasure !== 0 || guarded.loaded.marginBeforeResetMs <= 0)
    failures.push("heap read too late (raise --idle)");
  if (failures.length > 0) log(`FAILED: ${failures.join(", ")}`);
  const targets: string[] = [];
  if (perStream("heapUsed") > 2048) targets.push(`bytes_per_stream ${Math.round(perStream("heapUsed"))} B > 2 KiB`);
  if (guarded.loop.p99 > 20) targets.push(`loop_delay_p99 ${fmt(guarded.loop.p99)} ms > 20 ms`);
  if (targets.length > 0) log(`targets missed: ${targets.join(", ")}`);
  process.exitCode = failures.length > 0 ? 1 : 0;
}

main()
  .catch((error) => {
    log(`error: ${error?.stack ?? error}`);
    process.exitCode = 1;
  })
  .finally(() => {
    killAll();
    clearTimeout(watchdog);
  });
