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
 * checks type this file against it: tsconfig.check-deno.json).
 */
import { type TimeoutEvent, defaultTimeoutResponse, withDeadlines } from "../src/index.ts";
import {
  type AdapterInternals,
  type BodyReader,
  REQUEST_BODY_READER,
  RESPONSE_BODY_OBSERVER,
  type ResponseBodyObserver,
  guardsResponseBody,
} from "../src/http/with-deadlines.ts";
import type { GuardState } from "../src/engine/tracker.ts";
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

/** The handler runs: Deno's signal can only abort because the client went away. */
const HANDLER = 0;
/** The Response went to Deno: Deno's signal may abort after a success; only a cancel of the body counts. */
const BODY = 1;
/** The body was read to its end, or cancelled: nothing more to report. */
const DONE = 2;
type Phase = typeof HANDLER | typeof BODY | typeof DONE;

/**
 * One exchange's client signal. Lazy: Deno's signal is touched (and its AbortController made) only
 * when somebody asks for `request.signal`, which withDeadlines does for bodies it guards.
 */
class ClientSignal implements ResponseBodyObserver {
  private phase: Phase = HANDLER;
  private controller: AbortController | undefined;
  private runtimeSignal: AbortSignal | undefined;
  private listening = false;

  constructor(private readonly request: Request) {}

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

  /**
   * RESPONSE_BODY_OBSERVER: withDeadlines' guard of the response body ended. Deno cancels a body only
   * when the client went away: abort the signal before the producer is cancelled (withDeadlines then
   * cancels the producer with this AbortError, not Deno's string "resource closed").
   */
  responseBodySettled(state: GuardState): void {
    if (state === "cancelled") this.clientLeft();
    else this.bodyDone();
  }
}

/**
 * Reads the request body for withDeadlines' guard (REQUEST_BODY_READER), and tells the client signal
 * when Deno fails a read, before the error reaches the handler: Deno's own signal does not abort
 * then. A reader, not a watching stream: one stream fewer per upload.
 */
class UploadWatchReader implements BodyReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;

  constructor(
    body: ReadableStream<Uint8Array>,
    private readonly client: ClientSignal,
  ) {
    this.reader = body.getReader();
  }

  read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    return this.reader.read().then(undefined, this.readFailed);
  }

  cancel(reason?: unknown): Promise<void> {
    return this.reader.cancel(reason);
  }

  /** The handler sees Deno's own error, as without the adapter. */
  private readonly readFailed = (error: unknown): never => {
    this.client.uploadBroke();
    throw error;
  };
}

/** REQUEST_BODY_READER: the upload of a request this adapter saw, watched for Deno's read errors. */
function watchedUploadReader(request: Request, body: ReadableStream<Uint8Array>): BodyReader | undefined {
  const client = (request as WithClient)[CLIENT];
  return client === undefined ? undefined : new UploadWatchReader(body, client);
}

/** Marks the responses withDeadlines sends for a deadline (the exchange is over for it: nothing to watch). */
const TIMEOUT_RESPONSE = Symbol("stream-deadlines/deno: timeout response");

function markTimeoutResponses<Args extends unknown[]>(options: AdapterOptions<Args>): AdapterOptions<Args> {
  const make = options.timeoutResponse === undefined ? defaultTimeoutResponse : options.timeoutResponse; // null is refused below, not a default
  if (typeof make !== "function") return options; // withDeadlines refuses it with its own message
  return {
    ...options,
    timeoutResponse: (event: TimeoutEvent) => {
      const response = make(event);
      if (typeof response === "object" && response !== null)
        (response as { [TIMEOUT_RESPONSE]?: true })[TIMEOUT_RESPONSE] = true;
      return response;
    },
  };
}

/**
 * Marks small bodies withDeadlines found already in memory and handed on as bytes: nothing to watch.
 * A symbol-keyed property, not a WeakSet: one short-lived WeakSet entry per request makes every
 * garbage collection slower (ephemerons; measured: bench/run-cpu-per-request.ts).
 */
const IN_MEMORY = Symbol("stream-deadlines/deno: in-memory body");
const inMemoryResponse = (body: Uint8Array, init: ResponseInit): Response => {
  const response = new Response(body as Uint8Array<ArrayBuffer>, init);
  (response as { [IN_MEMORY]?: true })[IN_MEMORY] = true;
  return response;
};

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
 * Whether withDeadlines guards this response's body: not a timeout response's, not one found in
 * memory, not what it passes through untouched (its own rule, asked rather than copied).
 */
function bodyIsGuarded(request: Request, response: Response): boolean {
  const marks = response as { [TIMEOUT_RESPONSE]?: true; [IN_MEMORY]?: true };
  if (marks[TIMEOUT_RESPONSE] || marks[IN_MEMORY]) return false;
  return guardsResponseBody(request, response);
}

/** RESPONSE_BODY_OBSERVER: the client signal of a request this adapter saw. */
function clientSignalOf(request: Request): ResponseBodyObserver | undefined {
  return (request as WithClient)[CLIENT];
}

/**
 * Wraps a `Deno.serve` handler so every request runs under deadlines. The returned handler has the
 * same `(request, info)` signature; `info` is passed through untouched.
 */
export function withDenoDeadlines<Info extends DenoServeInfoLike = DenoServeInfoLike>(
  handler: DenoFetchHandler<Info>,
  options: AdapterOptions<[Info]> = {},
): (request: Request, info: Info) => Promise<Response> {
  if (typeof handler !== "function")
    throw new TypeError(`stream-deadlines/deno: handler must be a function, got ${typeof handler}`);
  checkAdapterOptions("stream-deadlines/deno", options);
  const deadlineOptions = {
    inMemoryResponse,
    ...policyWithClient(markTimeoutResponses(options), "deno", (_request, info) => clientAddress(info)),
    [REQUEST_BODY_READER]: watchedUploadReader,
    [RESPONSE_BODY_OBSERVER]: clientSignalOf,
  } satisfies AdapterInternals;
  const guarded = withDeadlines(handler, deadlineOptions);

  return async function handleOnDeno(request: Request, info: Info): Promise<Response> {
    const client = new ClientSignal(request);
    // An own property shadows Deno's getter for everything that reads request.signal from here on
    // (withDeadlines, the handler, frameworks); Deno itself keeps its internal signal.
    (request as WithClient)[CLIENT] = client;
    Object.defineProperty(request, "signal", SIGNAL_PROPERTY);
    let response: Response;
    try {
      response = await guarded(request, info);
    } finally {
      client.handedOver();
    }
    // A body withDeadlines guards reports its end to the client signal (responseBodySettled); any
    // other has nothing more to report.
    if (response instanceof Response && !bodyIsGuarded(request, response)) client.bodyDone();
    return response;
  };
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
    },
    handler: (request: Request, info: never) => Response | Promise<Response>,
  ): DenoHttpServerLike;
}

/** Starts `Deno.serve` for `handler` under deadlines, without Deno's "Listening on" banner. */
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
    throw new TypeError(`${where}: signal must be an AbortSignal, got ${signal === null ? "null" : typeof signal}`);
  const guarded = withDenoDeadlines(handler, deadlineOptions);
  const deno = (globalThis as { Deno?: DenoServeLike }).Deno;
  if (typeof deno?.serve !== "function")
    throw new TypeError("stream-deadlines/deno: serve() needs the Deno runtime (Deno.serve)");
  let server!: DenoHttpServerLike;
  const addr = await new Promise<{ hostname: string; port: number }>((resolve, reject) => {
    try {
      server = deno.serve(
        { port, hostname, signal, onListen: resolve },
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
