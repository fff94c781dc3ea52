/**
 * stream-deadlines on Node (HTTP/1.1, HTTPS, HTTP/2 with TLS or h2c).
 *
 * Request conversion and response writing are srvx's (its lazy NodeRequest, `sendNodeResponse`):
 * the response is written with backpressure (so a stalled client stops pulling, and the outbound
 * clock runs), and on a stream error after the headers srvx destroys the response: the socket for
 * HTTP/1.1 (the client sees a truncated transfer, never a chunked terminator), only that stream for
 * HTTP/2 (RST_STREAM). The request body is the one thing read differently: the core guards it in
 * place, read straight from the IncomingMessage with no read-ahead beyond Node's own buffer, so a
 * stalled handler stops the socket (adapters/node-request.ts; it saves a web stream and a Request copy
 * per upload).
 *
 * What this adapter adds: Node's own `requestTimeout` (300 s, which kills progressing uploads) is
 * turned off so the library's limits govern; `headersTimeout` (slowloris protection, which a body
 * limit cannot give) is set from the options and checked often enough to mean it; the policy gets
 * the client address.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2, { type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { FastResponse, sendNodeResponse } from "srvx/node";
import type { TimeoutEvent } from "../src/index.ts";
import {
  type AdapterHooks,
  adapterDeadlines,
  checkFunction,
  defaultTimeoutAnswer,
  fail,
  fieldError,
  typeOf,
} from "../src/http/adapter-contract.ts";
import { diagnosticsHooks } from "./diagnostics.ts";
import { GuardableNodeRequest, guardNodeBodyInPlace } from "./node-request.ts";
import { type AdapterOptions, checkAdapterOptions, checkListenOptions, policyWithClient } from "./adapter-options.ts";

export type { AdapterOptions, ClientInfo } from "./adapter-options.ts";

/** Extra argument the handler gets on Node: the raw request and response. */
export interface NodeContext {
  req: IncomingMessage | Http2ServerRequest;
  res: ServerResponse | Http2ServerResponse;
}

export type NodeFetchHandler = (request: Request, context: NodeContext) => Response | Promise<Response>;

export type NodeRequestListener = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

interface SrvxRequest extends Request {
  runtime?: { node?: NodeContext };
}

const contextOf = (request: Request): NodeContext => (request as SrvxRequest).runtime!.node!;

/** A request listener for `http.createServer`, `https.createServer` or `http2.create(Secure)Server`. */
export function createNodeListener(
  handler: NodeFetchHandler,
  options: AdapterOptions<[NodeContext]> = {},
): NodeRequestListener {
  checkFunction("stream-deadlines/node", handler);
  const guarded = adapterDeadlines(
    handler,
    policyWithClient(options, "node", (_request, context) => context.req.socket?.remoteAddress),
  );
  const userResponse = options.timeoutResponse;
  const http1: AdapterHooks = {
    ...diagnosticsHooks,
    inMemoryResponse: fastBytesResponse,
    // The upload is guarded inside srvx's request, read from the IncomingMessage (see node-request.ts).
    guardRequestBodyInPlace: guardNodeBodyInPlace,
    // srvx writes the response body to the socket with default reads: no byte stream for it.
    responseToRuntime: true,
    timeoutResponse: userResponse ?? fastTimeoutResponse(true),
  };
  // HTTP/2 has no Connection header (Node drops it with a warning): its timeout responses go without.
  const http2Hooks: AdapterHooks = {
    ...http1,
    timeoutResponse: userResponse === undefined ? fastTimeoutResponse(false) : withoutConnectionHeader(userResponse),
  };
  // srvx's toNodeHandler, with its request class swapped for one whose body the core can guard in place.
  return (req, res) => {
    const http2Request = "stream" in req;
    if (http2Request) req.stream.once("finish", () => endUnreadUpload(req));
    const request = new GuardableNodeRequest({ req, res } as ConstructorParameters<typeof GuardableNodeRequest>[0]);
    const context = contextOf(request as unknown as Request);
    // Two reactions per request, not three: a handler error is answered as srvx answers one.
    guarded(request as unknown as Request, [context], http2Request ? http2Hooks : http1)
      .then(
        (response) => sendNodeResponse(res as never, response),
        (error: unknown) => sendNodeResponse(res as never, handlerFailed(error, context)),
      )
      .catch((error: unknown) => sendFailed(res, error));
  };
}

