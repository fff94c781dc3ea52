/**
 * The HTTP bench server on Bun: `bun bench/servers/serve-bench-bun.ts --bare|--guarded|--variant NAME [--subscribed]`.
 * Bare: Bun.serve({ fetch: benchHandler }). Guarded: withBunDeadlines(benchHandler), Bun's defaults otherwise.
 * Other variants (bench/shared/http-bench-variants.ts) measure one piece at a time, for bench/http/run-cpu-per-request.ts.
 */
import { withBunDeadlines } from "../../adapters/bun.ts";
import { benchHandler } from "../shared/http-bench-app.ts";
import { GENERIC_VARIANTS, variantName } from "../shared/http-bench-variants.ts";
import { subscribeIfAsked } from "../shared/subscribe.ts";

declare const Bun: {
  serve(options: {
    port: number;
    hostname: string;
    idleTimeout?: number;
    maxRequestBodySize?: number;
    fetch: (request: Request, server: never) => unknown;
  }): { port: number };
};

const variant = variantName(process.argv);
const subscribed = subscribeIfAsked(process.argv);
const guarded = withBunDeadlines(benchHandler, { onTimeout: false });
const BUN_VARIANTS: Record<string, unknown> = {
  guarded,
  /** The adapter without a server: no server.timeout() calls (what they cost, for the bench only). */
  "guarded-no-timeout-calls": (request: Request) => guarded(request, undefined as never),
};
const fetch = BUN_VARIANTS[variant] ?? GENERIC_VARIANTS[variant];
if (fetch === undefined) throw new Error(`serve-bench-bun: unknown variant ${variant}`);
// Bun refuses bodies over 128 MiB by default; the bench uploads 1 GiB (bare and guarded alike).
const server = Bun.serve({ port: 0, hostname: "127.0.0.1", maxRequestBodySize: 4 * 1024 ** 3, fetch: fetch as never });
console.log(`bench ${variant}${subscribed ? " subscribed" : ""} bun listening on http://127.0.0.1:${server.port}`);
process.once("SIGTERM", () => process.exit(0));
