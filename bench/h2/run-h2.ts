/**
 * HTTP/2 on Node at scale: h2c through stream-deadlines/node's `serve({ http2: "h2c" })`, against the
 * same handler on a bare `http2.createServer` (bench/h2/h2-server.ts, a separate process). This process
 * is the client (node:http2). For each server, in turn:
 *
 *   stalled   N stalled streams (default 1,000) across C connections (default 10), once uploads that
 *             send 100 bytes and stop, once downloads whose window the client never opens (it never
 *             reads them). Measured: the server's heap and RSS per stalled stream (after gc, all N open,
 *             before any deadline is due, over a baseline taken on the same connections), when each was
 *             reset against its idle limit, and the event-loop delay over the mass expiry
 *             (monitorEventLoopDelay at 10 ms; delay = interval − 10 ms, as bench/scale). Meanwhile each
 *             connection runs sibling requests (a small GET, a 64 KiB upload, a 256 KiB download, in
 *             turn), which must all complete.
 *   slow-read a client with a 512-byte stream window (SETTINGS_INITIAL_WINDOW_SIZE) that reads 5 bytes a
 *             second from a 1 GiB download; sibling requests on the same connection meanwhile.
 *   rapid     rapid reset (CVE-2023-44487): requests opened and cancelled at once (RST_STREAM CANCEL),
 *             in bursts of 100 per turn, until the server ends the session (or 20,000 were sent).
 *
 * Run: bash bench/h2/run-h2.sh [--n N] [--connections C] [--idle MS] [--watch MS] [--server-node PATH]
 * Output: `figure h2.node.<bare|guarded>.…` lines on stdout; progress on stderr.
 */
import { EventLines, type Json } from "../shared/event-lines.ts";
import { type ChildProcess, spawn } from "node:child_process";
import http2 from "node:http2";
import path from "node:path";
import { fileURLToPath } from "node:url";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const N = Number(arg("n", "1000"));
const CONNECTIONS = Number(arg("connections", "10"));
const IDLE = Number(arg("idle", "5000"));
/** The accuracy a cut is judged against, as in docs/resilience.md's attack tables. */
const ACCURACY_MS = 500;
/** How long the bare server is watched past the stalled streams' due time. */
const WATCH_MS = Number(arg("watch", "3000"));
const SLOW_WINDOW = 512;
const SLOW_READ_BYTES_PER_S = 5;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SERVER_JS = path.join(HERE, "h2-server.js");
const RUN_LIMIT_MS = 300_000;
/** `--server-node PATH`: another Node for the server (e.g. tools/node24's); the client stays on this one. */
const SERVER_NODE = arg("server-node", process.execPath);
const { NGHTTP2_CANCEL } = http2.constants;

const log = (line: string) => process.stderr.write(`run-h2: ${line}\n`);
const figure = (name: string, value: string | number) => process.stdout.write(`figure h2.node.${name} ${value}\n`);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const fmt = (x: number | null | undefined, digits = 1) =>
  x === null || x === undefined || !Number.isFinite(x) ? "NaN" : x.toFixed(digits);
const quantile = (values: number[], q: number) => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
};

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
});
setTimeout(() => {
  log(`the run took over ${RUN_LIMIT_MS / 1000} s: stopping`);
  process.exit(1);
}, RUN_LIMIT_MS).unref();

class ServerProcess {
  readonly child: ChildProcess;
  private readonly lines: EventLines;

  constructor(readonly mode: string) {
    this.child = spawn(SERVER_NODE, ["--expose-gc", SERVER_JS, "--mode", mode, "--idle", String(IDLE)], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    children.add(this.child);
    this.child.once("exit", (code, signal) => {
      children.delete(this.child);
      if (code !== 0) log(`server (${mode}) exited with ${code ?? signal}`);
    });
    this.lines = new EventLines(this.child.stdout!, log);
  }

  next(name: string, timeoutMs: number): Promise<Json> {
    return this.lines.next(name, timeoutMs);
  }

  ask(command: string, answer: string, timeoutMs = 20_000): Promise<Json> {
    this.child.stdin!.write(`${command}\n`);
    return this.next(answer, timeoutMs);
  }

  async quit(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.stdin!.write("quit\n");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}

async function connect(port: number, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings });
  session.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  return session;
}

interface Outcome {
  ok: boolean;
  ms: number;
  detail: string;
}

