/**
 * `npm run bench:http`: what the deadlines cost over real sockets, side by side with the bare
 * runtime in one run. For each runtime, a bare and a guarded server (the same handler,
 * bench/shared/http-bench-app.ts, with and without stream-deadlines at default limits) run at the same
 * time; load comes from separate processes (autocannon for small requests, a transfer client for
 * 1 GiB bodies), alternating bare and guarded (A B, then B A, ...), median of the rounds.
 *
 * Prints `ratio http.<runtime>.small|download|upload <guarded/bare>` (higher is better, 1.0 = free),
 * `ratio http.node.h2.download`, and `figure` lines; writes .bench-out/http-results.json, from which
 * bench/http/render-performance.ts draws docs/performance.svg.
 *
 * Beside bare and guarded, a third server runs the floor of each measure (see FLOOR_VARIANT):
 * `ratio http.<runtime>.<measure>.floor` is floor over bare.
 *
 * `--subscribed`: a fourth server, guarded with a no-op subscriber on each of the library's diagnostics
 * channels (bench/shared/subscribe.ts), in the same rotation: `ratio http.<runtime>.<measure>.subscribed`
 * is that server over bare, `…subscribed.vs-guarded` over the guarded server without a subscriber.
 *
 *   node .bench-out/bench/http/run-http.js [--quick] [--subscribed] [--small-only [--rounds N]] [node node-h2 deno bun workers]
 *
 * `--small-only`: the small-request measure alone (no transfers, nothing written to .bench-out), in
 * --rounds interleaved rounds (default 5): `ratio http.<runtime>.small` with less noise, for a
 * change to the per-request path.
 */
