/**
 * stream-deadlines on Cloudflare Workers (workerd), without `nodejs_compat`:
 *
 *   export default { fetch: withWorkersDeadlines(handler, options) };
 *
 * What this adapter adds to `withDeadlines` for what workerd lacks (docs/runtime-workers.md):
 * - A response stream that errors after the headers makes workerd end a chunked body with its
 *   terminator (a clean-looking end, cloudflare/workerd#6818). When the response declares a
 *   Content-Length, the guarded body is piped through a `FixedLengthStream` of that length, so a
 *   cut is a short body the client can detect. Chunked bodies still end cleanly: a known limit.
 * - When the client goes away, workerd drops the request's context: the response body is never
 *   cancelled, and no timer (no deadline) of the request runs again, unless something is still
 *   pending in `ctx.waitUntil`. The adapter hands the guarded body's pipe to `ctx.waitUntil`, so
 *   workerd cancels the body on disconnect and the producer is cancelled (~50 ms). With the
 *   `enable_request_signal` compatibility flag, `request.signal` also aborts at once (~3 ms).
 * - workerd gives JavaScript reads of a native body (a proxied `fetch()`) in 4 KiB chunks; the
 *   adapter has withDeadlines read such bodies with BYOB reads that grow from 4 KiB (a small body
 *   costs no large buffer) to 1 MiB while the body keeps filling them (measured: bench/workers/run-workers-proxy.ts).
 * - The policy's client address is the `CF-Connecting-IP` header, which Cloudflare's edge sets
 *   (and overwrites) on every request. Behind anything else (local miniflare/wrangler accept a
 *   client-sent value) it is only as trustworthy as whatever sets it.
 *
 * Only structural types here: published sources must not depend on @cloudflare/workers-types
 * (the project's own checks type this file against it: test/types/tsconfig.workers.json).
 */
import { UNGUARDED_DECLARED_LENGTH } from "../src/index.ts";
import {
  type BodyReader,
  adapterDeadlines,
  checkFunction,
  declaredContentLength,
} from "../src/http/adapter-contract.ts";
import { ExchangeHooks } from "./diagnostics.ts";
import { type AdapterOptions, policyWithClient } from "./adapter-options.ts";

export type { AdapterOptions, ClientInfo } from "./adapter-options.ts";

/** The parts of Workers' ExecutionContext this adapter uses (structural: any real ctx fits). */
export interface WorkersExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}

/** A Workers fetch handler: `(request, env, ctx)`. */
export type WorkersFetchHandler<R extends Request = Request, Env = unknown, Ctx = WorkersExecutionContext> = (
  request: R,
  env: Env,
  ctx: Ctx,
) => Response | Promise<Response>;

/** workerd's IdentityTransformStream and FixedLengthStream (which also sends Content-Length and fails a short body). */
type NativeTransform = { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> };
type IdentityTransformStreamClass = new () => NativeTransform;
type FixedLengthStreamClass = new (length: number | bigint) => NativeTransform;

/** Looked up once; undefined outside workerd (then the guarded body is returned as it is). */
function workerdClass<T>(name: "IdentityTransformStream" | "FixedLengthStream"): T | undefined {
  const candidate = (globalThis as Record<string, unknown>)[name];
  return typeof candidate === "function" ? (candidate as T) : undefined;
}
const FixedLength = workerdClass<FixedLengthStreamClass>("FixedLengthStream");
const Identity = workerdClass<IdentityTransformStreamClass>("IdentityTransformStream");
/** The 4 KiB reads of native bodies are workerd's: elsewhere bodies are left as they are. */
const inWorkerd = FixedLength !== undefined;

/**
 * Largest buffer a read of a native body fills. workerd hands a default reader 4 KiB chunks; a BYOB
 * read fills up to its buffer with what has already arrived (it never waits for more), so a fast
 * proxied body crosses into JavaScript far less often. The cost is per crossing: proxying 200 MiB
 * took 3.2× the CPU of workerd's native pass-through with 64 KiB reads, 1.9× with 256 KiB and 1.04×
 * with 1 MiB (a bare BYOB pass-through, bench/workers/run-workers-proxy.ts).
 */
export const NATIVE_READ_BYTES = 1024 * 1024;

/**
 * The first read of a body takes this much (workerd's own chunk size): two large buffers (a chunk
 * and the end) for every small response cost more CPU than the rest of its guarded path
 * (bench/http/run-cpu-per-request.ts).
 */
const FIRST_READ_BYTES = 4 * 1024;

/**
 * The next read's buffer: four times larger after a read that filled its buffer (the body is
 * arriving faster than it is read), a quarter after one that filled less than a quarter (it slowed
 * down), between FIRST_READ_BYTES and NATIVE_READ_BYTES. A chunk handed on keeps its whole buffer
 * alive, so this bounds the memory a chunk holds to 4× its bytes (or 4 KiB).
 */
