/**
 * The HTTP bench server on Deno: `deno run -A bench/servers/serve-bench-deno.ts --bare|--guarded|--variant NAME [--subscribed]`.
 * Bare: Deno.serve(benchHandler). Guarded: Deno.serve(withDenoDeadlines(benchHandler)).
 * Other variants (bench/shared/http-bench-variants.ts) measure one piece at a time, for bench/http/run-cpu-per-request.ts.
 */
import { withDenoDeadlines } from "../../adapters/deno.ts";
import { benchHandler } from "../shared/http-bench-app.ts";
import { GENERIC_VARIANTS, variantName } from "../shared/http-bench-variants.ts";
import { subscribeIfAsked } from "../shared/subscribe.ts";

declare const Deno: {
  args: string[];
  serve(
    options: { port: number; hostname: string; onListen(addr: { port: number }): void },
    handler: (request: Request, info: never) => Response | Promise<Response>,
  ): unknown;
  addSignalListener(signal: string, fn: () => void): void;
  exit(code: number): never;
};

const variant = variantName(Deno.args);
const subscribed = subscribeIfAsked(Deno.args);
const handler =
  variant === "guarded" ? withDenoDeadlines(benchHandler, { onTimeout: false }) : GENERIC_VARIANTS[variant];
if (handler === undefined) throw new Error(`serve-bench-deno: unknown variant ${variant}`);
Deno.serve(
  {
    port: 0,
    hostname: "127.0.0.1",
    onListen: ({ port }) =>
      console.log(`bench ${variant}${subscribed ? " subscribed" : ""} deno listening on http://127.0.0.1:${port}`),
  },
  handler as never,
);
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
