/**
 * The demo on Bun: `bun demo/serve-bun.ts --port N [--config FILE.json] [--observe] [--bare]`
 * (or `npm run demo -- --runtime bun`). One line on stdout says where it listens; with --observe,
 * everything else on stdout is an "@observe " line.
 */
import { readFileSync } from "node:fs";
import { serve } from "../adapters/bun.ts";
import { createDemoApp, demoConfigFrom } from "./demo-app.ts";
import { parseDemoArgs, TRY_THESE } from "./demo-cli.ts";

const args = parseDemoArgs(process.argv.slice(2));
const config = demoConfigFrom(args.configFile ? JSON.parse(readFileSync(args.configFile, "utf8")) : undefined);
const app = createDemoApp({ ...config, observe: config.observe || args.observe });
// --bare: the same handler on Bun.serve with Bun's defaults, no stream-deadlines (the attack bench's baseline).
const server = args.bare
  ? serveBare()
  : await serve((request) => app.handler(request), { ...app.options, port: args.port, hostname: "127.0.0.1" });
console.log(
  `stream-deadlines demo (bun ${process.versions.bun ?? "?"}${args.bare ? ", bare: no stream-deadlines" : ""}) listening on ${server.url}`,
);
if (!args.observe) console.log(TRY_THESE(server.url));

const stop = () => void server.close().finally(() => process.exit(0));
process.once("SIGINT", stop);
process.once("SIGTERM", stop);

function serveBare(): { url: string; close(): Promise<void> } {
  const bun = (
    globalThis as unknown as {
      Bun: {
        serve(options: { port: number; hostname: string; fetch(request: Request): Promise<Response> }): {
          port: number;
          stop(closeActiveConnections?: boolean): Promise<void>;
        };
      };
    }
  ).Bun;
  const server = bun.serve({ port: args.port, hostname: "127.0.0.1", fetch: (request) => app.handler(request) });
  return { url: `http://127.0.0.1:${server.port}`, close: () => server.stop(true) };
}