function nextReadSize(size: number, filled: number): number {
  if (filled === size) return Math.min(size * 4, NATIVE_READ_BYTES);
  if (filled * 4 < size) return Math.max(size / 4, FIRST_READ_BYTES);
  return size;
}

/**
 * Reads a byte stream (a native `fetch()` body, a Response made from bytes) in BYOB reads of 4 KiB
 * up to 1 MiB, sized to how fast it arrives (nextReadSize). withDeadlines reads the response body
 * through it (its peek, then its guard), so a small body found in memory costs no wrapping stream
 * and Response. One object per body, methods on the
 * prototype: no closures per request.
 */
class LargeChunkReader implements BodyReader {
  private size = FIRST_READ_BYTES;

  constructor(private readonly reader: ReadableStreamBYOBReader) {}

  async read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    for (;;) {
      // A fresh buffer each time: the chunk is handed on, and a BYOB read transfers its buffer anyway.
      const { done, value } = await this.reader.read(new Uint8Array(this.size));
      if (done) return { done: true, value: undefined };
      if (value === undefined || value.byteLength === 0) continue;
      this.size = nextReadSize(this.size, value.byteLength);
      return { done: false, value };
    }
  }

  cancel(reason?: unknown): Promise<void> {
    return this.reader.cancel(reason);
  }
}

/** withDeadlines' reader of a response body in workerd: large BYOB reads when the body is a byte stream. */
function largeChunkReader(body: ReadableStream<Uint8Array>): BodyReader | undefined {
  if (!inWorkerd) return undefined;
  try {
    return new LargeChunkReader(body.getReader({ mode: "byob" }));
  } catch {
    return undefined; // a JavaScript default stream: its producer already chose its chunk sizes
  }
}

/**
 * An upload read in large chunks that fails when the client goes away (`request.signal` aborts, with
 * `enable_request_signal`). workerd never settles a pending read of an upload whose client reset,
 * and runs none of the request's timers again: without this, the handler's read (and its deadline)
 * would wait forever, and the request's guard would never end (test/faults.test.ts,
 * reset-mid-upload on workers). A byte stream, as the native upload is (its chunks are fresh
 * buffers, its own to give away), so the handler's guarded body takes BYOB readers too.
 */
class UploadSource {
  readonly type = "bytes";
  private controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  private listening = false;
  private gone = false;
  private pulled = false;
  private size = FIRST_READ_BYTES;

  constructor(
    private readonly reader: ReadableStreamBYOBReader,
    private readonly signal: AbortSignal | null | undefined,
  ) {}

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.controller = controller;
    if (this.signal == null) return;
    if (this.signal.aborted) this.handleEvent();
    else {
      this.signal.addEventListener("abort", this, { once: true });
      this.listening = true;
    }
  }

  async pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    this.pulled = true;
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = await this.reader.read(new Uint8Array(this.size));
    } catch (error) {
      this.stopListening();
      throw error;
    }
    if (this.gone) return; // the stream already failed with the client's reason
    if (result.done) {
      this.stopListening();
      controller.close();
      // A pending BYOB read of a byte stream ends only when its request is answered (0 bytes: done).
      (controller as { byobRequest?: { respond(n: number): void } | null }).byobRequest?.respond(0);
    } else if (result.value !== undefined && result.value.byteLength > 0) {
      this.size = nextReadSize(this.size, result.value.byteLength);
      controller.enqueue(result.value);
    }
  }

  cancel(reason: unknown): Promise<void> {
    this.stopListening();
    return this.reader.cancel(reason);
  }

  /**
   * The handler has returned its Response and nothing has read the upload: cancel it, as the runtime
   * would an unread body. A read after this (from `ctx.waitUntil`) fails with a TypeError that says
   * so, never an empty body. Without this, the upload stays locked to this source's reader, and
   * `wrangler dev`'s request-draining middleware (which drains every body the Worker left unread)
   * logged "✘ [ERROR] Failed to drain the unused request body" for each such request.
   */
  releaseUnread(): void {
    if (this.pulled || this.gone) return;
    this.gone = true;
    this.stopListening();
    this.controller?.error(
      new TypeError("stream-deadlines/workers: the upload was released: the handler returned without reading it"),
    );
    this.reader.cancel().catch(ignore);
  }

  /** EventListener interface: the client went away. */
  handleEvent(): void {
    this.listening = false;
    this.gone = true;
    const reason: unknown = this.signal?.reason ?? new DOMException("The client went away", "AbortError");
    this.controller?.error(reason);
    this.reader.cancel(reason).catch(ignore);
  }

  private stopListening(): void {
    if (!this.listening) return;
    this.listening = false;
    this.signal?.removeEventListener("abort", this);
  }
}

