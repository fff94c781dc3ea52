/**
 * The honest-peers load client: a process of its own (so the client's event loop is not the test
 * runner's), started by test/honest-peers.test.ts with a LoadSpec as JSON in argv[2]. It runs
 * paced uploads and paced downloads against the demo at the same time, plus one slow upload and
 * one slow download (the negative controls), checks every body byte for byte, and prints one
 * line: RESULT_PREFIX + JSON (LoadResult).
 *
 * It also measures itself: how late it was against its own pacing schedule (every write of an
 * upload, every resume of a paced read) and its event-loop delay. A client that falls behind is
 * not an honest peer any more, and the test says so instead of blaming the server.
 *
 *   node --import tsx test/honest-peers/load-client.ts '{"port":8787,...}'
 */
import { createHash, randomBytes } from "node:crypto";
import http2 from "node:http2";
import net from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { downloadByte } from "../../demo/demo-app.ts";
import type { ClassResult, ControlResult, LoadResult, LoadSpec, PacedDownloads, PacedUploads } from "./load-plan.ts";
import { RESULT_PREFIX } from "./load-plan.ts";

const spec = JSON.parse(process.argv[2] ?? "null") as LoadSpec;
if (spec === null) throw new TypeError("usage: load-client.ts '<LoadSpec as JSON>'");

const KiB = 1024;
const now = () => performance.now();
const sleepUntil = (at: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, at - now())));

// ---------------------------------------------------------------------------------------------
// Bodies: uploads are slices of one random buffer (each upload its own offset); downloads are
// checked against the demo's byte pattern, which repeats every 256 bytes, with memcmp-speed compares.

const UPLOAD_SOURCE = randomBytes(Math.max(spec.uploads.bytes, spec.controls.upload.bytes) + 64 * KiB);
const uploadBody = (index: number, bytes: number) => {
  const offset = (index * 4099) % (UPLOAD_SOURCE.length - bytes + 1);
  return UPLOAD_SOURCE.subarray(offset, offset + bytes);
};

const PERIOD = 256;
for (let n = 0; n < 4 * PERIOD; n++) {
  if (downloadByte(n) !== downloadByte(n % PERIOD))
    throw new Error("load-client: downloadByte is not 256-periodic any more; update the checker");
}
const PATTERN_SPAN = 256 * KiB;
const PATTERN = Buffer.alloc(PERIOD + PATTERN_SPAN);
for (let i = 0; i < PATTERN.length; i++) PATTERN[i] = downloadByte(i);

