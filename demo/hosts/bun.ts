/**
 * Serves an app (the demo, or the fixture server) on Bun.serve through stream-deadlines/bun, or with
 * `--bare` on Bun.serve alone with Bun's defaults. Entries: demo/serve-bun.ts,
 * harness/fixture/serve-bun.ts, each started as `bun ENTRY --port N [--config FILE.json] [--bare]`.
 * One line on stdout says where it listens; then the hints (when the app has them) and whatever the
 * app prints.
 */
import { readFileSync } from "node:fs";
import { serve } from "../../adapters/bun.ts";
import { type AppKind, demoConfigFrom } from "../demo-app.ts";
import { parseDemoArgs, TRY_THESE } from "../demo-cli.ts";

export async function serveOnBun(kind: AppKind): Promise<void> {
  const args = parseDemoArgs(process.argv.slice(2));
  const config = demoConfigFrom(args.configFile ? JSON.parse(readFileSync(args.configFile, "utf8")) : undefined);
  const app = kind.create(config);
  // --bare: the same handler on Bun.serve with Bun's defaults, no stream-deadlines (the attack bench's baseline).
  const server = args.bare
    ? serveBare(args.port, app.handler)
    : await serve((request) => app.handler(request), { ...app.options, port: args.port, hostname: "127.0.0.1" });
  console.log(
    `${kind.title} (bun ${process.versions.bun ?? "?"}${args.bare ? ", bare: no stream-deadlines" : ""}) listening on ${server.url}`,
  );
  if (kind.hints) console.log(TRY_THESE(server.url));

  const stop = () => void server.close().finally(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

function serveBare(
  port: number,
  handler: (request: Request) => Promise<Response>,
): { url: string; close(): Promise<void> } {
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
  const server = bun.serve({ port, hostname: "127.0.0.1", fetch: (request) => handler(request) });
  return { url: `http://127.0.0.1:${server.port}`, close: () => server.stop(true) };
}
