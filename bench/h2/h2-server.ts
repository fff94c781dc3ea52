/**
 * The server process of the HTTP/2 bench (bench/h2/run-h2.ts starts it; not meant to be run by hand).
 * One h2c server on 127.0.0.1, port 0, running bench/shared/http-bench-app.ts's handler:
 *   - guarded: stream-deadlines/node's `serve` with `http2: "h2c"`, request and response idle `--idle`
 *     (every other option at its default);
 *   - bare: `http2.createServer` with srvx's `toNodeHandler` (Node's defaults: no stream timeout).
 * Neither passes any HTTP/2 option: Node's own defaults (stream reset rate limit, session memory) hold.
 *
 *   node --expose-gc .bench-out/bench/h2/h2-server.js --mode bare|guarded --idle MS
 *
 * One JSON object per line on stdout (`{"event":…}`); commands on stdin:
 *   baseline   heap/RSS after gc, and the open streams
 *   measure    heap/RSS after gc with the stalled streams open (and how many the server holds)
 *   stats      the loop histogram since 50 ms before the phase's first stalled stream was due, the firings,
 *              the open stalled streams, the debug counters
 *   quit
 * Stalled streams are those whose path carries `stall=1`: the server counts them open until their
 * response closes, and emits `reaped` with the loop figures once the last one has closed.
 */
import http2 from "node:http2";
import { createInterface } from "node:readline";
import { toNodeHandler } from "srvx/node";
import { serve } from "../../adapters/node.ts";
import { deadlineDebugCounters, type TimeoutEvent } from "../../src/index.ts";
import { benchHandler } from "../shared/http-bench-app.ts";
import { emit, loopDelay, memory } from "../shared/server-figures.ts";

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1] !== undefined) return process.argv[i + 1]!;
  if (fallback === undefined) throw new Error(`h2-server: --${name} is required`);
  return fallback;
}

const mode = arg("mode");
const IDLE = Number(arg("idle"));
if ((globalThis as { gc?: () => void }).gc === undefined) throw new Error("h2-server: run node with --expose-gc");
const loopWindow = loopDelay();
const loopFigures = loopWindow.figures;

const firings: Record<string, number> = {};
const onTimeout = (event: TimeoutEvent) => {
  const key = `${event.direction}.${event.limit}`;
  firings[key] = (firings[key] ?? 0) + 1;
};

// Bare: a rejected handler (a client that resets its stalled upload) answers 500, as the adapter does.
const bareHandler = (request: Request) => benchHandler(request).catch(() => new Response(null, { status: 500 }));

let stalledOpen = 0;
let stalledSeen = 0;
let stalledClosed = 0;
let armed = false;
let lastStalledCloseAt = NaN;
let firstStalledCloseAt = NaN;
/** Per stalled stream closed in this phase: its close, less its arrival, less the idle limit. */
let lateFromArrival: number[] = [];

const server: http2.Http2Server =
  mode === "guarded"
    ? ((
        await serve(benchHandler, {
          port: 0,
          http2: "h2c",
          request: { idle: IDLE },
          response: { idle: IDLE },
          onTimeout,
        })
      ).server as http2.Http2Server)
    : mode === "bare"
      ? http2.createServer(toNodeHandler(bareHandler) as never)
      : (() => {
          throw new Error(`h2-server: --mode must be bare or guarded, got ${mode}`);
        })();

const sessions = new Set<http2.ServerHttp2Session>();
let streamsSeen = 0;
server.on("session", (session: http2.ServerHttp2Session) => {
  sessions.add(session);
  session.once("close", () => sessions.delete(session));
});
// Counted on the stream (before the request listener), for bare and guarded alike.
server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
  streamsSeen++;
  if (!String(headers[":path"]).includes("stall=1")) return;
  stalledOpen++;
  stalledSeen++;
  const arrivedAt = performance.now();
  // The phase's first stalled stream: its deadline is the earliest that can be due. The loop histogram
  // covers the mass expiry from just before it.
  if (stalledSeen === 1)
    setTimeout(() => {
      loopWindow.reset();
      armed = true;
    }, IDLE - 50);
  stream.once("close", () => {
    stalledOpen--;
    stalledClosed++;
    const now = performance.now();
    lateFromArrival.push(now - arrivedAt - IDLE);
    if (stalledClosed === 1) firstStalledCloseAt = now;
    lastStalledCloseAt = now;
    if (armed && stalledOpen === 0 && mode === "guarded") emit("reaped", stats());
  });
});

const stats = () => ({
  loop: loopFigures(),
  firings,
  stalledOpen,
  stalledSeen,
  stalledClosed,
  spreadMs: lastStalledCloseAt - firstStalledCloseAt,
  sessions: sessions.size,
  streamsSeen,
  lateFromArrival,
  counters: deadlineDebugCounters(),
});

if (mode === "bare") {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = line.trim();
  if (command === "baseline") {
    // A new phase: its firings, closes and expiry are counted from here.
    for (const key of Object.keys(firings)) delete firings[key];
    armed = false;
    stalledSeen = 0;
    stalledClosed = 0;
    firstStalledCloseAt = NaN;
    lastStalledCloseAt = NaN;
    lateFromArrival = [];
    emit("baseline", { mem: memory(), stalledOpen });
  } else if (command === "measure") {
    const before = performance.now();
    const mem = memory();
    emit("measured", { mem, stalledOpen, stalledClosed, gcMs: performance.now() - before });
  } else if (command === "stats") emit("stats", stats());
  else if (command === "quit") {
    for (const session of sessions) session.destroy();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  }
});
process.stdin.on("end", () => process.exit(0)); // the orchestrator went away: never linger

const address = server.address() as { port: number };
emit("listening", { port: address.port, mode, node: process.version });
