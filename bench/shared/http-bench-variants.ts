/**
 * Handler variants for the per-request CPU bench (bench/http/run-cpu-per-request.ts): the bench handler
 * bare, under the core alone, and with only one piece of what a wrapper does, so that each piece's
 * cost (and the runtime's floor) can be measured on its own, on each runtime, side by side.
 * WHATWG only: every runtime's serve-bench script adds its own adapter as "guarded".
 */
import { withDeadlines } from "../../src/index.ts";
import { benchHandler, passThrough, withPassThroughBody } from "./http-bench-app.ts";

type Handler = (request: Request, ...rest: never[]) => Response | Promise<Response>;

const init = (r: Response) => ({ status: r.status, statusText: r.statusText, headers: r.headers });

export const GENERIC_VARIANTS: Record<string, Handler> = {
  bare: benchHandler,
  /** withDeadlines alone (no adapter). */
  core: withDeadlines(benchHandler, { onTimeout: false }) as Handler,
  /** An async wrapper that only awaits the handler (the promise hop every wrapper pays). */
  "floor-await": async (request) => await benchHandler(request),
  /** Reads `response.body` (the getter) and nothing else: on runtimes with lazy bodies, this makes the stream. */
  "floor-body-getter": async (request) => {
    const response = await benchHandler(request);
    void response.body;
    return response;
  },
  /** Reads the body through a reader, and hands the bytes on in a new Response: the in-memory path's floor. */
  "floor-read-bytes": async (request) => {
    const response = await benchHandler(request);
    const reader = response.body!.getReader();
    const chunks: Uint8Array[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
    return new Response(
      (chunks.length === 1 ? chunks[0]! : new Blob(chunks as BlobPart[])) as BodyInit,
      init(response),
    );
  },
  /**
   * floor-read-bytes with the one zero timer, set and cleared, that bounds the wait where a body's
   * reads resolve only in a later turn of the event loop (workerd): a wrapper that must not wait on a
   * streaming body for ever pays it there.
   */
  "floor-read-bytes-timer": async (request) => {
    const timer = setTimeout(() => {}, 0);
    const response = await GENERIC_VARIANTS["floor-read-bytes"]!(request);
    clearTimeout(timer);
    return response;
  },
  /** `await response.arrayBuffer()` and a new Response of those bytes (the runtime's native read). */
  "floor-arraybuffer": async (request) => {
    const response = await benchHandler(request);
    return new Response(await response.arrayBuffer(), init(response));
  },
  /**
   * The request body read through a pass-through stream (what guarding an upload costs at the least:
   * one more pull-based stream between the runtime's body and the handler's reader).
   */
  "floor-upload-stream": (request) => benchHandler(withPassThroughBody(request)),
  /** A pass-through stream and a new Response (what guarding a streamed body costs at the least). */
  "floor-stream": async (request) => {
    const response = await benchHandler(request);
    return new Response(passThrough(response.body!), init(response));
  },
};

/**
 * The floor of each measure of the HTTP bench in one server (bench/http/run-http.ts): `/small` through
 * floor-read-bytes, `/download` through floor-stream, `/upload` through floor-upload-stream. What any
 * wrapper on WHATWG streams pays at the least, measured beside bare and guarded.
 */
GENERIC_VARIANTS.floor = (request) => {
  const path = new URL(request.url).pathname;
  const variant = path === "/small" ? "floor-read-bytes" : path === "/upload" ? "floor-upload-stream" : "floor-stream";
  return GENERIC_VARIANTS[variant]!(request);
};

/** The variant named on the command line (`--variant NAME`, or `--bare` / `--guarded`). */
export function variantName(args: readonly string[]): string {
  const i = args.indexOf("--variant");
  if (i >= 0 && i + 1 < args.length) return args[i + 1]!;
  return args.includes("--bare") ? "bare" : "guarded";
}
