/**
 * The demo on workerd: `node --import tsx demo/serve-workers.ts --port N [--config FILE.json] [--bare]`
 * (or `npm run demo -- --runtime workers`). Bundles demo/worker-entry.ts and serves it with miniflare.
 */
import { fileURLToPath } from "node:url";
import { DEMO } from "./demo-app.ts";
import { serveOnWorkerd } from "./hosts/workerd.ts";

await serveOnWorkerd({ ...DEMO, entry: fileURLToPath(new URL("worker-entry.ts", import.meta.url)) });
