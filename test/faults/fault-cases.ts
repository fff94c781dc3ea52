/**
 * The faults, each run over real sockets against the fixture server (harness/fixture/faults.ts serves
 * the misbehaving handlers): `run` makes the fault happen and gathers what the client saw, `judge` says
 * what each runtime must show. test/faults.test.ts adds, after every fault, the checks they all
 * share: the server still answers, nothing of any request is left (debug counters back to zero),
 * and no firing was reported twice.
 */
import type { DemoConfig } from "../../demo/demo-app.ts";
import { sleep } from "../../harness/raw-http-client.ts";
import type { Observation, RunningServer, RuntimeRow } from "../../harness/runtime-launchers.ts";
import { type FaultClient, type Outcome, faultClient } from "./fault-client.ts";

/** Short real limits, as the conformance suite's. No request minRate: the faults change idle alone. */
export const FAULT_CONFIG: DemoConfig = {
  request: { idle: 600 },
  response: { idle: 600 },
  handler: 500,
  authenticated: { idle: 5000, total: null },
};

/** How late a firing may be seen at the client beyond its limit (as the conformance suite's MARGIN_MS). */
export const MARGIN_MS = 700;

const KiB = 1024;
const MiB = 1024 * KiB;
const REQUEST_IDLE = FAULT_CONFIG.request.idle as number;
const RESPONSE_IDLE = FAULT_CONFIG.response.idle as number;
const HANDLER_MS = FAULT_CONFIG.handler as number;

/**
 * The rows the fault suite runs on: every runtime. Not `wrangler dev`: it serves the Worker on
 * workerd, as the "workers" row does, and runs the conformance scenarios only (test/conformance.test.ts).
 */
export const FAULT_ROWS = [
  "node20",
  "node24",
  "node20-h2c",
  "deno",
  "bun",
  "workers",
] as const satisfies readonly RuntimeRow[];
export type FaultRow = (typeof FAULT_ROWS)[number];

export interface FaultRun {
  server: RunningServer;
  client: FaultClient;
  row: FaultRow;
  /** A fresh request id (the fixture server tags its observations with it). */
  id(prefix: string): string;
}

/** What one request of a fault did, as the client saw it; `seen` is filled in once the server settled. */
export interface Facts {
  id: string;
  outcome: Outcome;
  /** Observations of this request (tagged with its id). */
  seen: Observation[];
  /** A duration the fault measures (ms), when it measures one. */
  ms?: number;
}

export type Check = [ok: boolean, what: string];

export interface KnownLimit {
  rows: FaultRow[];
  /** Where the runtime's behaviour is described. */
  reference: string;
  /** What the runtime does instead, asserted. */
  expected: string;
}

export interface FaultCase {
  id: string;
  title: string;
  knownLimit?: KnownLimit;
  /** Makes the fault happen; one Facts per request it made. */
  run(run: FaultRun): Promise<Facts[]>;
  /** What the client and the server's observations must show on `row` (`limitRow`: the known limit applies). */
  judge(facts: Facts[], row: FaultRow, limitRow: boolean): Check[];
}

export function eventsOf(facts: Facts, event: string): Observation[] {
  return facts.seen.filter((o) => o.event === event);
}

/** Observations of request `id` (all of them, so far). */
export function observationsOf(server: RunningServer, id: string): Observation[] {
  return server.observations.filter((o) => o.id === id);
}

export interface Counters {
  liveGuards: number;
  scheduledDeadlines: number;
  timerArmed: boolean;
  allScheduledDeadlines: number;
  allTimersArmed: number;
  disconnectListeners: number;
}

const isClean = (c: Counters) =>
  c.liveGuards === 0 &&
  c.scheduledDeadlines === 0 &&
  !c.timerArmed &&
  c.allScheduledDeadlines === 0 &&
  c.allTimersArmed === 0 &&
  c.disconnectListeners === 0;

/**
 * Polls /debug/counters until nothing of any request is left (guards, scheduled deadlines, armed
 * timers, disconnect listeners), or `withinMs` passed. Returns the last reading and when it came.
 */
