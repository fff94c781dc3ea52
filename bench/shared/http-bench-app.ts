/**
 * The handler every HTTP bench server runs, bare or guarded, on every runtime (WHATWG only).
 *   GET  /small            a tiny response ("hello world\n"), no declared length (as handlers write it)
 *   GET  /download?bytes=N N bytes in 64 KiB chunks (one preallocated chunk reused: the bench
 *                          measures transport and deadlines, not byte generation)
 *   POST /upload           reads the whole body and answers {"bytes":N,"chunks":C} (C: reads that returned bytes)
 */
const CHUNK = new Uint8Array(64 * 1024).fill(0x61);

export async function benchHandler(request: Request): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname === "/small") return new Response("hello world\n", { headers: { "content-type": "text/plain" } });
  if (url.pathname === "/download") {
    const total = Number(url.searchParams.get("bytes") ?? 1024 * 1024);
    let sent = 0;
    return new Response(
      new ReadableStream<Uint8Array>(
        {
          pull(controller) {
            if (sent >= total) return controller.close();
            const size = Math.min(CHUNK.length, total - sent);
            sent += size;
            controller.enqueue(size === CHUNK.length ? CHUNK : CHUNK.subarray(0, size));
          },
        },
        { highWaterMark: 0 },
      ),
      { headers: { "content-type": "application/octet-stream" } },
    );
  }
  if (url.pathname === "/upload" && request.method === "POST") {
    let bytes = 0;
    let chunks = 0; // reported so that the benches can show the chunk size the handler saw
    const reader = request.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      chunks++;
    }
    return Response.json({ bytes, chunks });
  }
  return new Response("not found\n", { status: 404 });
}

/**
 * The floor any wrapper on WHATWG streams pays to see a body's reads: one more pull-based stream
 * around it (no buffer, no deadline). The benches measure it beside the guarded path.
 */
export function passThrough(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      pull: (c) => reader.read().then((r) => (r.done ? c.close() : c.enqueue(r.value))),
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}

/**
 * The same request with its body read through `passThrough`, carried by a new Request as the library
 * carries its guarded body (method, headers, signal): the floor of guarding an upload.
 */
export function withPassThroughBody(request: Request): Request {
  if (request.body === null) return request;
  return new Request(request.url, {
    method: request.method,
    headers: request.headers,
    body: passThrough(request.body),
    duplex: "half",
    signal: request.signal,
  } as RequestInit);
}
