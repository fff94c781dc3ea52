/**
 * stream-deadlines on Deno (`Deno.serve`):
 *
 *   Deno.serve(withDenoDeadlines(handler, options));
 *
 * Deno itself does what the library needs from a runtime: it reads request bodies on demand, pulls
 * response bodies with backpressure, closes the connection without a chunked terminator when a
 * response stream errors after the headers, and cancels the response stream when the client goes
 * away. What this adapter adds (measurements in docs/runtime-deno.md):
 * - `request.signal` means "the client went away", as on other runtimes. Deno's own signal, in its
 *   default ("legacy") mode, also aborts after every successful response; with
 *   `--unstable-no-legacy-abort` it stays quiet after success but also misses a client that leaves
 *   while the response body streams (after a reset, or while backpressured). In both modes it
 *   stays quiet while the handler reads an upload that breaks off (the read fails instead). The
 *   handler and withDeadlines see a signal that aborts on Deno's signal or a broken upload only
 *   until the Response is handed to Deno, and after that only when Deno cancels the response body
 *   (which it does for every disconnect, in both modes, and never after success).
 * - The policy gets the client address from `info.remoteAddr`.
 *
 * Deno bounds nothing on its own, not even the time to send request headers (slowloris): a body
 * limit cannot help there, so put a proxy with a header timeout in front of a public Deno server.
 *
 * Only structural types here: published sources must not depend on @types/deno (the project's own
 * checks type this file against it: test/types/tsconfig.deno.json).
 */
import {
  type BodyReader,
  type GuardState,
  adapterDeadlines,
  checkFunction,
  fail,
  fieldError,
  typeOf,
} from "../src/http/adapter-contract.ts";
import { ExchangeHooks, isReportedFiring } from "./diagnostics.ts";
import { type AdapterOptions, checkAdapterOptions, checkListenOptions, policyWithClient } from "./adapter-options.ts";

export type { AdapterOptions, ClientInfo } from "./adapter-options.ts";

/** The parts of Deno's `ServeHandlerInfo` this adapter uses (structural: the real one fits). */
export interface DenoServeInfoLike {
  /** `Deno.NetAddr` (tcp), `Deno.UnixAddr` or `Deno.VsockAddr`. */
  remoteAddr: { hostname: string } | { path: string } | { cid: number };
  /** Settles when Deno is done with the exchange (passed through untouched). */
  completed?: Promise<void>;
}

/** A `Deno.serve` handler: `(request, info)`. */
export type DenoFetchHandler<Info extends DenoServeInfoLike = DenoServeInfoLike> = (
  request: Request,
  info: Info,
) => Response | Promise<Response>;

/** The peer's IP address for TCP; none for Unix and VSOCK sockets. */
function clientAddress(info: DenoServeInfoLike | undefined): string | undefined {
  const addr = info?.remoteAddr;
  return addr !== undefined && "hostname" in addr ? addr.hostname : undefined;
}

/** Deno's own `signal` getter (on Request.prototype), read past the per-request override. */
function runtimeSignalOf(request: Request): AbortSignal | undefined {
  return Reflect.get(Object.getPrototypeOf(request) as object, "signal", request) as AbortSignal | undefined;
}

/**
 * Deno's own keys of a Response whose body is a string or bytes it sends straight from memory (its
 * "serve fast" path: status 200, at most a Content-Type), found once on a probe Response; undefined
 * on a Deno without them (then withDeadlines finds small bodies with its in-memory peek).
 */
const servedFromMemory = ((): { body: symbol; consumed: symbol } | undefined => {
  if (typeof (globalThis as { Deno?: unknown }).Deno !== "object") return undefined;
  try {
    const probe = new Response("x", { headers: { "content-type": "text/plain" } });
    const keys = new Map(Object.getOwnPropertySymbols(probe).map((key) => [key.description, key]));
    const body = keys.get("serve fast body");
    const consumed = keys.get("serve fast consumed");
    const fields = probe as unknown as Record<symbol, unknown>;
    if (body === undefined || consumed === undefined || fields[body] !== "x" || fields[consumed] !== false)
      return undefined;
    return { body, consumed };
  } catch {
    return undefined;
  }
})();

/**
 * Hook: the size of a body Deno sends straight from memory (a string counts 3 bytes a UTF-16 unit,
 * the most its UTF-8 takes), read from Deno's own fields: no body getter, which would make a stream
 * of it. Undefined for any other body (a stream, a Blob, a Response with more headers).
 */
