/**
 * Serves an app (the demo, or the fixture server) the way most Hono users serve on Node: a Hono app
 * with the stream-deadlines/hono middleware, on the server @hono/node-server creates, with Node's own
 * timeouts set by `applyNodeServerLimits`. The app's handler and options are shared unchanged: every
 * route goes to its fetch handler, which reads `c.req.raw`, the request the middleware guards.
 * `demo/hosts/node.ts` starts it for `--runtime node --hono`.
 */
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { deadlines } from "../../adapters/hono.ts";
import { applyNodeServerLimits } from "../../adapters/node.ts";
import type { DemoApp } from "../demo-app.ts";

/** The app as a Hono app: the middleware first, with the app's options, then its handler for every route. */
export function honoAppOf(app: DemoApp): Hono {
  const { policy: _policy, ...options } = app.options; // the app has no policy; Hono's takes the context
  const hono = new Hono();
  hono.use(deadlines(options));
  hono.all("*", (c) => app.handler(c.req.raw));
  return hono;
}

export function serveHonoOnNode(app: DemoApp, port: number): Promise<{ url: string; close(): Promise<void> }> {
  const hono = honoAppOf(app);
  return new Promise((resolve) => {
    const server = serve({ fetch: hono.fetch, port, hostname: "127.0.0.1" }, (info) =>
      resolve({
        url: `http://127.0.0.1:${info.port}`,
        close: () =>
          new Promise<void>((done) => {
            if ("closeAllConnections" in server) server.closeAllConnections();
            server.close(() => done());
          }),
      }),
    );
    applyNodeServerLimits(server); // requestTimeout off, headersTimeout 10 s checked every 2.5 s
  });
}