const UPLOAD = Buffer.alloc(64 * 1024, 0x62);

/** One complete request on `session`; ok when the status is 200 and the body is whole. */
function exchange(
  session: http2.ClientHttp2Session,
  kind: "small" | "upload" | "download",
  timeoutMs = 10_000,
): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean, detail: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ok, ms: performance.now() - started, detail });
    };
    const timer = setTimeout(() => {
      stream.close(NGHTTP2_CANCEL);
      done(false, "timeout");
    }, timeoutMs);
    const headers =
      kind === "upload"
        ? { ":method": "POST", ":path": "/upload" }
        : { ":path": kind === "small" ? "/small" : "/download?bytes=262144" };
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: kind !== "upload" });
    } catch (error) {
      return done(false, `request: ${(error as Error).message}`);
    }
    let status = 0;
    let bytes = 0;
    let text = "";
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (kind !== "download") text += chunk.toString();
    });
    stream.on("error", (error) => done(false, `error: ${(error as Error).message}`));
    stream.on("end", () => {
      if (status !== 200) return done(false, `status ${status}`);
      if (kind === "small") return done(text === "hello world\n", `body ${JSON.stringify(text)}`);
      if (kind === "download") return done(bytes === 262144, `${bytes} bytes`);
      return done(JSON.parse(text).bytes === UPLOAD.length, text);
    });
    if (kind === "upload") stream.end(UPLOAD);
  });
}