/** Whether `chunk` is what the demo sends at body offset `offset`. */
function matchesPattern(chunk: Uint8Array, offset: number): boolean {
  for (let done = 0; done < chunk.length; done += PATTERN_SPAN) {
    const length = Math.min(PATTERN_SPAN, chunk.length - done);
    const start = (offset + done) % PERIOD;
    if (Buffer.compare(chunk.subarray(done, done + length), PATTERN.subarray(start, start + length)) !== 0)
      return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Lateness bookkeeping.

class Lag {
  max = 0;
  note(scheduledAt: number) {
    const late = now() - scheduledAt;
    if (late > this.max) this.max = late;
  }
}

/**
 * Paced reading: the first `pacedBytes` are read at `rate` (counted from the response head), the
 * rest as fast as the server sends. `pause`/`resume` are the transport's (a TCP socket or an
 * HTTP/2 stream: pausing either stops the flow-control window from opening).
 */
class ReadPacer {
  received = 0;
  private startedAt = -1;
  private timer: ReturnType<typeof setTimeout> | undefined;
  constructor(
    private readonly rate: number,
    private readonly pacedBytes: number,
    private readonly pause: () => void,
    private readonly resume: () => void,
    private readonly lag: Lag,
  ) {}

  start() {
    this.startedAt = now();
  }

  /** After `n` body bytes were taken in. */
  took(n: number) {
    this.received += n;
    if (this.received >= this.pacedBytes || this.timer !== undefined) return;
    const dueAt = this.startedAt + (this.received / this.rate) * 1000;
    if (dueAt <= now()) return;
    this.pause();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.lag.note(dueAt);
      this.resume();
    }, dueAt - now());
  }

  stop() {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 over node:net, one connection per transfer (Connection: close), parsed as it streams.

interface Head {
  status: number;
  headers: Map<string, string>;
}

/** Streaming HTTP/1.1 response parser: Content-Length and chunked bodies. */
class ResponseParser {
  head: Head | undefined;
  complete = false;
  error: string | undefined;
  private pending: Buffer = Buffer.alloc(0);
  private remaining = -1; // Content-Length body: bytes still to come
  private chunked = false;
  private chunkLeft = 0; // chunked: data bytes left in this chunk (-1: expecting the CRLF after data)
  constructor(
    private readonly onHead: (head: Head) => void,
    private readonly onBody: (chunk: Buffer) => void,
  ) {}

  push(data: Buffer) {
    if (this.complete || this.error) return;
    this.pending = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    if (!this.head) {
      const end = this.pending.indexOf("\r\n\r\n");
      if (end < 0) return;
      const lines = this.pending.subarray(0, end).toString("latin1").split("\r\n");
      const headers = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      this.head = { status: Number(lines[0]!.split(" ")[1]), headers };
      this.pending = this.pending.subarray(end + 4);
      this.chunked = (headers.get("transfer-encoding") ?? "").includes("chunked");
      if (!this.chunked) this.remaining = headers.has("content-length") ? Number(headers.get("content-length")) : -1;
      this.onHead(this.head);
      if (!this.chunked && this.remaining === 0) this.complete = true;
    }
    if (this.chunked) this.parseChunked();
    else if (this.pending.length > 0) {
      const body =
        this.remaining >= 0 && this.pending.length > this.remaining
          ? this.pending.subarray(0, this.remaining)
          : this.pending;
      this.pending = Buffer.alloc(0);
      if (this.remaining >= 0) this.remaining -= body.length;
      this.onBody(body);
      if (this.remaining === 0) this.complete = true;
    }
  }

  private parseChunked() {
    for (;;) {
      if (this.chunkLeft > 0) {
        if (this.pending.length === 0) return;
        const part = this.pending.subarray(0, Math.min(this.chunkLeft, this.pending.length));
        this.pending = this.pending.subarray(part.length);
        this.chunkLeft -= part.length;
        if (this.chunkLeft === 0) this.chunkLeft = -1;
        this.onBody(part);
        continue;
      }
      if (this.chunkLeft === -1) {
        if (this.pending.length < 2) return;
        this.pending = this.pending.subarray(2);
        this.chunkLeft = 0;
      }
      const lineEnd = this.pending.indexOf("\r\n");
      if (lineEnd < 0) return;
      const size = parseInt(this.pending.subarray(0, lineEnd).toString("latin1"), 16);
      if (Number.isNaN(size)) {
        this.error = "bad chunk size";
        return;
      }
      if (size === 0) {
        // The terminator (no trailers from these servers): 0\r\n\r\n.
        if (this.pending.length < lineEnd + 4) return;
        this.complete = true;
        return;
      }
      this.pending = this.pending.subarray(lineEnd + 2);
      this.chunkLeft = size;
    }
  }
}

interface Exchange {
  status: number;
  /** "complete", or how it ended early. */
  ending: "complete" | "truncated" | "reset" | "timeout" | "parse-error";
}

/** Opens a connection, sends `head`, and runs the exchange; `drive` may write a body and pace reading. */
function h1Exchange(
  head: string,
  hooks: {
    onHead?: (socket: net.Socket) => void;
    onBody: (chunk: Buffer, socket: net.Socket) => void;
    /** Called once connected, after the head was written. */
    drive?: (socket: net.Socket, answered: () => boolean) => Promise<void>;
  },
): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket = net.connect({ port: spec.port, host: "127.0.0.1", noDelay: true });
    let status = 0;
    let settled = false;
    const parser = new ResponseParser(
      (h) => {
        status = h.status;
        hooks.onHead?.(socket);
      },
      (chunk) => hooks.onBody(chunk, socket),
    );
    const finish = (ending: Exchange["ending"]) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ status, ending });
    };
    const timer = setTimeout(() => finish("timeout"), spec.transferTimeoutMs);
    socket.on("data", (data: Buffer) => {
      parser.push(data);
      if (parser.error) finish("parse-error");
      else if (parser.complete) finish("complete");
    });
    socket.on("error", () => finish("reset"));
    socket.on("close", () => finish("truncated"));
    socket.once("connect", () => {
      socket.write(head);
      void hooks.drive?.(socket, () => settled || parser.head !== undefined).catch(() => {});
    });
  });
}

