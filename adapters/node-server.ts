/**
 * Node's own timeouts set so the library's govern, on a server that stream-deadlines did not
 * create: @hono/node-server's, srvx's, a plain `node:http`, `node:https` or `node:http2` server, or
 * a framework's custom-server mode. What `serve()` of this adapter does at creation, done after it:
 *
 * - HTTP/1.1 (`http.Server`, `https.Server`): `requestTimeout` off (Node's 300 s kills uploads that
 *   are still progressing; the body limits govern them), and a `headersTimeout` for slowloris, which
 *   no body limit can give, checked every quarter of it (Node checks every 30 s by default, which
 *   makes a short headersTimeout meaningless). On a server already listening, Node's check is
 *   restarted at the new interval.
 * - HTTP/2 (`http2.Http2Server`, `Http2SecureServer`): nothing to set. Node has no request timeout
 *   there, and it already resets with `NO_ERROR` (RFC 9113 §8.1) a stream whose response ended
 *   before the client finished its upload, on Node 20 and 24 (test/adapter-node-server.test.ts), so
 *   a stalled client does not hold the stream after a 408.
 */
import type http from "node:http";
import type http2 from "node:http2";

export interface NodeServerLimitsOptions {
  /** Longest time, in ms, for a client to send the request headers (slowloris). Default 10_000. */
  headersTimeout?: number;
}

const OPTION_KEYS = new Set(["headersTimeout"]);

/** The parts of an HTTP/1.1 `http.Server` this touches (structural: https.Server fits too). */
interface Http1ServerLike {
  requestTimeout: number;
  headersTimeout: number;
  listening: boolean;
  listeners(event: "listening"): ((...args: unknown[]) => void)[];
  connectionsCheckingInterval?: number;
}

const isHttp2Server = (server: object): server is http2.Http2Server =>
  typeof (server as { updateSettings?: unknown }).updateSettings === "function";
const isHttp1Server = (server: object): server is Http1ServerLike & http.Server =>
  typeof (server as { headersTimeout?: unknown }).headersTimeout === "number" &&
  typeof (server as { listen?: unknown }).listen === "function";

/** The headersTimeout and check interval `serve()` uses (validated as `nodeServerLimits` does). */
export function checkedHeadersTimeout(where: string, headersTimeout: unknown = 10_000): number {
  if (typeof headersTimeout !== "number")
    throw new TypeError(
      `${where}: headersTimeout must be a number of milliseconds, got ${headersTimeout === null ? "null" : typeof headersTimeout}`,
    );
  // Node itself takes only whole milliseconds up to 2^53 - 1.
  if (!Number.isInteger(headersTimeout) || headersTimeout <= 0 || headersTimeout > Number.MAX_SAFE_INTEGER)
    throw new RangeError(
      `${where}: headersTimeout must be a positive whole number of milliseconds, got ${headersTimeout}`,
    );
  return headersTimeout;
}

export const checkingIntervalFor = (headersTimeout: number): number =>
  Math.max(250, Math.min(headersTimeout / 4, 30_000));

/**
 * Sets Node's own limits of `server` (an HTTP/1.1, HTTPS or HTTP/2 server created elsewhere) as
 * `serve()` sets them, so the library's limits govern its bodies. Call it once the server exists,
 * before or after it listens; returns the server. Calling it again changes `headersTimeout` only.
 */
export function applyNodeServerLimits<Server extends object>(
  server: Server,
  options: NodeServerLimitsOptions = {},
): Server {
  const where = "stream-deadlines/node: applyNodeServerLimits";
  if (typeof options !== "object" || options === null || Array.isArray(options))
    throw new TypeError(
      `${where}: options must be an object, got ${options === null ? "null" : Array.isArray(options) ? "an array" : typeof options}`,
    );
  for (const key of Object.keys(options))
    if (!OPTION_KEYS.has(key)) throw new TypeError(`${where}: unknown option "${key}"`);
  const headersTimeout = checkedHeadersTimeout(where, options.headersTimeout);
  if (typeof server !== "object" || server === null)
    throw new TypeError(
      `${where}: server must be a node:http, node:https or node:http2 server, got ${server === null ? "null" : typeof server}`,
    );
  if (isHttp2Server(server)) return server;
  if (!isHttp1Server(server))
    throw new TypeError(
      `${where}: server must be a node:http, node:https or node:http2 server, got ${describe(server)}`,
    );
  server.requestTimeout = 0;
  server.headersTimeout = headersTimeout;
  const interval = checkingIntervalFor(headersTimeout);
  if (server.connectionsCheckingInterval === interval) return server;
  server.connectionsCheckingInterval = interval;
  // Node starts its check when the server starts listening, at the interval it has then: before
  // that, setting the field is enough; after, the check is restarted at the new interval.
  if (server.listening) restartConnectionsCheck(where, server);
  return server;
}

/**
 * Node keeps its check's interval timer under a private symbol and starts it from a 'listening'
 * listener (`setupConnectionsTracking`), on Node 20 and 24 alike: clear the one and run the other.
 */
function restartConnectionsCheck(where: string, server: Http1ServerLike & object): void {
  const timerKey = Object.getOwnPropertySymbols(server).find(
    (symbol) => symbol.description === "http.server.connectionsCheckingInterval",
  );
  const setup = server.listeners("listening").find((listener) => listener.name === "setupConnectionsTracking");
  if (timerKey === undefined || setup === undefined)
    throw new Error(
      `${where}: this Node (${process.version}) does not let the headers check be restarted on a listening server: ` +
        "call it before the server listens, or create the server with nodeServerLimits()",
    );
  clearInterval((server as unknown as Record<symbol, ReturnType<typeof setInterval>>)[timerKey]);
  setup.call(server);
}

const describe = (value: object): string => {
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === "string" && name !== "Object" ? `a ${name}` : "an object that is none";
};
