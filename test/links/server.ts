/**
 * The links harness's server on Node, Deno or Bun, through the runtime's public adapter (`serve`). Started by
 * test/links/run.ts inside the server's network namespace:
 *
 *   node --import tsx test/links/server.ts '<options JSON>'
 *   deno run --allow-net test/links/server.ts '<options JSON>'
 *   bun test/links/server.ts '<options JSON>'
 *
 * The options are `{ port, hostname, request, response }` (the adapter's limits). Stdout carries JSON lines only:
 * `{"event":"listening","port":N}` first, then what test/links/app.ts reports. It stops on SIGTERM or SIGINT.
 */
import { createLinksApp } from "./app.ts";

interface Options {
  port: number;
  hostname: string;
  request: Record<string, number | null>;
  response: Record<string, number | null>;
}

const g = globalThis as unknown as {
  Deno?: { args: string[]; addSignalListener(signal: string, handler: () => void): void; exit(code: number): never };
  Bun?: unknown;
  process?: { argv: string[]; once(signal: string, handler: () => void): void; exit(code: number): never };
};
const argv = g.Deno ? g.Deno.args : g.process!.argv.slice(2);
const options = JSON.parse(argv[0] ?? "{}") as Options;
const write = (event: Record<string, unknown>) => console.log(JSON.stringify(event));
const app = createLinksApp(write);
const adapterOptions = {
  port: options.port,
  hostname: options.hostname,
  request: options.request,
  response: options.response,
  onTimeout: app.onTimeout,
};

let close: () => Promise<void>;
let port: number;
let runtime: string;
if (g.Deno) {
  const { serve } = await import("../../adapters/deno.ts");
  ({ close, port } = await serve(app.handler, adapterOptions));
  runtime = "deno";
} else if (g.Bun) {
  const { serve } = await import("../../adapters/bun.ts");
  ({ close, port } = await serve(app.handler, adapterOptions));
  runtime = "bun";
} else {
  const { serve } = await import("../../adapters/node.ts");
  ({ close, port } = await serve(app.handler, adapterOptions));
  runtime = "node";
}
write({ event: "listening", runtime, port });

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  const exit = g.Deno ? (code: number) => g.Deno!.exit(code) : (code: number) => g.process!.exit(code);
  setTimeout(() => exit(0), 1000); // never hang on a stalled client
  void close().finally(() => exit(0));
};
if (g.Deno) for (const signal of ["SIGTERM", "SIGINT"]) g.Deno.addSignalListener(signal, stop);
else for (const signal of ["SIGTERM", "SIGINT"]) g.process!.once(signal, stop);
