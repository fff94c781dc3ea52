/**
 * The links harness's server as a Cloudflare Worker (bundled by test/links/server-workers.ts, which injects the
 * limits as `__LINKS_LIMITS__`). Reports go out as console.log JSON lines.
 */
import { withWorkersDeadlines } from "../../adapters/workers.ts";
import type { DeadlineLimits } from "../../src/index.ts";
import { createLinksApp } from "./app.ts";

declare const __LINKS_LIMITS__: { request: DeadlineLimits; response: DeadlineLimits };

const app = createLinksApp((event) => console.log(JSON.stringify(event)));

export default {
  fetch: withWorkersDeadlines((request: Request) => app.handler(request), {
    request: __LINKS_LIMITS__.request,
    response: __LINKS_LIMITS__.response,
    onTimeout: app.onTimeout,
  }),
};
