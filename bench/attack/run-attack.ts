/**
 * `npm run attack` (bench/attack/run-attack.sh): slowhttptest against the demo on every runtime, bare and
 * guarded, while an honest client keeps making requests.
 *
 * For each runtime (node, deno, bun, workers) × mode (slow-body: -B against POST /upload,
 * slow-read: -X against GET /download of 1 GiB, slowloris: -H against GET /) × variant (bare: the
 * demo handler on the runtime's own server with its defaults; guarded: the demo through the
 * runtime's adapter with the short limits below), a fresh demo server is started, then:
 *   - a connection tracker samples /proc/net/tcp every 100 ms: which connections the server still
 *     holds (bench/attack/attack-conntrack.ts);
 *   - an honest client (bench/attack/attack-honest.ts, in a process of its own, so that the tracker's work
 *     is not in its latencies) makes small uploads and downloads from 127.0.0.2, alone for 3 s (its unloaded
 *     p99), then throughout the attack;
 *   - slowhttptest opens the attack's connections from 127.0.0.1 (300 at -r 1000, or with --manual the
 *     manual's examples: 1,000 / 3,000 / 8,000 at -r 200) and keeps them slow; the window lasts its full
 *     length for bare and guarded alike, unless the machine's TCP memory passes TCP_MEM_CAP_MIB.
 *
 * Prints, per runtime, mode and variant:
 *   figure attack.<runtime>.<mode>.<bare|guarded>.honest_ok <fraction of honest requests that succeeded>
 *   figure attack.<runtime>.<mode>.<bare|guarded>.honest_p99 <ms> (every attempt, failures included)
 *   figure attack.<runtime>.<mode>.<bare|guarded>.honest_p99_after_drain <ms> (the attempts that started once the
 *     listening socket's accept queue was empty again after its peak; absent if it never was)
 *   figure attack.<runtime>.<mode>.<bare|guarded>.cut_within_limit <fraction>
 *   figure attack.<runtime>.<mode>.<bare|guarded>.cut_by_end <fraction>
 *   figure attack.<runtime>.<mode>.<bare|guarded>.deadlines_fired <deadlines reported per attack connection>
 * where cut_within_limit is the fraction of attack connections the server let go of within
 * limit + accuracy of the moment it was first seen holding them, and cut_by_end those it let go of
 * at all before the attack ended. Then a table. Writes .bench-out/attack-results.json.
 * Method and figures: docs/resilience.md.
 *
 *   npx tsx bench/attack/run-attack.ts [node deno bun workers] [slow-body slow-read slowloris] [--seconds N] [--connections N]
 *     [--manual] [--settle S (s after the attacker left before RSS is read again; default 3)] [--rounds N (the same
 *     attack N times on one server: figures per round)]
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../shared/paths.ts";
import { ConnectionTracker } from "./attack-conntrack.ts";
import { type HonestResult, runHonestClient, spawnHonestClient } from "./attack-honest.ts";

/** Terminal colour codes, stripped from slowhttptest's log before it is quoted. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: ESC is the character to match
const ANSI_ESCAPES = /\x1b\[[0-9;]*m/g;

const require = createRequire(import.meta.url);
const root = ROOT;

type Runtime = "node" | "deno" | "bun" | "workers";
type Mode = "slow-body" | "slow-read" | "slowloris";
type Variant = "bare" | "guarded";
const RUNTIMES: Runtime[] = ["node", "deno", "bun", "workers"];
const MODES: Mode[] = ["slow-body", "slow-read", "slowloris"];

const argv = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const i = argv.indexOf(name);
  if (i < 0) return fallback;
  const value = Number(argv[i + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} needs a positive number`);
  return value;
};
/**
 * `--manual`: each mode with the parameters of slowhttptest's own manual (its examples), at its scale:
 * slowloris `-c 1000 -H -i 10 -r 200 -x 24 -p 3`, slow POST `-c 3000 -B -i 110 -r 200 -s 8192 -x 10`,
 * slow read `-c 8000 -X -r 200 -w 512 -y 1024 -n 5 -z 32 -k 3`. `--connections N` then overrides -c.
 */
const MANUAL = argv.includes("--manual");
const MANUAL_CONNECTIONS: Record<Mode, number> = { slowloris: 1000, "slow-body": 3000, "slow-read": 8000 };
/** slowhttptest's connection rate (-r) in each profile: connections opened per second. */
const RATE = MANUAL ? 200 : 1000;
const CONNECTIONS_OPTION = argv.includes("--connections") ? option("--connections", 300) : undefined;
const connectionsFor = (mode: Mode) => CONNECTIONS_OPTION ?? (MANUAL ? MANUAL_CONNECTIONS[mode] : 300);
/**
 * How long an attack lasts at most: 18 s by default; with --manual, the time slowhttptest takes to open
 * every connection at -r 200, plus 18 s (the longest limit, workerd's 15 s header bound, and a margin).
 */
const SECONDS_OPTION = argv.includes("--seconds") ? option("--seconds", 18) : undefined;
const secondsFor = (mode: Mode) => SECONDS_OPTION ?? (MANUAL ? Math.ceil(connectionsFor(mode) / RATE) + 18 : 18);
/** How long the honest client runs alone before the attack (its unloaded p99). */
const UNLOADED_MS = 3_000;
/** After the attacker has gone, how long the server gets before its RSS is read again. */
const SETTLE_MS = argv.includes("--settle") ? option("--settle", 3) * 1000 : 3_000;
/**
 * `--rounds N`: the same attack N times on one server, each after the last one's settle time. An RSS that
 * keeps what the first attack took, but climbs no higher in later ones, is memory the runtime keeps for reuse,
 * not memory lost per attack.
 */
