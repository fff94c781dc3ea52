/**
 * What the WHATWG objects under a guarded upload weigh on this Node, with no library involved: the
 * floor of bench/scale/run-scale.ts's per-stream figure. Each line keeps 10,000 of one construct alive
 * and reads the heap growth after gc(), per construct:
 *   - a ReadableStream (the shape of a request body);
 *   - a pull-based pass-through stream and its reader around one (how any wrapper sees the reads);
 *   - a Request carrying a stream body, with headers, and with a signal to follow (how a handler
 *     gets a body it did not get from the runtime).
 *
 *   node --expose-gc .bench-out/bench/scale/run-stream-floor-memory.js   (bench/scale/run-scale.sh runs it on Node 20 and 24)
 * Output: `figure floor.node<major>.<construct> <bytes> B`.
 */
const N = 10_000;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run-stream-floor-memory: run node with --expose-gc");
const major = process.versions.node.split(".")[0];
const kept: unknown[] = [];

function bytesPer(make: () => unknown): number {
  kept.length = 0;
  gc!();
  gc!();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < N; i++) kept.push(make());
  gc!();
  gc!();
  const after = process.memoryUsage().heapUsed;
  kept.length = 0;
  return Math.round((after - before) / N);
}

const stalledSource = () =>
  new ReadableStream<Uint8Array>({ pull: () => new Promise<void>(() => {}) }, { highWaterMark: 0 });
const passThrough = (source: ReadableStream<Uint8Array>) => {
  const reader = source.getReader();
  return new ReadableStream<Uint8Array>(
    {
      pull: (controller) => reader.read().then((r) => (r.done ? controller.close() : controller.enqueue(r.value))),
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
};
const headers = new Headers({
  host: "127.0.0.1",
  "content-type": "application/octet-stream",
  "content-length": "100000",
});
const url = "http://127.0.0.1/upload";

const stream = bytesPer(stalledSource);
const withPassThrough = bytesPer(() => passThrough(stalledSource()));
const request = bytesPer(
  () => new Request(url, { method: "POST", body: stalledSource(), duplex: "half" } as RequestInit),
);
const requestHeaders = bytesPer(
  () => new Request(url, { method: "POST", headers, body: stalledSource(), duplex: "half" } as RequestInit),
);
const requestSignal = bytesPer(
  () =>
    new Request(url, {
      method: "POST",
      headers,
      body: stalledSource(),
      duplex: "half",
      signal: new AbortController().signal,
    } as RequestInit),
);

const figure = (name: string, bytes: number) => process.stdout.write(`figure floor.node${major}.${name} ${bytes} B\n`);
figure("readable_stream", stream);
figure("pass_through_beyond_source", withPassThrough - stream);
figure("request_beyond_body", request - stream);
figure("request_with_headers_beyond_body", requestHeaders - stream);
figure("request_with_headers_signal_beyond_body", requestSignal - stream);
// What withDeadlines (and the scale bench's floor) adds around an upload: one pass-through, one Request.
figure("copy_with_pass_through", withPassThrough - stream + requestSignal - stream);
