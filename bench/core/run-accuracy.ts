/**
 * Timer accuracy on the system clock: how late after its due time an idle deadline fires, with
 * the event loop idle and with the loop kept busy. A deadline must never fire early.
 *
 * Due time here is measured from when the read was issued, so "late" includes the rest of the
 * event-loop turn the wait began in (the engine counts a wait from the end of that turn).
 *
 * Run: node .bench-out/bench/core/run-accuracy.js [--quick]   (npm run bench builds and runs it)
 */
import { guardInboundStream } from "../../src/index.ts";

const quick = process.argv.includes("--quick");
const STREAMS = quick ? 50 : 400;

const never = () => new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }, { highWaterMark: 0 });

async function measure(busy: boolean): Promise<number[]> {
  let burner: ReturnType<typeof setInterval> | undefined;
  if (busy) {
    // 4 ms of synchronous work every 10 ms: a loaded server's event loop.
    burner = setInterval(() => {
      const until = performance.now() + 4;
      while (performance.now() < until);
    }, 10);
  }
  const lateness: number[] = [];
  const waits: Promise<void>[] = [];
  for (let i = 0; i < STREAMS; i++) {
    // One new wait per event-loop turn, as requests arrive on a server (not all in one turn).
    await new Promise((resolve) => setImmediate(resolve));
    const idle = 20 + (i % 181);
    const { readable } = guardInboundStream(never(), { idle });
    const readAt = performance.now();
    waits.push(
      readable
        .getReader()
        .read()
        .then(
          () => {},
          () => void lateness.push(performance.now() - (readAt + idle)),
        ),
    );
  }
  await Promise.all(waits);
  if (burner) clearInterval(burner);
  return lateness.sort((a, b) => a - b);
}

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
// Deadline timers are unref'd (they never keep a process alive), so this bench holds the loop open.
const keepAlive = setInterval(() => {}, 1000);
console.log(`# accuracy bench: node ${process.version}; ${STREAMS} idle deadlines of 20-200 ms on the system clock`);
for (const busy of [false, true]) {
  const late = await measure(busy);
  const tag = busy ? "node.busy" : "node";
  console.log(`figure accuracy.${tag}.late_p50 ${pct(late, 50).toFixed(2)} ms`);
  console.log(`figure accuracy.${tag}.late_p99 ${pct(late, 99).toFixed(2)} ms`);
  console.log(`figure accuracy.${tag}.late_max ${late.at(-1)!.toFixed(2)} ms`);
  console.log(`figure accuracy.${tag}.early_count ${late.filter((x) => x < 0).length}`);
}
clearInterval(keepAlive);
