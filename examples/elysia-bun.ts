/**
 * Recipe: an Elysia app on Bun under deadlines (`bun examples/elysia-bun.ts`).
 *
 * - The Bun adapter sits at the socket (`withBunDeadlines(app.fetch)`), so Bun's own idle timer
 *   does not kill quiet streams and the limits govern every body.
 * - Upload limits relaxed after authentication: `onRequest` runs before Elysia parses the body, and
 *   `deadlines(request)` reaches the live controls from Elysia's `request`.
 * - A quiet SSE route (Elysia's generator with `sse()`): a gap longer than the response `idle`
 *   is no stall, since the client is never waiting on a chunk.
 * - Per-route limits with `policy`: `/login` must arrive within 5 s in all.
 */
import { Elysia, sse } from "elysia";
import { withBunDeadlines } from "../adapters/bun.ts";
import { type DeadlineLimits, deadlines, type RequestPolicy } from "../src/index.ts";

export interface RecipeLimits {
  /** Defaults of every request. */
  defaults: RequestPolicy;
  /** What an authenticated upload may take instead. */
  authenticated: DeadlineLimits;
  /** The login route's request limits. */
  login: DeadlineLimits;
  /** The quiet gap between two events of /events, in ms. */
  eventGap: number;
}

export const LIMITS: RecipeLimits = {
  defaults: { request: { idle: 10_000, minRate: 1024 }, response: { idle: 30_000 }, handler: 30_000 },
  authenticated: { idle: 60_000, minRate: 256, total: null },
  login: { idle: 2_000, total: 5_000 },
  eventGap: 45_000,
};

export function createApp(limits: RecipeLimits = LIMITS) {
  return new Elysia()
    .onRequest(({ request }) => {
      if (request.headers.get("authorization") === `Bearer ${process.env.UPLOAD_TOKEN ?? "demo"}`)
        deadlines(request).request.set(limits.authenticated);
    })
    .post("/upload", ({ body }) => ({ bytes: (body as ArrayBuffer).byteLength }), { parse: "arrayBuffer" })
    .post("/login", ({ body }) => ({ ok: typeof body === "object" }))
    .get("/events", async function* () {
      yield sse({ data: "first" });
      await new Promise((resolve) => setTimeout(resolve, limits.eventGap));
      yield sse({ data: "after a quiet gap" });
    });
}

export function createFetch(limits: RecipeLimits = LIMITS) {
  const app = createApp(limits);
  return withBunDeadlines(app.fetch, {
    ...limits.defaults,
    policy: (request) => (new URL(request.url).pathname === "/login" ? { request: limits.login } : undefined),
  });
}

if (import.meta.main) {
  const server = Bun.serve({ hostname: "127.0.0.1", port: Number(process.env.PORT ?? 8787), fetch: createFetch() });
  console.log(`listening on ${server.port}`);
}
