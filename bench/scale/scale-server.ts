/**
 * The server process of the Node scale bench (bench/scale/run-scale.ts starts it; not meant to be run by
 * hand). One HTTP/1.1 server on 127.0.0.1, port 0, running bench/shared/http-bench-app.ts's handler either
 * bare (srvx's `toNodeHandler` on `http.createServer`) or guarded (the Node adapter's
 * `createNodeListener` with a short request idle limit). Both get Node's limits relaxed the same
 * way (`nodeServerLimits`: no requestTimeout, a long headersTimeout).
 *
 *   node --expose-gc .bench-out/bench/scale/scale-server.js --mode bare|floor|cut-floor|guarded --n N --idle MS
 *
 * Talks to the orchestrator with one JSON object per line: it prints `{"event":…}` lines on stdout,
 * and reads commands (`baseline`, `loop`, `quit`) on stdin.
 *   listening   port, fd limit seen
 *   baseline    heap/RSS after warm-up, before the load (on the `baseline` command)
 *   loaded      heap/RSS once all N requests are in the handler, body bytes read, stalled; with the
 *               time left before the first deadline can be due (it must be positive)
 *   reaped      (guarded, cut-floor) once all N requests have ended: the event-loop delay histogram over the
 *               mass expiry (reset just before the first due time), and the library's counters
 *   loop        (on the `loop` command) the histogram so far: for the bare server, which never cuts
 */
import http from "node:http";
import { execFileSync } from "node:child_process";
import { createInterface } from "node:readline";
import { writeHeapSnapshot } from "node:v8";
import { toNodeHandler } from "srvx/node";
import { createNodeListener, nodeServerLimits } from "../../adapters/node.ts";
import { deadlineDebugCounters } from "../../src/index.ts";
import { benchHandler, withPassThroughBody } from "../shared/http-bench-app.ts";
import { emit, loopDelay, memory } from "../shared/server-figures.ts";

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1] !== undefined) return process.argv[i + 1]!;
  if (fallback === undefined) throw new Error(`scale-server: --${name} is required`);
  return fallback;
}

const mode = arg("mode");
const N = Number(arg("n"));
const IDLE = Number(arg("idle"));
/** How long after the Nth request's arrival the heap is read (the few body bytes get read meanwhile). */
const SETTLE_MS = Number(arg("settle", "150"));
/** The histogram is reset this long before the earliest possible due time. */
const RESET_BEFORE_MS = 50;
if ((globalThis as { gc?: () => void }).gc === undefined) throw new Error("scale-server: run node with --expose-gc");
const loopWindow = loopDelay();
const loopFigures = loopWindow.figures;

let listener: http.RequestListener;
// Bare: srvx's toNodeHandler leaves a rejected handler promise unhandled (a client that resets its
// stalled upload would crash the process), so the bare handler answers 500 instead, as the Node
// adapter does for handler errors. Nothing else is added.
const bareHandler = (request: Request) => benchHandler(request).catch(() => new Response(null, { status: 500 }));
/**
 * Floor: the least any wrapper on WHATWG streams pays to see a request body's reads: a pull-based
 * pass-through stream around the body and a Request carrying it (no deadline, no tracker, no timer).
 * What the guarded mode costs beyond this is the library's own share.
 */
const floorHandler = (request: Request) => bareHandler(withPassThroughBody(request));
/**
 * Cut floor: the same mass expiry without the library. Each upload gets its own idle timer (reset
 * by every chunk) that cancels the body and answers a 408 with `Connection: close`, as the guarded
 * server does. Its loop delay during the expiry is what cutting 10,000 connections at once costs
 * Node and srvx (the answers, the socket closes), whatever schedules the cuts.
 */
const TIMEOUT_ANSWER = "Request Timeout\n";
const cutFloorHandler = (request: Request): Promise<Response> | Response => {
  if (request.method !== "POST" || request.body === null) return bareHandler(request);
  const reader = request.body.getReader();
  return new Promise<Response>((resolve) => {
    let timer: ReturnType<typeof setTimeout>;
    const cut = () => {
      reader.cancel(new Error("idle")).catch(() => {});
      resolve(
        new Response(TIMEOUT_ANSWER, {
          status: 408,
          headers: { "content-type": "text/plain; charset=utf-8", connection: "close" },
        }),
      );
    };
    timer = setTimeout(cut, IDLE);
    const pump = (): Promise<void> =>
      reader.read().then(({ done }) => {
        clearTimeout(timer);
        if (done) return resolve(Response.json({}));
        timer = setTimeout(cut, IDLE);
        return pump();
      });
    pump().catch(() => {
      clearTimeout(timer);
      resolve(new Response(null, { status: 500 }));
    });
  });
};
if (mode === "bare") listener = toNodeHandler(bareHandler) as unknown as http.RequestListener;
else if (mode === "floor") listener = toNodeHandler(floorHandler) as unknown as http.RequestListener;
else if (mode === "cut-floor") listener = toNodeHandler(cutFloorHandler) as unknown as http.RequestListener;
else if (mode === "guarded")
  listener = createNodeListener(benchHandler, {
    request: { idle: IDLE },
    onTimeout: false,
  }) as unknown as http.RequestListener;