const ROUNDS = argv.includes("--rounds") ? option("--rounds", 1) : 1;
const positional = argv.filter((a, i) => !a.startsWith("--") && !argv[i - 1]?.startsWith("--"));
for (const p of positional)
  if (![...RUNTIMES, ...MODES, "bare", "guarded"].includes(p as never)) throw new TypeError(`unknown argument "${p}"`);
const namedVariants = (["bare", "guarded"] as const).filter((v) => positional.includes(v));
const namedRuntimes = RUNTIMES.filter((r) => positional.includes(r));
const namedModes = MODES.filter((m) => positional.includes(m));
const runtimes = namedRuntimes.length ? namedRuntimes : RUNTIMES;
const modes = namedModes.length ? namedModes : MODES;

/** The guarded demo's limits (the demo config file): short, so that a cut is seen within one attack. */
const DEMO_CONFIG = {
  request: { idle: 2_000, minRate: 1024, grace: 2_000 },
  response: { idle: 2_000, minRate: 1024, grace: 2_000 },
};
const BODY_LIMIT_MS = 2_000; // idle 2 s, and a minRate credit of 1024 B/s × 2 s runs out in ~2 s at a few B/s
/** The Node adapter's default headersTimeout (the demo does not change it), checked every quarter of it. */
const NODE_HEADERS_TIMEOUT_MS = 10_000;
/**
 * What the measurement itself adds: timer lateness (p99 ≤ 45 ms under load on every runtime,
 * docs/performance.md), the 100 ms sampling at both ends (≤ 200 ms), and taking in a burst of a few
 * hundred connections on 2 shared cores.
 */
const ACCURACY_MS = 500;
const SAMPLE_MS = 100;
const HONEST = {
  loops: 2,
  timeoutMs: 2_000,
  uploadBytes: 16 * 1024,
  downloadBytes: 256 * 1024,
  pauseMs: 50,
  localAddress: "127.0.0.2",
};
const ATTACKER = "127.0.0.1";
/**
 * The kernel's TCP memory is one pool for the whole machine (tcp_mem: pressure at 1.5 GiB, hard limit 2.2 GiB
 * here), and on loopback it also holds the attacker's side. An attack stops early if it passes this.
 */
const TCP_MEM_CAP_MIB = 1_400;
/** What a slow reader asks for: 1 GiB, so that the response outlasts any attack and only a deadline ends it. */
const SLOW_READ_BYTES = 2 ** 30;

/**
 * The limit an attack connection should be cut within, and what is added to it: body modes, the
 * body limits above; slowloris, the header-phase bound each runtime has (a body limit cannot see
 * headers): Node's headersTimeout (adapter default 10 s, checked every 2.5 s), Bun's own ~10 s for
 * a first request (not configurable, on a 4 s tick), workerd's own 15 s (measured: a head still
 * incomplete, dripping or silent, is closed at 15.0 s), none on Deno (judged against Node's 10 s).
 */
function limitFor(runtime: Runtime, mode: Mode): { limitMs: number; accuracyMs: number; note: string } {
  if (mode !== "slowloris")
    return {
      limitMs: BODY_LIMIT_MS,
      accuracyMs: ACCURACY_MS,
      note: mode === "slow-body" ? "request idle/minRate" : "response idle/minRate",
    };
  if (runtime === "node")
    return {
      limitMs: NODE_HEADERS_TIMEOUT_MS,
      accuracyMs: ACCURACY_MS + NODE_HEADERS_TIMEOUT_MS / 4,
      note: "headersTimeout 10 s, checked every 2.5 s",
    };
  if (runtime === "bun")
    return {
      limitMs: 10_000,
      accuracyMs: ACCURACY_MS + 4_000,
      note: "Bun's own first-request header bound ~10 s, 4 s tick",
    };
  if (runtime === "workers")
    return { limitMs: 15_000, accuracyMs: ACCURACY_MS, note: "workerd's own header timeout, 15 s" };
  return {
    limitMs: NODE_HEADERS_TIMEOUT_MS,
    accuracyMs: ACCURACY_MS,
    note: "no header bound in Deno; judged against Node's 10 s",
  };
}

