/**
 * The links harness's server handler, the same on every runtime (WHATWG only). Each request carries `?id=…`; the
 * server reports what it saw as JSON lines (through `emit`), with wall-clock times in ms (`t`), which the harness
 * matches with what the client saw:
 *
 *   POST /upload?id        reads the body, answers {"bytes","sha256"}; reports the longest wait between two chunks
 *   GET  /download?id&bytes=N[&idle=MS]
 *                          streams N bytes of the pattern; reports the longest wait between two takes of the runtime
 *                          (the guard reads one chunk ahead, so a pull of this producer is a take of the previous one);
 *                          `idle` sets this response's idle limit (through the live controller)
 *   GET  /events?id&every=MS&count=K
 *                          text/event-stream, one event every MS ms
 */
import { deadlines, type TimeoutEvent } from "../../src/index.ts";
import { CHUNK, hex, patternChunk } from "./pattern.ts";

export type Emit = (event: Record<string, unknown>) => void;

function describe(reason: unknown): string {
  if (reason instanceof Error || reason instanceof DOMException) return `${reason.name}: ${reason.message}`;
  return String(reason);
}

function intParam(url: URL, name: string, fallback: number): number {
  const value = Number(url.searchParams.get(name) ?? fallback);
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number`);
  return value;
}

export function createLinksApp(emit: Emit) {
  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const id = url.searchParams.get("id") ?? "";
    if (request.method === "POST" && url.pathname === "/upload") {
      const reader = request.body!.getReader();
      const chunks: Uint8Array[] = [];
      let bytes = 0;
      const start = Date.now();
      let last = start;
      let maxGap = 0;
      try {
        for (;;) {
          const { done, value } = await reader.read();
          const now = Date.now();
          if (done) break;
          maxGap = Math.max(maxGap, now - last);
          last = now;
          chunks.push(value);
          bytes += value.byteLength;
        }
      } catch (error) {
        emit({ event: "upload-failed", id, bytes, lastChunkAt: last, t: Date.now(), reason: describe(error) });
        throw error; // a request-body timeout becomes 408
      }
      const body = new Uint8Array(bytes);
      let at = 0;
      for (const chunk of chunks) {
        body.set(chunk, at);
        at += chunk.byteLength;
      }
      const sha256 = hex(await crypto.subtle.digest("SHA-256", body));
      emit({ event: "upload-complete", id, bytes, maxGap, ms: last - start, t: Date.now() });
      return Response.json({ bytes, sha256 });
    }

    if (request.method === "GET" && url.pathname === "/download") {
      const total = intParam(url, "bytes", CHUNK);
      if (url.searchParams.has("idle")) deadlines(request).response.set({ idle: intParam(url, "idle", 0) });
      let sent = 0;
      let index = 0;
      let lastPull = 0;
      let maxGap = 0;
      const start = Date.now();
      const body = new ReadableStream<Uint8Array>(
        {
          pull(controller) {
            const now = Date.now();
            if (lastPull !== 0) maxGap = Math.max(maxGap, now - lastPull);
            lastPull = now;
            if (sent >= total) {
              controller.close();
              emit({ event: "download-complete", id, bytes: sent, maxGap, ms: now - start, t: now });
              return;
            }
            const chunk = patternChunk(index++, Math.min(CHUNK, total - sent));
            sent += chunk.byteLength;
            controller.enqueue(chunk);
          },
          cancel(reason) {
            emit({
              event: "download-cancelled",
              id,
              bytes: sent,
              lastPullAt: lastPull,
              maxGap,
              t: Date.now(),
              reason: describe(reason),
            });
          },
        },
        { highWaterMark: 0 },
      );
      return new Response(body, {
        headers: { "content-type": "application/octet-stream", "content-length": String(total) },
      });
    }

    if (request.method === "GET" && url.pathname === "/events") {
      const every = intParam(url, "every", 1000);
      const count = intParam(url, "count", 3);
      const encoder = new TextEncoder();
      let sent = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const body = new ReadableStream<Uint8Array>(
        {
          async pull(controller) {
            if (sent >= count) {
              controller.close();
              emit({ event: "events-complete", id, count: sent, t: Date.now() });
              return;
            }
            if (sent > 0) await new Promise<void>((resolve) => (timer = setTimeout(resolve, every)));
            controller.enqueue(encoder.encode(`id: ${sent}\ndata: event ${sent} at ${Date.now()}\n\n`));
            sent++;
          },
          cancel(reason) {
            if (timer !== undefined) clearTimeout(timer);
            emit({ event: "events-cancelled", id, count: sent, t: Date.now(), reason: describe(reason) });
          },
        },
        { highWaterMark: 0 },
      );
      return new Response(body, { headers: { "content-type": "text/event-stream", "cache-control": "no-store" } });
    }
    return new Response("not found\n", { status: 404 });
  }

  const onTimeout = (event: TimeoutEvent) =>
    emit({
      event: "timeout",
      id: new URL(event.request.url).searchParams.get("id") ?? "",
      direction: event.direction,
      limit: event.limit,
      bytes: event.bytes,
      elapsed: event.elapsed,
      t: Date.now(),
    });
  return { handler, onTimeout };
}