const requestHead = (method: string, path: string, headers: Record<string, string | number>) =>
  `${[`${method} ${path} HTTP/1.1`, "Host: 127.0.0.1", ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)].join("\r\n")}\r\n\r\n`;

// ---------------------------------------------------------------------------------------------
// HTTP/2 cleartext: a few sessions, streams spread over them.

const MiB = 1024 * KiB;
let sessions: http2.ClientHttp2Session[] = [];
let nextSession = 0;

async function openSessions(count: number) {
  sessions = await Promise.all(
    Array.from({ length: count }, () => {
      // The default stream window (64 KiB) is what makes a paused stream stop the server: keep it.
      const session = http2.connect(`http://127.0.0.1:${spec.port}`, { settings: { initialWindowSize: 65_535 } });
      session.on("error", () => {});
      return new Promise<http2.ClientHttp2Session>((resolve, reject) => {
        session.once("connect", () => {
          // A connection window big enough for every stream's own: paused streams must not starve the others.
          session.setLocalWindowSize(256 * MiB);
          resolve(session);
        });
        session.once("error", reject);
      });
    }),
  );
}

function h2Exchange(
  headers: http2.OutgoingHttpHeaders,
  hooks: {
    onHead?: (stream: http2.ClientHttp2Stream) => void;
    onBody: (chunk: Buffer, stream: http2.ClientHttp2Stream) => void;
    drive?: (stream: http2.ClientHttp2Stream, answered: () => boolean) => Promise<void>;
  },
): Promise<Exchange> {
  return new Promise((resolve) => {
    const session = sessions[nextSession++ % sessions.length]!;
    const stream = session.request(headers, { endStream: false });
    let status = 0;
    let settled = false;
    const finish = (ending: Exchange["ending"]) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
      resolve({ status, ending });
    };
    const timer = setTimeout(() => finish("timeout"), spec.transferTimeoutMs);
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      hooks.onHead?.(stream);
    });
    stream.on("data", (chunk: Buffer) => hooks.onBody(chunk, stream));
    // 'end': the server's END_STREAM, the response is whole (an upload answered early, a 408, has
    // no 'close' until our side ends too: do not wait for it). A reset never emits 'end'.
    stream.on("end", () => finish("complete"));
    stream.on("error", () => finish("reset"));
    stream.on("close", () => finish(stream.rstCode ? "reset" : "truncated"));
    void hooks.drive?.(stream, () => settled || status !== 0).catch(() => {});
  });
}

// ---------------------------------------------------------------------------------------------
// One paced upload and one paced download, on either protocol.

interface Outcome {
  ok: boolean;
  detail: string;
  status: number;
  ending: string;
  bytes: number;
  ms: number;
  maxLagMs: number;
}

