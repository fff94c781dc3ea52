/**
 * In-process handler bench: requests per second of a trivial fetch handler wrapped by
 * withDeadlines (default limits) over the same handler bare. No sockets: each request is what a
 * runtime does in process — build a Request, call the handler, read the whole response body.
 *
 * Run: npx tsx bench/core/run-handler.ts [--quick]
 * Output: `ratio handler.small <x.xxx>` plus `figure` lines.
 */
import { deadlineDebugCounters, withDeadlines } from "../../src/index.ts";
import { passThrough } from "../shared/http-bench-app.ts";

// The floor of any wrapper that bounds a response body: one more pull-based stream (passThrough)
// and one more Response per request, and nothing else. Measured beside the others so its share is visible.

const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 3 : 9;
const SAMPLE_MS = quick ? 40 : 300;

type Handler = (request: Request) => Promise<Response> | Response;

const bare: Handler = () => new Response("hello world\n", { headers: { "content-type": "text/plain" } });
const wrapped = withDeadlines(bare, { onTimeout: false }) as Handler;
/** The same handler declaring its length: small declared bodies go out unwrapped. */
const declared: Handler = () =>
  new Response("hello world\n", { headers: { "content-type": "text/plain", "content-length": "12" } });
const wrappedDeclared = withDeadlines(declared, { onTimeout: false }) as Handler;
const floor: Handler = async (request) => {
  const response = await bare(request);
  return new Response(passThrough(response.body!), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
};

async function oneRequest(handler: Handler): Promise<void> {
  const response = await handler(new Request("http://localhost/hello"));
  await response.text();
}

/** Runs requests back to back for about SAMPLE_MS; returns requests per second. */
async function sample(handler: Handler): Promise<number> {
  const started = performance.now();
  let n = 0;
  let elapsed = 0;
  do {
    for (let i = 0; i < 200; i++) await oneRequest(handler);
    n += 200;
    elapsed = performance.now() - started;
  } while (elapsed < SAMPLE_MS);
  return (n * 1000) / elapsed;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

console.log(
  `# handler bench: node ${process.version}; ${ROUNDS} interleaved rounds of ~${SAMPLE_MS} ms, median requests/s; ratio = withDeadlines / bare`,
);
const variants: [string, Handler][] = [
  ["bare", bare],
  ["floor", floor],
  ["guarded", wrapped],
  ["declaredBare", declared],
  ["declaredGuarded", wrappedDeclared],
];
for (let i = 0; i < (quick ? 1 : 3); i++) for (const [, h] of variants) await sample(h);
const rates = new Map<string, number[]>(variants.map(([name]) => [name, []]));
for (let round = 0; round < ROUNDS; round++) {
  // Rotate the order each round so no variant always runs after the same one.
  const order = variants.map((_, i) => variants[(i + round) % variants.length]!);
  for (const [name, h] of order) rates.get(name)!.push(await sample(h));
}
const b = median(rates.get("bare")!);
const f = median(rates.get("floor")!);
const w = median(rates.get("guarded")!);
console.log(`figure handler.small.bare_rps ${b.toFixed(0)} req/s`);
console.log(`figure handler.small.floor_rps ${f.toFixed(0)} req/s (pass-through stream + new Response only)`);
console.log(`figure handler.small.guarded_rps ${w.toFixed(0)} req/s`);
console.log(
  `figure handler.small.overhead_us_per_request ${(1e6 / w - 1e6 / b).toFixed(2)} us (floor ${(1e6 / f - 1e6 / b).toFixed(2)} us)`,
);
console.log(`ratio handler.small.floor ${(f / b).toFixed(3)}`);
console.log(`ratio handler.small.vs_floor ${(w / f).toFixed(3)}`);
console.log(`ratio handler.small ${(w / b).toFixed(3)}`);
console.log(
  `ratio handler.small.declared_length ${(median(rates.get("declaredGuarded")!) / median(rates.get("declaredBare")!)).toFixed(3)}`,
);
const counters = deadlineDebugCounters();
if (counters.liveGuards !== 0 || counters.scheduledDeadlines !== 0)
  throw new Error(`leak after bench: ${JSON.stringify(counters)}`);
