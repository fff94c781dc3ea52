/**
 * Background HTTP/1.1 load for bench/http/run-accuracy-http.ts, run as its own process so that the
 * load's CPU is not the measuring client's: C keep-alive connections over node:net, each sending one
 * GET at a time (no pipelining) and reading the whole response before sending the next.
 *
 *   node --import tsx bench/http/http-load-generator.ts --port N [--path /download?bytes=65536]
 *        [--connections 16] [--max-ms 60000]
 *
 * Control: one word a line on stdin. `mark` prints `@mark {json}` (the counters so far), `stop`
 * prints `@done {json}` and exits. Prints `@ready` once every connection has completed a response.
 * It never outlives its run: it also stops when stdin closes (the parent went away) and after
 * --max-ms, whatever happens.
 */
import net from "node:net";

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

const port = Number(option("port", "0"));
const host = option("host", "127.0.0.1");
const path = option("path", "/download?bytes=65536");
const connections = Number(option("connections", "16"));
const maxMs = Number(option("max-ms", "60000"));
if (!Number.isInteger(port) || port <= 0) throw new Error("--port N is required");

const REQUEST = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: keep-alive\r\n\r\n`, "latin1");

let completed = 0; // responses read in full
let ok = 0; // of which 2xx
let errors = 0; // resets, early closes, unparsable responses
let bodyBytes = 0;
let stopping = false;
const latencies: number[] = []; // ms from request write to last byte of the response
const startedAt = performance.now();
let firstAt = 0;
const ready = new Set<number>();

type State = "head" | "length" | "chunk-size" | "chunk-data" | "chunk-end" | "trailer";

/** One keep-alive connection, reconnecting after an error, until `stopping`. */
function runConnection(id: number): void {
  if (stopping) return;
  const socket = net.connect({ port, host, noDelay: true });
  let state: State = "head";
  let pending: Buffer = Buffer.alloc(0); // unparsed head / chunk-size / trailer bytes
  let remaining = 0; // body bytes (or chunk bytes, or CRLF bytes) still expected
  let status = 0;
  let closeAfter = false;
  let sentAt = 0;
  let broken = false;

  const send = () => {
    state = "head";
    pending = Buffer.alloc(0);
    sentAt = performance.now();
    socket.write(REQUEST);
  };
  const done = () => {
    completed++;
    if (status >= 200 && status < 300) ok++;
    const now = performance.now();
    if (firstAt === 0) firstAt = now;
    latencies.push(now - sentAt);
    if (!ready.has(id)) {
      ready.add(id);
      if (ready.size === connections) process.stdout.write("@ready\n");
    }
    if (stopping) return void socket.destroy();
    if (closeAfter) {
      broken = true; // this close is ours, not an error
      socket.destroy();
      return void setImmediate(() => runConnection(id));
    }
    send();
  };
  const fail = () => {
    if (broken) return;
    broken = true;
    socket.destroy();
    if (stopping) return;
    errors++;
    setTimeout(() => runConnection(id), 10);
  };

  socket.once("connect", send);
  socket.on("error", fail);
  socket.on("close", fail);
  socket.on("data", (data: Buffer) => {
    let buf = data;
    while (buf.length > 0) {
      if (state === "head" || state === "chunk-size" || state === "trailer") {
        pending = pending.length ? Buffer.concat([pending, buf]) : buf;
        buf = Buffer.alloc(0);
        if (state === "head") {
          const end = pending.indexOf("\r\n\r\n");
          if (end < 0) return;
          const lines = pending.subarray(0, end).toString("latin1").split("\r\n");
          status = Number(lines[0]!.split(" ")[1]);
          let length = -1;
          let chunked = false;
          closeAfter = false;
          for (const line of lines.slice(1)) {
            const colon = line.indexOf(":");
            const name = line.slice(0, colon).trim().toLowerCase();
            const value = line
              .slice(colon + 1)
              .trim()
              .toLowerCase();
            if (name === "content-length") length = Number(value);
            else if (name === "transfer-encoding") chunked = value.includes("chunked");
            else if (name === "connection") closeAfter = value.includes("close");
          }
          buf = pending.subarray(end + 4);
          pending = Buffer.alloc(0);
          if (chunked) state = "chunk-size";
          else if (length >= 0) {
            remaining = length;
            state = "length";
            if (remaining === 0) done();
          } else return fail(); // read-until-close bodies are not keep-alive: not a load we want
        } else if (state === "chunk-size") {
          const end = pending.indexOf("\r\n");
          if (end < 0) return;
          const size = parseInt(pending.subarray(0, end).toString("latin1"), 16);
          if (Number.isNaN(size)) return fail();
          buf = pending.subarray(end + 2);
          pending = Buffer.alloc(0);
          if (size === 0) state = "trailer";
          else {
            remaining = size;
            state = "chunk-data";
          }
        } else {
          // trailer: optional fields, then an empty line
          const end = pending.indexOf("\r\n");
          if (end < 0) return;
          const empty = end === 0;
          buf = pending.subarray(end + 2);
          pending = Buffer.alloc(0);
          if (empty) done();
        }
      } else {
        // "length", "chunk-data", "chunk-end": counted bytes
        const take = Math.min(remaining, buf.length);
        if (state !== "chunk-end") bodyBytes += take;
        remaining -= take;
        buf = buf.subarray(take);
        if (remaining > 0) return;
        if (state === "length") done();
        else if (state === "chunk-data") {
          state = "chunk-end";
          remaining = 2;
        } else state = "chunk-size";
      }
    }
  });
}

function counters() {
  const elapsedMs = performance.now() - (firstAt || startedAt);
  return { completed, ok, errors, bodyBytes, elapsedMs, now: performance.now() };
}

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

function finish(): void {
  if (stopping) return;
  stopping = true;
  const sorted = latencies.sort((a, b) => a - b);
  process.stdout.write(
    `@done ${JSON.stringify({ ...counters(), connections, path, latencyP50: pct(sorted, 50), latencyP99: pct(sorted, 99), latencyMax: sorted.at(-1) ?? NaN })}\n`,
  );
  // Exit once stdout has flushed; the open sockets are simply dropped with the process.
  process.stdout.write("", () => process.exit(0));
}

setTimeout(finish, maxMs).unref();
setTimeout(() => process.exit(0), maxMs + 2000).unref();
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (data: string) => {
  input += data;
  let newline: number;
  while ((newline = input.indexOf("\n")) >= 0) {
    const word = input.slice(0, newline).trim();
    input = input.slice(newline + 1);
    if (word === "mark") process.stdout.write(`@mark ${JSON.stringify(counters())}\n`);
    else if (word === "stop") finish();
  }
});
process.stdin.on("end", finish);
process.stdin.on("close", finish);

for (let i = 0; i < connections; i++) runConnection(i);