async function pacedUpload(index: number, plan: PacedUploads): Promise<Outcome> {
  const body = uploadBody(index, plan.bytes);
  const expected = JSON.stringify({ bytes: plan.bytes, sha256: createHash("sha256").update(body).digest("hex") });
  const step = Math.max(1, Math.round((plan.rate * plan.tickMs) / 1000));
  const lag = new Lag();
  let sent = 0;
  const startedAt = now();
  // Write k is due at t0 + k·tick, t0 being when the connection is up and the head written (a slow
  // accept is the server's delay, not the client's): the schedule is absolute, so lateness never
  // accumulates unseen.
  const drive = async (write: (chunk: Buffer) => void, end: () => void, answered: () => boolean) => {
    const t0 = now();
    for (let k = 0; sent < plan.bytes; k++) {
      const dueAt = t0 + k * plan.tickMs;
      await sleepUntil(dueAt);
      if (answered()) return;
      lag.note(dueAt);
      const chunk = body.subarray(sent, Math.min(plan.bytes, sent + step));
      sent += chunk.length;
      write(chunk);
    }
    end();
  };
  const onBody = (chunk: Buffer, _: unknown) => void result.push(chunk);
  const result: Buffer[] = [];
  const ex =
    spec.protocol === "h2c"
      ? await h2Exchange(
          { ":method": "POST", ":path": "/upload", "content-length": plan.bytes },
          {
            onBody,
            drive: (stream, answered) =>
              drive(
                (c) => void stream.write(c),
                () => void stream.end(),
                answered,
              ),
          },
        )
      : await h1Exchange(requestHead("POST", "/upload", { "Content-Length": plan.bytes, Connection: "close" }), {
          onBody,
          drive: (socket, answered) =>
            drive(
              (c) => void socket.write(c),
              () => {},
              answered,
            ),
        });
  const text = Buffer.concat(result).toString();
  const ok = ex.status === 200 && ex.ending === "complete" && text === expected;
  return {
    ok,
    detail: ok
      ? ""
      : `status ${ex.status}, ${ex.ending}, ${sent}/${plan.bytes} bytes sent, answer ${JSON.stringify(text.slice(0, 120))} (expected ${expected})`,
    status: ex.status,
    ending: ex.ending,
    bytes: sent,
    ms: now() - startedAt,
    maxLagMs: lag.max,
  };
}

async function pacedDownload(index: number, plan: PacedDownloads): Promise<Outcome> {
  const bytes = plan.sizes[index % plan.sizes.length]!;
  const pacedBytes = plan.pacedBytes ?? bytes;
  const lag = new Lag();
  let received = 0;
  let intact = true;
  let pacer: ReadPacer | undefined;
  const startedAt = now();
  const onBody = (chunk: Buffer) => {
    if (intact && !matchesPattern(chunk, received)) intact = false;
    received += chunk.length;
    pacer?.took(chunk.length);
  };
  const path = `/download?bytes=${bytes}`;
  const ex =
    spec.protocol === "h2c"
      ? await h2Exchange(
          { ":method": "GET", ":path": path },
          {
            onHead: (stream) => {
              pacer = new ReadPacer(
                plan.rate,
                pacedBytes,
                () => stream.pause(),
                () => stream.resume(),
                lag,
              );
              pacer.start();
            },
            onBody,
            drive: async (stream) => void stream.end(),
          },
        )
      : await h1Exchange(requestHead("GET", path, { Connection: "close" }), {
          onHead: (socket) => {
            pacer = new ReadPacer(
              plan.rate,
              pacedBytes,
              () => socket.pause(),
              () => socket.resume(),
              lag,
            );
            pacer.start();
          },
          onBody,
        });
  pacer?.stop();
  const ok = ex.status === 200 && ex.ending === "complete" && received === bytes && intact;
  return {
    ok,
    detail: ok
      ? ""
      : `status ${ex.status}, ${ex.ending}, ${received}/${bytes} bytes${intact ? "" : ", BYTES DIFFER from the downloadByte pattern"}`,
    status: ex.status,
    ending: ex.ending,
    bytes: received,
    ms: now() - startedAt,
    maxLagMs: lag.max,
  };
}

// ---------------------------------------------------------------------------------------------
// Pools and the report.