export async function settle(
  client: FaultClient,
  withinMs = 5000,
): Promise<{ clean: boolean; counters: Counters | undefined; ms: number }> {
  const started = performance.now();
  let counters: Counters | undefined;
  for (;;) {
    const res = await client.get("/debug/counters").catch(() => undefined);
    if (res?.status === 200) counters = JSON.parse(res.text) as Counters;
    if (counters !== undefined && isClean(counters)) return { clean: true, counters, ms: performance.now() - started };
    if (performance.now() - started > withinMs) return { clean: false, counters, ms: performance.now() - started };
    await sleep(50);
  }
}

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > timeoutMs) return false;
    await sleep(10);
  }
  return true;
}

function waitForId(run: FaultRun, id: string, event: string, timeoutMs: number): Promise<Observation | undefined> {
  return run.server.waitFor((o) => o.id === id && o.event === event, timeoutMs);
}

/** An upload that declares `declared` bytes and sends `sent` of them. */
async function startUpload(run: FaultRun, path: string, declared: number, sent: number) {
  const ex = await run.client.open("POST", path, { "Content-Length": declared, Connection: "close" });
  if (sent > 0) ex.write(Buffer.alloc(sent, 0x61));
  return ex;
}

const fact = (id: string, outcome: Outcome, ms?: number): Facts =>
  ms === undefined ? { id, outcome, seen: [] } : { id, outcome, seen: [], ms };

// ---- checks shared by the judges ----

const show = (o: Observation | undefined) =>
  o === undefined ? "none" : JSON.stringify(o, (k, v) => (k === "t" || k === "id" ? undefined : v));

function noTimeout(f: Facts): Check {
  const n = eventsOf(f, "timeout").length;
  return [n === 0, `timeouts reported: ${n} (a client fault or a handler error is no timeout)`];
}

function oneTimeout(
  f: Facts,
  want: Partial<Record<"direction" | "limit" | "limitValue" | "afterHeaders", unknown>>,
): Check[] {
  const timeouts = eventsOf(f, "timeout");
  const t = timeouts[0];
  const mismatched = Object.entries(want).filter(([k, v]) => t?.[k] !== v);
  return [
    [timeouts.length === 1, `timeouts reported: ${timeouts.length} (one firing, one report)`],
    [
      t !== undefined && mismatched.length === 0,
      `the report: ${show(t)}${mismatched.length ? `; expected ${JSON.stringify(want)}` : ""}`,
    ],
  ];
}

function sawEvent(f: Facts, event: string, match: (o: Observation) => boolean = () => true, what = event): Check {
  const o = eventsOf(f, event).find(match);
  return [o !== undefined, `${what}: ${show(o ?? eventsOf(f, event)[0])}`];
}

const notTimeoutReason = (o: Observation) => o.reason !== "timeout";

/** The client saw the response body end short (truncated or reset; HTTP/2: RST_STREAM), never a clean end. */
function visiblyCut(f: Facts, protocol: "h1" | "h2"): Check {
  const o = f.outcome;
  const ok =
    o.ending !== "complete" &&
    o.ending !== "timeout" &&
    !o.sawChunkedTerminator &&
    (protocol === "h1" || o.ending === "reset");
  return [
    ok,
    `client saw ${o.ending} after ${o.bytes} bytes${o.rstCode ? ` (RST_STREAM ${o.rstCode})` : ""}${o.sawChunkedTerminator ? ", with a chunked terminator" : ""}`,
  ];
}

const statusIs = (f: Facts, status: number): Check => [f.outcome.status === status, `status ${f.outcome.status}`];
const protocolOf = (row: FaultRow) => (row === "node20-h2c" ? "h2" : "h1");

// ---- the faults ----