/**
 * A small body already in memory is written by srvx in one go (no stream, no undici Response). (An
 * empty statusText would be written as an empty reason phrase: leave it to Node then.)
 */
function fastBytesResponse(
  body: Uint8Array,
  { status, statusText, headers }: { status: number; statusText: string; headers: Headers },
): Response {
  return new FastResponse(
    body as Uint8Array<ArrayBuffer>,
    statusText ? { status, statusText, headers } : { status, headers },
  ) as unknown as Response;
}

/** As srvx does when writing a response fails: log, then a bare 500, or a cut if the headers went out. */
function sendFailed(res: ServerResponse | Http2ServerResponse, error: unknown): void {
  console.error("stream-deadlines/node: failed to send the response", error);
  if (res.writableEnded) return;
  if (res.headersSent) res.destroy();
  else {
    res.statusCode = 500;
    res.end();
  }
}

/**
 * The default timeout answer, as a FastResponse: srvx writes its text at once, where a Response's
 * body would go through a stream (measured: about a third of the CPU of cutting 10,000 stalled
 * uploads at once, bench/scale/run-scale.ts). HTTP/2 goes without `Connection: close`.
 */
function fastTimeoutResponse(connectionClose: boolean): (event: TimeoutEvent) => Response {
  return (event) => {
    const { status, body, headers } = defaultTimeoutAnswer(event, connectionClose);
    return new FastResponse(body, { status, headers }) as unknown as Response;
  };
}

function withoutConnectionHeader(
  timeoutResponse: (event: TimeoutEvent) => Response,
): (event: TimeoutEvent) => Response {
  return (event) => {
    const response = timeoutResponse(event);
    try {
      response.headers.delete("connection");
    } catch {
      // immutable headers (a fetch() result): Node drops the header itself
    }
    return response;
  };
}

/**
 * HTTP/2: a response sent before the upload ended (a 408, or an answer that did not read the body)
 * leaves the client's half of the stream open, and a stalled client would hold it for ever. RFC 9113
 * §8.1 lets the server then reset the stream with NO_ERROR: the client stops sending and keeps the
 * response. (HTTP/1.1 closes the connection instead: the 408 says `Connection: close`.)
 */
function endUnreadUpload(req: Http2ServerRequest): void {
  if (!req.complete && !req.stream.destroyed && !req.stream.closed) req.stream.close(http2.constants.NGHTTP2_NO_ERROR);
}

/**
 * A handler error that is not a deadline's: logged (unless the client had gone, which explains it)
 * and answered with a bare 500, as Node's own servers do; never an unhandled rejection.
 */
function handlerFailed(error: unknown, context: NodeContext): Response {
  const clientGone =
    context.req.destroyed || (context.req as IncomingMessage).aborted === true || context.res.destroyed;
  if (!clientGone) console.error("stream-deadlines/node: the handler threw", error);
  return new Response(null, { status: 500 });
}

export interface NodeServeOptions extends AdapterOptions<[NodeContext]> {
  /** Default 8787; 0 picks a free port. */
  port?: number;
  /** Default "127.0.0.1". */
  hostname?: string;
  /** `"h2c"`: HTTP/2 without TLS; `true`: HTTP/2 over TLS (needs `tls`), HTTP/1.1 allowed too. */
  http2?: boolean | "h2c";
  /** PEM key and certificate: HTTPS, or HTTP/2 over TLS. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Longest time, in ms, for a client to send the request headers (slowloris). Default 10_000. */
  headersTimeout?: number;
}

export interface NodeServerHandle {
  server: http.Server | https.Server | http2.Http2Server | http2.Http2SecureServer;
  port: number;
  url: string;
  close(): Promise<void>;
}

