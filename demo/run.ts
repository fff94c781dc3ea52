/**
 * `npm run demo -- --runtime node|deno|bun|workers --port N [--config FILE.json] [--bare]`
 * (`--bare`: the same handler on the runtime's own server and defaults, no stream-deadlines)
 * (`npm start` = Node on port 8787, or PORT). Node runs in this process; the other runtimes are
 * started from their npm packages' binaries with their own entry file (demo/serve-<runtime>.ts).
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createDemoApp, demoConfigFrom } from "./demo-app.ts";
import { parseDemoArgs, TRY_THESE } from "./demo-cli.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const argv = process.argv.slice(2);
const args = parseDemoArgs(argv, process.env.PORT ? Number(process.env.PORT) : 8787);

/** How each non-Node runtime is started: its binary from node_modules, and its entry file. */
function commandFor(runtime: "deno" | "bun" | "workers"): [string, string[]] {
  const forwarded = argv.filter((_, i) => argv[i] !== "--runtime" && argv[i - 1] !== "--runtime");
  if (!forwarded.includes("--port")) forwarded.push("--port", String(args.port));
  switch (runtime) {
    case "deno":
      return [
        join(root, "node_modules/.bin/deno"),
        [
          "run",
          "--allow-net",
          "--allow-read",
          "--allow-env",
          "--quiet",
          join(root, "demo/serve-deno.ts"),
          ...forwarded,
        ],
      ];
    case "bun":
      return [join(root, "node_modules/.bin/bun"), [join(root, "demo/serve-bun.ts"), ...forwarded]];
    case "workers":
      return [
        process.execPath,
        ["--import", require.resolve("tsx"), join(root, "demo/serve-workers.ts"), ...forwarded],
      ];
  }
}

if (args.runtime === "node" && args.bare) {
  // Bare: the same handler through srvx on Node's own server with Node's defaults, no stream-deadlines.
  const http = await import("node:http");
  const { toNodeHandler } = await import("srvx/node");
  const config = demoConfigFrom(args.configFile ? JSON.parse(readFileSync(args.configFile, "utf8")) : undefined);
  const app = createDemoApp({ ...config, observe: config.observe || args.observe });
  // As a sane bare app does (srvx's and Hono's default error handlers do the same): a handler that throws, such as an
  // upload whose client left (`Error: aborted`, ECONNRESET), answers 500 instead of an unhandled rejection that ends
  // the process. No deadline is added.
  const handler = (request: Request) =>
    app.handler(request).catch(() => new Response("internal server error\n", { status: 500 }));
  const server = http.createServer(toNodeHandler(handler) as never);
  await new Promise<void>((resolve) => server.listen(args.port, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as import("node:net").AddressInfo).port}`;
  console.log(`stream-deadlines demo (node ${process.version}, bare: no stream-deadlines) listening on ${url}`);
  if (!args.observe) console.log(TRY_THESE(url));
  const stop = () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
} else if (args.runtime === "node") {
  const { serve } = await import("../adapters/node.ts");
  const config = demoConfigFrom(args.configFile ? JSON.parse(readFileSync(args.configFile, "utf8")) : undefined);
  const app = createDemoApp({ ...config, observe: config.observe || args.observe });
  const server = await serve((request) => app.handler(request), {
    ...app.options,
    port: args.port,
    http2: args.h2c ? "h2c" : false,
  });
  console.log(
    `stream-deadlines demo (node ${process.version}${args.h2c ? ", HTTP/2 h2c" : ""}) listening on ${server.url}`,
  );
  if (!args.observe) console.log(TRY_THESE(server.url));
  const stop = () => void server.close().finally(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
} else {
  const [command, commandArgs] = commandFor(args.runtime);
  const child = spawn(command, commandArgs, { stdio: "inherit" });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.once("SIGINT", forward);
  process.once("SIGTERM", forward);
  child.once("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
