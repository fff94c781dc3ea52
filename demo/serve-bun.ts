/** The demo on Bun: `bun demo/serve-bun.ts --port N [--config FILE.json] [--bare]` (or `npm run demo -- --runtime bun`). */
import { DEMO } from "./demo-app.ts";
import { serveOnBun } from "./hosts/bun.ts";

await serveOnBun(DEMO);