/**
 * Node's own limits set so the library's govern: no `requestTimeout` (it kills uploads that are
 * still progressing), a `headersTimeout` for slowloris, checked every quarter of it (Node's default
 * check interval is 30 s, which makes a short headersTimeout meaningless).
 */
export function nodeServerLimits(headersTimeout = 10_000): http.ServerOptions {
  const where = "stream-deadlines/node";
  if (typeof headersTimeout !== "number")
    throw fieldError(where, "headersTimeout", "a number of milliseconds", typeOf(headersTimeout));
  // Node itself takes only whole milliseconds up to 2^53 - 1.
  if (!Number.isInteger(headersTimeout) || headersTimeout <= 0 || headersTimeout > Number.MAX_SAFE_INTEGER)
    throw fieldError(where, "headersTimeout", "a positive whole number of milliseconds", headersTimeout, RangeError);
  return {
    requestTimeout: 0,
    headersTimeout,
    connectionsCheckingInterval: Math.max(250, Math.min(headersTimeout / 4, 30_000)),
  };
}

const SERVE_KEYS = ["port", "hostname", "http2", "tls", "headersTimeout"] as const;

function checkServeOptions(port: unknown, hostname: unknown, useHttp2: unknown, tls: unknown): void {
  const where = "stream-deadlines/node: serve";
  checkListenOptions(where, port, hostname);
  if (typeof useHttp2 !== "boolean" && useHttp2 !== "h2c")
    throw fieldError(
      where,
      "http2",
      'true, false or "h2c"',
      typeof useHttp2 === "string" ? JSON.stringify(useHttp2) : typeOf(useHttp2),
    );
  if (tls === undefined) return;
  const pem = (value: unknown) =>
    typeof value === "string" || (typeof value === "object" && value !== null && ArrayBuffer.isView(value));
  if (
    typeof tls !== "object" ||
    tls === null ||
    !pem((tls as { key?: unknown }).key) ||
    !pem((tls as { cert?: unknown }).cert)
  ) {
    const { key, cert } = (typeof tls === "object" && tls !== null ? tls : {}) as { key?: unknown; cert?: unknown };
    const got =
      typeof tls !== "object" || tls === null
        ? typeOf(tls)
        : `an object with key ${typeof key} and cert ${typeof cert}`;
    throw fieldError(where, "tls", "{ key, cert } (PEM strings or Buffers)", got);
  }
}

/** Starts a server for `handler` under deadlines. */
export async function serve(handler: NodeFetchHandler, options: NodeServeOptions = {}): Promise<NodeServerHandle> {
  checkAdapterOptions("stream-deadlines/node: serve", options, SERVE_KEYS);
  const {
    port = 8787,
    hostname = "127.0.0.1",
    http2: useHttp2 = false,
    tls,
    headersTimeout,
    ...deadlineOptions
  } = options;
  checkServeOptions(port, hostname, useHttp2, tls);
  const limits = nodeServerLimits(headersTimeout); // checked even where HTTP/2 does not use it
  const listener = createNodeListener(handler, deadlineOptions);
  let server: NodeServerHandle["server"];
  if (useHttp2 === "h2c") server = http2.createServer(listener as never);
  else if (useHttp2) {
    if (tls === undefined)
      fail(
        "stream-deadlines/node",
        'http2 over TLS needs the tls option ({ key, cert }); use http2: "h2c" for cleartext',
      );
    server = http2.createSecureServer({ ...tls, allowHTTP1: true }, listener as never);
  } else if (tls !== undefined) server = https.createServer({ ...limits, ...tls }, listener as never);
  else server = http.createServer(limits, listener as never);
  // HTTP/2 sessions are not connections `closeAllConnections` knows: track them to close them.
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const scheme = tls !== undefined ? "https" : "http";
  return {
    server,
    port: address.port,
    url: `${scheme}://${hostname.includes(":") ? `[${hostname}]` : hostname}:${address.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        (server as http.Server).closeAllConnections?.();
        for (const session of sessions) session.destroy();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
export { applyNodeServerLimits, type NodeServerLimitsOptions } from "./node-server.ts";
