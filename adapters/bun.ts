/**
 * stream-deadlines on Bun (`Bun.serve`):
 *
 *   Bun.serve({ idleTimeout: 10, fetch: withBunDeadlines(handler, { idleTimeout: 10, ...options }) });
 *
 * Bun reads request bodies on demand, pulls response bodies with backpressure, resets the
 * connection when a response stream errors after the headers, and cancels the response stream
 * when the client goes away: what the library needs. What gets in the way is Bun's `idleTimeout`
 * (default 10 s, measured in docs/runtime-bun.md): upload bytes do not reset it, so it kills a
 * progressing slow upload, and it kills a response that is quiet for longer (SSE). No finite value
 * can spare both, so this adapter turns it off for each request while the library's limits govern
 * (`server.timeout(request, 0)`) and turns it back on (to `idleTimeout`) before the exchange ends.
 * Bun keeps a per-request 0 on the connection after the response, which would leave keep-alive
 * connections, and the header phase of their next request, unbounded; a `server.timeout` call made
 * after the response has gone out does nothing, hence "before": when the handler returns, or, for
 * a body the library guards, just before that body closes.
 *
 * What Bun's timer still does: it bounds the request headers (the first request's by a fixed ~10 s
 * of Bun's own, later ones on a keep-alive connection by `idleTimeout`; header bytes reset neither),
 * idle keep-alive connections, and the tail of a response still buffered in Bun after its body
 * ended. What it no longer does: bound a handler that never answers (set the `handler` limit).
 *
 * The policy gets the client address (`server.requestIP`). The handler gets Bun's server; for a
 * request with a body, the handler's Request is the library's copy (its body is the guarded
 * stream), so `requestIP`, `timeout` and `upgrade` of the server it gets accept that copy too.
 * `server.upgrade()` (the handler returns `undefined`) passes through untouched.
 *
 * Only structural types here: published sources must not depend on @types/bun (the project's own
 * checks type this file against it: test/types/tsconfig.bun.json).
 */
import {
  type BodyReader,
  adapterDeadlines,
  checkFunction,
  checkObject,
  fail,
  findDeadlines,
} from "../src/http/adapter-contract.ts";
import { bunIdleAfterAnswer, checkIdleTimeout as checkBunIdleTimeout, serverFor } from "./bun-idle.ts";
import { ExchangeHooks, holdDeadlineChannels } from "./diagnostics.ts";
import { type AdapterOptions, checkAdapterOptions, checkListenOptions, policyWithClient } from "./adapter-options.ts";

export type { AdapterOptions, ClientInfo } from "./adapter-options.ts";

/** The parts of Bun's `Server` this adapter uses (structural: the real one fits). */
export interface BunServerLike {
  /** Sets the idle timeout of the request's connection, in seconds; 0 turns it off. */
  timeout(request: Request, seconds: number): void;
  /** The peer's address; null for a Unix socket or a closed request. */
  requestIP(request: Request): { address: string } | null;
}

/** What a `Bun.serve` fetch handler returns: a Response, or nothing after `server.upgrade()`. */
export type BunFetchResult = Response | undefined | void;

export type BunFetchHandler<
  Server extends BunServerLike = BunServerLike,
  Result extends BunFetchResult = BunFetchResult,
> = (request: Request, server: Server) => Result | Promise<Result>;

export interface BunAdapterOptions<Server extends BunServerLike = BunServerLike> extends AdapterOptions<[Server]> {
  /**
   * The `idleTimeout` given to `Bun.serve`, in seconds (Bun's default: 10): restored on the
   * connection when an exchange ends, so keep-alive connections stay bounded. 0 means none.
   */
  idleTimeout?: number;
}

// Bun keeps even subscribed diagnostics channels weakly (oven-sh/bun#43086): hold the library's own
// from import on, so a `dc.subscribe()` made after importing this adapter survives garbage collection.
holdDeadlineChannels();

export { BUN_DEFAULT_IDLE_TIMEOUT } from "./bun-idle.ts";

/** The core's hooks for one exchange. */
class BunExchange extends ExchangeHooks {
  /**
   * Bun prints the whole error a response body fails with (after the one line onTimeout wrote): the
   * guarded body fails with `undefined` on a firing, and Bun cuts the transfer without a word.
   */
  readonly quietResponseFailure = true;

  /** The Request Bun passed in: the one `server.timeout` and `server.requestIP` know. */
  constructor(private readonly original: Request) {
    super();
  }

  /** The handler of a copied Request gets a server whose request-keyed methods accept the copy. */
  handlerArgs(handlerRequest: Request, args: unknown[]): unknown[] {
    const server = args[0] as BunServerLike | undefined;
    return server === undefined || handlerRequest === this.original
      ? args
      : [serverFor(server, handlerRequest, this.original)];
  }

  /**
   * Bun sends string chunks of a response body as UTF-8 (Elysia's streams yield strings): so does the
   * guard. With this hook, the guarded body is a default stream: Bun.serve reads it with default reads.
   */
  responseBodyReader(body: ReadableStream<Uint8Array>): BodyReader {
    return new TextAwareReader(body.getReader()) as unknown as BodyReader; // Bun's reader types overload read()
  }
}

