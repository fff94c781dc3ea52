/**
 * Timer accuracy under load, per runtime, seen at the socket.
 *
 * For each runtime row (default: node20, deno, bun, workers) this starts the fixture server with the
 * conformance launcher (harness/runtime-launchers.ts) (request idle 500 ms; nothing else short), starts a background load against
 * the same server from a separate process (bench/http/http-load-generator.ts: keep-alive connections
 * hammering GET /download?bytes=65536, or GET / with --load index), and, while it runs, opens ~200
 * stalled uploads spread over a few seconds. Each stalled upload sends its head with a
 * Content-Length, then (30 ms later, so the idle clock must be reset by body bytes, not by the head)
 * a few body bytes, then nothing. For each:
 *
 *   lateness = (when the 408 status line, or the close if no status came, arrived at this client)
 *              − (when its last byte was sent + idle)
 *
 * "When its last byte was sent" is a performance.now() taken just before the socket.write() that
 * carries it: the bytes cannot reach the server earlier, so a preemption of this process between
 * stamp and write can only make a firing look later, never earlier.
 *
 * What "late" includes: not just the deadline timer. It is the whole path from the due time to the
 * 408 reaching the client: the server's timer firing late because its event loop is busy with the
 * load, the runtime's own latency to produce and write the 408 under that load (withDeadlines →
 * adapter → the runtime's HTTP stack; on workers, workerd), the loopback, and this client's delay in
 * seeing the bytes (the server, the load generator and this client share the machine's CPUs). It is
 * an upper bound of the timer's own lateness; bench/core/run-accuracy.ts measures the timer in-process.
 *
 * "Early": a deadline must never fire early. Counted as lateness < -2 ms, not < 0: the server's
 * idle clock starts from its own reading when the bytes were processed, on the same monotonic clock
 * as ours but read through runtimes that may round it to whole milliseconds (timers in ms; workerd's
 * clock only moves at I/O), so a correct firing can appear up to ~1 ms "before" our sub-millisecond
 * stamp; 2 ms is that rounding on both sides. Anything earlier is a real early firing.
 *
 * Figures (per row): accuracy.<row>.late_p50|late_p99|late_max (ms), accuracy.<row>.early (count),
 * accuracy.<row>.no_answer (uploads that got neither a 408 nor a close within 3 s of their due time;
 * they enter the percentiles as 3000 ms late, a lower bound), accuracy.<row>.load_rps (background
 * requests completed per second during the stalled phase). <row> is the launcher's row name
 * (node20, not node: accuracy.node.* are bench/core/run-accuracy.ts's in-process figures).
 * Lines starting with # say what was measured and anything odd.
 *
 * Run: npx tsx bench/http/run-accuracy-http.ts [--quick] [--load download|index] [row…]
 * Loopback only; every server is stopped with the launcher's stop(), the load generator with its
 * own stop word (and its stdin closing, and its own --max-ms), so nothing outlives the run.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { cpus } from "node:os";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, exchange, requestHead, sleep } from "../../harness/raw-http-client.ts";
import { type FixtureConfig, launch, type RunningServer, type RuntimeRow } from "../../harness/runtime-launchers.ts";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const loadIndex = argv.indexOf("--load");
const loadKind = loadIndex >= 0 ? argv[loadIndex + 1] : "download";
if (loadKind !== "download" && loadKind !== "index")
  throw new Error(`--load must be download or index, got ${String(loadKind)}`);
const LOAD_PATH = loadKind === "download" ? "/download?bytes=65536" : "/";

const ROWS_OK: RuntimeRow[] = ["node20", "node24", "deno", "bun", "workers"];
const rowArgs = argv
  .filter((a, i) => !a.startsWith("--") && argv[i - 1] !== "--load")
  .map((a) => (a === "node" ? "node20" : a));
for (const row of rowArgs)
  if (!ROWS_OK.includes(row as RuntimeRow))
    throw new Error(`unknown row "${row}" (expected ${ROWS_OK.join(", ")}; node = node20)`);
const rows: RuntimeRow[] = rowArgs.length ? (rowArgs as RuntimeRow[]) : ["node20", "deno", "bun", "workers"];

const IDLE_MS = 500;
const UPLOADS = quick ? 60 : 200;
const SPREAD_MS = quick ? 1500 : 3000; // the uploads are opened evenly over this
const HEAD_GAP_MS = 30; // between the request head and the few body bytes
const BODY = Buffer.alloc(16, 0x61); // "a few bytes", of a declared 100 000
const LOAD_CONNECTIONS = 16;
const LOAD_WARMUP_MS = quick ? 300 : 700; // load running before the first stalled upload
const EARLY_TOLERANCE_MS = 2; // see the header comment
const ANSWER_WAIT_MS = 3000; // after the due time: past it, an upload counts as never answered
const RUN_BUDGET_MS = 170_000; // the whole run, all rows: past it, clean up and fail

const CONFIG: FixtureConfig = {
  request: { idle: IDLE_MS }, // no minRate, no total: only the idle deadline can fire
  response: { idle: 30_000, minRate: 1024, grace: 5_000 },
  handler: null,
  authenticated: { idle: 60_000, minRate: 256, grace: 10_000, total: null },
};

interface Sample {
  late: number; // ms; NaN when nothing came back in time
  outcome: "408" | "other-status" | "closed" | "reset" | "no-answer" | "connect-failed";
  status: number;
  stampGap: number; // ms between the stamp before write() and write() returning
}

async function stalledUpload(port: number): Promise<Sample> {
  let socket: Awaited<ReturnType<typeof connect>>;
  try {
    socket = await connect(port);
  } catch {
    return { late: NaN, outcome: "connect-failed", status: 0, stampGap: 0 };
  }
  socket.setNoDelay(true);
  const ex = exchange(
    socket,
    requestHead("POST", "/upload", { "Content-Length": 100_000, "Content-Type": "application/octet-stream" }),
    IDLE_MS + HEAD_GAP_MS + ANSWER_WAIT_MS,
  );
  await sleep(HEAD_GAP_MS);
  const sentAt = performance.now();
  if (!socket.destroyed) socket.write(BODY);
  const stampGap = performance.now() - sentAt;
  const res = await ex.response;
  socket.destroy();
  if (res.ending === "timeout") return { late: NaN, outcome: "no-answer", status: res.status, stampGap };
  const arrivedAt = res.status > 0 ? res.statusAt : res.endedAt;
  const outcome: Sample["outcome"] =
    res.status === 408 ? "408" : res.status > 0 ? "other-status" : res.ending === "reset" ? "reset" : "closed";
  return { late: arrivedAt - (sentAt + IDLE_MS), outcome, status: res.status, stampGap };
}

interface LoadGenerator {
  child: ChildProcess;
  /** Resolves with the next line starting with `prefix` (its JSON), or undefined after timeoutMs. */
  next(prefix: string, timeoutMs: number): Promise<Record<string, number | string> | undefined>;
  send(word: string): void;
  kill(): void;
}

