/**
 * The hooks an adapter passes with every request (AdapterHooks) and what goes with them: the types of
 * the contract, in a file of their own so that the exchange and withDeadlines, which call the hooks,
 * and adapter-contract.ts, which hands adapters withDeadlines, import in one direction only. Adapters
 * read these through adapter-contract.ts.
 */
import type { GuardState } from "../engine/tracker.ts";
import type { BodyReader } from "../guards/common.ts";
import type { InMemoryResponse } from "./options.ts";
import type { TimeoutEvent } from "./timeout-answer.ts";

/** What the core gives `guardRequestBodyInPlace`: puts the request's deadlines on a reader of its body. */
export interface InboundBodyGuard {
  /**
   * Returns the stream the handler is to read (the guarded body): a byte stream when `bytes` (only for
   * a reader whose chunks are its own to give away: a byte stream transfers each chunk's buffer).
   */
  guardRequestBody(reader: BodyReader, bytes?: boolean): ReadableStream<Uint8Array>;
}

/** The optional capabilities an adapter gives the core, per request. */
export interface AdapterHooks {
  /**
   * How a small body found already in memory is handed on (Node: srvx's FastResponse, written in one
   * go). The user's `inMemoryResponse` option, when given, comes first. Default: `new Response(bytes)`.
   */
  inMemoryResponse?: InMemoryResponse;
  /**
   * The size in bytes of a response body the adapter knows to be whole in memory already (a string or
   * bytes its runtime sends in one go), found without reading it; undefined when it does not know.
   * A body of at most UNGUARDED_DECLARED_LENGTH bytes then goes out untouched, as a small body found
   * by the in-memory peek would, but without the peek's stream, reads and new Response (Deno: the
   * body getter alone makes a stream of a static body). Not asked when the user gives
   * `inMemoryResponse` (that option builds the response from the bytes read).
   */
  inMemoryBodySize?(response: Response): number | undefined;
  /**
   * The answer to a deadline that fires before the headers, in place of the `timeoutResponse` option
   * (the adapter applies the user's own itself: Node drops `Connection` from it on HTTP/2). A throw or
   * a non-Response is reported, and the default answer goes out.
   */
  timeoutResponse?(event: TimeoutEvent): Response;
  /**
   * Guards the request body inside the adapter's own Request instead of a copy of the Request with a
   * wrapped body. Called first, before anything reads `request.body`; returns false to let the core
   * copy. When it returns true, it has called `guard.guardRequestBody` with a reader of the raw body
   * (and made the stream it returns the request's body), or found no body to guard. Node: the body is
   * read straight from the IncomingMessage (a web stream and a Request copy less per upload).
   */
  guardRequestBodyInPlace?(request: Request, guard: InboundBodyGuard): boolean;
  /**
   * How the request body is read when the core copies the Request; undefined: `getReader()`. Deno
   * watches its read errors here (a broken upload aborts the request's signal) and sizes its BYOB
   * reads. A body read through such a reader is guarded as a default stream, unless the reader says
   * `bytes: true`: its chunks are its own to give away (fresh buffers it read into), and the guarded
   * body is a byte stream, as the runtime's was.
   */
  requestBodyReader?(body: ReadableStream<Uint8Array>): (BodyReader & { readonly bytes?: boolean }) | undefined;
  /**
   * How the response body is read, for the in-memory peek and the guard; undefined: `getReader()`.
   * Workers reads workerd's native bodies with large BYOB reads here; Bun turns string chunks into
   * UTF-8. With this hook, response bodies are guarded as default streams, whatever their own type
   * (the adapter's runtime is their reader; workerd would read a byte stream in 4 KiB BYOB reads).
   */
  responseBodyReader?(body: ReadableStream<Uint8Array>): BodyReader | undefined;
  /**
   * `true` where the runtime itself sends the guarded response body, with default reads (srvx on
   * Node, Deno.serve, Bun.serve), so no one could read it BYOB. Response bodies are then guarded as
   * default streams, sparing the byte-stream probe (on a default stream, a thrown TypeError per
   * streaming response: 10 µs and more on Node) and the byte controller's transfer per chunk. Without
   * it (and without `responseBodyReader`), the guard of a byte-stream body is a byte stream.
   */
  responseToRuntime?: boolean;
  /**
   * `true` where the runtime logs the reason a response body fails with, although `onTimeout` has
   * reported the firing already (Bun prints the whole error object). The guarded response body, whose
   * only reader is then the runtime, fails with `undefined` when a deadline fires or the client goes
   * away: the runtime still cuts the transfer, and prints nothing. A failure of the producer itself
   * keeps its own error (the app's to see).
   */
  quietResponseFailure?: boolean;
  /**
   * The handler's extra arguments, once the Request the handler gets is known (it is a copy when the
   * core guards its body). Bun gives the handler a server whose request-keyed methods know the copy.
   */
  handlerArgs?(handlerRequest: Request, args: unknown[]): unknown[];
  /**
   * Told once, just before the answer is handed back: `guarded` is true when its body is the core's
   * guarded stream (`responseBodyEnded` follows when it ends), false for anything else (passed
   * through, found in memory, a timeout answer, no Response at all). Not called when the handler's
   * own error is rethrown.
   */
  answered?(guarded: boolean): void;
  /**
   * How the guarded response body ended, told inside the guard's end (a runtime's cancel is told
   * before the producer is cancelled): "closed" (all taken), "timedOut", "errored" (the producer
   * failed), "cancelled" (the runtime cancelled it: the client went away). With this hook, a producer
   * cancelled because the client left gets the exchange's AbortError, not the runtime's reason.
   */
  responseBodyEnded?(state: GuardState): void;
  /**
   * Told once per exchange, synchronously in the request's own async context, once the handler's
   * Request is known and before the handler runs (diagnostics: a subscriber remembers the request's
   * span here, as a deadline fires later in a shared timer's context).
   */
  started?(handlerRequest: Request): void;
  /**
   * Told once per firing, before `onTimeout`, whatever that option is (`false` included). The event
   * is the one `onTimeout` gets.
   */
  timedOut?(event: TimeoutEvent): void;
  /**
   * Told once, when the exchange is over: `answered` (the answer went out with no body the core
   * guards), `timedOut` (a deadline answered, or cut the guarded body), `threw` (the handler's error
   * is rethrown), or how the guarded body ended (`closed`, `errored`, `cancelled`).
   */
  ended?(handlerRequest: Request, outcome: ExchangeOutcome): void;
}

/** How an exchange ended, as the `ended` hook is told. */
export type ExchangeOutcome = "answered" | "timedOut" | "threw" | "closed" | "errored" | "cancelled";

/** A handler under deadlines, for an adapter: the handler's extra arguments as an array, and the hooks. */
export type AdapterHandler<Args extends unknown[], Result> = (
  request: Request,
  args: Args,
  hooks: AdapterHooks,
) => Promise<Result | Response>;
