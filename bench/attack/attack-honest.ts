/**
 * The honest client of the attack bench: small uploads and downloads in a loop, each on a new
 * connection (so a server that stops accepting is seen), from its own loopback address (127.0.0.2,
 * so the connection tracker tells it from the attack), each bounded by a timeout: a request that is
 * stuck, refused, reset, answered with anything but 200 or the wrong body counts as a failure.
 */
import http from "node:http";

export interface HonestResult {
  attempts: number;
  ok: number;
  /** Latency of every attempt, ms (a failed attempt counts with the time it took to fail). */
  latencies: number[];
  /** When each attempt started (performance.now(), ms), in the order of `latencies`. */
  startedAt: number[];
  /** What went wrong, by kind, e.g. { "upload timeout": 3, "download status 503": 1 }. */
  failures: Record<string, number>;
  /** When each failed attempt started (performance.now(), ms). */
  failedAt: number[];
  /** Each failed attempt: what went wrong, when it started (performance.now(), ms) and how long it took (ms). */
  failed: { kind: string; start: number; ms: number }[];
}

export interface HonestOptions {
  url: string;
  /** Concurrent loops. */
  loops: number;
  timeoutMs: number;
  uploadBytes: number;
  downloadBytes: number;
  /** Pause between two requests of a loop (the client is honest, not a load generator). */
  pauseMs: number;
  localAddress: string;
}

function once(options: HonestOptions, kind: "upload" | "download"): Promise<string | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (failure: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      resolve(failure);
    };
    const target =
      kind === "upload" ? `${options.url}/upload` : `${options.url}/download?bytes=${options.downloadBytes}`;
    const request = http.request(
      target,
      {
        method: kind === "upload" ? "POST" : "GET",
        agent: false,
        localAddress: options.localAddress,
        headers:
          kind === "upload" ? { "content-length": options.uploadBytes, connection: "close" } : { connection: "close" },
      },
      (response) => {
        let bytes = 0;
        let text = "";
        response.on("data", (chunk: Buffer) => {
          bytes += chunk.length;
          if (kind === "upload") text += chunk.toString("utf8");
        });
        response.on("end", () => {
          if (response.statusCode !== 200) return done(`status ${response.statusCode}`);
          if (kind === "download") return done(bytes === options.downloadBytes ? undefined : "short body");
          try {
            done(
              (JSON.parse(text) as { bytes: number }).bytes === options.uploadBytes ? undefined : "wrong upload count",
            );
          } catch {
            done("bad upload answer");
          }
        });
        response.on("error", () => done("response error"));
        response.on("aborted", () => done("response aborted"));
      },
    );
    // Where a timeout caught the request: before the connection, before the response's head, or in its body.
    let phase = "connecting";
    let received = 0;
    request.on("socket", (socket) => socket.once("connect", () => (phase = "waiting for the head")));
    request.on("response", (response) => {
      phase = "in the body";
      response.on("data", (chunk: Buffer) => (received += chunk.length));
    });
    const timer = setTimeout(
      () =>
        done(phase === "in the body" ? `timeout in the body (${Math.round(received / 1024)} KiB)` : `timeout ${phase}`),
      options.timeoutMs,
    );
    request.on("error", (error: NodeJS.ErrnoException) => done(error.code ?? "request error"));
    if (kind === "upload") request.end(Buffer.alloc(options.uploadBytes, 0x61));
    else request.end();
  });
}

/** Runs until `stop()`; resolves with the tally once every request in flight has ended. */
export function runHonestClient(options: HonestOptions): { stop(): Promise<HonestResult> } {
  const result: HonestResult = {
    attempts: 0,
    ok: 0,
    latencies: [],
    startedAt: [],
    failures: {},
    failedAt: [],
    failed: [],
  };
  let running = true;
  const loop = async (index: number) => {
    let n = index;
    while (running) {
      const kind = n++ % 2 === 0 ? "upload" : "download";
      const started = performance.now();
      const failure = await once(options, kind);
      const ms = performance.now() - started;
      result.attempts++;
      result.latencies.push(ms);
      result.startedAt.push(started);
      if (failure === undefined) result.ok++;
      else {
        const coarse = `${kind} ${failure.replace(/ \(.*\)$/, "")}`;
        result.failures[coarse] = (result.failures[coarse] ?? 0) + 1;
        result.failedAt.push(started);
        result.failed.push({ kind: `${kind} ${failure}`, start: started, ms });
      }
      if (running) await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
    }
  };
  const loops = Array.from({ length: options.loops }, (_, i) => loop(i));
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return result;
    },
  };
}

/**
 * The same client in a process of its own, so that its latencies are not those of the bench's own loop (the
 * connection tracker parses `/proc/net/tcp` every 100 ms in the bench's process, thousands of lines at the
 * manual's scale). Resolves once the child has started its loops; `stop()` ends them and reads the tally,
 * with the child's times moved onto this process's `performance.now()`.
 */
export async function spawnHonestClient(options: HonestOptions): Promise<{ stop(): Promise<HonestResult> }> {
  const { spawn } = await import("node:child_process");
  const { createRequire } = await import("node:module");
  const { fileURLToPath } = await import("node:url");
  const tsx = createRequire(import.meta.url).resolve("tsx");
  const child = spawn(process.execPath, ["--import", tsx, fileURLToPath(import.meta.url), JSON.stringify(options)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const check = () => (out.includes("ready\n") ? resolve() : undefined);
    child.stdout!.on("data", check);
    exited.then((code) => reject(new Error(`the honest client's process exited (${code}) before it was ready`)));
  });
  return {
    async stop() {
      child.stdin!.end("stop\n");
      const code = await exited;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (code !== 0 || !line) throw new Error(`the honest client's process ended with ${code}: ${out.slice(-500)}`);
      const { result, timeOrigin } = JSON.parse(line) as { result: HonestResult; timeOrigin: number };
      const shift = timeOrigin - performance.timeOrigin;
      result.failedAt = result.failedAt.map((t) => t + shift);
      result.startedAt = result.startedAt.map((t) => t + shift);
      for (const f of result.failed) f.start += shift;
      return result;
    },
  };
}

// Run as a process of its own (spawnHonestClient): options as JSON in argv[2]; "stop" on stdin ends it.
if (process.argv[1] && import.meta.url === (await import("node:url")).pathToFileURL(process.argv[1]).href) {
  const client = runHonestClient(JSON.parse(process.argv[2]!) as HonestOptions);
  process.stdout.write("ready\n");
  process.stdin.resume();
  process.stdin.once("end", async () => {
    const result = await client.stop();
    process.stdout.write(`${JSON.stringify({ result, timeOrigin: performance.timeOrigin })}\n`);
    process.exit(0);
  });
}