function startLoad(port: number, maxMs: number): LoadGenerator {
  const args = [
    "--import",
    require.resolve("tsx"),
    join(here, "http-load-generator.ts"),
    "--port",
    String(port),
    "--path",
    LOAD_PATH,
    "--connections",
    String(LOAD_CONNECTIONS),
    "--max-ms",
    String(maxMs),
  ];
  const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"] });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let pending = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (data: string) => {
    pending += data;
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      lines.push(pending.slice(0, newline));
      pending = pending.slice(newline + 1);
    }
    for (const wake of waiters) wake();
  });
  child.stdin!.on("error", () => {}); // it may have exited already
  let read = 0;
  return {
    child,
    next(prefix, timeoutMs) {
      return new Promise((resolve) => {
        const check = () => {
          while (read < lines.length) {
            const line = lines[read++]!;
            if (line.startsWith(prefix)) {
              waiters.delete(check);
              clearTimeout(timer);
              const rest = line.slice(prefix.length).trim();
              return resolve(rest ? (JSON.parse(rest) as Record<string, number | string>) : {});
            }
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          resolve(undefined);
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    send(word) {
      if (child.exitCode === null && child.signalCode === null) child.stdin!.write(`${word}\n`);
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const ms = (x: number) => x.toFixed(2);

let current: { server?: RunningServer; load?: LoadGenerator } = {};
let failed = false;

async function measureRow(row: RuntimeRow): Promise<void> {
  const t0 = performance.now();
  const server = await launch(row, CONFIG);
  current.server = server;
  const startupMs = performance.now() - t0;

  // A couple of plain requests first, so that the first stalled uploads do not pay for a cold path.
  for (let i = 0; i < 3; i++) {
    const socket = await connect(server.port);
    await exchange(socket, requestHead("GET", "/", { Connection: "close" }), 5000).response;
    socket.destroy();
  }

  const phaseMs = LOAD_WARMUP_MS + SPREAD_MS + IDLE_MS + 5000;
  const load = startLoad(server.port, phaseMs + 10_000);
  current.load = load;
  const ready = await load.next("@ready", 15_000);
  if (!ready)
    throw new Error(
      `${row}: the load generator did not get a response on all ${LOAD_CONNECTIONS} connections within 15 s`,
    );
  await sleep(LOAD_WARMUP_MS);

  const since = server.observations.length;
  load.send("mark");
  const mark = await load.next("@mark", 5000);
  const uploads: Promise<Sample>[] = [];
  const startAt = performance.now();
  for (let i = 0; i < UPLOADS; i++) {
    const due = startAt + (i * SPREAD_MS) / UPLOADS;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    uploads.push(stalledUpload(server.port));
  }
  const samples = await Promise.all(uploads);
  load.send("stop");
  const done = await load.next("@done", 5000);
  load.kill();
  await new Promise<void>((resolve) =>
    load.child.exitCode !== null || load.child.signalCode !== null
      ? resolve()
      : load.child.once("exit", () => resolve()),
  );
  current.load = undefined;

  // Give the last observations a moment to arrive, then stop the server.
  await sleep(200);
  const observed = server.observations.slice(since);
  await server.stop();
  current.server = undefined;

  // An upload never answered within ANSWER_WAIT_MS counts as that late: a lower bound of its real
  // lateness, so the percentiles do not hide it (and accuracy.<row>.no_answer says how many).
  const late = samples
    .filter((s) => Number.isFinite(s.late) || s.outcome === "no-answer")
    .map((s) => (Number.isFinite(s.late) ? s.late : ANSWER_WAIT_MS))
    .sort((a, b) => a - b);
  const answered = samples.filter((s) => Number.isFinite(s.late)).map((s) => s.late);
  const count = (o: Sample["outcome"]) => samples.filter((s) => s.outcome === o).length;
  const timeouts = observed.filter((o) => o.event === "timeout");
  const byLimit = new Map<string, number>();
  for (const o of timeouts)
    byLimit.set(
      `${String(o.direction)}/${String(o.limit)}`,
      (byLimit.get(`${String(o.direction)}/${String(o.limit)}`) ?? 0) + 1,
    );
  const rps =
    mark && done
      ? (Number(done.completed) - Number(mark.completed)) / ((Number(done.now) - Number(mark.now)) / 1000)
      : NaN;
  const early = late.filter((x) => x < -EARLY_TOLERANCE_MS).length;

  console.log(
    `# ${row}: started in ${Math.round(startupMs)} ms; ${UPLOADS} stalled uploads over ${SPREAD_MS} ms (idle ${IDLE_MS} ms), load ${LOAD_CONNECTIONS} keep-alive connections on GET ${LOAD_PATH}`,
  );
  console.log(
    `# ${row}: outcomes: 408 ${count("408")}, other status ${count("other-status")}${samples.some((s) => s.outcome === "other-status") ? ` (${[...new Set(samples.filter((s) => s.outcome === "other-status").map((s) => s.status))].join(", ")})` : ""}, closed without status ${count("closed")}, reset ${count("reset")}, no answer ${count("no-answer")}, connect failed ${count("connect-failed")}`,
  );
  console.log(
    `# ${row}: server-reported timeouts: ${[...byLimit].map(([k, v]) => `${k} ${v}`).join(", ") || "none"}; late min ${answered.length ? ms(Math.min(...answered)) : "-"} ms; stamp-to-write max ${ms(Math.max(...samples.map((s) => s.stampGap)))} ms`,
  );
  if (done)
    console.log(
      `# ${row}: load: ${done.completed} responses (${done.ok} 2xx, ${done.errors} errors), latency p50 ${ms(Number(done.latencyP50))} ms, p99 ${ms(Number(done.latencyP99))} ms, max ${ms(Number(done.latencyMax))} ms`,
    );
  if (answered.length === 0) {
    failed = true;
    console.log(`# ${row}: no stalled upload got an answer`);
    return;
  }
  console.log(`figure accuracy.${row}.late_p50 ${ms(pct(late, 50))} ms`);
  console.log(`figure accuracy.${row}.late_p99 ${ms(pct(late, 99))} ms`);
  console.log(`figure accuracy.${row}.late_max ${ms(late.at(-1)!)} ms`);
  console.log(`figure accuracy.${row}.early ${early}`);
  console.log(`figure accuracy.${row}.no_answer ${count("no-answer")}`);
  console.log(`figure accuracy.${row}.load_rps ${Number.isFinite(rps) ? Math.round(rps) : "NaN"}`);
  if (count("408") !== UPLOADS)
    console.log(
      `# ${row}: anomaly: ${UPLOADS - count("408")} of ${UPLOADS} stalled uploads did not get a 408${count("no-answer") ? ` (${count("no-answer")} got nothing within ${ANSWER_WAIT_MS} ms of the due time; counted as ${ANSWER_WAIT_MS} ms late)` : ""}`,
    );
  const expected = byLimit.get("request/idle") ?? 0;
  if (expected !== count("408"))
    console.log(`# ${row}: anomaly: the server reported ${expected} request idle timeouts for ${count("408")} 408s`);
  const others = [...byLimit].filter(([k]) => k !== "request/idle");
  if (others.length)
    console.log(
      `# ${row}: anomaly: other timeouts fired under the load: ${others.map(([k, v]) => `${k} ${v}`).join(", ")}`,
    );
  if (early > 0)
    console.log(
      `# ${row}: anomaly: ${early} firings earlier than ${EARLY_TOLERANCE_MS} ms before the due time (earliest ${ms(late[0]!)} ms)`,
    );
}

async function cleanUp(): Promise<void> {
  const { server, load } = current;
  current = {};
  load?.kill();
  await server?.stop();
}

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    interrupted = true;
    void cleanUp().finally(() => process.exit(130));
  });
}
const budget = setTimeout(() => {
  console.log(`# run budget of ${RUN_BUDGET_MS} ms exceeded: stopping`);
  void cleanUp().finally(() => process.exit(1));
}, RUN_BUDGET_MS);

console.log(
  `# accuracy-http bench: node ${process.version} client, ${cpus().length} CPUs shared by server, load generator and client; rows ${rows.join(", ")}${quick ? " (quick)" : ""}`,
);
console.log(
  `# late = 408 (or close) arrival at the client − (last byte sent + idle ${IDLE_MS} ms): includes the runtime's latency to deliver the 408 under load`,
);
for (const row of rows) {
  if (interrupted) break;
  try {
    await measureRow(row);
  } catch (error) {
    failed = true;
    console.log(`# ${row}: failed: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
    await cleanUp();
  }
}
clearTimeout(budget);
process.exitCode = failed ? 1 : 0;
