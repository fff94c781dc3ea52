/**
 * The HTTP bench server on Bun: `bun bench/serve-bench-bun.ts --bare|--guarded`.
 * Bare: Bun.serve({ fetch: benchHandler }). Guarded: withBunDeadlines(benchHandler), Bun's defaults otherwise.
 */
import { withBunDeadlines } from "../adapters/bun.ts";
import { benchHandler } from "./http-bench-app.ts";

declare const Bun: { serve(options: { port: number; hostname: string; idleTimeout?: number; fetch: (request: Request, server: never) => unknown }): { port: number } };

const bare = process.argv.includes("--bare");
const fetch = bare ? benchHandler : withBunDeadlines(benchHandler, { onTimeout: false });
const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: fetch as never });
console.log(`bench ${bare ? "bare" : "guarded"} bun listening on http://127.0.0.1:${server.port}`);
process.once("SIGTERM", () => process.exit(0));