function slowhttptestArgs(mode: Mode, url: string, csvPrefix: string): string[] {
  // -p/-e: slowhttptest's own availability probe goes to a closed port, so that it never adds a
  // connection of its own to the attack counted at the server (the honest client measures availability).
  const common = [
    "-c",
    String(connectionsFor(mode)),
    "-r",
    String(RATE),
    "-l",
    String(secondsFor(mode) + 30),
    "-g",
    "-o",
    csvPrefix,
    "-p",
    MANUAL ? "3" : "100",
    "-e",
    "127.0.0.1:9",
  ];
  if (MANUAL)
    switch (mode) {
      case "slow-body":
        // The manual's slow POST: Content-Length 8192, then up to 10 bytes of body every 110 s.
        return ["-B", "-u", `${url}/upload`, "-i", "110", "-s", "8192", "-x", "10", ...common];
      case "slow-read":
        // The manual's slow read: a 1-KiB window at most, 32 bytes read every 5 s, 3 requests pipelined.
        return [
          "-X",
          "-u",
          `${url}/download?bytes=${SLOW_READ_BYTES}`,
          "-w",
          "512",
          "-y",
          "1024",
          "-n",
          "5",
          "-z",
          "32",
          "-k",
          "3",
          ...common,
        ];
      case "slowloris":
        // The manual's slowloris: one more header line of up to 24 bytes every 10 s.
        return ["-H", "-u", `${url}/`, "-i", "10", "-x", "24", ...common];
    }
  switch (mode) {
    case "slow-body":
      // R.U.D.Y.: headers with Content-Length 64 KiB, then up to 66 bytes of body each second.
      return ["-B", "-u", `${url}/upload`, "-s", "65536", "-i", "1", ...common];
    case "slow-read":
      // A 1 GiB response read 5 bytes per second through a receive window of 1-512 bytes.
      return [
        "-X",
        "-u",
        `${url}/download?bytes=${SLOW_READ_BYTES}`,
        "-k",
        "1",
        "-n",
        "1",
        "-z",
        "5",
        "-w",
        "1",
        "-y",
        "512",
        ...common,
      ];
    case "slowloris":
      // Headers never finished: one more "X-…: …" line each second.
      return ["-H", "-u", `${url}/`, "-i", "1", ...common];
  }
}

// --- processes: each in its own process group, all killed on the way out ------------------------

const groups = new Set<number>();
const workDir = mkdtempSync(join(tmpdir(), "sd-attack-"));
function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}
process.on("exit", () => {
  for (const pid of groups) killGroup(pid, "SIGKILL");
  rmSync(workDir, { recursive: true, force: true });
});
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    for (const pid of groups) killGroup(pid, "SIGKILL");
    process.exit(130);
  });
}

function startGroup(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, {
    cwd: root,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1" },
  });
  groups.add(child.pid!);
  child.once("exit", () => groups.delete(child.pid!));
  return child;
}

async function stopGroup(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM", graceMs = 3_000): Promise<void> {
  const pid = child.pid!;
  const exited =
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => child.once("exit", () => resolve()));
  killGroup(pid, signal);
  const timer = setTimeout(() => killGroup(pid, "SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
  killGroup(pid, "SIGKILL"); // anything the leader left behind in its group (deno, bun, workerd)
  groups.delete(pid);
}

interface Server {
  child: ChildProcess;
  url: string;
  port: number;
  log: string[];
  /** "[stream-deadlines] … timeout:" lines the demo printed (one per deadline that fired). */
  fired: number;
  /** Node only: the loop probe's samples (epoch ms, loop delay max and p99 in ms, RSS MiB). */
  probe: { at: number; max: number; p99: number; rss: number; cpuMs: number }[];
}

async function startServer(runtime: Runtime, variant: Variant, configFile: string): Promise<Server> {
  const args = [
    "--import",
    require.resolve("tsx"),
    join(root, "demo/run.ts"),
    "--runtime",
    runtime,
    "--port",
    "0",
    "--config",
    configFile,
  ];
  if (variant === "bare") args.push("--bare");
  // Node serves in this process: the loop probe (event-loop delay and RSS every 200 ms) is loaded into it.
  if (runtime === "node") args.splice(2, 0, "--import", join(root, "bench/attack/loop-probe.ts"));
  const child = startGroup(process.execPath, args);
  const log: string[] = [];
  let server: Server | undefined;
  let fired = 0;
  const probe: Server["probe"] = [];
  const partial = { stdout: "", stderr: "" };
  const countFirings = (stream: "stdout" | "stderr") => (data: Buffer) => {
    const lines = (partial[stream] + data.toString()).split("\n");
    partial[stream] = lines.pop()!;
    for (const line of lines) {
      if (/^\[stream-deadlines\] .* timeout( after headers)?: /.test(line)) fired++;
      const sample = /^# loop-probe (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)/.exec(line);
      if (sample)
        probe.push({ at: +sample[1]!, max: +sample[2]!, p99: +sample[3]!, rss: +sample[4]!, cpuMs: +sample[5]! });
    }
    if (server) server.fired = fired;
  };
  child.stdout!.on("data", countFirings("stdout"));
  child.stderr!.on("data", countFirings("stderr"));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${runtime} ${variant}: no "listening on" within 60 s\n${log.join("")}`)),
      60_000,
    );
    const onData = (data: Buffer) => {
      log.push(data.toString());
      if (log.length > 200) log.splice(0, log.length - 200);
      const match = /listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(log.join(""));
      if (match) {
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        server = { child, url: match[1]!, port: Number(match[2]), log, fired, probe };
        resolve(server);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (data: Buffer) => {
      log.push(data.toString());
      if (log.length > 200) log.splice(0, log.length - 200);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${runtime} ${variant}: the server exited (${code}) before listening\n${log.join("")}`));
    });
  });
}

// --- the server's memory ---------------------------------------------------------------------------

/** The process that holds the listening socket on `port` (deno, bun and workerd run under a node launcher). */
function listenerPid(port: number, fallback: number): number {
  const portHex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 10 && f[1]!.endsWith(portHex) && f[3] === "0A") inodes.add(f[9]!);
    }
  }
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
        if (inode !== undefined && inodes.has(inode)) return Number(pid);
      } catch {
        // gone meanwhile
      }
    }
  }
  return fallback;
}

/** Resident memory of a process, MiB (VmRSS), or NaN once it is gone. */
function rssMiB(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb === undefined ? Number.NaN : Number(kb) / 1024;
  } catch {
    return Number.NaN;
  }
}

