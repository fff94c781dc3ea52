/**
 * `npm start` (until the demo server lands with the runtime adapters): four peers in one process,
 * on real time with limits of a few hundred milliseconds, showing what each limit does.
 */
import { guardInboundStream, guardOutboundStream, isTimeoutError } from "../src/index.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A peer that sends `chunks` of `size` bytes, `gapMs` apart. */
function peer(chunks: number, size: number, gapMs: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        if (sent === chunks) return c.close();
        await sleep(gapMs);
        sent++;
        c.enqueue(new Uint8Array(size));
      },
    },
    { highWaterMark: 0 },
  );
}

async function drain(stream: ReadableStream<Uint8Array>, pauseMs = 0): Promise<string> {
  let bytes = 0;
  try {
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.byteLength;
      if (pauseMs) await sleep(pauseMs);
    }
    return `completed, ${bytes} bytes`;
  } catch (error) {
    return isTimeoutError(error) ? `cut: ${error.message}` : `failed: ${String(error)}`;
  }
}

const scenarios: [string, () => Promise<string>][] = [
  [
    "upload stalls (idle 300 ms, the peer goes quiet for 1 s)",
    () => drain(guardInboundStream(peer(2, 100, 1000), { idle: 300, subject: "request body" }).readable),
  ],
  [
    "upload drips 10 B every 50 ms = 200 B/s (minRate 1 KiB/s, grace 400 ms)",
    () => drain(guardInboundStream(peer(100, 10, 50), { minRate: 1024, grace: 400, subject: "request body" }).readable),
  ],
  [
    "handler busy 1 s between reads, peer is fast (idle 300 ms): the handler's pause is not the peer's fault",
    () => drain(guardInboundStream(peer(3, 100, 0), { idle: 300, subject: "request body" }).readable, 1000),
  ],
  [
    "SSE producer quiet 800 ms between events (idle 300 ms): the client is not to blame",
    () => drain(guardOutboundStream(peer(3, 20, 800), { idle: 300, subject: "response body" }).readable),
  ],
  [
    "client stops reading a download (idle 300 ms)",
    () => drain(guardOutboundStream(peer(10, 65536, 0), { idle: 300, subject: "response body" }).readable, 2000),
  ],
];

console.log("stream-deadlines: each scenario runs on real time\n");
for (const [title, run] of scenarios) {
  const started = performance.now();
  const outcome = await run();
  console.log(`- ${title}\n    -> ${outcome} (after ${Math.round(performance.now() - started)} ms)`);
}