import { type ChildProcess, execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { startListeningServer } from "../servers/bench-server-process.ts";
import { ROOT } from "../shared/paths.ts";
import { FIRST_MESSAGE_LINE, serverVariantArgs } from "../shared/subscribe.ts";

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const root = ROOT;
const here = dirname(fileURLToPath(import.meta.url)); // .bench-out/bench/http
const servers = join(here, "../servers");
const quick = process.argv.includes("--quick");
const smallOnly = process.argv.includes("--small-only");
const roundsAt = process.argv.indexOf("--rounds");
const ROUNDS = roundsAt > 0 ? Number(process.argv[roundsAt + 1]) : smallOnly ? 5 : quick ? 1 : 3;
const SMALL_SECONDS = quick ? 1 : 3;
const TRANSFER_BYTES = quick ? 64 * 1024 * 1024 : 1024 * 1024 * 1024;
const CONNECTIONS = 32;
const SUBSCRIBED = process.argv.includes("--subscribed");

type Runtime = "node" | "deno" | "bun" | "workers" | "node-h2";
const ALL: Runtime[] = ["node", "node-h2", "deno", "bun", "workers"];
const named = process.argv.slice(2).filter((a, i, all) => !a.startsWith("-") && all[i - 1] !== "--rounds") as Runtime[];
// node-h2 measures a download alone: --small-only leaves it out (it has no small measure).
const runtimes = named.length ? named : smallOnly ? ALL.filter((r) => r !== "node-h2") : ALL;
if (smallOnly && runtimes.includes("node-h2")) throw new Error("run-http: node-h2 has no small measure (--small-only)");

/**
 * Besides bare and guarded, a third server runs the floors (bench/shared/http-bench-variants.ts "floor"), the
 * least any wrapper on WHATWG streams pays, measured in the same rounds:
 * - small: the handler's Response with its body read through a reader and handed on in a new
 *   Response, which a wrapper must do to find out whether a body it cannot see into is small and in
 *   memory;
 * - download: the response body through one more pull-based stream;
 * - upload: the request body through one more pull-based stream.
 * Printed as `ratio http.<runtime>.<measure>.floor` (floor over bare).
 */
const FLOOR_VARIANT = "floor";

function serverCommand(runtime: Runtime, variant: string): [string, string[]] {
  const variantArgs = serverVariantArgs(variant); // "subscribed": guarded with --subscribed
  switch (runtime) {
    case "node":
      return [process.execPath, [join(servers, "serve-bench-node.js"), ...variantArgs]];
    case "node-h2":
      return [process.execPath, [join(servers, "serve-bench-node.js"), ...variantArgs, "--h2c"]];
    case "deno":
      return [
        join(root, "node_modules/.bin/deno"),
        ["run", "-A", "--quiet", join(root, "bench/servers/serve-bench-deno.ts"), ...variantArgs],
      ];
    case "bun":
      return [join(root, "node_modules/.bin/bun"), [join(root, "bench/servers/serve-bench-bun.ts"), ...variantArgs]];
    case "workers":
      return [
        process.execPath,
        ["--import", require.resolve("tsx"), join(root, "bench/servers/serve-bench-workers.ts"), ...variantArgs],
      ];
  }
}

interface Server {
  url: string;
  child: ChildProcess;
}

function start(runtime: Runtime, variant: string): Promise<Server> {
  const [command, args] = serverCommand(runtime, variant);
  return startListeningServer(command, args, root, `${runtime} ${variant}`);
}

async function stop(server: Server): Promise<void> {
  if (server.child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => server.child.once("exit", () => resolve()));
  server.child.kill("SIGTERM");
  const killer = setTimeout(() => server.child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(killer);
}

/** Requests per second for /small, from autocannon in its own process. */
async function smallRps(url: string, seconds = SMALL_SECONDS): Promise<number> {
  const { stdout } = await run(
    process.execPath,
    [
      require.resolve("autocannon/autocannon.js"),
      "-c",
      String(CONNECTIONS),
      "-d",
      String(seconds),
      "-j",
      `${url}/small`,
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  const result = JSON.parse(stdout) as { requests: { average: number }; non2xx: number; errors: number };
  if (result.non2xx || result.errors)
    throw new Error(`autocannon: ${result.non2xx} non-2xx, ${result.errors} errors against ${url}`);
  return result.requests.average;
}

/** Bytes per second of one transfer, from the transfer client in its own process. */
async function transfer(
  mode: "download" | "upload" | "h2download",
  url: string,
  bytes = TRANSFER_BYTES,
): Promise<number> {
  const target = mode === "upload" ? `${url}/upload` : `${url}/download?bytes=${bytes}`;
  const { stdout } = await run(process.execPath, [join(here, "http-transfer-client.js"), mode, target, String(bytes)], {
    maxBuffer: 1024 * 1024,
  });
  const result = JSON.parse(stdout) as { bytes: number; ms: number };
  if (result.bytes !== bytes) throw new Error(`${mode} ${url}: moved ${result.bytes} of ${bytes} bytes`);
  return (result.bytes * 1000) / result.ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const MiB = 1024 * 1024;

interface Measures {
  small?: number;
  download?: number;
  upload?: number;
}

async function measure(runtime: Runtime, url: string): Promise<Measures> {
  if (runtime === "node-h2") return { download: await transfer("h2download", url) };
  if (smallOnly) return { small: await smallRps(url) };
  return {
    small: await smallRps(url),
    download: await transfer("download", url),
    upload: await transfer("upload", url),
  };
}

const results: Record<
  string,
  {
    bare: Measures;
    guarded: Measures;
    floor: Measures;
    ratio: Measures;
    floorRatio: Measures;
    subscribed?: Measures;
    subscribedRatio?: Measures;
  }
> = {};
console.log(
  `# http bench: node ${process.version}; per runtime ${ROUNDS} interleaved rounds; small: autocannon -c ${CONNECTIONS} -d ${SMALL_SECONDS}; transfers of ${TRANSFER_BYTES / MiB} MiB; ratio = guarded / bare (higher is better)`,
);
for (const runtime of runtimes) {
  try {
    await benchRuntime(runtime);
  } catch (error) {
    // One runtime failing must not hide the others' figures: say so, and go on.
    console.log(
      `figure http.${runtime}.error "${String(error instanceof Error ? error.message : error).split("\n")[0]}"`,
    );
    process.exitCode = 1;
  }
}

async function benchRuntime(runtime: Runtime): Promise<void> {
  const bare = await start(runtime, "bare");
  const guarded = await start(runtime, "guarded");
  const floor = await start(runtime, FLOOR_VARIANT);
  const subscribed = SUBSCRIBED ? await start(runtime, "subscribed") : undefined;
  let messagesArrive = false;
  const onOutput = (data: Buffer) => {
    if (data.toString().includes(FIRST_MESSAGE_LINE)) messagesArrive = true;
  };
  subscribed?.child.stdout?.on("data", onOutput);
  subscribed?.child.stderr?.on("data", onOutput);
  try {
    type Name = "bare" | "guarded" | "floor" | "subscribed";
    const servers: [Name, Server][] = [
      ["bare", bare],
      ["guarded", guarded],
      ["floor", floor],
    ];
    if (subscribed) servers.push(["subscribed", subscribed]);
    // Warm them all (JIT, connection pools), then rotate: bare, guarded, floor; guarded, floor, bare; …
    for (const [, server] of servers) {
      if (runtime === "node-h2") await transfer("h2download", server.url, 64 * MiB);
      else if (smallOnly) await smallRps(server.url, 1);
      else {
        await smallRps(server.url, 1);
        await transfer("download", server.url, 64 * MiB);
        await transfer("upload", server.url, 64 * MiB);
      }
    }
    // The subscribed server must have published to its subscriber during the warm-up, or it measures nothing.
    if (subscribed && !messagesArrive)
      throw new Error(`${runtime} subscribed: no diagnostics message reached the subscriber`);
    const samples: Record<Name, Measures[]> = { bare: [], guarded: [], floor: [], subscribed: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < servers.length; i++) {
        const [name, server] = servers[(i + round) % servers.length]!;
        samples[name].push(await measure(runtime, server.url));
      }
    }
    const pick = (list: Measures[], key: keyof Measures) =>
      list[0]![key] === undefined ? undefined : median(list.map((m) => m[key]!));
    const summary = {
      bare: {} as Measures,
      guarded: {} as Measures,
      floor: {} as Measures,
      ratio: {} as Measures,
      floorRatio: {} as Measures,
      ...(subscribed ? { subscribed: {} as Measures, subscribedRatio: {} as Measures } : {}),
    };
    for (const key of ["small", "download", "upload"] as const) {
      const b = pick(samples.bare, key);
      const g = pick(samples.guarded, key);
      if (b === undefined || g === undefined) continue;
      summary.bare[key] = b;
      summary.guarded[key] = g;
      summary.ratio[key] = g / b;
      const name = runtime === "node-h2" ? `http.node.h2.${key}` : `http.${runtime}.${key}`;
      const unit = key === "small" ? "req/s" : "MiB/s";
      const show = (x: number) => (key === "small" ? x.toFixed(0) : (x / MiB).toFixed(1));
      const f = pick(samples.floor, key)!;
      summary.floor[key] = f;
      summary.floorRatio[key] = f / b;
      console.log(`figure ${name}.bare ${show(b)} ${unit}`);
      console.log(`figure ${name}.guarded ${show(g)} ${unit}`);
      console.log(`figure ${name}.floor ${show(f)} ${unit}`);
      console.log(`ratio ${name} ${(g / b).toFixed(3)}`);
      console.log(`ratio ${name}.floor ${(f / b).toFixed(3)}`);
      if (summary.subscribed && summary.subscribedRatio) {
        const s = pick(samples.subscribed, key)!;
        summary.subscribed[key] = s;
        summary.subscribedRatio[key] = s / b;
        console.log(`figure ${name}.subscribed ${show(s)} ${unit}`);
        console.log(`ratio ${name}.subscribed ${(s / b).toFixed(3)}`);
        console.log(`ratio ${name}.subscribed.vs-guarded ${(s / g).toFixed(3)}`);
      }
    }
    results[runtime] = summary;
  } finally {
    await stop(bare);
    await stop(guarded);
    await stop(floor);
    if (subscribed) await stop(subscribed);
  }
}

if (!smallOnly) {
  mkdirSync(join(root, ".bench-out"), { recursive: true });
  writeFileSync(
    join(root, ".bench-out/http-results.json"),
    JSON.stringify({ date: new Date().toISOString(), node: process.version, quick, results }, null, 2),
  );
}
