/**
 * Runs an app (the demo, or the fixture server) on the runtime `--runtime` names. Node serves it in
 * this process (through stream-deadlines/node; with `--hono` as a Hono app under @hono/node-server,
 * ./hono-node.ts; with `--bare` through srvx on Node's own server and defaults); the other
 * runtimes are started from their npm packages' binaries with the app's entry
 * file for that runtime, and this process forwards SIGINT/SIGTERM to them and exits with them.
 * Entries: demo/run.ts, harness/fixture/run.ts.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type AppKind, demoConfigFrom } from "../demo-app.ts";
import { type DemoArgs, parseDemoArgs, TRY_THESE } from "../demo-cli.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(import.meta.url);

/** The app's entry file on each runtime other than Node (absolute paths). */
export interface RuntimeEntries {
  deno: string;
  bun: string;
  workers: string;
}

export async function runOnRuntime(kind: AppKind, entries: RuntimeEntries): Promise<void> {
  const argv = process.argv.slice(2);
  const args = parseDemoArgs(argv, process.env.PORT ? Number(process.env.PORT) : 8787);
  if (args.runtime === "node") return serveOnNode(kind, args);
  const [command, commandArgs] = commandFor(args, argv, entries);
  const child = spawn(command, commandArgs, { stdio: "inherit" });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.once("SIGINT", forward);
  process.once("SIGTERM", forward);
  child.once("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

/** How each non-Node runtime is started: its binary from node_modules, and the app's entry file. */
function commandFor(args: DemoArgs, argv: string[], entries: RuntimeEntries): [string, string[]] {
  const forwarded = argv.filter((_, i) => argv[i] !== "--runtime" && argv[i - 1] !== "--runtime");
  if (!forwarded.includes("--port")) forwarded.push("--port", String(args.port));
  switch (args.runtime) {
    case "deno":
      return [
        join(root, "node_modules/.bin/deno"),
        ["run", "--allow-net", "--allow-read", "--allow-env", "--quiet", entries.deno, ...forwarded],
      ];
    case "bun":
      return [join(root, "node_modules/.bin/bun"), [entries.bun, ...forwarded]];
    default:
      return [process.execPath, ["--import", require.resolve("tsx"), entries.workers, ...forwarded]];
  }
}

async function serveOnNode(kind: AppKind, args: DemoArgs): Promise<void> {
  const config = demoConfigFrom(args.configFile ? JSON.parse(readFileSync(args.configFile, "utf8")) : undefined);
  const app = kind.create(config);
  let server: { url: string; close(): Promise<void> };
  if (args.bare) {
    // Bare: the same handler through srvx on Node's own server with Node's defaults, no stream-deadlines.
    const http = await import("node:http");
    const { toNodeHandler } = await import("srvx/node");
    // As a sane bare app does (srvx's and Hono's default error handlers do the same): a handler that throws, such as
    // an upload whose client left (`Error: aborted`, ECONNRESET), answers 500 instead of an unhandled rejection that
    // ends the process. No deadline is added.
    const handler = (request: Request) =>
      app.handler(request).catch(() => new Response("internal server error\n", { status: 500 }));
    const bare = http.createServer(toNodeHandler(handler) as never);
    await new Promise<void>((resolve) => bare.listen(args.port, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(bare.address() as import("node:net").AddressInfo).port}`;
    server = {
      url,
      close: () =>
        new Promise<void>((resolve) => {
          bare.closeAllConnections();
          bare.close(() => resolve());
        }),
    };
  } else if (args.hono) {
    const { serveHonoOnNode } = await import("./hono-node.ts");
    server = await serveHonoOnNode(app, args.port);
  } else {
    const { serve } = await import("../../adapters/node.ts");
    server = await serve((request) => app.handler(request), {
      ...app.options,
      port: args.port,
      http2: args.h2c ? "h2c" : false,
    });
  }
  const details = args.bare
    ? ", bare: no stream-deadlines"
    : args.hono
      ? ", Hono with stream-deadlines/hono on @hono/node-server"
      : args.h2c
        ? ", HTTP/2 h2c"
        : "";
  console.log(`${kind.title} (node ${process.version}${details}) listening on ${server.url}`);
  if (kind.hints) console.log(TRY_THESE(server.url));
  const stop = () => void server.close().finally(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}
