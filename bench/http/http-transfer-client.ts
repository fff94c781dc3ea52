/**
 * A load process for the HTTP bench (run apart from the servers): one big transfer, timed.
 *   node .bench-out/bench/http/http-transfer-client.js download|upload|h2download <url> <bytes>
 * Prints one JSON line: {"bytes":N,"ms":T}, and for uploads "chunks" (the reads the server's handler took).
 */
import http from "node:http";
import http2 from "node:http2";

const [mode, url, bytesArg] = process.argv.slice(2);
const total = Number(bytesArg);
const CHUNK = Buffer.alloc(64 * 1024, 0x62);

function download(): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    http
      .get(url!, { agent: false }, (res) => {
        res.on("data", (chunk: Buffer) => (bytes += chunk.length));
        res.on("end", () => resolve(bytes));
        res.on("error", reject);
      })
      .on("error", reject);
  });
}

let chunks: number | undefined; // upload: how many reads the server's handler took

function upload(): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url!, { method: "POST", agent: false, headers: { "content-length": total } }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d));
      res.on("end", () => {
        const answer = JSON.parse(body) as { bytes: number; chunks?: number };
        chunks = answer.chunks;
        resolve(answer.bytes);
      });
    });
    req.on("error", reject);
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const size = Math.min(CHUNK.length, total - sent);
        sent += size;
        if (!req.write(size === CHUNK.length ? CHUNK : CHUNK.subarray(0, size))) return void req.once("drain", pump);
      }
      req.end();
    };
    pump();
  });
}

function h2download(): Promise<number> {
  return new Promise((resolve, reject) => {
    const target = new URL(url!);
    const session = http2.connect(target.origin);
    session.on("error", reject);
    session.once("connect", () => session.setLocalWindowSize(16 * 1024 * 1024));
    const stream = session.request({ ":path": target.pathname + target.search });
    let bytes = 0;
    stream.on("data", (chunk: Buffer) => (bytes += chunk.length));
    stream.on("end", () => {
      session.close();
      resolve(bytes);
    });
    stream.on("error", reject);
  });
}

const started = performance.now();
const bytes = await (mode === "download" ? download() : mode === "upload" ? upload() : h2download());
console.log(JSON.stringify({ bytes, ms: performance.now() - started, ...(chunks === undefined ? {} : { chunks }) }));