export const FAULTS: FaultCase[] = [
  {
    id: "reset-mid-upload",
    title: "client resets mid-upload (TCP RST; RST_STREAM CANCEL on HTTP/2) while the handler reads",
    async run(run) {
      const id = run.id("reset-up");
      const ex = await startUpload(run, `/upload?id=${id}`, 100_000, 1000);
      await sleep(150); // the handler is reading: its read waits for more
      ex.reset();
      const outcome = await ex.response;
      await waitForId(run, id, "upload-failed", 3000);
      ex.close();
      return [fact(id, outcome)];
    },
    judge: ([f]) => [
      sawEvent(f!, "upload-failed", notTimeoutReason, "the handler's read failed with the client's error"),
      noTimeout(f!),
    ],
  },
  {
    id: "reset-mid-download",
    title: "client resets mid-download after 1 MiB",
    async run(run) {
      const id = run.id("reset-down");
      const ex = await run.client.open("GET", `/download?bytes=${1024 * MiB}&id=${id}`, { Connection: "close" });
      await ex.headers;
      await until(() => ex.received >= MiB, 10_000);
      ex.reset();
      const outcome = await ex.response;
      await waitForId(run, id, "producer-cancelled", 3000);
      ex.close();
      return [fact(id, outcome)];
    },
    judge: ([f]) => [
      sawEvent(f!, "producer-cancelled", notTimeoutReason, "producer cancelled as a disconnect"),
      noTimeout(f!),
    ],
  },
  {
    id: "half-close-mid-upload",
    title: "client half-closes mid-upload (FIN, or END_STREAM, after 1000 of 100,000 declared bytes) and keeps reading",
    async run(run) {
      const id = run.id("half-up");
      const ex = await startUpload(run, `/upload?id=${id}`, 100_000, 1000);
      await sleep(150);
      ex.halfClose();
      const outcome = await ex.response;
      await waitForId(run, id, "upload-failed", 3000);
      ex.close();
      return [fact(id, outcome)];
    },
    judge([f], row) {
      // Each runtime refuses the short body its own way (measured); none waits for the idle limit.
      const expected: Record<FaultRow, [string, (o: Outcome) => boolean]> = {
        node20: ["400 (Node's parser rejects the short body)", (o) => o.status === 400],
        node24: ["400 (Node's parser rejects the short body)", (o) => o.status === 400],
        "node20-h2c": [
          "RST_STREAM PROTOCOL_ERROR (1): END_STREAM short of content-length",
          (o) => o.ending === "reset" && o.rstCode === 1,
        ],
        deno: ["500 (the read fails; the demo rethrows)", (o) => o.status === 500],
        bun: ["the connection closed without a response", (o) => o.status === 0 && o.ending !== "timeout"],
        workers: ["500 (the read fails; the demo rethrows)", (o) => o.status === 500],
      };
      const [what, ok] = expected[row] ?? [`no expectation for ${row}`, () => false];
      return [
        [
          ok(f!.outcome),
          `client saw status ${f!.outcome.status}, ${f!.outcome.ending}${f!.outcome.rstCode ? ` (RST_STREAM ${f!.outcome.rstCode})` : ""}; expected ${what}`,
        ],
        sawEvent(f!, "upload-failed", notTimeoutReason, "the handler's read failed at once (not by the idle deadline)"),
        noTimeout(f!),
      ];
    },
  },
  {
    id: "half-close-then-download",
    title: "client half-closes right after its request and reads a 4 MiB download",
    knownLimit: {
      rows: ["deno"],
      reference:
        "measured; Deno's HTTP/1 server is hyper, whose http1 `half_close` option defaults to false (docs.rs/hyper: server::conn::http1::Builder::half_close)",
      expected:
        "Deno takes the client's FIN for the client leaving: the response body is cancelled (the producer sees AbortError) and the download cut",
    },
    async run(run) {
      const id = run.id("half-down");
      const ex = await run.client.open("GET", `/download?bytes=${4 * MiB}&id=${id}`, { Connection: "close" });
      ex.halfClose();
      const outcome = await ex.response;
      await run.server.waitFor(
        (o) => o.id === id && (o.event === "download-complete" || o.event === "producer-cancelled"),
        3000,
      );
      ex.close();
      return [fact(id, outcome)];
    },
    judge([f], _row, limitRow) {
      if (limitRow)
        return [
          sawEvent(f!, "producer-cancelled", notTimeoutReason, "producer cancelled as a disconnect"),
          [f!.outcome.ending !== "complete", `client saw ${f!.outcome.ending}`],
          noTimeout(f!),
        ];
      return [
        statusIs(f!, 200),
        [
          f!.outcome.ending === "complete" && f!.outcome.bytes === 4 * MiB,
          `client got ${f!.outcome.bytes} bytes, ${f!.outcome.ending}`,
        ],
        sawEvent(f!, "download-complete"),
        noTimeout(f!),
      ];
    },
  },
  {
    id: "throw-before",
    title: "the handler throws before returning a Response (at once, and after an await)",
    async run(run) {
      const out: Facts[] = [];
      for (const how of ["sync", "async"]) {
        const id = run.id(`throw-${how}`);
        const ex = await run.client.open("GET", `/fault/throw-before?how=${how}&id=${id}`, { Connection: "close" });
        out.push(fact(id, await ex.response));
        ex.close();
      }
      return out;
    },
    judge: (facts) => facts.flatMap((f) => [statusIs(f, 500), sawEvent(f, "fault-thrown"), noTimeout(f)]),
  },
  {
    id: "throw-before-upload",
    title: "the handler throws without reading its upload; the client stays, silent, past the idle limit",
    async run(run) {
      const id = run.id("throw-up");
      const ex = await startUpload(run, `/fault/throw-before?id=${id}`, 100_000, 1000);
      const outcome = await ex.response;
      // A request deadline left behind would fire now.
      await sleep(REQUEST_IDLE + 400);
      ex.close();
      return [fact(id, outcome)];
    },
    judge: ([f]) => [statusIs(f!, 500), sawEvent(f!, "fault-thrown"), noTimeout(f!)],
  },
  ...(["pull", "pull-async", "outside", "start"] as const).map(
    (how): FaultCase => ({
      id: `producer-error-${how}`,
      title: {
        pull: "after the Response was returned, its producer throws in pull() (256 KiB sent)",
        "pull-async": "after the Response was returned, its producer's pull() promise rejects (256 KiB sent)",
        outside:
          "after the Response was returned, its producer errors the stream from a timer, outside pull() (256 KiB sent)",
        start: "after the Response was returned, the body's start() rejects (no byte sent)",
      }[how],
      async run(run) {
        const id = run.id(`err-${how}`);
        const ex = await run.client.open("GET", `/fault/body-error?how=${how}&after=${256 * KiB}&id=${id}`, {
          Connection: "close",
        });
        const outcome = await ex.response;
        await waitForId(run, id, "producer-failed", 3000);
        ex.close();
        return [fact(id, outcome)];
      },
      judge([f], row) {
        // With no byte written, Node (HTTP/1.1) and Bun have not sent the head yet: the connection just closes.
        const status = f!.outcome.status;
        return [
          [
            status === 200 || (how === "start" && status === 0),
            `status ${status}${status === 0 ? " (closed before the head)" : ""}`,
          ],
          visiblyCut(f!, protocolOf(row)),
          sawEvent(f!, "producer-failed"),
          noTimeout(f!),
        ];
      },
    }),
  ),
  {
    id: "producer-error-chunked",
    title: "the producer throws mid-stream in a chunked body (no declared length)",
    knownLimit: {
      rows: ["workers"],
      reference: "cloudflare/workerd#6818",
      expected: "workerd ends a chunked body that errors with 0\\r\\n\\r\\n: the cut looks like a clean end",
    },
    async run(run) {
      const id = run.id("err-chunked");
      const ex = await run.client.open("GET", `/fault/body-error?how=pull&after=${256 * KiB}&chunked=1&id=${id}`, {
        Connection: "close",
      });
      const outcome = await ex.response;
      await waitForId(run, id, "producer-failed", 3000);
      ex.close();
      return [fact(id, outcome)];
    },
    judge([f], row, limitRow) {
      const cut: Check = limitRow
        ? [
            f!.outcome.sawChunkedTerminator,
            `terminator seen: ${f!.outcome.sawChunkedTerminator} (${f!.outcome.ending})`,
          ]
        : visiblyCut(f!, protocolOf(row));
      return [statusIs(f!, 200), cut, sawEvent(f!, "producer-failed"), noTimeout(f!)];
    },
  },
  {
    id: "ignore-signal-handler",
    title:
      "the handler ignores its aborted signal past the handler deadline, then returns a body whose producer ignores its cancel",
    knownLimit: {
      rows: ["workers"],
      reference:
        "docs/runtime-workers.md §2; README (timerScope): workerd cancels a request's timers when the request ends",
      expected:
        "once the 503 went out the request is over: the late handler's own timer never fires, so it never returns (nothing of it runs again)",
    },
    async run(run) {
      const id = run.id("ignore-h");
      const started = performance.now();
      const ex = await run.client.open("GET", `/fault/ignore-signal?phase=handler&ms=1000&id=${id}`, {
        Connection: "close",
      });
      const outcome = await ex.response;
      // The handler returns ~1 s after the request; its producer then runs until refused 10 times (~100 ms).
      if (await waitForId(run, id, "late-handler-returned", 2500)) await waitForId(run, id, "producer-stopped", 3000);
      ex.close();
      return [fact(id, outcome, outcome.statusAt - started)];
    },
    judge([f], _row, limitRow) {
      const checks: Check[] = [
        statusIs(f!, 503),
        [
          f!.ms! >= HANDLER_MS - 5 && f!.ms! <= HANDLER_MS + MARGIN_MS,
          `503 after ${Math.round(f!.ms!)} ms (handler limit ${HANDLER_MS} ms)`,
        ],
        ...oneTimeout(f!, { direction: "handler", limit: "handler", limitValue: HANDLER_MS }),
      ];
      if (limitRow)
        return [...checks, [eventsOf(f!, "late-handler-returned").length === 0, "the late handler never continued"]];
      return [
        ...checks,
        sawEvent(
          f!,
          "late-handler-returned",
          (o) => o.signalAborted === true,
          "the handler returned late, its signal aborted",
        ),
        sawEvent(
          f!,
          "producer-cancelled",
          (o) => o.reason === "timeout" && o.limit === "handler",
          "its late body was cancelled with the handler's TimeoutError",
        ),
        sawEvent(
          f!,
          "producer-stopped",
          (o) => o.enqueued === 0 && o.refused === 10,
          "every chunk it pushed after that was refused",
        ),
      ];
    },
  },
  {
    id: "ignore-signal-body",
    title: "the producer ignores the cut and its cancel, pushing 64 KiB every 10 ms to a client that stopped reading",
    knownLimit: {
      rows: ["workers"],
      reference:
        "docs/runtime-workers.md §2; README (timerScope): workerd cancels a request's timers when the request ends",
      expected:
        "the cut ends the request, and with it the producer's own interval timer: it stops pushing at once (no refused chunks to count)",
    },
    async run(run) {
      const id = run.id("ignore-b");
      const ex = await run.client.open(
        "GET",
        `/fault/ignore-signal?phase=body&id=${id}`,
        { Connection: "close" },
        30_000,
      );
      await ex.headers;
      ex.pause();
      await waitForId(run, id, "timeout", 15_000);
      ex.resume();
      const outcome = await ex.response;
      await waitForId(run, id, "producer-stopped", run.row === "workers" ? 1000 : 3000);
      ex.close();
      return [fact(id, outcome)];
    },
    judge([f], row, limitRow) {
      const checks: Check[] = [
        statusIs(f!, 200),
        visiblyCut(f!, protocolOf(row)),
        ...oneTimeout(f!, { direction: "response", limit: "idle", limitValue: RESPONSE_IDLE, afterHeaders: true }),
        sawEvent(f!, "producer-cancelled", (o) => o.reason === "timeout", "producer cancelled with the TimeoutError"),
      ];
      if (limitRow)
        return [
          ...checks,
          [eventsOf(f!, "producer-stopped").length === 0, "the producer's timer died with the request"],
        ];
      return [
        ...checks,
        sawEvent(
          f!,
          "producer-stopped",
          (o) => o.refused === 10 && o.cancelled === true,
          "it kept pushing; each chunk after the cut was refused",
        ),
      ];
    },
  },
  {
    id: "limit-in-pull-total",
    title: "pull() sets a response total that has already passed (a Date a second ago): it fires inside that pull()",
    async run(run) {
      const id = run.id("pull-total");
      const ex = await run.client.open("GET", `/fault/limit-in-pull?set=total&after=${256 * KiB}&id=${id}`, {
        Connection: "close",
      });
      const outcome = await ex.response;
      await waitForId(run, id, "timeout", 3000);
      await waitForId(run, id, "limit-set-in-pull", 3000);
      ex.close();
      return [fact(id, outcome)];
    },
    judge: ([f], row) => [
      statusIs(f!, 200),
      visiblyCut(f!, protocolOf(row)),
      ...oneTimeout(f!, { direction: "response", limit: "total", afterHeaders: true }),
      sawEvent(f!, "limit-set-in-pull", (o) => o.state === "timedOut", "fired within set(), inside pull()"),
      sawEvent(f!, "producer-cancelled", (o) => o.reason === "timeout", "producer cancelled with the TimeoutError"),
    ],
  },
  {
    id: "limit-in-pull-idle",
    title: "pull() tightens the response idle limit to 200 ms; the client then stops reading",
    async run(run) {
      const id = run.id("pull-idle");
      const ex = await run.client.open(
        "GET",
        `/fault/limit-in-pull?set=idle&value=200&after=${256 * KiB}&id=${id}`,
        { Connection: "close" },
        30_000,
      );
      await ex.headers;
      await until(() => ex.received >= 512 * KiB, 10_000);
      ex.pause();
      await waitForId(run, id, "timeout", 15_000);
      ex.resume();
      const outcome = await ex.response;
      await waitForId(run, id, "producer-cancelled", 3000);
      ex.close();
      return [fact(id, outcome)];
    },
    judge: ([f], row) => [
      statusIs(f!, 200),
      visiblyCut(f!, protocolOf(row)),
      sawEvent(f!, "limit-set-in-pull", (o) => o.state === "active", "limit set inside pull()"),
      ...oneTimeout(f!, { direction: "response", limit: "idle", limitValue: 200, afterHeaders: true }),
    ],
  },
  {
    id: "loop-stall",
    title: `the server's event loop is blocked for 1.5 s (2.5 × the ${REQUEST_IDLE} ms request idle) while an upload keeps sending every 100 ms: the stall is not charged to it (200, no timeout)`,
    async run(run) {
      const id = run.id("stall");
      const chunk = 1024;
      const total = 40 * chunk; // 4 s at one chunk per 100 ms
      const ex = await startUpload(run, `/upload?id=${id}`, total, chunk);
      let sent = chunk;
      const pacing = (async () => {
        for (; sent < total; sent += chunk) {
          await sleep(100);
          ex.write(Buffer.alloc(chunk, 0x61));
        }
        if (run.row === "node20-h2c") ex.halfClose(); // HTTP/2: END_STREAM ends the body
      })();
      await sleep(800);
      const blockAt = performance.now();
      await run.client.get(`/fault/block?ms=1500&id=${id}`, 30_000);
      const blockedMs = performance.now() - blockAt;
      await pacing;
      const outcome = await ex.response;
      ex.close();
      return [fact(id, outcome, blockedMs)];
    },
    judge: ([f]) => [
      [
        f!.ms! >= 2 * REQUEST_IDLE,
        `the block lasted ${Math.round(f!.ms!)} ms as the client saw it (at least twice the request idle)`,
      ],
      statusIs(f!, 200),
      noTimeout(f!),
      sawEvent(f!, "loop-unblocked"),
    ],
  },
  {
    id: "limit-while-reading-tighten",
    title: "the request idle limit is cut to 100 ms while a read has waited 200 ms: it fires inside set()",
    async run(run) {
      const id = run.id("set-tight");
      const ex = await startUpload(run, `/fault/upload-set?after=200&idle=100&id=${id}`, 100_000, 1000);
      const outcome = await ex.response;
      await waitForId(run, id, "upload-failed", 3000);
      ex.close();
      return [fact(id, outcome)];
    },
    judge: ([f]) => [
      statusIs(f!, 408),
      sawEvent(
        f!,
        "limit-set-while-reading",
        (o) => o.readPending === true && o.state === "timedOut",
        "set() while the read was pending fired at once",
      ),
      ...oneTimeout(f!, { direction: "request", limit: "idle", limitValue: 100, afterHeaders: false }),
      sawEvent(f!, "upload-failed", (o) => o.reason === "timeout", "the pending read failed with the TimeoutError"),
    ],
  },
  {
    id: "limit-while-reading-relax",
    title: `the request idle limit is raised to 1500 ms while a read is pending: nothing at ${REQUEST_IDLE} ms, one firing at 1500 ms`,
    async run(run) {
      const id = run.id("set-relax");
      const ex = await startUpload(run, `/fault/upload-set?after=200&idle=1500&id=${id}`, 100_000, 1000);
      const lastByteAt = performance.now();
      const outcome = await ex.response;
      await waitForId(run, id, "upload-failed", 3000);
      ex.close();
      return [fact(id, outcome, outcome.statusAt - lastByteAt)];
    },
    judge: ([f]) => [
      statusIs(f!, 408),
      [
        f!.ms! >= 1500 - 5 && f!.ms! <= 1500 + MARGIN_MS,
        `408 after ${Math.round(f!.ms!)} ms of silence (never early, late by < ${MARGIN_MS} ms)`,
      ],
      sawEvent(
        f!,
        "limit-set-while-reading",
        (o) => o.readPending === true && o.state === "active",
        "set() while the read was pending",
      ),
      ...oneTimeout(f!, { direction: "request", limit: "idle", limitValue: 1500, afterHeaders: false }),
    ],
  },
];