else throw new Error(`scale-server: --mode must be bare, floor, cut-floor or guarded, got ${mode}`);

// Long headersTimeout: the client opens every connection first and sends all headers afterwards.
const server = http.createServer(nodeServerLimits(120_000), listener);

let requests = 0;
let ended = 0;
let firstRequestAt = NaN;
let lastRequestAt = NaN;
let resetAt = NaN;
let resetDone = false;
let firstEndAt = NaN;
let lastEndAt = NaN;

// Bookkeeping shared by both modes: one counter bump and one shared listener per request.
const serverLate = new Float64Array(N);
function onResponseClose(this: http.ServerResponse): void {
  const now = performance.now();
  // Server-side lateness, counted from the request's arrival (its wait starts later than that).
  if (ended < N) serverLate[ended] = now - ((this as unknown as { arrivedAt: number }).arrivedAt + IDLE);
  ended++;
  if (ended === 1) firstEndAt = now;
  lastEndAt = now;
  if (ended === N && (mode === "guarded" || mode === "cut-floor")) {
    // The last stalled upload was cut: read the loop delay of the whole mass expiry now.
    const loop = loopFigures();
    const counters = deadlineDebugCounters();
    const late = Array.from(serverLate).sort((a, b) => a - b);
    emit("reaped", {
      loop,
      serverLate: { p50: late[Math.floor(N * 0.5)], p99: late[Math.floor(N * 0.99)], max: late[N - 1], min: late[0] },
      resetDone,
      firstEndAfterReset: firstEndAt - resetAt,
      spreadMs: lastEndAt - firstEndAt,
      liveGuards: counters.liveGuards,
      scheduledDeadlines: counters.scheduledDeadlines,
      timerArmed: counters.timerArmed,
      timerWakeups: counters.timerWakeups,
    });
  }
}

server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
  // Warm-up requests and the after-check are not counted.
  if (req.method !== "POST" || !baselineTaken) return;
  const now = performance.now();
  (res as unknown as { arrivedAt: number }).arrivedAt = now;
  res.once("close", onResponseClose);
  requests++;
  lastRequestAt = now;
  if (requests === 1) {
    firstRequestAt = now;
    // The earliest any deadline can be due: the first request's body read begins after it arrived.
    resetAt = now + IDLE - RESET_BEFORE_MS;
    setTimeout(() => {
      loopWindow.reset();
      resetDone = true;
    }, IDLE - RESET_BEFORE_MS);
  }
  if (requests === N) setTimeout(takeLoaded, SETTLE_MS);
});

let baselineTaken = false;

function takeLoaded(): void {
  const before = performance.now();
  const endedBefore = ended;
  const mem = memory();
  const after = performance.now();
  // For attributing the per-request heap (SCALE_HEAP_SNAPSHOT=dir): compare guarded with floor.
  const snapshotDir = process.env.SCALE_HEAP_SNAPSHOT;
  const snapshot = snapshotDir ? writeHeapSnapshot(`${snapshotDir}/scale-${mode}-${N}.heapsnapshot`) : null;
  emit("loaded", {
    snapshot,
    mem,
    openRequests: requests - endedBefore,
    endedBeforeMeasure: endedBefore,
    gcMs: after - before,
    arrivalSpreadMs: lastRequestAt - firstRequestAt,
    // Must be positive: the heap was read before any deadline could fire and before the reset.
    marginBeforeResetMs: resetAt - after,
    liveGuards: mode === "guarded" ? deadlineDebugCounters().liveGuards : null,
  });
}

function fdLimit(): string {
  try {
    return execFileSync("bash", ["-c", `grep 'Max open files' /proc/${process.pid}/limits`], {
      encoding: "utf8",
    }).trim();
  } catch {
    return "unknown";
  }
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = line.trim();
  if (command === "baseline") {
    baselineTaken = true;
    emit("baseline", { mem: memory(), connections: (server as unknown as { _connections: number })._connections });
  } else if (command === "loop") {
    emit("loop", { loop: loopFigures(), resetDone, openRequests: requests - ended });
  } else if (command === "quit") {
    server.closeAllConnections();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  }
});
process.stdin.on("end", () => process.exit(0)); // the orchestrator went away: never linger

server.listen({ port: 0, host: "127.0.0.1", backlog: 4096 }, () => {
  const address = server.address() as { port: number };
  emit("listening", { port: address.port, mode, fdLimit: fdLimit(), node: process.version });
});
