/**
 * The Deno adapter against the real Deno types: `npx tsc -b test/types/tsconfig.deno.json`.
 * Nothing here runs. The tests' project (which must not load @types/deno) includes test/ too, so
 * `Deno` is reached through `globalThis`: the real namespace under the Deno config, a stand-in
 * that accepts anything under the main one.
 */
import { type DenoServeInfoLike, serve, withDenoDeadlines } from "../../adapters/deno.ts";
import { deadlines } from "../../src/index.ts";

type DenoApi = typeof globalThis extends { Deno: infer D } ? D : StandIn;
interface StandIn {
  serve(...args: unknown[]): unknown;
  upgradeWebSocket(request: Request): { response: Response };
}
declare const Deno: DenoApi;

const handler = withDenoDeadlines(
  (request, info) => {
    deadlines(request).response.set({ idle: 5_000 });
    return new Response(`hello ${"hostname" in info.remoteAddr ? info.remoteAddr.hostname : "?"}`);
  },
  {
    request: { idle: 5_000, minRate: 1024 },
    policy: (_request, client, info) =>
      client.address === "127.0.0.1" && info.completed !== undefined ? { handler: 10_000 } : undefined,
  },
);

// Every form of Deno.serve takes the wrapped handler.
Deno.serve(handler);
Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, handler);
Deno.serve({ port: 0, handler });
Deno.serve({ transport: "unix", path: "/tmp/sd.sock" }, handler);

// Handlers typed with Deno's own types wrap as they are, and keep Deno's info type in the policy.
const typed = (request: Request, info: Parameters<typeof handler>[1]) =>
  new Response(request.url + JSON.stringify(info.remoteAddr));
Deno.serve(withDenoDeadlines(typed));

// WebSocket upgrades pass through (101 responses are not wrapped).
Deno.serve(withDenoDeadlines((request) => Deno.upgradeWebSocket(request).response));

// The structural info type is what Deno passes.
const info: DenoServeInfoLike = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 } as { hostname: string },
  completed: Promise.resolve(),
};
void handler(new Request("http://x/"), info);

void serve(() => new Response("ok"), { port: 0, onTimeout: false });
