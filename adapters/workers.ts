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
 *   adapter reads such bodies with 64 KiB BYOB reads before guarding them (7x less CPU, measured).
 * - The policy's client address is the `CF-Connecting-IP` header, which Cloudflare's edge sets
 *   (and overwrites) on every request. Behind anything else (local miniflare/wrangler accept a
 *   client-sent value) it is only as trustworthy as whatever sets it.
 *
 * Only structural types here: published sources must not depend on @cloudflare/workers-types
 * (the project's own checks type this file against it: tsconfig.check-workers.json).
 */
import { type RequestPolicy, type WithDeadlinesOptions, UNGUARDED_DECLARED_LENGTH, withDeadlines } from "../src/index.ts";
import { declaredContentLength, guardsResponseBody } from "../src/with-deadlines.ts";
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
 * Size of the buffer each read of a native body fills. workerd hands a default reader 4 KiB
 * chunks; a BYOB read fills up to this much with what has already arrived (it never waits for
 * more), so a proxied body crosses into JavaScript 16 times less often (bench/run-workers-proxy.ts).
 */
export const NATIVE_READ_BYTES = 64 * 1024;

/**
 * Reads a byte stream (a native `fetch()` body, a Response made from bytes) in 64 KiB BYOB reads.
 * One object per stream, methods on the prototype: no closures per request.
 */
class LargeChunkSource {
  constructor(private readonly reader: ReadableStreamBYOBReader) {}

  async pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    // A fresh buffer each time: the chunk is handed on, and a BYOB read transfers its buffer anyway.
    const { done, value } = await this.reader.read(new Uint8Array(NATIVE_READ_BYTES));
    if (done) controller.close();
    else if (value !== undefined && value.byteLength > 0) controller.enqueue(value);
  }

  cancel(reason: unknown): Promise<void> {
    return this.reader.cancel(reason);
  }
}

/**
 * The same request with its body read in large chunks (an upload is a native body: its default
 * reads come in 4 KiB). Undefined when there is no body or it is not a byte stream.
 */
function requestWithLargeChunks<R extends Request>(request: R): R | undefined {
  if (request.body === null || request.body.locked) return undefined;
  let reader: ReadableStreamBYOBReader;
  try {
    reader = request.body.getReader({ mode: "byob" });
  } catch {
    return undefined;
  }
  const body = new ReadableStream<Uint8Array>(new LargeChunkSource(reader), { highWaterMark: 0 });
  // new Request(request, init) keeps everything of the original (cf, signal) but the body.
  return new Request(request, { body, duplex: "half" } as RequestInit) as R;
}

/** Small bodies withDeadlines found already in memory and handed on unguarded: nothing to pipe. */
const unguarded = new WeakSet<Response>();
const unguardedBytes = (body: Uint8Array, init: ResponseInit): Response => {
  const response = new Response(body as Uint8Array<ArrayBuffer>, init);
  unguarded.add(response);
  return response;
};

/** The same response with its body read in large chunks, when the body is a byte stream; else undefined. */
function withLargeChunks(response: Response): Response | undefined {
  let reader: ReadableStreamBYOBReader;
  try {
    reader = response.body!.getReader({ mode: "byob" });
  } catch {
    return undefined; // a JavaScript default stream: its producer already chose its chunk sizes
  }
  const body = new ReadableStream<Uint8Array>(new LargeChunkSource(reader), { highWaterMark: 0 });
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}

/** Per request: what the handler returned, so only bodies withDeadlines guarded are re-piped. */
interface Slot {
  response: unknown;
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
  const fixed = FixedLength !== undefined && length !== undefined && length > UNGUARDED_DECLARED_LENGTH && !encoded(response);
  const waitUntil = (ctx as Partial<WorkersExecutionContext> | null | undefined)?.waitUntil;
  if (!fixed && (Identity === undefined || typeof waitUntil !== "function")) return response;
  const { readable, writable } = fixed ? new FixedLength!(length!) : new Identity!();
  // The pipe fails when the body is cut or cancelled: withDeadlines has reported that already.
  const done = response.body!.pipeTo(writable).catch(ignore);
  if (typeof waitUntil === "function") waitUntil.call(ctx, done);
  return new Response(readable, { status: response.status, statusText: response.statusText, headers: response.headers });
}

/**
 * Wraps a Workers fetch handler so every request runs under deadlines. `options` are withDeadlines'
 * options; `policy(request, client, env, ctx)` also gets `client.address` (from CF-Connecting-IP).
 */
export function withWorkersDeadlines<R extends Request = Request, Env = unknown, Ctx = WorkersExecutionContext>(
  handler: WorkersFetchHandler<R, Env, Ctx>,
  options: AdapterOptions<[Env, Ctx]> = {},
): (request: R, env: Env, ctx: Ctx) => Promise<Response> {
  if (typeof handler !== "function") throw new TypeError(`stream-deadlines/workers: handler must be a function, got ${typeof handler}`);
  const { policy, ...rest } = policyWithClient<[Env, Ctx]>(options, "workers", clientAddress);
  // The slot rides along as a fourth argument; the user's policy sees only (request, client, env, ctx).
  const coreOptions: WithDeadlinesOptions<[Env, Ctx, Slot]> = {
    inMemoryResponse: unguardedBytes,
    ...(policy === undefined ? rest : { ...rest, policy: (request: Request, env: Env, ctx: Ctx): RequestPolicy | undefined | null | void => policy(request, env, ctx) }),
  };

  const guarded = withDeadlines(async (request: Request, env: Env, ctx: Ctx, slot: Slot): Promise<Response> => {
    const response = await handler(request as R, env, ctx);
    // A native body (a proxied fetch()) read in 4 KiB chunks costs far more CPU than passing it on.
    const result = inWorkerd && guardsResponseBody(request, response) ? (withLargeChunks(response) ?? response) : response;
    slot.response = result;
    return result;
  }, coreOptions);

  return async function fetchWithDeadlines(request: R, env: Env, ctx: Ctx): Promise<Response> {
    const slot: Slot = { response: undefined };
    const response = await guarded((inWorkerd ? requestWithLargeChunks(request) : undefined) ?? request, env, ctx, slot);
    if (unguarded.has(response)) return response;
    // Only a body withDeadlines guarded is piped: not one it passed through (the handler's own
    // Response), nor a timeout answer (given before the handler returned, or instead of its throw).
    const handlerResponse = slot.response as Response | undefined;
    if (response === handlerResponse || handlerResponse === undefined || response.status !== handlerResponse.status || response.body === null) return response;
    return pipedBody(response, ctx);
  };
}

function ignore(): void {}
