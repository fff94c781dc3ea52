/**
 * The demo as a Cloudflare Worker (bundled by demo/serve-workers.ts). The config is injected at
 * bundle time as `__DEMO_CONFIG__`: a Worker has no file system or argv to read it from.
 */
import { withWorkersDeadlines } from "../adapters/workers.ts";
import { createDemoApp, demoConfigFrom } from "./demo-app.ts";

declare const __DEMO_CONFIG__: unknown;

const app = createDemoApp(demoConfigFrom(__DEMO_CONFIG__));

export default {
  fetch: withWorkersDeadlines((request: Request) => app.handler(request), app.options),
};
