/**
 * Serves an app (the demo, or the fixture server) on Deno.serve through stream-deadlines/deno, or
 * with `--bare` on Deno.serve alone with Deno's defaults. Entries: demo/serve-deno.ts,
 * harness/fixture/serve-deno.ts, each started as `deno run --allow-net --allow-read --allow-env
 * ENTRY --port N [--config FILE.json] [--bare]` (demo/hosts/node.ts starts them this way). Stdout
 * carries one "listening on" line, then the hints (when the app has them) and whatever the app prints.
 */
import { serve } from "../../adapters/deno.ts";
import { type AppKind, demoConfigFrom } from "../demo-app.ts";
import { parseDemoArgs, TRY_THESE } from "../demo-cli.ts";

/** The parts of the Deno namespace this host uses (the repo's type checks run without Deno's types). */
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

export async function serveOnDeno(kind: AppKind): Promise<void> {
  const args = parseDemoArgs(Deno.args);
  const config = demoConfigFrom(args.configFile ? JSON.parse(await Deno.readTextFile(args.configFile)) : undefined);
  const app = kind.create(config);
  // --bare: the same handler on Deno.serve with Deno's defaults, no stream-deadlines (the attack bench's baseline).
  const server = args.bare
    ? await serveBare(args.port, app.handler)
    : await serve((request) => app.handler(request), { ...app.options, port: args.port, hostname: "127.0.0.1" });
  console.log(
    `${kind.title} (deno ${Deno.version.deno}${args.bare ? ", bare: no stream-deadlines" : ""}) listening on ${server.url}`,
  );
  if (kind.hints) console.log(TRY_THESE(server.url));

  // Stop accepting and let running exchanges end, but never hang on a stalled client.
  const stop = () => {
    setTimeout(() => Deno.exit(0), 2000);
    void server.close().finally(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}

function serveBare(
  port: number,
  handler: (request: Request) => Promise<Response>,
): Promise<{ url: string; close(): Promise<void> }> {
  return new Promise((resolve) => {
    const server = Deno.serve(
      {
        port,
        hostname: "127.0.0.1",
        onListen: ({ port }) => resolve({ url: `http://127.0.0.1:${port}`, close: () => server.shutdown() }),
      },
      (request) => handler(request),
    );
  });
}
