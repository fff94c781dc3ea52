/**
 * The handler's Request when the core guards its body: the same request (method, URL, headers,
 * signal, and Workers' `cf`) with the guarded body. Built from its fields rather than `new Request(original, init)`: adapters' lazy Request classes (srvx,
 * @hono/node-server) are not the runtime's own Request, which `new Request(request)` needs.
 */
export function requestWithBody(
  original: Request,
  signal: AbortSignal | undefined | null,
  body: ReadableStream<Uint8Array>,
): Request {
  const init: RequestInit & { duplex: "half" } = {
    method: original.method,
    headers: original.headers,
    body,
    duplex: "half",
    signal,
  };
  const cf = (original as { cf?: unknown }).cf;
  if (cf !== undefined) (init as { cf?: unknown }).cf = cf;
  return new Request(original.url, init);
}