// --- one attack ----------------------------------------------------------------------------------

interface CellResult {
  runtime: Runtime;
  mode: Mode;
  variant: Variant;
  limitMs: number;
  accuracyMs: number;
  limitNote: string;
  attackSeconds: number;
  /**
   * Why the window ended: "time" (its seconds passed), or "tcp memory cap" (the machine's TCP memory passed
   * TCP_MEM_CAP_MIB). Formerly also "all closed" (slowhttptest had no connection
   * left), "all cut" (the server held none of them any more; slowhttptest may not have noticed).
   */
  ended: "time" | "tcp memory cap";
  /** When slowhttptest exited of its own accord (no connection left), and when the server had cut them all, s. */
  attackerExitedS: number | null;
  allCutS: number | null;
  connections: number;
  /** Which of the `--rounds` attacks on the same server (1 when there is one). */
  round: number;
  cutWithinLimit: number;
  cutByEnd: number;
  /**
   * The connections the server cut, timed from the last sample at which its send queue grew (when a slow
   * reader's stall began, as the server saw it) to the release: median, max, and the fraction of all
   * attack connections cut within limit + accuracy of it. Meaningful in slow-read.
   */
  afterStall: { medianMs: number | null; maxMs: number | null; within: number };
  /** Median and max time the server held the connections it cut, ms. */
  heldMedianMs: number | null;
  heldMaxMs: number | null;
  /** slowhttptest's own count of closed connections (the client's view): all, when it ended for want of any; else its last CSV row. */
  clientClosed: number | null;
  /** Deadlines that fired (the demo's onTimeout lines), per attack connection. */
  firedFraction: number;
  /** Bytes in the server's send queues of the attack connections it still held at the end. */
  heldSendQueueBytes: number;
  /** Load average (1 min) of the machine when the attack ended: the machine is shared. */
  load1: number;
  /** The attack connections asked of slowhttptest. */
  connectionsWanted: number;
  /** When the server accepted the attack connections (first seen held), s after slowhttptest started. */
  acceptedS: { first: number | null; median: number | null; last: number | null };
  /** The listening socket's accept queue (connections set up by the kernel, not yet accepted), every 100 ms. */
  acceptQueue: { max: number; series100ms: number[] };
  /** When the server let go of its first and its last attack connection, s after slowhttptest started. */
  firstCutS: number | null;
  lastCutS: number | null;
  /** The server process's RSS, MiB: before the attack, its peak, when the attacker left, and SETTLE_MS later. */
  rss: { start: number; peak: number; attackEnd: number; end: number; settleMs: number };
  /** The kernel's TCP buffer memory on the whole machine (/proc/net/sockstat "TCP: mem"), MiB. */
  tcpMem: { start: number; peak: number; end: number; series200ms: number[] };
  /** Machine-wide TCP counters that moved during the attack (memory pressure, prunes, drops, retransmissions). */
  tcpCounters: Record<string, number>;
  /** Node only: event-loop delay (max and p99 over 200 ms) and RSS, s after slowhttptest started. */
  loop: { atS: number; max: number; p99: number; rss: number; cpuMs: number }[];
  /** The honest client alone on the server, for UNLOADED_MS before the attack. */
  unloaded: { attempts: number; ok: number; p50: number; p99: number };
  honest: {
    attempts: number;
    ok: number;
    okFraction: number;
    p50: number;
    p99: number;
    /**
     * The attack's accept queue: when it was empty again after its peak (s after slowhttptest started; null if it
     * never was), and the honest p99 of the attempts that started from then on (null if none did).
     */
    queueDrainedS: number | null;
    p99AfterDrain: number | null;
    failures: Record<string, number>;
    failedAtS: number[];
    failed: { kind: string; startS: number; endS: number }[];
  };
}

/** The kernel's TCP counters that tell memory pressure, drops and retransmissions (/proc/net/netstat, /proc/net/snmp). */
const TCP_COUNTERS = [
  "TcpExt.TCPMemoryPressures",
  "TcpExt.TCPMemoryPressuresChrono",
  "TcpExt.TCPAbortOnMemory",
  "TcpExt.PruneCalled",
  "TcpExt.RcvPruned",
  "TcpExt.TCPRcvQDrop",
  "TcpExt.TCPBacklogDrop",
  "TcpExt.ListenOverflows",
  "TcpExt.ListenDrops",
  "TcpExt.TCPTimeouts",
  "TcpExt.TCPAbortOnData",
  "TcpExt.TCPAbortOnClose",
  "TcpExt.TCPAbortOnTimeout",
  "TcpExt.TCPZeroWindowDrop",
  "Tcp.RetransSegs",
  "Tcp.OutRsts",
];
function tcpCounters(): Record<string, number> {
  const values: Record<string, number> = {};
  for (const file of ["/proc/net/netstat", "/proc/net/snmp"]) {
    let lines: string[] = [];
    try {
      lines = readFileSync(file, "utf8").trim().split("\n");
    } catch {
      continue;
    }
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const names = lines[i]!.split(/\s+/);
      const numbers = lines[i + 1]!.split(/\s+/);
      const prefix = names[0]!.replace(/:$/, "");
      for (let j = 1; j < names.length; j++) {
        const key = `${prefix}.${names[j]}`;
        if (TCP_COUNTERS.includes(key)) values[key] = Number(numbers[j]);
      }
    }
  }
  return values;
}
const counterDelta = (before: Record<string, number>, after: Record<string, number>) =>
  Object.fromEntries(
    Object.entries(after)
      .map(([k, v]) => [k.replace(/^\w+\./, ""), v - (before[k] ?? 0)] as const)
      .filter(([, v]) => v !== 0),
  );

