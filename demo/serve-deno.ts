/**
 * The demo on Deno: `deno run --allow-net --allow-read --allow-env demo/serve-deno.ts --port N
 * [--config FILE.json] [--bare]` (or `npm run demo -- --runtime deno`).
 */
import { DEMO } from "./demo-app.ts";
import { serveOnDeno } from "./hosts/deno.ts";

await serveOnDeno(DEMO);
