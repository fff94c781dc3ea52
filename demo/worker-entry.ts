/**
 * The demo as a Cloudflare Worker (bundled by demo/serve-workers.ts). The config is injected at
 * bundle time as `__DEMO_CONFIG__`: a Worker has no file system or argv to read it from.
 */
import { withWorkersDeadlines } from "../adapters/workers.ts";
import { createDemoApp, demoConfigFrom } from "./demo-app.ts";

declare const __DEMO_CONFIG__: unknown;
/** `--bare`: the same handler as a plain Worker, no stream-deadlines (the attack bench's baseline). */
declare const __DEMO_BARE__: boolean | undefined;

const app = createDemoApp(demoConfigFrom(__DEMO_CONFIG__));
const bare = typeof __DEMO_BARE__ === "boolean" && __DEMO_BARE__;

export default {
  fetch: bare
    ? (request: Request) => app.handler(request)
    : withWorkersDeadlines((request: Request) => app.handler(request), app.options),
};