function denoInMemoryBodySize(response: Response): number | undefined {
  if (servedFromMemory === undefined) return undefined;
  const fields = response as unknown as Record<symbol, unknown>;
  const body = fields[servedFromMemory.body];
  if (body == null || fields[servedFromMemory.consumed] !== false) return undefined;
  if (typeof body === "string") return body.length * 3;
  return body instanceof Uint8Array ? body.byteLength : undefined;
}

/** The handler runs: Deno's signal can only abort because the client went away. */
const HANDLER = 0;
/** The Response went to Deno: Deno's signal may abort after a success; only a cancel of the body counts. */
const BODY = 1;
/** The body was read to its end, or cancelled: nothing more to report. */
const DONE = 2;
type Phase = typeof HANDLER | typeof BODY | typeof DONE;

/**
 * One exchange's client signal, and the core's hooks for the exchange. Lazy: Deno's signal is touched
 * (and its AbortController made) only when somebody asks for `request.signal`, which withDeadlines
 * does for bodies it guards.
 */
class ClientSignal extends ExchangeHooks {
  private phase: Phase = HANDLER;
  private controller: AbortController | undefined;
  private runtimeSignal: AbortSignal | undefined;
  private listening = false;
  /** Deno.serve sends the response body with default reads: no byte stream for it. */
  readonly responseToRuntime = true;

  constructor(private readonly request: Request) {
    super();
  }

  get signal(): AbortSignal {
    if (this.controller !== undefined) return this.controller.signal;
    this.controller = new AbortController();
    if (this.phase === HANDLER) {
      const runtime = (this.runtimeSignal = runtimeSignalOf(this.request));
      if (runtime?.aborted) this.controller.abort(runtime.reason);
      else if (runtime != null) {
        runtime.addEventListener("abort", this, { once: true });
        this.listening = true;
      }
    }
    return this.controller.signal;
  }

  /** EventListener interface: Deno's signal aborted while the handler ran, so the client left. */
  handleEvent(): void {
    this.listening = false;
    if (this.phase === HANDLER) this.controller?.abort(this.runtimeSignal?.reason);
  }

  /** The Response goes to Deno: from now on Deno's signal may abort for a success; stop listening. */
  handedOver(): void {
    if (this.phase === HANDLER) this.phase = BODY; // a body already over (a deadline) stays over
    if (this.listening) {
      this.listening = false;
      this.runtimeSignal?.removeEventListener("abort", this);
    }
    this.runtimeSignal = undefined;
  }

  /** Deno failed a read of the request body: the connection broke (or the body was malformed). */
  uploadBroke(): void {
    if (this.phase === HANDLER) this.controller?.abort(new DOMException("The client went away", "AbortError"));
  }

  /** Deno cancelled the response body: the client went away before it was all taken. */
  clientLeft(): void {
    if (this.phase !== BODY) return;
    this.phase = DONE;
    this.controller?.abort(new DOMException("The client went away", "AbortError"));
  }

  bodyDone(): void {
    this.phase = DONE;
  }

  /** Hook: a small body Deno sends from memory goes out untouched (see denoInMemoryBodySize). */
  inMemoryBodySize(response: Response): number | undefined {
    return denoInMemoryBodySize(response);
  }

  /**
   * Hook: withDeadlines' guard of the response body ended. Deno cancels a body only when the client
   * went away: abort the signal before the producer is cancelled (withDeadlines then cancels the
   * producer with this AbortError, not Deno's string "resource closed").
   */
  responseBodyEnded(state: GuardState): void {
    if (state === "cancelled") this.clientLeft();
    else this.bodyDone();
  }

  /** Hook: the upload, watched for Deno's read errors. */
  requestBodyReader(body: ReadableStream<Uint8Array>): BodyReader {
    return new UploadWatchReader(body, this);
  }
}

/** Smallest and largest BYOB read of an upload (see UploadWatchReader). */
const MIN_READ = 4 * 1024;
const MAX_READ = 64 * 1024;

