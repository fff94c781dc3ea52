/**
 * The demo on Deno: `deno run --allow-net --allow-read --allow-env demo/serve-deno.ts --port N
 * [--config FILE.json] [--observe] [--bare]` (demo/run.ts starts it this way). Stdout carries one
 * "listening on" line, the TRY_THESE hints (without --observe) and "@observe " lines, nothing else.
 */
import { serve } from "../adapters/deno.ts";
import { createDemoApp, demoConfigFrom } from "./demo-app.ts";
import { parseDemoArgs, TRY_THESE } from "./demo-cli.ts";

/** The parts of the Deno namespace this entry uses (the repo's type checks run without Deno's types). */
interface DenoLike {
  args: string[];
  version: { deno: string };
  readTextFile(path: string): Promise<string>;
  addSignalListener(signal: "SIGINT" | "SIGTERM", handler: () => void): void;
  exit(code?: number): never;
  serve(
    options: { port: number; hostname: string; onListen(address: { port: number }): void },
    handler: (request: Request) => Promise<Response>,
  ): { shutdown(): Promise<void> };
}
const Deno = (globalThis as unknown as { Deno: DenoLike }).Deno;

const args = parseDemoArgs(Deno.args);
const config = demoConfigFrom(args.configFile ? JSON.parse(await Deno.readTextFile(args.configFile)) : undefined);
const app = createDemoApp({ ...config, observe: config.observe || args.observe });
// --bare: the same handler on Deno.serve with Deno's defaults, no stream-deadlines (the attack bench's baseline).
const server = args.bare
  ? await serveBare()
  : await serve((request) => app.handler(request), { ...app.options, port: args.port, hostname: "127.0.0.1" });
console.log(
  `stream-deadlines demo (deno ${Deno.version.deno}${args.bare ? ", bare: no stream-deadlines" : ""}) listening on ${server.url}`,
);
if (!args.observe) console.log(TRY_THESE(server.url));

// Stop accepting and let running exchanges end, but never hang on a stalled client.
const stop = () => {
  setTimeout(() => Deno.exit(0), 2000);
  void server.close().finally(() => Deno.exit(0));
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);

function serveBare(): Promise<{ url: string; close(): Promise<void> }> {
  return new Promise((resolve) => {
    const server = Deno.serve(
      {
        port: args.port,
        hostname: "127.0.0.1",
        onListen: ({ port }) => resolve({ url: `http://127.0.0.1:${port}`, close: () => server.shutdown() }),
      },
      (request) => app.handler(request),
    );
  });
}
