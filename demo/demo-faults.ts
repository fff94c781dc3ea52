/**
 * Fault endpoints of the demo, served only when observing (test/faults.test.ts drives them): handlers
 * and producers that misbehave on purpose, so the fault tests can show that the server keeps
 * answering, that nothing of a request outlives it, and that every firing is reported once.
 *
 *   /fault/throw-before?how=sync|async       the handler throws before returning a Response
 *   /fault/body-error?how=pull|pull-async|outside|start&after=N[&chunked=1]
 *                                            the body's producer fails after N bytes (after the
 *                                            Response was returned): pull throws, pull's promise
 *                                            rejects, controller.error() from a timer, start rejects
 *   /fault/ignore-signal?phase=handler|body  the handler (or its producer) ignores the abort and keeps
 *                                            producing: late past the handler deadline, or pushing
 *                                            chunks to a client that stopped reading
 *   /fault/limit-in-pull?set=total|idle&after=N[&value=MS]
 *                                            the body's pull changes the response limits
 *   POST /fault/upload-set?after=MS&idle=MS  changes the request idle limit while a read is pending
 *   POST /fault/upload-set?at=EPOCH_MS       puts the upload's total deadline at a wall-clock instant
 *                                            (thousands of uploads time out at the same instant)
 *
 * Every observation carries the request's `id` query parameter (added by the caller's `note`).
 */
import { deadlines } from "../src/index.ts";

type Note = (event: Record<string, unknown>) => void;
type Describe = (reason: unknown) => Record<string, unknown>;

