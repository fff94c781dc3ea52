/**
 * The OpenTelemetry scenarios on Bun: Bun.serve with withBunDeadlines, the OTel packages loaded from
 * node_modules. Prints the results as one JSON line (read by test/adapter-otel.test.ts).
 */
import { withBunDeadlines } from "../../adapters/bun.ts";
import { runOtelScenarios } from "./otel-scenarios.ts";

interface BunLike {
  serve(options: { port: number; hostname: string; fetch: (request: Request, server: unknown) => Promise<Response> }): {
    port: number;
    stop(force: boolean): Promise<void>;
  };
}

const results = await runOtelScenarios(async (handler, options, inSpan) => {
  const fetch = withBunDeadlines(handler, options);
  const bun = (globalThis as unknown as { Bun: BunLike }).Bun;
  const server = bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (request, server) =>
      inSpan(`${request.method} ${new URL(request.url).pathname}`, () => fetch(request, server as never)),
  });
  return { port: server.port, close: () => server.stop(true) };
});
console.log(JSON.stringify(results));
process.exit(0);