/** TCP buffer memory the kernel has allocated, machine-wide (pages of 4 KiB), MiB. */
function tcpMemMiB(): number {
  try {
    const pages = /TCP:.* mem (\d+)/.exec(readFileSync("/proc/net/sockstat", "utf8"))?.[1];
    return pages === undefined ? Number.NaN : (Number(pages) * 4096) / 2 ** 20;
  } catch {
    return Number.NaN;
  }
}

const percentile = (xs: number[], p: number) => {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

function lastCsvClosed(csvFile: string): number | null {
  try {
    const rows = readFileSync(csvFile, "utf8").trim().split("\n");
    const header = rows[0]!.split(",");
    const last = rows.at(-1)!.split(",");
    const column = header.indexOf("Closed");
    return rows.length > 1 && column >= 0 ? Number(last[column]) : null;
  } catch {
    return null;
  }
}

async function attack(
  runtime: Runtime,
  mode: Mode,
  variant: Variant,
  configFile: string,
  workDir: string,
): Promise<CellResult[]> {
  const server = await startServer(runtime, variant, configFile);
  const tracker = new ConnectionTracker(server.port, SAMPLE_MS);
  try {
    // The server answers before the attack (and everything is warm).
    const warm = await runHonestOnce(server.url);
    if (warm.ok !== warm.attempts)
      throw new Error(
        `${runtime} ${variant}: the honest client failed before the attack: ${JSON.stringify(warm.failures)}`,
      );

    // The honest client alone first: its p99 on the unloaded server is what the attack's is compared with.
    const unloaded = await spawnHonestClient({ ...HONEST, url: server.url });
    await new Promise((resolve) => setTimeout(resolve, UNLOADED_MS));
    const unloadedTally = await unloaded.stop();
    const pid = listenerPid(server.port, server.child.pid!);
    const rounds: CellResult[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const firedBefore = server.fired;
      const rssStart = rssMiB(pid);
      let rssPeak = rssStart;
      const rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, rssMiB(pid) || 0)), 200);
      const tcpMemStart = tcpMemMiB();
      let tcpMemPeak = tcpMemStart;
      const countersStart = tcpCounters();
      const tcpMemSeries: number[] = [];
      const tcpMemTimer = setInterval(() => {
        const mem = tcpMemMiB();
        tcpMemSeries.push(Math.round(mem));
        tcpMemPeak = Math.max(tcpMemPeak, mem);
      }, 200);
      tracker.start();
      const honest = await spawnHonestClient({ ...HONEST, url: server.url });
      const csvPrefix = join(workDir, `${runtime}-${mode}-${variant}`);
      const t0 = performance.now();
      const attacker = startGroup("slowhttptest", slowhttptestArgs(mode, server.url, csvPrefix));
      let attackerLog = "";
      attacker.stdout!.on("data", (d: Buffer) => (attackerLog = (attackerLog + d.toString()).slice(-4000)));
      attacker.stderr!.on("data", (d: Buffer) => (attackerLog = (attackerLog + d.toString()).slice(-4000)));
      // The window lasts secondsFor(mode) whatever happens to the attack, so that bare and guarded are compared over
      // the same time (an earlier version ended a guarded attack once every connection was cut, which dropped the
      // cheap honest requests after it and made honest_ok depend on how soon the server cut). It ends early only if
      // the machine's TCP memory passes TCP_MEM_CAP_MIB: the kernel's TCP memory is shared by every process here.
      let attackerExitedAt: number | undefined;
      attacker.once("exit", () => (attackerExitedAt = performance.now()));
      let allCutAt: number | undefined;
      let watch: ReturnType<typeof setInterval> | undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const ended = await new Promise<"time" | "tcp memory cap">((resolve) => {
        watch = setInterval(() => {
          const seen = tracker.from(ATTACKER).filter((c) => c.firstSeen >= t0 - SAMPLE_MS);
          if (
            allCutAt === undefined &&
            seen.length >= connectionsFor(mode) &&
            seen.every((c) => c.releasedAt !== undefined)
          )
            allCutAt = performance.now();
          if (tcpMemMiB() > TCP_MEM_CAP_MIB) resolve("tcp memory cap");
        }, SAMPLE_MS);
        timer = setTimeout(() => resolve("time"), secondsFor(mode) * 1000);
      });
      clearInterval(watch);
      clearTimeout(timer);
      // The last look at the server while the attacker still holds every connection it has.
      tracker.sample();
      const tEnd = performance.now();
      const load1 = loadavg()[0]!;
      // Honest requests already under way finish (or time out) while the attack still stands; none starts after it.
      const tally = await honest.stop();
      const attackerLeftAt = attackerExitedAt; // on its own, before it is stopped here
      await stopGroup(attacker, "SIGINT", 3_000);
      const rssAtAttackEnd = rssMiB(pid);
      const countersAtAttackEnd = tcpCounters();
      // The server's memory once the attacker has gone: after SETTLE_MS with no traffic.
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      clearInterval(rssTimer);
      clearInterval(tcpMemTimer);
      const rssEnd = rssMiB(pid);
      const tcpMemEnd = tcpMemMiB();
      if (attackerLeftAt !== undefined && !/No open connections left/.test(attackerLog)) {
        throw new Error(
          `${runtime} ${mode} ${variant}: slowhttptest ended early:\n${attackerLog.replace(ANSI_ESCAPES, "")}`,
        );
      }
      tracker.stop();

      const attackConnections = tracker.from(ATTACKER).filter((c) => c.firstSeen >= t0 - SAMPLE_MS);
      const { limitMs, accuracyMs, note } = limitFor(runtime, mode);
      // Released at or before the last sample of the attack: the server let go (slowhttptest never
      // closes a connection of its own accord; it closes one only after the server did).
      const cut = attackConnections.filter((c) => c.releasedAt !== undefined && c.releasedAt <= tEnd);
      const held = cut.map((c) => c.releasedAt! - c.firstSeen);
      const within = held.filter((ms) => ms <= limitMs + accuracyMs).length;
      const n = attackConnections.length;
      const connectionsWanted = connectionsFor(mode);
      if (n < connectionsWanted * 0.9)
        console.error(
          `  ${runtime} ${mode} ${variant}: only ${n} of ${connectionsWanted} attack connections reached the server; slowhttptest said:\n` +
            attackerLog.replace(ANSI_ESCAPES, "").split("\n").slice(-12).join("\n"),
        );
      // Slow read: from the last sample at which the server's send queue grew (the stall) to the release.
      const afterStall = cut.map((c) => c.releasedAt! - c.lastGrowth);
      const acceptedAtS = attackConnections.map((c) => (c.firstSeen - t0) / 1000).sort((a, b) => a - b);
      const backlog = tracker.samples
        .map((at, i) => ({ atS: (at - t0) / 1000, waiting: tracker.backlog[i]! }))
        .filter((x) => x.atS >= 0);
      const cutTimes = cut.map((c) => c.releasedAt! - t0).sort((a, b) => a - b);
      // An honest connection waits behind every attack connection queued before it (docs/resilience.md, "Where
      // honest requests fail"): its latency once the queue has drained tells the server's own from the queue's.
      const peakAt = backlog.findIndex((x) => x.waiting === Math.max(0, ...backlog.map((y) => y.waiting)));
      const drained = backlog.find((x, i) => i > peakAt && x.waiting === 0);
      const afterDrain = drained
        ? tally.latencies.filter((_, i) => tally.startedAt[i]! >= t0 + drained.atS * 1000)
        : [];
      const epoch0 = performance.timeOrigin + t0;
      const loop = server.probe
        .filter((x) => x.at >= epoch0 - 2_000 && x.at <= performance.timeOrigin + tEnd + 1_000)
        .map((x) => ({ ...x, atS: Number(((x.at - epoch0) / 1000).toFixed(1)) }));
      rounds.push({
        round,
        runtime,
        mode,
        variant,
        limitMs,
        accuracyMs,
        limitNote: note,
        attackSeconds: (tEnd - t0) / 1000,
        ended,
        connections: n,
        cutWithinLimit: n ? within / n : Number.NaN,
        cutByEnd: n ? cut.length / n : Number.NaN,
        heldMedianMs: held.length ? percentile(held, 50) : null,
        afterStall: {
          medianMs: afterStall.length ? percentile(afterStall, 50) : null,
          maxMs: afterStall.length ? Math.max(...afterStall) : null,
          within: n ? afterStall.filter((ms) => ms <= limitMs + accuracyMs).length / n : Number.NaN,
        },
        heldMaxMs: held.length ? Math.max(...held) : null,
        clientClosed:
          attackerLeftAt !== undefined && /No open connections left/.test(attackerLog)
            ? connectionsWanted
            : lastCsvClosed(`${csvPrefix}.csv`),
        firedFraction: n ? (server.fired - firedBefore) / n : Number.NaN,
        heldSendQueueBytes: attackConnections
          .filter((c) => c.releasedAt === undefined || c.releasedAt > tEnd)
          .reduce((sum, c) => sum + c.sendQueue, 0),
        load1,
        connectionsWanted,
        attackerExitedS: attackerLeftAt === undefined ? null : (attackerLeftAt - t0) / 1000,
        allCutS: allCutAt === undefined ? null : (allCutAt - t0) / 1000,
        acceptedS: {
          first: acceptedAtS[0] ?? null,
          median: acceptedAtS.length ? percentile(acceptedAtS, 50) : null,
          last: acceptedAtS.at(-1) ?? null,
        },
        acceptQueue: { max: Math.max(0, ...backlog.map((x) => x.waiting)), series100ms: backlog.map((x) => x.waiting) },
        firstCutS: cutTimes.length ? cutTimes[0]! / 1000 : null,
        lastCutS: cutTimes.length ? cutTimes.at(-1)! / 1000 : null,
        rss: { start: rssStart, peak: rssPeak, attackEnd: rssAtAttackEnd, end: rssEnd, settleMs: SETTLE_MS },
        tcpMem: { start: tcpMemStart, peak: tcpMemPeak, end: tcpMemEnd, series200ms: tcpMemSeries },
        tcpCounters: counterDelta(countersStart, countersAtAttackEnd),
        loop,
        unloaded: {
          attempts: unloadedTally.attempts,
          ok: unloadedTally.ok,
          p50: percentile(unloadedTally.latencies, 50),
          p99: percentile(unloadedTally.latencies, 99),
        },
        honest: {
          attempts: tally.attempts,
          ok: tally.ok,
          okFraction: tally.attempts ? tally.ok / tally.attempts : Number.NaN,
          p50: percentile(tally.latencies, 50),
          p99: percentile(tally.latencies, 99),
          queueDrainedS: drained?.atS ?? null,
          p99AfterDrain: afterDrain.length ? percentile(afterDrain, 99) : null,
          failures: tally.failures,
          failedAtS: tally.failedAt.map((t) => Number(((t - t0) / 1000).toFixed(1))),
          failed: tally.failed.map((f) => ({
            kind: f.kind,
            startS: Number(((f.start - t0) / 1000).toFixed(2)),
            endS: Number(((f.start + f.ms - t0) / 1000).toFixed(2)),
          })),
        },
      });
    }
    return rounds;
  } finally {
    tracker.stop();
    await stopGroup(server.child);
  }
}

