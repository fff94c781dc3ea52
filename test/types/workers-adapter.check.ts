/**
 * Type check of the Workers adapter against the real @cloudflare/workers-types, run by
 * `npx tsc -b test/types/tsconfig.workers.json` (Workers globals only: no DOM, no Node).
 *
 * This file is also part of the tests' project (test/tsconfig.json): there `ExportedHandler`
 * does not exist, so it is declared below as an empty interface with the same type parameters.
 * Under the Workers config that declaration merges into the real one and adds nothing, so the
 * checks here are real there and vacuous in the tests' project.
 */
import { deadlines } from "../../src/index.ts";
import { type ClientInfo, withWorkersDeadlines } from "../../adapters/workers.ts";

declare global {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface ExportedHandler<Env = unknown, QueueHandlerMessage = unknown, CfHostMetadata = unknown, Props = unknown> {}
}

interface Env {
  UPSTREAM: string;
}

// The shape the brief promises: `export default { fetch: withWorkersDeadlines(handler) }`.
export const plain = {
  fetch: withWorkersDeadlines(async (request: Request) => new Response(`hello ${new URL(request.url).pathname}`)),
} satisfies ExportedHandler;

// env and ctx pass through typed; the policy sees the client address; deadlines(request) works.
export const proxy = {
  fetch: withWorkersDeadlines(
    async (request: Request, env: Env, ctx: { waitUntil(promise: Promise<unknown>): void }) => {
      deadlines(request).response.set({ idle: 60_000 });
      ctx.waitUntil(Promise.resolve());
      return fetch(env.UPSTREAM, { headers: request.headers });
    },
    {
      response: { idle: 10_000 },
      policy: (_request: Request, client: ClientInfo, env: Env) =>
        client.address === undefined || env.UPSTREAM === "" ? { request: { idle: 1_000 } } : undefined,
    },
  ),
} satisfies ExportedHandler<Env>;