/**
 * The same request with its body read in large chunks (an upload is a native body: its default
 * reads come in 4 KiB) and failed when the client goes away, and the body's source (to release an
 * upload the handler never read). Undefined when there is no body or it is not a byte stream.
 */
function requestWithLargeChunks<R extends Request>(request: R): { request: R; source: UploadSource } | undefined {
  if (request.body === null || request.body.locked) return undefined;
  let reader: ReadableStreamBYOBReader;
  try {
    reader = request.body.getReader({ mode: "byob" });
  } catch {
    return undefined;
  }
  const source = new UploadSource(reader, request.signal);
  const body = new ReadableStream<Uint8Array>(source as never, { highWaterMark: 0 });
  // new Request(request, init) keeps everything of the original (cf, signal) but the body.
  return { request: new Request(request, { body, duplex: "half" } as RequestInit) as R, source };
}

/**
 * The core's hooks for one exchange: response bodies read in large chunks, and whether the core
 * guards the body of its answer (only such a body is piped). Methods on the prototype: one small
 * object per request, no closures.
 */
class WorkersExchange extends ExchangeHooks {
  // With a responseBodyReader the core guards response bodies as default streams: workerd's pipe
  // would read a byte stream in 4 KiB BYOB reads.

  responseBodyReader(body: ReadableStream<Uint8Array>): BodyReader | undefined {
    return largeChunkReader(body);
  }
}

/** The address Cloudflare's edge puts on every request it forwards to a Worker. */
function clientAddress(request: Request): string | undefined {
  return request.headers.get("cf-connecting-ip") ?? undefined;
}

function encoded(response: Response): boolean {
  const encoding = response.headers.get("content-encoding");
  return encoding !== null && encoding.trim().toLowerCase() !== "identity" && encoding.trim() !== "";
}

/**
 * The guarded body piped into a native transform that becomes the response body:
 * - with a declared length, a FixedLengthStream: workerd then sends that Content-Length and, when
 *   the guarded stream errors, closes the connection short of it instead of ending the body
 *   cleanly (a chunked body ends with its terminator whatever happens: cloudflare/workerd#6818);
 * - the pipe's promise settles when the body is over in any way; given to `ctx.waitUntil`, it keeps
 *   the request's context alive until then. Without it workerd drops the context the moment the
 *   client goes away: no cancel(), no timer, nothing runs again (measured). With it, workerd cancels
 *   the body, the cancel reaches the guard through the pipe, and the producer is cancelled.
 */
function pipedBody(response: Response, ctx: unknown): Response {
  const length = declaredContentLength(response);
  // A Content-Encoding makes the declared length that of the encoded bytes, not of what is read.
  const fixed =
    FixedLength !== undefined && length !== undefined && length > UNGUARDED_DECLARED_LENGTH && !encoded(response);
  const waitUntil = (ctx as Partial<WorkersExecutionContext> | null | undefined)?.waitUntil;
  if (!fixed && (Identity === undefined || typeof waitUntil !== "function")) return response;
  const { readable, writable } = fixed ? new FixedLength!(length!) : new Identity!();
  // The pipe fails when the body is cut or cancelled: withDeadlines has reported that already.
  const done = response.body!.pipeTo(writable).catch(ignore);
  if (typeof waitUntil === "function") waitUntil.call(ctx, done);
  return new Response(readable, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/**
 * Wraps a Workers fetch handler so every request runs under deadlines. `options` are withDeadlines'
 * options; `policy(request, client, env, ctx)` also gets `client.address` (from CF-Connecting-IP).
 */
export function withWorkersDeadlines<R extends Request = Request, Env = unknown, Ctx = WorkersExecutionContext>(
  handler: WorkersFetchHandler<R, Env, Ctx>,
  options: AdapterOptions<[Env, Ctx]> = {},
): (request: R, env: Env, ctx: Ctx) => Promise<Response> {
  checkFunction("stream-deadlines/workers", handler);
  // A native body (a proxied fetch()) read in 4 KiB chunks costs far more CPU than passing it on:
  // withDeadlines reads the bodies it guards through largeChunkReader.
  const guarded = adapterDeadlines(
    handler as WorkersFetchHandler<Request, Env, Ctx>,
    policyWithClient<[Env, Ctx]>(options, "workers", clientAddress),
  );

  return async function fetchWithDeadlines(request: R, env: Env, ctx: Ctx): Promise<Response> {
    const exchange = new WorkersExchange();
    const upload = inWorkerd ? requestWithLargeChunks(request) : undefined;
    const response = await guarded(upload?.request ?? request, [env, ctx], exchange);
    upload?.source.releaseUnread();
    // Only a body withDeadlines guarded is piped: not one it passed through (the handler's own
    // Response), found in memory, nor a timeout answer.
    if (!exchange.guardedBody || response.body === null) return response;
    return pipedBody(response, ctx);
  };
}

function ignore(): void {}