async function runHonestOnce(url: string): Promise<HonestResult> {
  const client = runHonestClient({ ...HONEST, url, loops: 2 });
  await new Promise((resolve) => setTimeout(resolve, 10));
  return client.stop();
}

// --- main ----------------------------------------------------------------------------------------

const version = (() => {
  try {
    return /version ([\d.]+)/.exec(execFileSync("slowhttptest", ["-h"], { encoding: "utf8" }))?.[1] ?? "?";
  } catch (error) {
    const out = String((error as { stdout?: string }).stdout ?? "");
    return /version ([\d.]+)/.exec(out)?.[1] ?? "?";
  }
})();

const configFile = join(workDir, "demo-config.json");
writeFileSync(configFile, JSON.stringify(DEMO_CONFIG));
const started = performance.now();
console.log(
  `# attack bench: slowhttptest ${version}, ${MANUAL ? "the manual's parameters" : "short attacks"}: ` +
    `${modes.map((m) => `${m} ${connectionsFor(m)} connections for at most ${secondsFor(m)} s`).join(", ")} (-r ${RATE}); loopback; ` +
    `guarded limits: request ${JSON.stringify(DEMO_CONFIG.request)}, response ${JSON.stringify(DEMO_CONFIG.response)}, ` +
    `Node headersTimeout ${NODE_HEADERS_TIMEOUT_MS} ms (adapter default); bare: each runtime's own server and defaults; ` +
    `honest client: ${HONEST.loops} loops of ${HONEST.uploadBytes / 1024} KiB uploads / ${HONEST.downloadBytes / 1024} KiB downloads, a new connection each, timeout ${HONEST.timeoutMs} ms; ` +
    `cut within limit + ${ACCURACY_MS} ms accuracy (+ the runtime's header-timer granularity for slowloris), connections sampled every ${SAMPLE_MS} ms from /proc/net/tcp`,
);