const KiB = 1024;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function int(url: URL, name: string, fallback: number): number {
  const raw = url.searchParams.get(name);
  const value = raw === null ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number`);
  return value;
}

/** Headers of a streamed body: a declared length (so every runtime can show a cut as a short body), or chunked. */
function bodyHeaders(url: URL, length: number): HeadersInit {
  return url.searchParams.has("chunked")
    ? { "content-type": "application/octet-stream" }
    : { "content-type": "application/octet-stream", "content-length": String(length) };
}

/**
 * A producer that never looks at backpressure, cancel or any signal: it pushes a 64 KiB chunk every
 * 10 ms and only stops after the stream refused 10 of its chunks (or after `forMs`).
 */
function stubbornBody(note: Note, describe: Describe, forMs: number): ReadableStream<Uint8Array> {
  let enqueued = 0;
  let refused = 0;
  let cancelled = false;
  let timer: ReturnType<typeof setInterval> | undefined;
  const started = Date.now();
  return new ReadableStream<Uint8Array>({
    start(controller) {
      timer = setInterval(() => {
        try {
          controller.enqueue(new Uint8Array(64 * KiB));
          enqueued++;
        } catch {
          refused++;
        }
        if (refused >= 10 || Date.now() - started > forMs) {
          clearInterval(timer);
          note({ event: "producer-stopped", enqueued, refused, cancelled });
        }
      }, 10);
    },
    cancel(reason) {
      cancelled = true; // and nothing else: it keeps producing
      note({ event: "producer-cancelled", ...describe(reason) });
    },
  });
}

/** Serves /fault/* (undefined for any other path). */
export function faultResponse(
  request: Request,
  url: URL,
  note: Note,
  describe: Describe,
): Promise<Response> | undefined {
  if (!url.pathname.startsWith("/fault/")) return undefined;
  return serveFault(request, url, note, describe).catch((error: unknown) => {
    if (error instanceof RangeError) return new Response(`${error.message}\n`, { status: 400 });
    throw error;
  });
}

async function serveFault(request: Request, url: URL, note: Note, describe: Describe): Promise<Response> {
  const route = `${request.method} ${url.pathname}`;
  switch (url.pathname) {
    case "/fault/throw-before": {
      if (url.searchParams.get("how") === "async") await sleep(20);
      note({ event: "fault-thrown", where: "before" });
      throw new Error("fault: the handler threw before returning a Response");
    }

    case "/fault/body-error": {
      const how = url.searchParams.get("how") ?? "pull";
      const after = int(url, "after", 256 * KiB);
      const length = 64 * 1024 * KiB;
      const chunk = 16 * KiB;
      let sent = 0;
      let timer: ReturnType<typeof setInterval> | undefined;
      const failure = () => {
        note({ event: "producer-failed", how, bytes: sent });
        return new Error(`fault: the producer failed after ${sent} bytes (${how})`);
      };
      const cancel = (reason: unknown) => {
        clearInterval(timer);
        note({ event: "producer-cancelled", path: url.pathname, bytes: sent, ...describe(reason) });
      };
      let source: UnderlyingDefaultSource<Uint8Array>;
      if (how === "pull") {
        source = {
          pull(controller) {
            if (sent >= after) throw failure();
            controller.enqueue(new Uint8Array(chunk));
            sent += chunk;
          },
          cancel,
        };
      } else if (how === "pull-async") {
        source = {
          async pull(controller) {
            await sleep(1);
            if (sent >= after) throw failure(); // the pull's promise rejects
            controller.enqueue(new Uint8Array(chunk));
            sent += chunk;
          },
          cancel,
        };
      } else if (how === "outside") {
        source = {
          start(controller) {
            // Produced from a timer, not from pull (a push source); the error too.
            timer = setInterval(() => {
              if (sent >= after) {
                clearInterval(timer);
                controller.error(failure());
                return;
              }
              controller.enqueue(new Uint8Array(chunk));
              sent += chunk;
            }, 2);
          },
          cancel,
        };
      } else if (how === "start") {
        // start() settles after the Response was returned, and rejects: the body fails before its first byte.
        source = { start: () => sleep(50).then(() => Promise.reject(failure())), cancel };
      } else throw new RangeError("how must be pull, pull-async, outside or start");
      return new Response(new ReadableStream<Uint8Array>(source, { highWaterMark: 0 }), {
        headers: bodyHeaders(url, length),
      });
    }

    case "/fault/ignore-signal": {
      const phase = url.searchParams.get("phase") ?? "body";
      const forMs = int(url, "for", 10_000);
      if (phase === "handler") {
        // Past the handler deadline: the client already got its 503 and the signal aborted; ignored.
        await sleep(int(url, "ms", 1000));
        note({ event: "late-handler-returned", signalAborted: deadlines(request).signal.aborted });
      } else if (phase !== "body") throw new RangeError("phase must be handler or body");
      return new Response(stubbornBody(note, describe, forMs), { headers: bodyHeaders(url, 1024 * 1024 * KiB) });
    }

    case "/fault/limit-in-pull": {
      const set = url.searchParams.get("set") ?? "total";
      if (set !== "total" && set !== "idle") throw new RangeError("set must be total or idle");
      const after = int(url, "after", 256 * KiB);
      const value = int(url, "value", 200);
      const controls = deadlines(request);
      const chunk = 64 * KiB;
      let sent = 0;
      let changed = false;
      const body = new ReadableStream<Uint8Array>(
        {
          pull(controller) {
            if (!changed && sent >= after) {
              changed = true;
              // A total deadline a second ago has passed already: it fires inside this call.
              controls.response.set(set === "total" ? { total: new Date(Date.now() - 1000) } : { idle: value });
              note({ event: "limit-set-in-pull", set, bytes: sent, state: controls.response.state });
            }
            controller.enqueue(new Uint8Array(chunk)); // throws once the firing above cancelled the stream
            sent += chunk;
          },
          cancel(reason) {
            note({ event: "producer-cancelled", path: url.pathname, bytes: sent, ...describe(reason) });
          },
        },
        { highWaterMark: 0 },
      );
      return new Response(body, { headers: bodyHeaders(url, 1024 * 1024 * KiB) });
    }

    case "/fault/upload-set": {
      if (request.method !== "POST") break;
      const controls = deadlines(request);
      const at = url.searchParams.get("at");
      if (at !== null) controls.request.set({ idle: null, minRate: null, total: new Date(Number(at)) });
      const after = url.searchParams.has("after") ? int(url, "after", 0) : undefined;
      const idle = int(url, "idle", 100);
      const reader = request.body!.getReader();
      let readPending = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      if (after !== undefined) {
        timer = setTimeout(() => {
          const pending = readPending;
          controls.request.set({ idle });
          note({ event: "limit-set-while-reading", readPending: pending, idle, state: controls.request.state });
        }, after);
      }
      let bytes = 0;
      try {
        for (;;) {
          readPending = true;
          const { done, value } = await reader.read();
          readPending = false;
          if (done) break;
          bytes += value.byteLength;
        }
      } catch (error) {
        note({ event: "upload-failed", path: url.pathname, bytes, ...describe(error) });
        throw error; // a request-body timeout becomes 408 in withDeadlines
      } finally {
        clearTimeout(timer);
      }
      return Response.json({ bytes });
    }
  }
  return new Response(`no such fault: ${route}\n`, { status: 404 });
}
