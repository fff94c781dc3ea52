/**
 * The Node adapter's Request: srvx's lazy NodeRequest, whose body the core guards in place
 * (the `guardRequestBodyInPlace` hook), read straight from Node's IncomingMessage (or Http2ServerRequest).
 *
 * Why not srvx's body wrapped by the core: srvx turns the IncomingMessage into a web stream
 * (`Readable.toWeb`, which also copies every chunk), the core wraps that in a guarded stream and
 * hands the handler a copy of the Request carrying it. On Node 20 a web stream weighs 2.4 KB, and the
 * pass-through plus the copy 6 KB per pending upload (bench/scale/run-stream-floor-memory.ts). Reading the
 * IncomingMessage directly, one stream serves: the guarded one.
 */
import { Readable } from "node:stream";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { NodeRequest } from "srvx/node";
import type { BodyReader, InboundBodyGuard } from "../src/http/adapter-contract.ts";

type NodeBodySource = IncomingMessage | Http2ServerRequest;
type ReadResult = { done: false; value: Uint8Array } | { done: true; value: undefined };

const DONE: ReadResult = Object.freeze({ done: true, value: undefined }) as ReadResult;
const READER: unique symbol = Symbol("stream-deadlines/node: body reader");
type WithReader = NodeBodySource & { [READER]?: IncomingMessageReader };

/**
 * A pull reader of an IncomingMessage in paused mode: a read takes what Node has buffered, or waits
 * for the next 'readable'. Nothing is read ahead beyond Node's own buffer (16 KiB), so a handler that
 * does not read stops the socket, as srvx's stream does. The listeners are shared functions: the
 * message holds its reader under a symbol.
 */
class IncomingMessageReader implements BodyReader {
  private resolve: ((result: ReadResult) => void) | undefined = undefined;
  private reject: ((error: unknown) => void) | undefined = undefined;
  private failure: unknown = undefined;
  private ended = false;

  constructor(private readonly source: NodeBodySource) {
    // Already over before the handler ran (srvx's isBodySourceFinished): no event will come.
    if (source.readableEnded) this.ended = true;
    else if (source.destroyed)
      this.failure = source.errored ?? new DOMException("The request was aborted.", "AbortError");
    (source as WithReader)[READER] = this;
    source.on("readable", onReadable);
    source.on("end", onEnd);
    source.on("error", onError);
    source.on("close", onClose);
  }

  read(): Promise<ReadResult> {
    const chunk = this.take();
    if (chunk !== null) return Promise.resolve({ done: false, value: chunk });
    if (this.ended) return Promise.resolve(DONE);
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise<ReadResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /**
   * As srvx's stream (Node's `Readable.toWeb`) does: the message is destroyed, and an HTTP/1.1
   * message is first detached from its socket, which stays for the answer (Node's own `destroyer`).
   */
  cancel(reason?: unknown): Promise<void> {
    this.ended = true;
    const source = this.source;
    if (!source.destroyed) {
      if (typeof (source as { _consuming?: unknown })._consuming === "boolean")
        (source as { socket: unknown }).socket = null;
      source.destroy(reason instanceof Error ? reason : undefined);
    }
    return Promise.resolve();
  }

  private take(): Uint8Array | null {
    if (this.ended || this.failure !== undefined) return null;
    const chunk = this.source.read() as Buffer | null;
    if (chunk === null) return null;
    // A view into a larger buffer would show a handler bytes that are not its own (and the guarded
    // byte stream transfers the whole buffer of each chunk it hands on).
    return chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength ? chunk : new Uint8Array(chunk);
  }

  onReadable(): void {
    if (this.resolve === undefined) return;
    const chunk = this.take();
    if (chunk !== null) this.settle({ done: false, value: chunk });
  }

  onEnd(): void {
    this.ended = true;
    if (this.resolve !== undefined) this.settle(DONE);
  }

  onFailure(error: unknown): void {
    if (this.ended || this.failure !== undefined) return;
    this.failure = error;
    const reject = this.reject;
    this.resolve = this.reject = undefined;
    reject?.(error);
  }

  private settle(result: ReadResult): void {
    const resolve = this.resolve!;
    this.resolve = this.reject = undefined;
    resolve(result);
  }
}

function onReadable(this: WithReader): void {
  this[READER]!.onReadable();
}
function onEnd(this: WithReader): void {
  this[READER]!.onEnd();
}
function onError(this: WithReader, error: unknown): void {
  this[READER]!.onFailure(error);
}
/** Closed before its end: the client went away (srvx's error for it). */
function onClose(this: WithReader): void {
  if (!this.readableEnded)
    this[READER]!.onFailure(this.errored ?? new DOMException("The request was aborted.", "AbortError"));
}

/** srvx's request with one difference: its body, once the core guards it, is the guarded stream. */
export class GuardableNodeRequest extends NodeRequest {
  /** The guarded body, once the core made it. */
  private guardedBody: ReadableStream<Uint8Array> | undefined = undefined;
  /** Something read `body` before the core could guard it (a policy): the core copies instead. */
  private rawBodyTaken = false;

  override get body(): ReadableStream<Uint8Array<ArrayBuffer>> | null {
    if (this.guardedBody !== undefined) return this.guardedBody as ReadableStream<Uint8Array<ArrayBuffer>>;
    this.rawBodyTaken = true;
    return super.body;
  }

  override get bodyUsed(): boolean {
    return super.bodyUsed || (this.guardedBody !== undefined && Readable.isDisturbed(this.guardedBody as never));
  }

  // srvx reads these straight from the IncomingMessage when it has no stream of its own; with a
  // guarded body they go through it, as arrayBuffer() and the rest already do (srvx's `_request`).
  override text(): Promise<string> {
    return this.guardedBody !== undefined ? this.viaNativeRequest("text") : super.text();
  }

  // biome-ignore lint/suspicious/noExplicitAny: the signature of Request.json()
  override json(): Promise<any> {
    return this.guardedBody !== undefined ? this.viaNativeRequest("json") : super.json();
  }

  private viaNativeRequest<K extends "text" | "json">(method: K): ReturnType<Request[K]> {
    if (this.bodyUsed)
      return Promise.reject(new TypeError("Body is unusable: Body has already been read")) as ReturnType<Request[K]>;
    try {
      return (this as unknown as { _request: Request })._request[method]() as ReturnType<Request[K]>;
    } catch (error) {
      return Promise.reject(error) as ReturnType<Request[K]>;
    }
  }

  /** The `guardRequestBodyInPlace` hook: the core's deadlines go on the IncomingMessage itself. */
  guardBodyInPlace(guard: InboundBodyGuard): boolean {
    if (this.rawBodyTaken || super.bodyUsed) return false;
    const source = (this.runtime as { node: { req: NodeBodySource } }).node.req;
    const method = source.method;
    if (method === "GET" || method === "HEAD") return true; // no body, as srvx says
    if ("rawBody" in source) return false; // a body some middleware already buffered: srvx's way
    // A byte stream, as Node's own Request bodies are: the reader's chunks are its own (see take()).
    this.guardedBody = guard.guardRequestBody(new IncomingMessageReader(source), true);
    return true;
  }
}

/** The `guardRequestBodyInPlace` hook of the Node adapter. */
export function guardNodeBodyInPlace(request: Request, guard: InboundBodyGuard): boolean {
  return typeof (request as Partial<GuardableNodeRequest>).guardBodyInPlace === "function"
    ? (request as unknown as GuardableNodeRequest).guardBodyInPlace(guard)
    : false;
}
