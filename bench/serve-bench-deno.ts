/**
 * The HTTP bench server on Deno: `deno run -A bench/serve-bench-deno.ts --bare|--guarded`.
 * Bare: Deno.serve(benchHandler). Guarded: Deno.serve(withDenoDeadlines(benchHandler)).
 */
import { withDenoDeadlines } from "../adapters/deno.ts";
import { benchHandler } from "./http-bench-app.ts";

declare const Deno: {
  args: string[];
  serve(options: { port: number; hostname: string; onListen(addr: { port: number }): void }, handler: (request: Request, info: never) => Response | Promise<Response>): unknown;
  addSignalListener(signal: string, fn: () => void): void;
  exit(code: number): never;
};

const bare = Deno.args.includes("--bare");
const handler = bare ? benchHandler : withDenoDeadlines(benchHandler, { onTimeout: false });
Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: ({ port }) => console.log(`bench ${bare ? "bare" : "guarded"} deno listening on http://127.0.0.1:${port}`) }, handler as never);
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