/**
 * Reads the request body for withDeadlines' guard (the `requestBodyReader` hook), and tells the client signal
 * when Deno fails a read, before the error reaches the handler: Deno's own signal does not abort
 * then. A reader, not a watching stream: one stream fewer per upload.
 *
 * Deno holds a pending read's buffer until bytes come: 64 KiB for a default read. So a waiting slow
 * upload (a slow-POST attacker) cost about 180 KiB of server memory through a default reader against
 * 49 KiB with 4 KiB BYOB reads (bench/attack/deno-read-memory.ts). Reads here are BYOB and sized to
 * what the peer gives: they start at 4 KiB, double (up to 64 KiB) each time one comes back full (a
 * fast upload: as few reads as a default reader's), and halve when one comes back less than half
 * full (the peer is slower than that: nothing is gained by waiting with a big buffer).
 */
class UploadWatchReader implements BodyReader {
  /** Set when the body is a byte stream (Deno's own): BYOB reads into fresh buffers of ours. */
  private readonly byob: ReadableStreamBYOBReader | undefined;
  /** Set otherwise (a Request made in JavaScript): default reads. */
  private readonly plain: ReadableStreamDefaultReader<Uint8Array> | undefined;
  /** BYOB reads: the chunks are fresh buffers of ours, so the guarded body is a byte stream too. */
  readonly bytes: boolean;
  private size = MIN_READ;

  constructor(
    body: ReadableStream<Uint8Array>,
    private readonly client: ClientSignal,
  ) {
    try {
      this.byob = body.getReader({ mode: "byob" });
    } catch {
      this.plain = body.getReader();
    }
    this.bytes = this.byob !== undefined;
  }

  read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    if (this.byob === undefined) return this.plain!.read().then(undefined, this.readFailed);
    return this.byob.read(new Uint8Array(this.size)).then(this.sized, this.readFailed) as Promise<
      ReadableStreamReadResult<Uint8Array>
    >;
  }

  /** Sizes the next read by how full this one came back. */
  private readonly sized = (result: ReadableStreamReadResult<Uint8Array>): ReadableStreamReadResult<Uint8Array> => {
    const n = result.value?.byteLength ?? 0;
    if (n >= this.size) this.size = Math.min(this.size * 2, MAX_READ);
    else if (n < this.size / 2) this.size = Math.max(this.size / 2, MIN_READ);
    return result;
  };

  cancel(reason?: unknown): Promise<void> {
    return (this.byob ?? this.plain!).cancel(reason);
  }

  /** The handler sees Deno's own error, as without the adapter. */
  private readonly readFailed = (error: unknown): never => {
    this.client.uploadBroke();
    throw error;
  };
}

/** Where a Request keeps its ClientSignal, for the one shared `signal` getter below. */
const CLIENT = Symbol("stream-deadlines/deno: client signal");
type WithClient = Request & { [CLIENT]?: ClientSignal };

/**
 * The own `signal` property every request gets: one getter function shared by all requests. (A
 * getter closure per request gives every Request its own hidden class, a new map and descriptor
 * array per request: that cost more CPU, most of it in garbage collection, than all the rest of
 * the wrapper on a small GET.)
 */
const SIGNAL_PROPERTY: PropertyDescriptor = {
  get(this: WithClient): AbortSignal | undefined {
    const client = this[CLIENT];
    return client !== undefined ? client.signal : runtimeSignalOf(this);
  },
  configurable: true,
};

/**
 * Wraps a `Deno.serve` handler so every request runs under deadlines. The returned handler has the
 * same `(request, info)` signature; `info` is passed through untouched.
 */
export function withDenoDeadlines<Info extends DenoServeInfoLike = DenoServeInfoLike>(
  handler: DenoFetchHandler<Info>,
  options: AdapterOptions<[Info]> = {},
): (request: Request, info: Info) => Promise<Response> {
  checkFunction("stream-deadlines/deno", handler);
  checkAdapterOptions("stream-deadlines/deno", options);
  const guarded = adapterDeadlines(
    handler,
    policyWithClient(options, "deno", (_request, info) => clientAddress(info)),
  );

  return async function handleOnDeno(request: Request, info: Info): Promise<Response> {
    const client = new ClientSignal(request);
    // An own property shadows Deno's getter for everything that reads request.signal from here on
    // (withDeadlines, the handler, frameworks); Deno itself keeps its internal signal.
    (request as WithClient)[CLIENT] = client;
    Object.defineProperty(request, "signal", SIGNAL_PROPERTY);
    let response: Response;
    try {
      response = await guarded(request, [info], client);
    } finally {
      client.handedOver();
    }
    // A body withDeadlines guards reports its end to the client signal (responseBodyEnded); any
    // other has nothing more to report.
    if (!client.guardedBody) client.bodyDone();
    return response;
  };
}

