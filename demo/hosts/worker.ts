/**
 * The Worker module of an app (bundled by demo/hosts/workerd.ts). The config is injected at bundle
 * time as `__DEMO_CONFIG__`: a Worker has no file system or argv to read it from.
 */
import { withWorkersDeadlines } from "../../adapters/workers.ts";
import { type AppKind, demoConfigFrom } from "../demo-app.ts";

declare const __DEMO_CONFIG__: unknown;
/** `--bare`: the same handler as a plain Worker, no stream-deadlines (the attack bench's baseline). */
declare const __DEMO_BARE__: boolean | undefined;

/** The Worker's default export for `kind`: `export default workerFor(DEMO)`. */
export function workerFor(kind: AppKind) {
  const app = kind.create(demoConfigFrom(__DEMO_CONFIG__));
  const bare = typeof __DEMO_BARE__ === "boolean" && __DEMO_BARE__;
  return {
    fetch: bare
      ? (request: Request) => app.handler(request)
      : withWorkersDeadlines((request: Request) => app.handler(request), app.options),
  };
}
