/**
 * The HTTP bench server on Bun: `bun bench/serve-bench-bun.ts --bare|--guarded`.
 * Bare: Bun.serve({ fetch: benchHandler }). Guarded: withBunDeadlines(benchHandler), Bun's defaults otherwise.
 */
import { withBunDeadlines } from "../adapters/bun.ts";
import { benchHandler } from "./http-bench-app.ts";

declare const Bun: { serve(options: { port: number; hostname: string; idleTimeout?: number; maxRequestBodySize?: number; fetch: (request: Request, server: never) => unknown }): { port: number } };

const bare = process.argv.includes("--bare");
const fetch = bare ? benchHandler : withBunDeadlines(benchHandler, { onTimeout: false });
// Bun refuses bodies over 128 MiB by default; the bench uploads 1 GiB (bare and guarded alike).
const server = Bun.serve({ port: 0, hostname: "127.0.0.1", maxRequestBodySize: 4 * 1024 ** 3, fetch: fetch as never });
console.log(`bench ${bare ? "bare" : "guarded"} bun listening on http://127.0.0.1:${server.port}`);
process.once("SIGTERM", () => process.exit(0));
