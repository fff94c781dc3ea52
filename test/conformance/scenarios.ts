/**
 * The conformance scenarios: written once, run over real TCP against the demo on every runtime
 * (served as the fixture server: harness/fixture).
 * Each one measures facts, then judges them; a runtime that cannot meet a scenario has its
 * documented behaviour asserted instead (a known platform limit, with its upstream issue).
 */
import { createHash } from "node:crypto";
import http2 from "node:http2";
import type { DemoConfig } from "../../demo/demo-app.ts";
import { downloadByte } from "../../demo/demo-app.ts";
import { connect, exchange, requestHead, sleep } from "../../harness/raw-http-client.ts";
import type { RunningServer, RuntimeRow } from "../../harness/runtime-launchers.ts";

/** Short real limits, generous margins: hundreds of milliseconds, never seconds of sleep per limit. */
export const CONFORMANCE_CONFIG: DemoConfig = {
  request: { idle: 600, minRate: 4096, grace: 800 },
  response: { idle: 600 },
  handler: 500,
  authenticated: { idle: 5000, minRate: 100, grace: 3000, total: null },
  sseHeartbeat: 600,
};

/** How late a firing may be seen at the client, beyond the limit: timer accuracy plus scheduling on a loaded 2-core machine. */
export const MARGIN_MS = 700;

export interface Verdict {
  ok: boolean;
  /** What was measured, in words (shown in the matrix's details and in failures). */
  detail: string;
}

export interface KnownLimit {
  rows: RuntimeRow[];
  /** The upstream issue or documentation that describes the limit. */
  reference: string;
  /** What the runtime does instead, asserted. */
  expected: string;
}

export interface Scenario {
  id: string;
  title: string;
  /** Rows this scenario runs on (default: every HTTP/1.1 row). */
  rows?: RuntimeRow[];
  knownLimit?: KnownLimit;
  /** Measures and judges. For a known-limit row, `ok` means "behaves as documented". */
  run(server: RunningServer, limitRow: boolean): Promise<Verdict>;
}

const HTTP1_ROWS: RuntimeRow[] = ["node20", "node24", "hono-node", "deno", "bun", "workers", "wrangler"];
const KiB = 1024;
const MiB = 1024 * KiB;

function verdict(checks: [boolean, string][]): Verdict {
  const failed = checks.filter(([ok]) => !ok).map(([, what]) => what);
  return {
    ok: failed.length === 0,
    detail: failed.length ? `failed: ${failed.join("; ")}` : checks.map(([, what]) => what).join("; "),
  };
}

function expectedDownloadHash(bytes: number): string {
  const hash = createHash("sha256");
  const chunk = Buffer.alloc(64 * KiB);
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    const size = Math.min(chunk.length, bytes - sent);
    for (let i = 0; i < size; i++) chunk[i] = downloadByte(sent + i);
    hash.update(chunk.subarray(0, size));
  }
  return hash.digest("hex");
}

/** Sends `total` bytes in `size`-byte pieces every `everyMs`, until the response has come (or all is sent). */
async function drip(
  socket: import("node:net").Socket,
  total: number,
  size: number,
  everyMs: number,
  stop: () => boolean,
): Promise<number> {
  let sent = 0;
  while (sent < total && !stop() && !socket.destroyed) {
    const n = Math.min(size, total - sent);
    socket.write(Buffer.alloc(n, 0x61));
    sent += n;
    await sleep(everyMs);
  }
  return sent;
}

