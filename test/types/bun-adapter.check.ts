/**
 * The Bun adapter against the real Bun types: `npx tsc -b test/types/tsconfig.bun.json`.
 * Nothing here runs. The tests' project (which must not load @types/bun) includes test/ too, so
 * `Bun` is reached through `globalThis`: the real namespace under the Bun config, a stand-in that
 * accepts anything under the main one.
 */
import { type BunServerLike, serve, withBunDeadlines } from "../../adapters/bun.ts";
import { deadlines } from "../../src/index.ts";

type BunApi = typeof globalThis extends { Bun: infer B } ? B : StandIn;
interface StandIn {
  serve(options: {
    fetch?: unknown;
    websocket?: { message(ws: { send(data: string | Uint8Array): unknown }, message: string | Uint8Array): void };
    [option: string]: unknown;
  }): StandInServer;
}
interface StandInServer extends BunServerLike {
  upgrade(request: Request, options?: unknown): boolean;
}
declare const Bun: BunApi;

// A real Bun.serve options object takes the wrapped handler, with the same idleTimeout on both.
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  idleTimeout: 10,
  fetch: withBunDeadlines(
    (request, server) => {
      deadlines(request).response.set({ idle: 5_000 });
      return new Response(`hello ${server.requestIP(request)?.address ?? "?"}`);
    },
    {
      idleTimeout: 10,
      request: { idle: 5_000, minRate: 1024 },
      policy: (_request, client, server) =>
        client.address === "127.0.0.1" && client.runtime === "bun" && server.requestIP !== undefined
          ? { handler: 10_000 }
          : undefined,
    },
  ),
});
server.timeout(new Request("http://x/"), 0);

// WebSockets: the handler returns undefined after server.upgrade(); the result passes through.
Bun.serve({
  port: 0,
  fetch: withBunDeadlines((request, server: typeof serverType) =>
    server.upgrade(request, { data: undefined }) ? undefined : new Response("upgrade failed", { status: 400 }),
  ),
  websocket: {
    message(ws, message) {
      ws.send(message);
    },
  },
});
declare const serverType: ReturnType<typeof Bun.serve>;

// The default-export form of Bun's server.
const app = {
  fetch: withBunDeadlines(async (request) => Response.json({ bytes: (await request.arrayBuffer()).byteLength })),
};
Bun.serve({ port: 0, ...app });

void serve(() => new Response("ok"), {
  port: 0,
  idleTimeout: 30,
  onTimeout: false,
  bunOptions: { maxRequestBodySize: 1024 },
});
