/**
 * A CPU profile of a bench server under `GET /small` load, over the Chrome DevTools Protocol (Deno's
 * `--inspect`, workerd's inspector): V8's sampling profiler runs only while a fixed number of
 * requests comes in from autocannon (a separate process), so start-up and warm-up are not in it.
 *
 *   npx tsx bench/profile/profile-cdp.ts --runtime deno|workers|node --variant guarded [--requests 50000]
 *        [--warmup 20000] [--path /small] [--interval-us 50] [--out .bench-out/profile-deno-guarded.cpuprofile] [--top 40]
 *
 * Prints self time by function (and by file), as a share of all samples; writes the .cpuprofile
 * (open it in Chrome DevTools, or summarise it again with bench/profile/summarize-cpuprofile.ts).
 * Bun speaks WebKit's inspector protocol, not CDP: profile it with `bun --cpu-prof` instead.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ROOT } from "../shared/paths.ts";
import { type CpuProfile, summarize } from "./summarize-cpuprofile.ts";

const run = promisify(execFile);
const require = createRequire(import.meta.url);
/** The parts of the `ws` package (untyped here) this file uses. */
interface WebSocketLike {
  on(event: "message", listener: (data: Buffer) => void): void;
  once(event: "open" | "error", listener: (arg?: unknown) => void): WebSocketLike;
  send(data: string): void;
  close(): void;
}
const WebSocket = require("ws") as new (url: string) => WebSocketLike;
const root = ROOT;

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

const runtime = option("runtime", "deno") as "deno" | "workers" | "node";
const variant = option("variant", "guarded");
const REQUESTS = Number(option("requests", "50000"));
const WARMUP = Number(option("warmup", "20000")); // fewer for big bodies: --path "/download?bytes=8388608" --warmup 20
const INTERVAL_US = Number(option("interval-us", "50"));
const PATH = option("path", "/small");
const out = option("out", join(root, `.bench-out/profile-${runtime}-${variant}.cpuprofile`));
const INSPECTOR_PORT = 9300 + Math.floor(Math.random() * 500);

function start(): Promise<{ url: string; child: ChildProcess }> {
  const [command, args]: [string, string[]] =
    runtime === "node"
      ? [
          process.execPath,
          // Built by tsc into .bench-out/ when this file runs from there (no tsx: see bench/README.md).
          basename(dirname(dirname(dirname(fileURLToPath(import.meta.url))))) === ".bench-out"
            ? [
                `--inspect=127.0.0.1:${INSPECTOR_PORT}`,
                join(root, ".bench-out/bench/servers/serve-bench-node.js"),
                "--variant",
                variant,
              ]
            : [
                `--inspect=127.0.0.1:${INSPECTOR_PORT}`,
                "--import",
                require.resolve("tsx"),
                join(root, "bench/servers/serve-bench-node.ts"),
                "--variant",
                variant,
              ],
        ]
      : runtime === "deno"
        ? [
            join(root, "node_modules/.bin/deno"),
            [
              "run",
              "-A",
              "--quiet",
              `--inspect=127.0.0.1:${INSPECTOR_PORT}`,
              join(root, "bench/servers/serve-bench-deno.ts"),
              "--variant",
              variant,
            ],
          ]
        : [
            process.execPath,
            [
              "--import",
              require.resolve("tsx"),
              join(root, "bench/servers/serve-bench-workers.ts"),
              "--variant",
              variant,
              "--inspector-port",
              String(INSPECTOR_PORT),
            ],
          ];
  const child = spawn(command, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  return new Promise((resolve, reject) => {
    const onData = (data: Buffer) => {
      log += data.toString();
      const match = /listening on (http:\/\/[^\s]+)/.exec(log);
      if (match) resolve({ url: match[1]!.replace(/\/$/, ""), child });
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", () => reject(new Error(`server exited\n${log}`)));
  });
}

async function load(url: string, requests: number): Promise<void> {
  await run(
    process.execPath,
    [require.resolve("autocannon/autocannon.js"), "-c", "32", "-a", String(requests), "-j", `${url}${PATH}`],
    { maxBuffer: 64 * 1024 * 1024 },
  );
}

/** The target's WebSocket URL (workerd lists one per worker: miniflare's own and the user's, `core:user:`). */
async function debuggerUrl(): Promise<string> {
  const list = (await (await fetch(`http://127.0.0.1:${INSPECTOR_PORT}/json/list`)).json()) as {
    webSocketDebuggerUrl: string;
    title?: string;
    url?: string;
  }[];
  const target = list.find((t) => (t as { id?: string }).id?.startsWith(option("target", "core:user:"))) ?? list[0];
  if (target === undefined) throw new Error("no inspector target");
  return target.webSocketDebuggerUrl;
}

class Cdp {
  private next = 1;
  private readonly waiting = new Map<number, (result: unknown) => void>();
  constructor(private readonly ws: WebSocketLike) {
    ws.on("message", (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: unknown };
      if (message.id !== undefined)
        this.waiting.get(message.id)?.(
          message.error ? Promise.reject(new Error(JSON.stringify(message.error))) : message.result,
        );
    });
  }
  static async open(url: string): Promise<Cdp> {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    return new Cdp(ws);
  }
  send<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.next++;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve) => this.waiting.set(id, resolve as (r: unknown) => void));
  }
  close(): void {
    this.ws.close();
  }
}

const { url, child } = await start();
try {
  await load(url, WARMUP); // warm up before profiling
  const cdp = await Cdp.open(await debuggerUrl());
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: INTERVAL_US });
  await cdp.send("Profiler.start");
  await load(url, REQUESTS);
  const { profile } = await cdp.send<{ profile: CpuProfile }>("Profiler.stop");
  cdp.close();
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(profile));
  console.log(
    `# ${runtime} ${variant}: ${REQUESTS} requests of ${PATH}, sampled every ${INTERVAL_US} us; profile in ${out}`,
  );
  console.log(summarize(profile, { top: Number(option("top", "40")), requests: REQUESTS }));
} finally {
  child.kill("SIGTERM");
}