export const SCENARIOS: Scenario[] = [
  {
    id: "fast-upload",
    title: "fast upload passes byte for byte (256 KiB at once, sha256)",
    async run(server) {
      const socket = await connect(server.port);
      const body = Buffer.alloc(256 * KiB, 0x62);
      const ex = exchange(
        socket,
        requestHead("POST", "/upload", { "Content-Length": body.length, Connection: "close" }),
      );
      socket.write(body);
      const res = await ex.response;
      socket.destroy();
      return verdict([
        [res.status === 200, `status ${res.status}`],
        [
          res.body.toString() ===
            JSON.stringify({ bytes: body.length, sha256: createHash("sha256").update(body).digest("hex") }),
          `body ${res.body.toString().slice(0, 120)}`,
        ],
      ]);
    },
  },
  {
    id: "download-intact",
    title: "download within limits arrives byte for byte (8 MiB, sha256)",
    async run(server) {
      const bytes = 8 * MiB;
      const socket = await connect(server.port);
      const res = await exchange(socket, requestHead("GET", `/download?bytes=${bytes}`, { Connection: "close" }))
        .response;
      socket.destroy();
      const hash = createHash("sha256").update(res.body).digest("hex");
      return verdict([
        [res.status === 200, `status ${res.status}`],
        [res.ending === "complete", `ending ${res.ending}`],
        [res.body.length === bytes, `${res.body.length} bytes`],
        [hash === expectedDownloadHash(bytes), "sha256 matches"],
      ]);
    },
  },
  {
    id: "slow-drip-upload",
    title: "slow-drip upload under minRate fails with 408 before headers; the handler saw the error",
    async run(server) {
      const since = server.observations.length;
      const socket = await connect(server.port);
      const ex = exchange(socket, requestHead("POST", "/upload", { "Content-Length": 100_000 }));
      let answered = false;
      void ex.headers.then(() => (answered = true));
      const started = performance.now();
      await drip(socket, 100_000, 200, 100, () => answered); // 2000 B/s against a 4096 B/s minimum
      const res = await ex.response;
      socket.destroy();
      const seen = await server.waitFor((o) => o.event === "upload-failed", 3000, since);
      const after = res.statusAt - started;
      return verdict([
        [res.status === 408, `status ${res.status}`],
        [after < 6000, `answered after ${Math.round(after)} ms`],
        [
          seen?.reason === "timeout" && seen.limit === "minRate",
          `handler saw ${seen ? `${String(seen.reason)}/${String(seen.limit)}` : "nothing"}`,
        ],
      ]);
    },
  },
  {
    id: "stalled-upload",
    title: `stalled upload fails at the idle limit (${CONFORMANCE_CONFIG.request.idle} ms, late by < ${MARGIN_MS} ms, never early) with the default 408`,
    async run(server) {
      const since = server.observations.length;
      const socket = await connect(server.port);
      const ex = exchange(socket, requestHead("POST", "/upload", { "Content-Length": 100_000 }));
      socket.write(Buffer.alloc(1000, 0x63));
      const lastByteAt = performance.now();
      const res = await ex.response;
      socket.destroy();
      const seen = await server.waitFor((o) => o.event === "timeout" && o.direction === "request", 3000, since);
      const idle = CONFORMANCE_CONFIG.request.idle as number;
      const after = res.statusAt - lastByteAt;
      const text = res.body.toString("utf8");
      return verdict([
        [res.status === 408, `status ${res.status}`],
        // The default answer, whatever Response class the adapter builds it with.
        [text === "Request Timeout\n", `body ${JSON.stringify(text)}`],
        [res.headers["content-type"] === "text/plain; charset=utf-8", `content-type ${res.headers["content-type"]}`],
        [seen?.limit === "idle", `limit ${String(seen?.limit)}`],
        [after >= idle - 5 && after <= idle + MARGIN_MS, `408 after ${Math.round(after)} ms of silence`],
      ]);
    },
  },
  {
    id: "cut-upload-connection-closed",
    title:
      "after the 408 of a stalled upload the server closes the connection (Connection: close): the stalled client holds nothing",
    knownLimit: {
      rows: ["deno", "workers", "wrangler"],
      reference: "docs/runtime-deno.md, docs/runtime-workers.md",
      expected:
        "Deno 2.9 sends Connection: close but keeps the connection open while the upload is unfinished (until the client closes it); " +
        "workerd (under miniflare and under wrangler dev) drops the Connection header (hop-by-hop, its own to set) and closes the connection itself",
    },
    async run(server, limitRow) {
      const socket = await connect(server.port);
      const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(performance.now())));
      const ex = exchange(socket, requestHead("POST", "/upload", { "Content-Length": 100_000 }));
      socket.write(Buffer.alloc(1000, 0x63));
      const res = await ex.response;
      // The rest of the upload never comes: the server must not hold the connection for it.
      const closedAt = await Promise.race([closed, sleep(2000).then(() => NaN)]);
      socket.destroy();
      const connection = res.headers.connection;
      const closedWithin = closedAt - res.endedAt < 1000;
      const closedText = `server closed the connection ${Number.isNaN(closedAt) ? "not within 2 s" : `${Math.round(closedAt - res.endedAt)} ms after the 408`}`;
      const checks: [boolean, string][] = [
        [res.status === 408 && res.ending === "complete", `status ${res.status}, ${res.ending}`],
      ];
      if (!limitRow)
        checks.push([connection === "close", `connection ${String(connection)}`], [closedWithin, closedText]);
      else if (server.row === "deno")
        checks.push(
          [connection === "close", `connection ${String(connection)}`],
          [Number.isNaN(closedAt), `documented: still open 2 s after the 408 (${closedText})`],
        );
      else
        checks.push(
          [connection === undefined, `documented: no connection header (${String(connection)})`],
          [closedWithin, closedText],
        );
      return verdict(checks);
    },
  },
  {
    id: "overlapping-uploads",
    title: "20 overlapping stalled uploads, with fast ones finishing among them, are each cut on time",
    async run(server) {
      // Requests that start and end while others stall: catches timers (or turn callbacks) that die
      // with the request that set them, as workerd's do when a request ends.
      const idle = CONFORMANCE_CONFIG.request.idle as number;
      const stalled: Promise<{ status: number; after: number }>[] = [];
      const fast: Promise<number>[] = [];
      for (let i = 0; i < 20; i++) {
        const socket = await connect(server.port);
        const ex = exchange(socket, requestHead("POST", "/upload", { "Content-Length": 100_000 }));
        socket.write(Buffer.alloc(16, 0x73));
        const lastByteAt = performance.now();
        stalled.push(
          ex.response.then((res) => (socket.destroy(), { status: res.status, after: res.statusAt - lastByteAt })),
        );
        if (i % 4 === 0) {
          const other = await connect(server.port);
          const otherEx = exchange(
            other,
            requestHead("POST", "/upload", { "Content-Length": 64, Connection: "close" }),
          );
          other.write(Buffer.alloc(64, 0x66));
          fast.push(otherEx.response.then((res) => (other.destroy(), res.status)));
        }
        await sleep(10);
      }
      const results = await Promise.all(stalled);
      const fastStatuses = await Promise.all(fast);
      const onTime = results.filter(
        (r) => r.status === 408 && r.after >= idle - 5 && r.after <= idle + MARGIN_MS,
      ).length;
      const worst = Math.max(...results.map((r) => r.after));
      return verdict([
        [fastStatuses.every((status) => status === 200), `fast uploads: ${fastStatuses.join(",")}`],
        [
          onTime === results.length,
          `${onTime}/${results.length} stalled uploads got 408 within idle + ${MARGIN_MS} ms (slowest ${Math.round(worst)} ms)`,
        ],
      ]);
    },
  },
  {
    id: "quiet-sse",
    title: "quiet SSE stream: a gap longer than idle survives; heartbeats fill the gaps",
    async run(server) {
      const socket = await connect(server.port);
      const res = await exchange(
        socket,
        requestHead("GET", "/events?every=1500&count=3", { Connection: "close" }),
        30_000,
      ).response;
      socket.destroy();
      const text = res.body.toString();
      const events = (text.match(/^data: /gm) ?? []).length;
      // Heartbeats (sseHeartbeat 600 ms) fill each 1.5 s gap with comment lines, only between lines.
      const heartbeats = (text.match(/^:\n/gm) ?? []).length;
      const withoutHeartbeats = text.replace(/^:\n/gm, "");
      return verdict([
        [res.status === 200, `status ${res.status}`],
        [events === 3, `${events} events over 3 s with gaps of 1.5 s (idle ${CONFORMANCE_CONFIG.response.idle} ms)`],
        [
          heartbeats >= 2 && heartbeats <= 4,
          `${heartbeats} heartbeat comment lines in two 1.5 s gaps (every ${CONFORMANCE_CONFIG.sseHeartbeat} ms of quiet)`,
        ],
        [
          withoutHeartbeats === "id: 0\ndata: event 0\n\nid: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\n",
          "events intact between heartbeats",
        ],
        [res.ending === "complete", `ending ${res.ending}`],
      ]);
    },
  },
  {
    id: "stalled-reader",
    title: "stalled reader of a large download is cut: truncated at the client, producer cancelled",
    async run(server) {
      const since = server.observations.length;
      const socket = await connect(server.port);
      const declared = 1024 * MiB;
      const ex = exchange(socket, requestHead("GET", `/download?bytes=${declared}`), 60_000);
      await ex.headers;
      socket.pause(); // stop reading: kernel buffers fill, the runtime stops pulling, the clock runs
      const cancelled = await server.waitFor(
        (o) => o.event === "producer-cancelled" && o.path === "/download",
        15_000,
        since,
      );
      socket.resume();
      const res = await ex.response;
      socket.destroy();
      return verdict([
        [
          cancelled?.reason === "timeout",
          `producer cancelled: ${cancelled ? `${String(cancelled.reason)}/${String(cancelled.limit)}` : "no"}`,
        ],
        [
          res.ending !== "complete" && res.body.length < declared,
          `client saw ${res.ending} after ${(res.body.length / MiB).toFixed(1)} of ${declared / MiB} MiB`,
        ],
      ]);
    },
  },
  {
    id: "stalled-reader-chunked",
    title: "stalled reader of a chunked stream is cut without a chunked terminator",
    knownLimit: {
      rows: ["workers"],
      reference: "cloudflare/workerd#6818",
      expected: "workerd ends the chunked body with 0\\r\\n\\r\\n: the cut looks like a clean end",
    },
    async run(server, limitRow) {
      const since = server.observations.length;
      const socket = await connect(server.port);
      const ex = exchange(socket, requestHead("GET", "/events?every=0&count=1000000"), 60_000);
      await ex.headers;
      socket.pause();
      // Tiny SSE chunks fill the buffers slowly (workerd: 6-10 s): a generous wait.
      const cancelled = await server.waitFor(
        (o) => o.event === "producer-cancelled" && o.path === "/events",
        30_000,
        since,
      );
      socket.resume();
      const res = await ex.response;
      socket.destroy();
      const cut = cancelled?.reason === "timeout";
      if (limitRow)
        return verdict([
          [cut, "producer cancelled by the deadline"],
          [res.sawChunkedTerminator, `terminator seen: ${res.sawChunkedTerminator} (${res.ending})`],
        ]);
      return verdict([
        [cut, `producer cancelled: ${cancelled ? `${String(cancelled.reason)}/${String(cancelled.limit)}` : "no"}`],
        [
          !res.sawChunkedTerminator && res.ending !== "complete",
          `client saw ${res.ending}, terminator ${res.sawChunkedTerminator}`,
        ],
      ]);
    },
  },
  {
    id: "relax-after-auth",
    title: "relax after authentication: the same slow upload succeeds with Authorization: Bearer demo, byte for byte",
    async run(server) {
      const since = server.observations.length;
      const socket = await connect(server.port);
      const total = 6000;
      const ex = exchange(
        socket,
        requestHead("POST", "/upload", { "Content-Length": total, Authorization: "Bearer demo", Connection: "close" }),
      );
      let answered = false;
      void ex.headers.then(() => (answered = true));
      await drip(socket, total, 200, 100, () => answered); // 2000 B/s: fails unauthenticated (slow-drip-upload)
      const res = await ex.response;
      socket.destroy();
      const relaxed = await server.waitFor((o) => o.event === "relaxed", 1000, since);
      return verdict([
        [relaxed !== undefined, "limits raised by the handler"],
        [res.status === 200, `status ${res.status}`],
        // drip() sends "a" bytes: the checksum proves the slow upload arrived byte for byte.
        [
          res.body.toString() ===
            JSON.stringify({
              bytes: total,
              sha256: createHash("sha256").update(Buffer.alloc(total, 0x61)).digest("hex"),
            }),
          `body ${res.body.toString().slice(0, 120)}`,
        ],
      ]);
    },
  },
  {
    id: "slow-upload-under-handler-deadline",
    title: `a slow honest upload (10 chunks 150 ms apart) outlasts the handler deadline (${CONFORMANCE_CONFIG.handler} ms) and gets 200: the handler's clock pauses while a read waits on the client`,
    async run(server) {
      const socket = await connect(server.port);
      const total = 10 * 2 * KiB; // 13.6 KB/s: above minRate; each 150 ms gap well under the idle limit
      const ex = exchange(socket, requestHead("POST", "/upload", { "Content-Length": total, Connection: "close" }));
      let answered = false;
      void ex.headers.then(() => (answered = true));
      const started = performance.now();
      await drip(socket, total, 2 * KiB, 150, () => answered);
      const res = await ex.response;
      socket.destroy();
      const after = res.statusAt - started;
      return verdict([
        [res.status === 200, `status ${res.status}`],
        [after > (CONFORMANCE_CONFIG.handler as number), `answered after ${Math.round(after)} ms`],
        [res.body.toString().startsWith(`{"bytes":${total},`), `body ${res.body.toString().slice(0, 60)}`],
      ]);
    },
  },
  {
    id: "handler-deadline",
    title: `handler deadline (${CONFORMANCE_CONFIG.handler} ms) answers 503 and the handler's signal fired`,
    async run(server) {
      const since = server.observations.length;
      const socket = await connect(server.port);
      const started = performance.now();
      const res = await exchange(socket, requestHead("GET", "/slow?ms=5000", { Connection: "close" })).response;
      socket.destroy();
      const aborted = await server.waitFor((o) => o.event === "handler-signal-aborted", 2000, since);
      const after = res.statusAt - started;
      const limit = CONFORMANCE_CONFIG.handler as number;
      return verdict([
        [res.status === 503, `status ${res.status}`],
        [after >= limit - 5 && after <= limit + MARGIN_MS, `503 after ${Math.round(after)} ms`],
        [
          aborted?.reason === "timeout" && aborted.limit === "handler",
          `signal: ${aborted ? `${String(aborted.reason)}/${String(aborted.limit)}` : "not aborted"}`,
        ],
      ]);
    },
  },
  {
    id: "client-disconnect",
    title: "client disconnect cancels the producer promptly",
    async run(server) {
      const since = server.observations.length;
      const socket = await connect(server.port);
      const ex = exchange(socket, requestHead("GET", "/events?every=50&count=100000"), 30_000);
      await ex.headers;
      await sleep(200);
      const goneAt = Date.now(); // observations carry the server's Date.now(): same machine, same clock
      socket.destroy();
      const cancelled = await server.waitFor(
        (o) => o.event === "producer-cancelled" && o.path === "/events",
        3000,
        since,
      );
      const after = cancelled ? (cancelled.t as number) - goneAt : Infinity;
      return verdict([
        [
          cancelled !== undefined && after < 1000,
          `producer cancelled ${cancelled ? `after ~${Math.max(0, Math.round(after))} ms (${String(cancelled.reason)})` : "never"}`,
        ],
      ]);
    },
  },
  {
    id: "h2-one-stream-reset",
    title: "HTTP/2: a stalled stream is reset while a second stream on the same connection completes",
    rows: ["node20-h2c"],
    async run(server) {
      const since = server.observations.length;
      const session = http2.connect(`http://127.0.0.1:${server.port}`);
      session.on("error", () => {});
      await new Promise<void>((resolve) => session.once("connect", () => resolve()));
      // A large connection window, so the stalled stream cannot starve the others of it.
      session.setLocalWindowSize(64 * MiB);
      const stalled = session.request({ ":path": `/download?bytes=${1024 * MiB}` });
      stalled.on("error", () => {});
      stalled.pause(); // never read: its stream window (64 KiB) fills and the server stops pulling
      const stalledClosed = new Promise<number>((resolve) =>
        stalled.once("close", () => resolve(stalled.rstCode ?? -1)),
      );
      await new Promise<void>((resolve) => stalled.once("response", () => resolve()));
      const other = session.request({ ":path": `/download?bytes=${4 * MiB}` });
      const hash = createHash("sha256");
      let otherBytes = 0;
      other.on("data", (chunk: Buffer) => {
        otherBytes += chunk.length;
        hash.update(chunk);
      });
      await new Promise<void>((resolve) => other.once("close", () => resolve()));
      const rstCode = await Promise.race([stalledClosed, sleep(15_000).then(() => -2)]);
      const cancelled = await server.waitFor(
        (o) => o.event === "producer-cancelled" && o.reason === "timeout",
        3000,
        since,
      );
      // The connection is still usable after the reset.
      const third = session.request({ ":path": "/download?bytes=1024" });
      let thirdBytes = 0;
      third.on("data", (chunk: Buffer) => (thirdBytes += chunk.length));
      await new Promise<void>((resolve) => third.once("close", () => resolve()));
      session.close();
      return verdict([
        [
          otherBytes === 4 * MiB && hash.digest("hex") === expectedDownloadHash(4 * MiB),
          `second stream: ${otherBytes} bytes, sha256 ok`,
        ],
        [rstCode > 0, `stalled stream reset with code ${rstCode}`],
        [cancelled !== undefined, "its producer cancelled by the deadline"],
        [thirdBytes === 1024, "the connection still serves new streams"],
      ]);
    },
  },
];

export function appliesTo(scenario: Scenario, row: RuntimeRow): boolean {
  return (scenario.rows ?? HTTP1_ROWS).includes(row);
}
