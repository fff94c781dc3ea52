/**
 * `npm run demo -- --runtime node|deno|bun|workers --port N [--config FILE.json] [--bare] [--h2c] [--hono]`
 * (`--bare`: the same handler on the runtime's own server and defaults, no stream-deadlines; `--h2c`:
 * Node only, HTTP/2 without TLS; `--hono`: Node only, a Hono app with stream-deadlines/hono under
 * @hono/node-server) (`npm start` = Node on port 8787, or PORT). Node runs in this
 * process; the other runtimes are started with their own entry file (demo/serve-<runtime>.ts).
 */
import { fileURLToPath } from "node:url";
import { DEMO } from "./demo-app.ts";
import { runOnRuntime } from "./hosts/node.ts";

const entry = (file: string) => fileURLToPath(new URL(file, import.meta.url));
await runOnRuntime(DEMO, {
  deno: entry("serve-deno.ts"),
  bun: entry("serve-bun.ts"),
  workers: entry("serve-workers.ts"),
});
