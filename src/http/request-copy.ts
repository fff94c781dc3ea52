/**
 * The handler's Request when the core guards its body: the same request (method, URL, headers,
 * signal, and Workers' `cf`) with the guarded body. Built from its fields rather than
 * `new Request(original, init)`: adapters' lazy Request classes (srvx, @hono/node-server) are not the
 * runtime's own Request, which `new Request(request)` needs.
 */
import { isByteStream } from "../guards/common.ts";
import type { AdapterHooks, InboundBodyGuard } from "./hooks.ts";

/**
 * The copy, its body guarded by `guard`, or undefined when `original` has no body to guard (none,
 * used, or being read). A byte stream's guard is one too; so is that of a body an adapter reads
 * (requestBodyReader) when its reader says its chunks are its own.
 */
export function guardedRequest(original: Request, hooks: AdapterHooks, guard: InboundBodyGuard): Request | undefined {
  const body = original.body;
  if (body === null || original.bodyUsed || body.locked) return undefined;
  const hooked = hooks.requestBodyReader?.(body);
  const bytes = hooked === undefined ? isByteStream(body) : hooked.bytes === true; // asked before the reader is taken
  const init: RequestInit & { duplex: "half" } = {
    method: original.method,
    headers: original.headers,
    body: guard.guardRequestBody(hooked ?? body.getReader(), bytes),
    duplex: "half",
    signal: original.signal as AbortSignal | undefined | null,
  };
  const cf = (original as { cf?: unknown }).cf;
  if (cf !== undefined) (init as { cf?: unknown }).cf = cf;
  return new Request(original.url, init);
}