const results: CellResult[] = [];
const fmt = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : "NaN");
try {
  for (const runtime of runtimes) {
    for (const mode of modes) {
      // Alternate which variant goes first, so neither always runs on a machine fresh from the other.
      const order: Variant[] =
        (runtimes.indexOf(runtime) + modes.indexOf(mode)) % 2 === 0 ? ["bare", "guarded"] : ["guarded", "bare"];
      for (const variant of order.filter((v) => namedVariants.length === 0 || namedVariants.includes(v))) {
        const name = `attack.${runtime}.${mode}.${variant}`;
        try {
          for (const r of await attack(runtime, mode, variant, configFile, workDir)) {
            const name =
              ROUNDS > 1
                ? `attack.${runtime}.${mode}.${variant}.round${r.round}`
                : `attack.${runtime}.${mode}.${variant}`;
            results.push(r);
            console.log(`figure ${name}.honest_ok ${fmt(r.honest.okFraction, 3)}`);
            console.log(`figure ${name}.honest_p99 ${fmt(r.honest.p99, 1)} ms`);
            if (r.honest.p99AfterDrain !== null)
              console.log(`figure ${name}.honest_p99_after_drain ${fmt(r.honest.p99AfterDrain, 1)} ms`);
            console.log(`figure ${name}.cut_within_limit ${fmt(r.cutWithinLimit, 3)}`);
            console.log(`figure ${name}.cut_by_end ${fmt(r.cutByEnd, 3)}`);
            console.log(`figure ${name}.deadlines_fired ${fmt(r.firedFraction, 3)}`);
            const failures = Object.entries(r.honest.failures)
              .map(([k, v]) => `${k}: ${v}`)
              .join(", ");
            console.error(
              `  ${name}: ${r.connections} attack connections, ${r.attackSeconds.toFixed(1)} s (${r.ended}); limit ${r.limitMs} + ${r.accuracyMs} ms (${r.limitNote}); ` +
                `all cut at ${r.allCutS?.toFixed(1) ?? "-"} s, slowhttptest left at ${r.attackerExitedS?.toFixed(1) ?? "-"} s; cut after median ${r.heldMedianMs?.toFixed(0) ?? "-"} ms, max ${r.heldMaxMs?.toFixed(0) ?? "-"} ms; slowhttptest saw ${r.clientClosed ?? "?"} closed; ` +
                `still held at the end: ${(r.heldSendQueueBytes / 1024 / 1024).toFixed(1)} MiB in send queues; ` +
                `honest ${r.honest.ok}/${r.honest.attempts}, p50 ${fmt(r.honest.p50, 1)} ms (unloaded p99 ${fmt(r.unloaded.p99, 1)} ms; accept queue empty at ${r.honest.queueDrainedS?.toFixed(1) ?? "-"} s, p99 after ${r.honest.p99AfterDrain === null ? "-" : fmt(r.honest.p99AfterDrain, 1)} ms)${failures ? ` (${failures})` : ""}; load ${r.load1.toFixed(1)}`,
            );
            console.error(
              `    cuts ${r.firstCutS?.toFixed(2) ?? "-"}-${r.lastCutS?.toFixed(2) ?? "-"} s; ` +
                `after the send queue stopped growing: median ${r.afterStall.medianMs?.toFixed(0) ?? "-"} ms, ` +
                `max ${r.afterStall.maxMs?.toFixed(0) ?? "-"} ms, ${fmt(r.afterStall.within, 2)} within the limit; ` +
                `RSS start ${fmt(r.rss.start, 0)} MiB, peak ${fmt(r.rss.peak, 0)}, attack end ${fmt(r.rss.attackEnd, 0)}, ` +
                `${r.rss.settleMs / 1000} s later ${fmt(r.rss.end, 0)}; kernel TCP memory ${fmt(r.tcpMem.start, 0)} -> peak ${fmt(r.tcpMem.peak, 0)} -> ${fmt(r.tcpMem.end, 0)} MiB`,
            );
            console.error(
              `    accepted ${r.acceptedS.first?.toFixed(2)} / ${r.acceptedS.median?.toFixed(2)} / ${r.acceptedS.last?.toFixed(2)} s (first / median / last); ` +
                `accept queue max ${r.acceptQueue.max}, per 100 ms: ${r.acceptQueue.series100ms.slice(0, 120).join(" ")}`,
            );
            console.error(
              `    TCP counters: ${JSON.stringify(r.tcpCounters)}; TCP memory (MiB) per 200 ms: ${r.tcpMem.series200ms.join(" ")}`,
            );
            if (r.honest.failed.length)
              console.error(
                `    honest failures (start-end, s): ${r.honest.failed.map((f) => `${f.kind} ${f.startS}-${f.endS}`).join("; ")}`,
              );
            if (r.loop.length)
              console.error(
                `    loop delay max (ms) per 200 ms from ${r.loop[0]!.atS} s: ${r.loop.map((x) => x.max.toFixed(0)).join(" ")}\n` +
                  `    server CPU ms per 200 ms: ${r.loop.map((x) => x.cpuMs).join(" ")}`,
              );
          }
        } catch (error) {
          console.log(
            `figure ${name}.error "${String(error instanceof Error ? error.message : error).split("\n")[0]}"`,
          );
          console.error(error);
          process.exitCode = 1;
        }
      }
    }
  }
} finally {
  rmSync(workDir, { recursive: true, force: true });
}

