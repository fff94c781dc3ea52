/**
 * The demo on Deno: `deno run --allow-net --allow-read --allow-env demo/serve-deno.ts --port N
 * [--config FILE.json] [--observe]` (demo/run.ts starts it this way). Stdout carries one
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
}
const Deno = (globalThis as unknown as { Deno: DenoLike }).Deno;

const args = parseDemoArgs(Deno.args);
const config = demoConfigFrom(args.configFile ? JSON.parse(await Deno.readTextFile(args.configFile)) : undefined);
const app = createDemoApp({ ...config, observe: config.observe || args.observe });
const server = await serve((request) => app.handler(request), { ...app.options, port: args.port, hostname: "127.0.0.1" });
console.log(`stream-deadlines demo (deno ${Deno.version.deno}) listening on ${server.url}`);
if (!args.observe) console.log(TRY_THESE(server.url));

// Stop accepting and let running exchanges end, but never hang on a stalled client.
const stop = () => {
  setTimeout(() => Deno.exit(0), 2000);
  void server.close().finally(() => Deno.exit(0));
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
