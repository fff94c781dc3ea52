/**
 * The load generator of the Node scale bench (bench/scale/run-scale.ts starts it in its own process).
 *
 *   node .bench-out/bench/scale/scale-client.js --port P --n N --idle MS --wait-ms MS
 *
 * 1. Opens N TCP connections to 127.0.0.1:P (at most CONNECT_BATCH connecting at once).
 * 2. Then, as fast as it can, sends on each one a POST /upload with `Content-Length: 1000000`, the
 *    headers and 4 body bytes in one write, and then nothing: a stalled upload. It records, per
 *    connection, when that write returned (the last byte it ever sends).
 * 3. Records when each connection got its first response byte (the 408) or was closed by the
 *    server, whichever comes first. Due = last byte sent + idle; late = got − due; got < due is
 *    "early" (the server's idle clock cannot start before those bytes reached it, so a cut before
 *    due is a deadline that fired early).
 * 4. Stops when every connection was cut, or `--wait-ms` after the last send (the bare server
 *    never cuts), resets whatever is still open, and prints one JSON line with the results.
 */
import net from "node:net";

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1] !== undefined) return process.argv[i + 1]!;
  if (fallback === undefined) throw new Error(`scale-client: --${name} is required`);
  return fallback;
}

const PORT = Number(arg("port"));
const N = Number(arg("n"));
const IDLE = Number(arg("idle"));
const WAIT_MS = Number(arg("wait-ms"));
const CONNECT_BATCH = 500;
const HOST = "127.0.0.1";

const REQUEST = Buffer.from(
  `POST /upload HTTP/1.1\r\nHost: ${HOST}:${PORT}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\nabcd`,
);

const sockets: net.Socket[] = new Array(N);
const sentAt = new Float64Array(N).fill(NaN);
const cutAt = new Float64Array(N).fill(NaN);
/** 1: the cut was a response starting with `HTTP/1.1 408`; 2: another response; 3: a close without a response. */
const cutKind = new Uint8Array(N);
let cuts = 0;
let connectErrors = 0;
let onAllCut: (() => void) | undefined;

function cut(i: number, kind: number): void {
  if (cutKind[i] !== 0) return;
  cutAt[i] = performance.now();
  cutKind[i] = kind;
  cuts++;
  if (cuts === N) onAllCut?.();
}

function connectOne(i: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ port: PORT, host: HOST, noDelay: true });
    sockets[i] = socket;
    let connected = false;
    socket.once("connect", () => {
      connected = true;
      resolve();
    });
    socket.on("data", (data: Buffer) => cut(i, data.toString("latin1", 0, 12) === "HTTP/1.1 408" ? 1 : 2));
    socket.on("error", () => {
      if (!connected) {
        connectErrors++;
        resolve();
      }
    });
    socket.on("close", () => {
      if (connected && !Number.isNaN(sentAt[i]!)) cut(i, 3);
    });
  });
}

async function main(): Promise<void> {
  const connectStart = performance.now();
  let next = 0;
  const workers = Array.from({ length: CONNECT_BATCH }, async () => {
    while (next < N) await connectOne(next++);
  });
  await Promise.all(workers);
  const connectMs = performance.now() - connectStart;
  process.stderr.write(`scale-client: ${N - connectErrors}/${N} connected in ${connectMs.toFixed(0)} ms\n`);
  // Let the server's accept loop settle before the burst.
  await new Promise((resolve) => setTimeout(resolve, 300));

  const sendStart = performance.now();
  for (let i = 0; i < N; i++) {
    const socket = sockets[i]!;
    if (socket.destroyed || socket.connecting) continue;
    socket.write(REQUEST);
    sentAt[i] = performance.now();
  }
  const sendEnd = performance.now();

  await new Promise<void>((resolve) => {
    onAllCut = resolve;
    if (cuts === N) resolve();
    setTimeout(resolve, sendEnd - performance.now() + IDLE + WAIT_MS);
  });
  const doneAt = performance.now();

  const late: number[] = [];
  let early = 0;
  let earliest = Infinity;
  const kinds = [0, 0, 0, 0];
  for (let i = 0; i < N; i++) {
    if (cutKind[i] === 0) continue;
    kinds[cutKind[i]!]!++;
    const l = cutAt[i]! - (sentAt[i]! + IDLE);
    if (l < 0) early++;
    earliest = Math.min(earliest, l);
    late.push(l);
  }
  late.sort((a, b) => a - b);
  const pct = (p: number) =>
    late.length === 0 ? null : late[Math.min(late.length - 1, Math.ceil((p / 100) * late.length) - 1)]!;
  let open = 0;
  for (const socket of sockets) {
    if (socket !== undefined && !socket.destroyed) {
      open++;
      socket.resetAndDestroy(); // RST: no TIME_WAIT left behind on the client's ports
    }
  }
  process.stdout.write(
    `${JSON.stringify({
      n: N,
      connected: N - connectErrors,
      connectMs,
      sendMs: sendEnd - sendStart,
      reaped: cuts,
      got408: kinds[1],
      gotOther: kinds[2],
      closedOnly: kinds[3],
      early,
      earliestMs: earliest === Infinity ? null : earliest,
      lateP50: pct(50),
      lateP99: pct(99),
      lateMax: late.length === 0 ? null : late[late.length - 1],
      openAtEnd: open,
      waitedMs: doneAt - sendEnd,
    })}\n`,
  );
  setTimeout(() => process.exit(0), 100).unref();
}

main().catch((error) => {
  process.stderr.write(`scale-client: ${error?.stack ?? error}\n`);
  process.exit(1);
});