async function pool(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<Outcome>,
): Promise<ClassResult> {
  const outcomes: Outcome[] = new Array(count);
  let next = 0;
  let inFlight = 0;
  let peakInFlight = 0;
  const startedAt = now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const index = next++;
        inFlight++;
        peakInFlight = Math.max(peakInFlight, inFlight);
        try {
          outcomes[index] = await task(index);
        } catch (error) {
          outcomes[index] = {
            ok: false,
            detail: `threw ${String(error)}`,
            status: 0,
            ending: "threw",
            bytes: 0,
            ms: 0,
            maxLagMs: 0,
          };
        }
        inFlight--;
      }
    }),
  );
  const elapsedMs = now() - startedAt;
  const lags = outcomes.map((o) => o.maxLagMs).sort((a, b) => a - b);
  const times = outcomes.map((o) => o.ms).sort((a, b) => a - b);
  const failures = outcomes.flatMap((o, index) => (o.ok ? [] : [{ index, detail: o.detail }]));
  return {
    count,
    ok: count - failures.length,
    failures: failures.slice(0, 20),
    maxLagMs: round(lags.at(-1) ?? 0),
    p99LagMs: round(lags[Math.floor(lags.length * 0.99)] ?? 0),
    maxMs: round(times.at(-1) ?? 0),
    medianMs: round(times[Math.floor(times.length / 2)] ?? 0),
    elapsedMs: round(elapsedMs),
    peakInFlight,
    bytes: outcomes.reduce((sum, o) => sum + o.bytes, 0),
  };
}

const round = (ms: number) => Math.round(ms * 10) / 10;
const control = (o: Outcome): ControlResult => ({
  status: o.status,
  ending: o.ending,
  bytes: o.bytes,
  ms: round(o.ms),
  maxLagMs: round(o.maxLagMs),
});

/** `GET /` every `everyMs` until `done()`: the server's responsiveness under the load. */
async function probeServer(everyMs: number, done: () => boolean): Promise<LoadResult["serverProbe"]> {
  const latencies: number[] = [];
  let failed = 0;
  for (let k = 1; !done(); k++) {
    const sentAt = now();
    const ex =
      spec.protocol === "h2c"
        ? await h2Exchange(
            { ":method": "GET", ":path": "/" },
            { onBody: () => {}, drive: async (stream) => void stream.end() },
          )
        : await h1Exchange(requestHead("GET", "/", { Connection: "close" }), { onBody: () => {} });
    if (ex.status === 200 && ex.ending === "complete") latencies.push(now() - sentAt);
    else failed++;
    await sleepUntil(startedAt + k * everyMs);
  }
  latencies.sort((a, b) => a - b);
  const at = (q: number) => round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? 0);
  return {
    count: latencies.length + failed,
    failed,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: round(latencies.at(-1) ?? 0),
  };
}

const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
const cpuAtStart = process.cpuUsage();
const startedAt = now();
if (spec.protocol === "h2c") await openSessions(spec.h2Sessions ?? 4);
let loadDone = false;
const probe = probeServer(spec.probeEveryMs, () => loadDone);
const [uploads, downloads, controlUpload, controlDownload] = await Promise.all([
  pool(spec.uploads.count, spec.concurrency.uploads, (i) => pacedUpload(i, spec.uploads)),
  pool(spec.downloads.count, spec.concurrency.downloads, (i) => pacedDownload(i, spec.downloads)),
  pacedUpload(1_000_003, spec.controls.upload),
  pacedDownload(0, spec.controls.download),
]);
loadDone = true;
const serverProbe = await probe;
loop.disable();
const cpu = process.cpuUsage(cpuAtStart);
for (const session of sessions) session.close();
const result: LoadResult = {
  uploads,
  downloads,
  controls: { upload: control(controlUpload), download: control(controlDownload) },
  loopDelay: { p99Ms: round(loop.percentile(99) / 1e6), maxMs: round(loop.max / 1e6) },
  clientCpuMs: Math.round((cpu.user + cpu.system) / 1000),
  serverProbe,
  elapsedMs: round(now() - startedAt),
};
process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
process.exit(0);