// --- table ---------------------------------------------------------------------------------------

console.log(
  "\n| runtime | mode | connections | limit (+ accuracy) | variant | honest_ok | honest_p99 (unloaded) | p99 after the accept queue drained (at) | cut_within_limit | cut_by_end | cut after (median / max) | held at the end (send queues) | RSS start / peak / end | load |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
const ordered = runtimes.flatMap((runtime) =>
  modes.flatMap((mode) =>
    (["bare", "guarded"] as const).flatMap((variant) =>
      results.filter((r) => r.runtime === runtime && r.mode === mode && r.variant === variant),
    ),
  ),
);
for (const r of ordered) {
  if (r === undefined) continue;
  const cutAfter =
    r.heldMedianMs === null ? "–" : `${(r.heldMedianMs / 1000).toFixed(2)} / ${(r.heldMaxMs! / 1000).toFixed(2)} s`;
  const held = Math.round(r.connections * (1 - r.cutByEnd));
  console.log(
    `| ${r.runtime} | ${r.mode} | ${r.connections} of ${r.connectionsWanted}${r.ended === "tcp memory cap" ? " (TCP memory cap)" : ""} | ` +
      `${r.limitMs / 1000} s (+ ${r.accuracyMs / 1000} s) | ${r.variant}${ROUNDS > 1 ? ` (round ${r.round})` : ""} | ${fmt(r.honest.okFraction, 3)} | ` +
      `${fmt(r.honest.p99, 0)} ms (${fmt(r.unloaded.p99, 0)} ms) | ` +
      `${r.honest.p99AfterDrain === null ? "–" : `${fmt(r.honest.p99AfterDrain, 0)} ms (${r.honest.queueDrainedS!.toFixed(1)} s)`} | ` +
      `${fmt(r.cutWithinLimit, 2)} | ${fmt(r.cutByEnd, 2)} | ${cutAfter} | ` +
      `${held} conns, ${(r.heldSendQueueBytes / 1024 / 1024).toFixed(0)} MiB | ` +
      `${fmt(r.rss.start, 0)} / ${fmt(r.rss.peak, 0)} / ${fmt(r.rss.end, 0)} MiB | ${r.load1.toFixed(1)} |`,
  );
}
const totalSeconds = (performance.now() - started) / 1000;
console.log(`\n# ${results.length} attacks in ${totalSeconds.toFixed(0)} s`);
mkdirSync(join(root, ".bench-out"), { recursive: true });
writeFileSync(
  join(root, MANUAL ? ".bench-out/attack-results-manual.json" : ".bench-out/attack-results.json"),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      slowhttptest: version,
      profile: MANUAL ? "manual" : "short",
      connections: Object.fromEntries(modes.map((m) => [m, connectionsFor(m)])),
      seconds: Object.fromEntries(modes.map((m) => [m, secondsFor(m)])),
      config: DEMO_CONFIG,
      totalSeconds,
      results,
    },
    null,
    2,
  ),
);
