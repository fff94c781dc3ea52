/**
 * The links harness's client (Node), started by test/links/run.ts inside a client network namespace:
 *
 *   node --import tsx test/links/client.ts '<jobs JSON>'
 *
 * It runs every job at once and prints one JSON line per finished job. A line `resume <id>` on stdin lets a
 * stalled download go on reading (the harness sends it once the server has reported its deadline). Times are
 * wall-clock ms, comparable with the server's.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import { createInterface } from "node:readline";
import { patternChunks } from "./pattern.ts";

export type Job =
  | { kind: "download"; id: string; url: string; bytes: number; timeoutMs: number }
  | { kind: "upload"; id: string; url: string; bytes: number; timeoutMs: number }
  | { kind: "stalled-download"; id: string; url: string; bytes: number; timeoutMs: number }
  | { kind: "stalled-upload"; id: string; url: string; bytes: number; sendBytes: number; timeoutMs: number }
  | { kind: "events"; id: string; url: string; count: number; timeoutMs: number }
  | { kind: "slow-read"; id: string; url: string; bytes: number; rate: number; timeoutMs: number };

export interface JobResult {
  id: string;
  kind: Job["kind"];
  status: number | null;
  /** Body bytes received (downloads, events) or sent (uploads). */
  bytes: number;
  /** Whether the response body ended cleanly at its full length. */
  complete: boolean;
  sha256Match?: boolean;
  /** What the server answered to an upload. */
  answer?: unknown;
  error?: string;
  startAt: number;
  endAt: number;
  /** Stalled download: when it was told to read again. */
  resumedAt?: number;
  /** Stalled upload: when its last byte was handed to the socket. */
  lastSentAt?: number;
  /** Events: arrival time of each. */
  eventTimes?: number[];
  /** The job did not end by its timeout: the client gave up. */
  timedOut?: boolean;
}

function expectedSha256(bytes: number): string {
  const hash = createHash("sha256");
  for (const chunk of patternChunks(bytes)) hash.update(chunk);
  return hash.digest("hex");
}

const resumers = new Map<string, () => void>();

function run(job: Job): Promise<JobResult> {
  return new Promise((resolve) => {
    const startAt = Date.now();
    const result: JobResult = {
      id: job.id,
      kind: job.kind,
      status: null,
      bytes: 0,
      complete: false,
      startAt,
      endAt: 0,
    };
    let settled = false;
    const finish = (error?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      result.endAt = Date.now();
      if (error !== undefined)
        result.error = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      resolve(result);
    };
    const timer = setTimeout(() => {
      result.timedOut = true;
      request.destroy();
      finish(new Error(`gave up after ${job.timeoutMs} ms`));
    }, job.timeoutMs);
    const upload = job.kind === "upload" || job.kind === "stalled-upload";
    const request = http.request(job.url, {
      method: upload ? "POST" : "GET",
      agent: false,
      headers: upload ? { "content-length": String(job.bytes), "content-type": "application/octet-stream" } : {},
    });
    request.on("error", (error) => finish(error));
    request.on("response", (response) => {
      result.status = response.statusCode ?? null;
      const hash = createHash("sha256");
      const text: Buffer[] = [];
      const times: number[] = [];
      const reading = job.kind === "slow-read" ? job : undefined;
      response.on("data", (chunk: Buffer) => {
        result.bytes = upload ? result.bytes : result.bytes + chunk.byteLength;
        if (job.kind === "download" || job.kind === "stalled-download" || job.kind === "slow-read") hash.update(chunk);
        else text.push(chunk);
        if (job.kind === "events") times.push(Date.now());
        if (reading) {
          // Read at `rate` bytes/s: stop taking data while ahead of the schedule.
          const due = (reading.rate * (Date.now() - startAt)) / 1000;
          if (result.bytes > due) {
            response.pause();
            setTimeout(() => response.resume(), ((result.bytes - due) / reading.rate) * 1000);
          }
        }
      });
      if (job.kind === "stalled-download") {
        response.pause();
        resumers.set(job.id, () => {
          result.resumedAt = Date.now();
          response.resume();
        });
      }
      response.on("error", () => {}); // an aborted body: judged by `complete` below
      response.on("close", () => {
        result.complete = response.complete;
        if (job.kind === "download" || job.kind === "stalled-download" || job.kind === "slow-read")
          result.sha256Match = response.complete && hash.digest("hex") === expectedSha256(job.bytes);
        if (job.kind === "events") {
          result.eventTimes = times;
          result.answer = Buffer.concat(text).toString("utf8").split("\n\n").filter(Boolean).length;
        }
        if (upload) {
          const body = Buffer.concat(text).toString("utf8");
          try {
            result.answer = JSON.parse(body);
          } catch {
            result.answer = body;
          }
          if (job.kind === "upload" && typeof result.answer === "object" && result.answer !== null)
            result.sha256Match = (result.answer as { sha256?: string }).sha256 === expectedSha256(job.bytes);
        }
        finish();
      });
    });

    if (job.kind === "upload" || job.kind === "stalled-upload") {
      const limit = job.kind === "stalled-upload" ? job.sendBytes : job.bytes;
      const chunks = patternChunks(limit);
      const write = () => {
        for (;;) {
          const next = chunks.next();
          if (next.done) {
            result.lastSentAt = Date.now();
            if (job.kind === "upload") request.end();
            return; // a stalled upload sends no more and keeps its connection open
          }
          result.bytes += next.value.byteLength;
          if (!request.write(next.value)) {
            request.once("drain", write);
            return;
          }
        }
      };
      write();
    } else request.end();
  });
}

const jobs = JSON.parse(process.argv[2] ?? "[]") as Job[];
createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, id] = line.trim().split(" ");
  if (command === "resume" && id !== undefined) resumers.get(id)?.();
});
await Promise.all(jobs.map((job) => run(job).then((result) => console.log(JSON.stringify(result)))));
process.exit(0);
