/**
 * Recipe: an h3 v2 app on Node under deadlines (`npx tsx examples/h3-node.ts`).
 *
 * h3 v2 apps are fetch handlers (`app.fetch`), and `event.req` is the Request the adapter handed
 * in, so `deadlines(event.req)` reaches the live controls. `serve()` of stream-deadlines/node serves
 * it through srvx, as h3's own `serve()` does, with Node's timeouts set so the library's govern.
 *
 * - Upload limits relaxed after authentication, in a middleware that runs before any route reads.
 * - A quiet SSE route: a gap longer than the response `idle` is no stall.
 * - Per-route limits with `policy`: `/login` must arrive within 5 s in all.
 */
import { H3 } from "h3";
import { type NodeServerHandle, serve } from "../adapters/node.ts";
import { type DeadlineLimits, deadlines, type RequestPolicy } from "../src/index.ts";

export interface RecipeLimits {
  defaults: RequestPolicy;
  authenticated: DeadlineLimits;
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

const encoder = new TextEncoder();

export function createApp(limits: RecipeLimits = LIMITS): H3 {
  return new H3()
    .use((event) => {
      if (event.req.headers.get("authorization") === `Bearer ${process.env.UPLOAD_TOKEN ?? "demo"}`)
        deadlines(event.req).request.set(limits.authenticated);
    })
    .post("/upload", async (event) => ({ bytes: (await event.req.arrayBuffer()).byteLength }))
    .post("/login", async (event) => ({ ok: typeof (await event.req.json()) === "object" }))
    .get("/events", () => {
      let sent = 0;
      const events = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent > 0) await new Promise((resolve) => setTimeout(resolve, limits.eventGap));
          controller.enqueue(encoder.encode(`data: ${sent === 0 ? "first" : "after a quiet gap"}\n\n`));
          if (++sent === 2) controller.close();
        },
      });
      return new Response(events, { headers: { "content-type": "text/event-stream" } });
    });
}

export function start(
  limits: RecipeLimits = LIMITS,
  port = Number(process.env.PORT ?? 8787),
): Promise<NodeServerHandle> {
  const app = createApp(limits);
  return serve(app.fetch, {
    port,
    ...limits.defaults,
    policy: (request) => (new URL(request.url).pathname === "/login" ? { request: limits.login } : undefined),
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { url } = await start();
  console.log(`listening on ${url}`);
}
