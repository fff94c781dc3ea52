/**
 * The HTTP bench server on Node: `node .bench-out/bench/servers/serve-bench-node.js --bare|--guarded|--variant NAME [--h2c] [--subscribed]`.
 * Bare: the bench handler through srvx on Node's own http/http2 server, Node's defaults.
 * Guarded: the same handler through stream-deadlines/node with the default limits.
 * Other variants (bench/shared/http-bench-variants.ts) run through srvx like bare, one piece of a wrapper at a time.
 * Prints one line: "listening on http://127.0.0.1:PORT".
 */
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { toNodeHandler } from "srvx/node";
import { createNodeListener } from "../../adapters/node.ts";
import { benchHandler } from "../shared/http-bench-app.ts";
import { GENERIC_VARIANTS, variantName } from "../shared/http-bench-variants.ts";
import { subscribeIfAsked } from "../shared/subscribe.ts";

const variant = variantName(process.argv);
const h2c = process.argv.includes("--h2c");
const subscribed = subscribeIfAsked(process.argv);
const handler = GENERIC_VARIANTS[variant];
if (variant !== "guarded" && handler === undefined) throw new Error(`serve-bench-node: unknown variant ${variant}`);
const listener =
  variant === "guarded" ? createNodeListener(benchHandler, { onTimeout: false }) : toNodeHandler(handler as never);
const server = h2c
  ? http2.createServer(listener as never)
  : http.createServer({ requestTimeout: variant === "guarded" ? 0 : undefined }, listener as never);
server.listen(0, "127.0.0.1", () => {
  console.log(
    `bench ${variant}${subscribed ? " subscribed" : ""} node ${process.version}${h2c ? " h2c" : ""} listening on http://127.0.0.1:${(server.address() as AddressInfo).port}`,
  );
});
process.once("SIGTERM", () => process.exit(0));
