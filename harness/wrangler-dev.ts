/**
 * The fixture server's Worker (harness/fixture/worker-entry.ts) under `wrangler dev`, the tool Workers
 * users run locally: local mode, no login, telemetry off, nothing fetched from the network, on
 * 127.0.0.1. wrangler bundles the entry itself (with the development middleware it injects) and
 * serves it through its own workerd (a newer one than the miniflare row's), behind its dev proxy.
 * The same compatibility date and flags as the miniflare-based "workers" row, so the two compare.
 */
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DemoConfig } from "../demo/demo-app.ts";
import { WORKERS_COMPATIBILITY_DATE, WORKERS_COMPATIBILITY_FLAGS } from "./workers-config.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);

/** wrangler 4 needs Node >= 22: it runs on the node 24 of tools/node24. */
export const WRANGLER_BIN = join(dirname(require.resolve("wrangler/package.json")), "bin/wrangler.js");

/**
 * What keeps `wrangler dev` local, quiet and inside `dir`: no metrics, no update check, no
 * `Request.cf` download, and its global config (device id, dev registry) and debug logs in `dir`
 * instead of ~/.config/.wrangler (a 5-45 KB log file per run otherwise).
 */
export function wranglerEnv(dir: string): Record<string, string> {
  return {
    WRANGLER_SEND_METRICS: "false",
    WRANGLER_SEND_ERROR_REPORTS: "false",
    // The banner is where wrangler asks the registry for a newer version.
    WRANGLER_HIDE_BANNER: "true",
    // miniflare otherwise downloads the `request.cf` object from workers.cloudflare.com at start.
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_WRITE_LOGS: "false",
    XDG_CONFIG_HOME: join(dir, "config"),
  };
}

/**
 * Writes `dir`/wrangler.json for the fixture Worker with `config` (injected at bundle time, as the
 * miniflare row does) and returns the command line that serves it on 127.0.0.1 at a free port.
 * wrangler keeps its build output in `dir`/.wrangler: the caller removes `dir`.
 */
export function wranglerDevCommand(config: DemoConfig, dir: string, node: string): [string, string[]] {
  const configFile = join(dir, "wrangler.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      name: "stream-deadlines-fixture",
      main: join(root, "harness/fixture/worker-entry.ts"),
      compatibility_date: WORKERS_COMPATIBILITY_DATE,
      compatibility_flags: WORKERS_COMPATIBILITY_FLAGS,
      send_metrics: false,
      define: { __DEMO_CONFIG__: JSON.stringify(config), __DEMO_BARE__: "false" },
    }),
  );
  return [
    node,
    [
      WRANGLER_BIN,
      "dev",
      "--config",
      configFile,
      "--ip",
      "127.0.0.1",
      "--port",
      "0",
      "--inspector-port",
      "0",
      "--show-interactive-dev-session=false",
      "--live-reload=false",
    ],
  ];
}