/** Sibling requests on each session in turn (small, upload, download) until `stop()` is called. */
function siblings(sessions: http2.ClientHttp2Session[]) {
  const outcomes: Outcome[] = [];
  let running = true;
  const kinds = ["small", "upload", "download"] as const;
  const loops = sessions.map(async (session) => {
    for (let i = 0; running; i++) {
      outcomes.push(await exchange(session, kinds[i % 3]!));
      await sleep(20);
    }
  });
  return {
    outcomes,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

interface Stalled {
  stream: http2.ClientHttp2Stream;
  /** Upload: the write of its 100 bytes completed; download: its response headers came. */
  startedAt: number;
  closedAt: number;
  status: number;
  rstCode: number;
}

async function openStalled(
  sessions: http2.ClientHttp2Session[],
  kind: "upload" | "download",
  tag: string,
): Promise<Stalled[]> {
  const stalled: Stalled[] = [];
  const started: Promise<void>[] = [];
  for (let i = 0; i < N; i++) {
    const session = sessions[i % sessions.length]!;
    const stream =
      kind === "upload"
        ? session.request({ ":method": "POST", ":path": `/upload?stall=1&i=${tag}${i}` }, { endStream: false })
        : session.request({ ":path": `/download?bytes=1073741824&stall=1&i=${tag}${i}` });
    const entry: Stalled = { stream, startedAt: NaN, closedAt: NaN, status: 0, rstCode: -1 };
    stalled.push(entry);
    stream.on("error", () => {});
    stream.on("response", (h) => (entry.status = Number(h[":status"])));
    stream.once("close", () => {
      entry.closedAt = performance.now();
      entry.rstCode = stream.rstCode ?? -1;
    });
    if (kind === "upload") {
      // A 408 is read (so its end is seen); the upload never ends.
      stream.on("data", () => {});
      started.push(
        new Promise((resolve) =>
          stream.write(Buffer.alloc(100, 0x61), () => resolve((entry.startedAt = performance.now()))),
        ).then(() => {}),
      );
    } else {
      // Never read: the stream's window (64 KiB) and the client's 16 KiB buffer fill, then nothing.
      started.push(
        new Promise<void>((resolve) =>
          stream.once("response", () => {
            entry.startedAt = performance.now();
            resolve();
          }),
        ),
      );
    }
    if (i % 100 === 99) await sleep(1); // let the writes go out in batches
  }
  await Promise.all(started);
  return stalled;
}

interface StalledResult {
  kind: "upload" | "download";
  heapPerStream: number;
  rssPerStream: number;
  openAtMeasure: number;
  measuredBeforeDue: boolean;
  cut: number;
  cutWithin: number;
  early: number;
  lateP50: number;
  lateP99: number;
  lateMax: number;
  statuses: Record<string, number>;
  rstCodes: Record<string, number>;
  loop: Json | null;
  spreadMs: number;
  siblingsOk: number;
  siblingsAll: number;
  siblingP99: number;
  siblingMax: number;
  siblingFailures: string[];
  firings: Json;
  counters: Json;
}

async function runStalled(server: ServerProcess, port: number, kind: "upload" | "download"): Promise<StalledResult> {
  const sessions = await Promise.all(Array.from({ length: CONNECTIONS }, () => connect(port)));
  // Room on each connection for its stalled downloads' windows (as browsers do: Chrome opens 15 MB).
  for (const session of sessions) session.setLocalWindowSize(64 * 1024 * 1024);
  for (let round = 0; round < 3; round++)
    await Promise.all(sessions.flatMap((s) => [exchange(s, "small"), exchange(s, "upload"), exchange(s, "download")]));
  const baseline = await server.ask("baseline", "baseline");
  const tStart = performance.now();
  const stalled = await openStalled(sessions, kind, kind[0]!);
  const lastStart = Math.max(...stalled.map((s) => s.startedAt));
  log(`${server.mode} ${kind}: ${N} stalled streams open in ${fmt(lastStart - tStart, 0)} ms`);
  await sleep(200);
  const measured = await server.ask("measure", "measured");
  const measuredBeforeDue = measured.stalledClosed === 0 && measured.stalledOpen === N;
  const sibs = siblings(sessions);
  let loop: Json | null = null;
  let end: Json;
  if (server.mode === "guarded") {
    end = await server.next("reaped", IDLE + 60_000);
    loop = end.loop;
    await sleep(300);
  } else {
    await sleep(Math.max(0, lastStart + IDLE + WATCH_MS - performance.now()));
    end = await server.ask("stats", "stats");
    loop = end.loop;
  }
  await sibs.stop();
  const releasedAt = performance.now();
  // Bare: the client lets go of its stalled streams itself.
  for (const s of stalled) if (!s.stream.closed) s.stream.close(NGHTTP2_CANCEL);
  await sleep(300);
  const after = await server.ask("stats", "stats");
  for (const session of sessions) session.close();

  // Closed by the server: before the client let go of them (guarded: before the server's "reaped").
  const cutByServer = stalled.filter((s) => s.closedAt < releasedAt);
  // Lateness as the server saw it: each stalled stream's close, less its arrival, less the idle limit. Its
  // wait starts after its arrival (once its bytes were read, or its first chunk taken), so this is an upper
  // bound of the lateness, and a negative value would be a cut before the limit.
  const late: number[] = server.mode === "guarded" ? end.lateFromArrival : [];
  const countBy = (values: (string | number)[]) =>
    values.reduce<Record<string, number>>((acc, v) => ((acc[String(v)] = (acc[String(v)] ?? 0) + 1), acc), {});
  const lateOfCut = late;
  const okSibs = sibs.outcomes.filter((o) => o.ok);
  return {
    kind,
    heapPerStream: (measured.mem.heapUsed - baseline.mem.heapUsed) / N,
    rssPerStream: (measured.mem.rss - baseline.mem.rss) / N,
    openAtMeasure: measured.stalledOpen,
    measuredBeforeDue,
    cut: cutByServer.length,
    cutWithin: late.filter((l) => l >= 0 && l <= ACCURACY_MS).length,
    early: late.filter((l) => l < 0).length,
    lateP50: quantile(lateOfCut, 0.5),
    lateP99: quantile(lateOfCut, 0.99),
    lateMax: quantile(lateOfCut, 1),
    statuses: countBy(stalled.map((s) => s.status)),
    rstCodes: countBy(stalled.map((s) => s.rstCode)),
    loop,
    spreadMs: end.spreadMs,
    siblingsOk: okSibs.length,
    siblingsAll: sibs.outcomes.length,
    siblingP99: quantile(
      sibs.outcomes.map((o) => o.ms),
      0.99,
    ),
    siblingMax: quantile(
      sibs.outcomes.map((o) => o.ms),
      1,
    ),
    siblingFailures: [...new Set(sibs.outcomes.filter((o) => !o.ok).map((o) => o.detail))],
    firings: end.firings,
    counters: after.counters,
  };
}

interface SlowReadResult {
  cut: boolean;
  cutAfterMs: number;
  rstCode: number;
  bytesRead: number;
  siblingsOk: number;
  siblingsAll: number;
  siblingMax: number;
  sessionAlive: boolean;
}

async function runSlowRead(port: number): Promise<SlowReadResult> {
  const session = await connect(port, { initialWindowSize: SLOW_WINDOW });
  const slow = session.request({ ":path": "/download?bytes=1073741824" });
  slow.on("error", () => {});
  let respondedAt = NaN;
  let closedAt = NaN;
  let bytesRead = 0;
  slow.once("response", () => (respondedAt = performance.now()));
  const closed = new Promise<void>((resolve) =>
    slow.once("close", () => {
      closedAt = performance.now();
      resolve();
    }),
  );
  // Paused (no 'data' listener): every second, take 5 bytes from what arrived.
  const reader = setInterval(() => {
    const chunk = slow.read(SLOW_READ_BYTES_PER_S) as Buffer | null;
    if (chunk !== null) bytesRead += chunk.length;
  }, 1000);
  await sleep(500);
  const sibs = siblings([session]);
  const watched = await Promise.race([closed.then(() => true), sleep(IDLE + WATCH_MS + 2000).then(() => false)]);
  await sleep(500); // one more round of siblings after the cut
  await sibs.stop();
  clearInterval(reader);
  const rstCode = slow.rstCode ?? -1;
  const sessionAlive = !session.closed && !session.destroyed;
  if (!slow.closed) slow.close(NGHTTP2_CANCEL);
  session.close();
  return {
    cut: watched,
    cutAfterMs: closedAt - respondedAt,
    rstCode,
    bytesRead: bytesRead + slow.readableLength,
    siblingsOk: sibs.outcomes.filter((o) => o.ok).length,
    siblingsAll: sibs.outcomes.length,
    siblingMax: quantile(
      sibs.outcomes.map((o) => o.ms),
      1,
    ),
    sessionAlive,
  };
}

interface RapidResult {
  sent: number;
  goawayCode: number;
  lastStreamId: number;
  msToGoaway: number;
  closed: boolean;
  serverStreams: number;
}

async function runRapidReset(server: ServerProcess, port: number): Promise<RapidResult> {
  const before = (await server.ask("stats", "stats")).streamsSeen as number;
  const session = await connect(port);
  let sent = 0;
  let goawayCode = -1;
  let lastStreamId = -1;
  let goawayAt = NaN;
  const t0 = performance.now();
  session.once("goaway", (code, last) => {
    goawayCode = code;
    lastStreamId = last;
    goawayAt = performance.now();
  });
  const closed = new Promise<void>((resolve) => session.once("close", () => resolve()));
  await new Promise<void>((resolve) => {
    const burst = () => {
      for (let i = 0; i < 100 && !session.closed && !session.destroyed && goawayCode < 0; i++) {
        const stream = session.request({ ":path": "/small" });
        stream.on("error", () => {});
        stream.close(NGHTTP2_CANCEL);
        sent++;
      }
      if (sent >= 20_000 || session.closed || session.destroyed || goawayCode >= 0) resolve();
      else setImmediate(burst);
    };
    burst();
  });
  const isClosed = await Promise.race([closed.then(() => true), sleep(3000).then(() => false)]);
  if (!isClosed) session.destroy();
  const after = (await server.ask("stats", "stats")).streamsSeen as number;
  return {
    sent,
    goawayCode,
    lastStreamId,
    msToGoaway: goawayAt - t0,
    closed: isClosed,
    serverStreams: after - before,
  };
}

async function answers(port: number): Promise<boolean> {
  const session = await connect(port);
  const outcome = await exchange(session, "small", 5000);
  session.close();
  return outcome.ok;
}

async function startServer(mode: "bare" | "guarded"): Promise<{ server: ServerProcess; port: number }> {
  const server = new ServerProcess(mode);
  const { port, node } = await server.next("listening", 15_000);
  log(`${mode}: listening on 127.0.0.1:${port} (node ${node})`);
  return { server, port };
}

/**
 * Each kind of stalled stream on a fresh server (so that its RSS baseline is its own); then, on the second,
 * slow read and rapid reset.
 */
async function runMode(mode: "bare" | "guarded"): Promise<void> {
  let { server, port } = await startServer(mode);
  try {
    for (const kind of ["upload", "download"] as const) {
      if (kind === "download") {
        await server.quit();
        ({ server, port } = await startServer(mode));
      }
      const r = await runStalled(server, port, kind);
      log(`${mode} ${kind}: ${JSON.stringify(r)}`);
      const p = `${mode}.stalled_${kind}`;
      figure(`${p}.streams`, `${N} over ${CONNECTIONS} connections (open at measure ${r.openAtMeasure})`);
      figure(`${p}.heap_per_stream`, `${Math.round(r.heapPerStream)} B`);
      figure(`${p}.rss_per_stream`, `${Math.round(r.rssPerStream)} B`);
      figure(`${p}.measured_before_due`, r.measuredBeforeDue ? 1 : 0);
      figure(`${p}.cut`, `${r.cut}/${N}`);
      if (mode === "guarded") {
        figure(`${p}.cut_within_limit`, `${r.cutWithin}/${N} (idle ${IDLE} ms + ${ACCURACY_MS} ms)`);
        figure(`${p}.early`, r.early);
        figure(`${p}.late_p50`, `${fmt(r.lateP50)} ms`);
        figure(`${p}.late_p99`, `${fmt(r.lateP99)} ms`);
        figure(`${p}.late_max`, `${fmt(r.lateMax)} ms`);
        figure(`${p}.reset_spread`, `${fmt(r.spreadMs)} ms`);
        figure(`${p}.statuses`, JSON.stringify(r.statuses));
        figure(`${p}.rst_codes`, JSON.stringify(r.rstCodes));
        figure(`${p}.firings`, JSON.stringify(r.firings));
        figure(
          `${p}.live_guards_after`,
          `${r.counters.liveGuards} (scheduled ${r.counters.allScheduledDeadlines}, listeners ${r.counters.disconnectListeners})`,
        );
      }
      figure(`${p}.loop_delay_p50`, `${fmt(r.loop?.p50)} ms`);
      figure(`${p}.loop_delay_p99`, `${fmt(r.loop?.p99)} ms`);
      figure(`${p}.loop_delay_max`, `${fmt(r.loop?.max)} ms`);
      figure(`${p}.siblings_ok`, `${r.siblingsOk}/${r.siblingsAll}`);
      figure(`${p}.sibling_p99`, `${fmt(r.siblingP99)} ms (max ${fmt(r.siblingMax)} ms)`);
      if (r.siblingFailures.length > 0) log(`${mode} ${kind}: sibling failures: ${r.siblingFailures.join("; ")}`);
    }
    const slow = await runSlowRead(port);
    log(`${mode} slow-read: ${JSON.stringify(slow)}`);
    figure(
      `${mode}.slow_read.cut`,
      slow.cut ? `after ${fmt(slow.cutAfterMs, 0)} ms (rst ${slow.rstCode})` : `no (held ${IDLE + WATCH_MS + 2000} ms)`,
    );
    figure(`${mode}.slow_read.bytes_taken`, `${slow.bytesRead} B`);
    figure(`${mode}.slow_read.siblings_ok`, `${slow.siblingsOk}/${slow.siblingsAll} (max ${fmt(slow.siblingMax)} ms)`);
    figure(`${mode}.slow_read.session_alive`, slow.sessionAlive ? 1 : 0);
    const rapid = await runRapidReset(server, port);
    log(`${mode} rapid reset: ${JSON.stringify(rapid)}`);
    figure(`${mode}.rapid_reset.sent`, rapid.sent);
    figure(`${mode}.rapid_reset.server_streams`, rapid.serverStreams);
    figure(
      `${mode}.rapid_reset.goaway`,
      rapid.goawayCode < 0
        ? "none"
        : `code ${rapid.goawayCode} after ${fmt(rapid.msToGoaway, 0)} ms, last stream ${rapid.lastStreamId}`,
    );
    figure(`${mode}.rapid_reset.session_closed`, rapid.closed ? 1 : 0);
    figure(`${mode}.answers_after`, (await answers(port)) ? 1 : 0);
  } finally {
    await server.quit();
  }
}

async function main(): Promise<void> {
  log(`N=${N} over ${CONNECTIONS} connections, idle ${IDLE} ms, node ${process.version}`);
  const modes = process.argv.includes("--guarded-only") ? (["guarded"] as const) : (["bare", "guarded"] as const);
  for (const mode of modes) await runMode(mode);
}

main().catch((error) => {
  log(`error: ${error?.stack ?? error}`);
  process.exitCode = 1;
});