/** A reader whose string chunks come out as UTF-8 bytes; methods on the prototype (no closures per body). */
class TextAwareReader {
  constructor(private readonly reader: ReadableStreamDefaultReader<unknown>) {}

  read(): Promise<{ done: boolean; value?: unknown }> {
    return this.reader.read().then(stringsAsBytes);
  }

  cancel(reason?: unknown): Promise<void> {
    return this.reader.cancel(reason);
  }
}

const encoder = new TextEncoder();

/** A read result whose string chunk is turned into its UTF-8 bytes, as Bun.serve itself does. */
function stringsAsBytes<Result extends { done: boolean; value?: unknown }>(result: Result): Result {
  return typeof result.value === "string" ? { ...result, value: encoder.encode(result.value) } : result;
}

const checkIdleTimeout = (value: unknown): number => checkBunIdleTimeout(value, "stream-deadlines/bun");

/**
 * A `fetch(request, server)` for `Bun.serve` that runs `handler` under deadlines, with Bun's idle
 * timer off while the library's limits govern the exchange.
 */
export function withBunDeadlines<Server extends BunServerLike, Result extends BunFetchResult>(
  handler: BunFetchHandler<Server, Result>,
  options: BunAdapterOptions<Server> = {},
): (request: Request, server: Server) => Promise<Result | Response> {
  checkFunction("stream-deadlines/bun", handler);
  checkAdapterOptions("stream-deadlines/bun", options, ["idleTimeout"]);
  const { idleTimeout: idleOption, ...deadlineOptions } = options;
  const idleTimeout = checkIdleTimeout(idleOption);
  const underDeadlines = adapterDeadlines(
    handler,
    policyWithClient<[Server]>(deadlineOptions, "bun", (request, server) => server?.requestIP(request)?.address),
  );

  return async function fetchWithDeadlines(request: Request, server: Server): Promise<Result | Response> {
    // Bun's timer ignores upload bytes and kills quiet responses: the library's limits take over.
    // (Without a server, as when a test calls the handler directly, there is no timer to manage.)
    server?.timeout(request, 0);
    const exchange = new BunExchange(request);
    let response: Result | Response;
    try {
      response = await underDeadlines(request, [server], exchange);
    } catch (error) {
      server?.timeout(request, idleTimeout);
      throw error;
    }
    // After server.upgrade() the connection is a WebSocket with its own idleTimeout: leave it be.
    if (response === undefined || response === null || server === undefined) return response;
    // A body withDeadlines guards is bounded by the library until its end. Anything else (no body,
    // passed through, found in memory, a timeout answer) is Bun's again now. A response deadline
    // that fires while Bun waits on a client that reads (almost) nothing: Bun keeps the connection
    // until what it queued has drained (days for a slow reader). Its idle timer, on again at 1 s,
    // closes the connection at its next tick (npm run attack, bun slow-read).
    return bunIdleAfterAnswer(
      server,
      request,
      idleTimeout,
      response as Response,
      exchange.guardedBody,
      () => findDeadlines(request)?.response.signal,
    );
  };
}

export interface BunServeOptions<Server extends BunServerLike = BunServerLike> extends BunAdapterOptions<Server> {
  /** Default 8787; 0 picks a free port. */
  port?: number;
  /** Default "127.0.0.1". */
  hostname?: string;
  /** Further `Bun.serve` options (tls, websocket, maxRequestBodySize, …), passed as they are. */
  bunOptions?: Record<string, unknown>;
}

export interface BunServerHandle<Server extends BunServerLike = BunServerLike> {
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** The parts of the `Bun` global `serve` uses. */
interface BunGlobalLike {
  serve(
    options: Record<string, unknown>,
  ): BunServerLike & { port?: number; stop(closeActiveConnections?: boolean): Promise<void> | void };
}

/** Starts `Bun.serve` for `handler` under deadlines, with the same `idleTimeout` given to Bun and to the adapter. */
export async function serve<Server extends BunServerLike = BunServerLike>(
  handler: BunFetchHandler<Server>,
  options: BunServeOptions<Server> = {},
): Promise<BunServerHandle<Server>> {
  // Options first: a mistake in them is one everywhere, also where Bun is missing.
  const where = "stream-deadlines/bun: serve";
  checkAdapterOptions(where, options, ["port", "hostname", "bunOptions", "idleTimeout"]);
  const { port = 8787, hostname = "127.0.0.1", bunOptions = {}, ...adapterOptions } = options;
  checkListenOptions(where, port, hostname);
  checkObject(where, bunOptions, "bunOptions must be an object of Bun.serve options");
  const idleTimeout = checkIdleTimeout(adapterOptions.idleTimeout);
  const fetch = withBunDeadlines(handler, { ...adapterOptions, idleTimeout });
  const bun = (globalThis as unknown as { Bun?: BunGlobalLike }).Bun;
  if (bun === undefined) fail("stream-deadlines/bun", "serve() runs on Bun only; elsewhere use your runtime's adapter");
  const server = bun.serve({ ...bunOptions, port, hostname, idleTimeout, fetch });
  const actualPort = server.port ?? port;
  return {
    server: server as unknown as Server,
    port: actualPort,
    url: `${"tls" in bunOptions ? "https" : "http"}://${hostname.includes(":") ? `[${hostname}]` : hostname}:${actualPort}`,
    close: async () => {
      await server.stop(true);
    },
  };
}