/** A `Deno.serve` `onError` handler. */
export type DenoErrorHandler = (error: unknown) => Response | Promise<Response>;

/** What Deno.serve does by default with an error: log it whole, answer 500. */
const denoDefaultOnError: DenoErrorHandler = (error) => {
  console.error(error);
  return new Response("Internal Server Error", { status: 500 });
};

/**
 * An `onError` for `Deno.serve`. Deno hands its `onError` the error a response body fails with once
 * the headers are out, and its default handler prints it whole: after a deadline cut a body, that is
 * the TimeoutError onTimeout has already reported in one line. This handler lets those pass without a
 * word; every other error goes to `fallback` (default: what Deno does, `console.error` and a 500).
 * `serve()` uses it; with your own `Deno.serve`, pass it: `Deno.serve({ onError: serveOnError() }, …)`.
 */
export function serveOnError(fallback: DenoErrorHandler = denoDefaultOnError): DenoErrorHandler {
  checkFunction("stream-deadlines/deno: serveOnError", fallback, "fallback");
  return (error) =>
    isReportedFiring(error) ? new Response("Service Unavailable\n", { status: 503 }) : fallback(error);
}

/** The parts of `Deno.serve`'s server this adapter uses. */
export interface DenoHttpServerLike {
  readonly finished: Promise<void>;
  shutdown(): Promise<void>;
}

export interface DenoServeOptions<Info extends DenoServeInfoLike = DenoServeInfoLike> extends AdapterOptions<[Info]> {
  /** Default 8787; 0 picks a free port. */
  port?: number;
  /** Default "127.0.0.1". */
  hostname?: string;
  /** Stops the server (as `Deno.serve`'s own `signal` option). */
  signal?: AbortSignal;
}

export interface DenoServerHandle {
  server: DenoHttpServerLike;
  port: number;
  url: string;
  /** Stops accepting, lets running requests finish, and resolves when the server is closed. */
  close(): Promise<void>;
}

interface DenoServeLike {
  serve(
    options: {
      port?: number;
      hostname?: string;
      signal?: AbortSignal;
      onListen?: (addr: { hostname: string; port: number }) => void;
      onError?: DenoErrorHandler;
    },
    handler: (request: Request, info: never) => Response | Promise<Response>,
  ): DenoHttpServerLike;
}

const quietFirings = serveOnError();

/**
 * Starts `Deno.serve` for `handler` under deadlines, without Deno's "Listening on" banner, with
 * `serveOnError()` as its `onError` (one line per firing: the report).
 */
export async function serve<Info extends DenoServeInfoLike = DenoServeInfoLike>(
  handler: DenoFetchHandler<Info>,
  options: DenoServeOptions<Info> = {},
): Promise<DenoServerHandle> {
  // Options first: a mistake in them is one everywhere, also where Deno is missing.
  checkAdapterOptions("stream-deadlines/deno: serve", options, ["port", "hostname", "signal"]);
  const { port = 8787, hostname = "127.0.0.1", signal, ...deadlineOptions } = options;
  const where = "stream-deadlines/deno: serve";
  checkListenOptions(where, port, hostname);
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw fieldError(where, "signal", "an AbortSignal", typeOf(signal));
  const guarded = withDenoDeadlines(handler, deadlineOptions);
  const deno = (globalThis as { Deno?: DenoServeLike }).Deno;
  if (typeof deno?.serve !== "function") fail("stream-deadlines/deno", "serve() needs the Deno runtime (Deno.serve)");
  let server!: DenoHttpServerLike;
  const addr = await new Promise<{ hostname: string; port: number }>((resolve, reject) => {
    try {
      server = deno.serve(
        { port, hostname, signal, onListen: resolve, onError: quietFirings },
        guarded as (request: Request, info: never) => Promise<Response>,
      );
    } catch (error) {
      reject(error); // e.g. the port is taken (Deno throws AddrInUse synchronously)
    }
  });
  return {
    server,
    port: addr.port,
    url: `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${addr.port}`,
    close: () => server.shutdown(),
  };
}