export interface StormResult {
  n: number;
  /** The wall-clock instant every upload's total deadline was set to. */
  at: number;
  /** ms from the start until all N handlers were running (liveGuards reached N), or null. */
  readyAfter: number | null;
  statuses: Record<string, number>;
  endings: Record<string, number>;
  /** Timeout observations per request id: how many ids had 0, 1, 2… */
  reportsPerId: Record<string, number>;
  /** Timeout observations in all (onTimeout calls) for the storm's ids, and with another limit than total. */
  reports: number;
  otherLimit: number;
  /** Firing times relative to `at` (server clock, ms): earliest and latest. */
  earliest: number;
  latest: number;
  openMs: number;
}

/**
 * `n` uploads, each stalled after 16 bytes, all with their total deadline at the same wall-clock
 * instant (`at`, a few seconds ahead): they time out together. HTTP/2: streams over sessions of 100.
 */
export async function storm(
  server: RunningServer,
  protocol: "h1" | "h2",
  n: number,
  leadMs: number,
): Promise<StormResult> {
  const started = performance.now();
  const at = Date.now() + leadMs;
  const prefix = `storm${Math.round(started)}-`;
  const clients: FaultClient[] = [];
  const outcomes: Promise<Outcome>[] = [];
  const exchanges: { close(): void }[] = [];
  const perClient = protocol === "h2" ? 100 : Infinity;
  let client: FaultClient | undefined;
  for (let i = 0; i < n; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 50); j++) {
      if (client === undefined || (protocol === "h2" && j % perClient === 0))
        clients.push((client = faultClient(server.port, protocol)));
      batch.push(
        client
          .open("POST", `/fault/upload-set?at=${at}&id=${prefix}${j}`, { "Content-Length": 100_000 }, leadMs + 20_000)
          .then((ex) => {
            ex.write(Buffer.alloc(16, 0x73));
            exchanges.push(ex);
            outcomes.push(ex.response);
          }),
      );
    }
    await Promise.all(batch);
  }
  const openMs = performance.now() - started;
  // Every handler running (its guard counted) before the instant: they really fire together.
  const probe = faultClient(server.port, protocol);
  let readyAfter: number | null = null;
  while (Date.now() < at - 50) {
    const res = await probe.get("/debug/counters").catch(() => undefined);
    if (res?.status === 200 && (JSON.parse(res.text) as Counters).liveGuards >= n) {
      readyAfter = performance.now() - started;
      break;
    }
    await sleep(100);
  }
  probe.close();
  const results = await Promise.all(outcomes);
  // Reports may trail the responses a little (stdout): wait until every id has one, or 5 s.
  const ids = new Set(Array.from({ length: n }, (_, j) => `${prefix}${j}`));
  const mine = () => server.observations.filter((o) => o.event === "timeout" && ids.has(o.id as string));
  await until(() => new Set(mine().map((o) => o.id)).size >= n, 5000);
  await sleep(200); // a duplicate report would come right after the first
  const reports = mine();
  const perId = new Map<string, number>();
  for (const o of reports) perId.set(o.id as string, (perId.get(o.id as string) ?? 0) + 1);
  const reportsPerId: Record<string, number> = {};
  for (const id of ids) {
    const k = String(perId.get(id) ?? 0);
    reportsPerId[k] = (reportsPerId[k] ?? 0) + 1;
  }
  const count = (values: (string | number)[]) =>
    values.reduce<Record<string, number>>((acc, v) => ((acc[String(v)] = (acc[String(v)] ?? 0) + 1), acc), {});
  for (const ex of exchanges) ex.close();
  for (const c of clients) c.close();
  const times = reports.map((o) => (o.t as number) - at);
  return {
    n,
    at,
    readyAfter: readyAfter === null ? null : Math.round(readyAfter),
    statuses: count(results.map((r) => r.status)),
    endings: count(results.map((r) => r.ending)),
    reportsPerId,
    reports: reports.length,
    otherLimit: reports.filter((o) => o.limit !== "total").length,
    earliest: times.length ? Math.min(...times) : NaN,
    latest: times.length ? Math.max(...times) : NaN,
    openMs: Math.round(openMs),
  };
}
