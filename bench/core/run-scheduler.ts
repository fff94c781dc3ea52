/**
 * Why one shared heap and one native timer, rather than a lazily re-armed timer per stream:
 * the cost of arming and disarming 10,000 deadlines each way, and of the per-chunk step
 * ("progress moved the deadline later") each way.
 *
 * Run: node .bench-out/bench/core/run-scheduler.js   (npm run bench builds and runs it)
 */
import { systemClock } from "../../src/engine/clock.ts";
import { DeadlineScheduler, type ScheduledEntry } from "../../src/engine/scheduler.ts";

const N = 10_000;
const ROUNDS = 7;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

function heapArmDisarm(): number {
  const scheduler = new DeadlineScheduler(systemClock);
  const entries: ScheduledEntry[] = Array.from({ length: N }, () => ({
    heapIndex: -1,
    scheduledAt: Infinity,
    checkDue: () => Infinity,
  }));
  const start = performance.now();
  const base = performance.now() + 60_000;
  for (let i = 0; i < N; i++) scheduler.schedule(entries[i]!, base + ((i * 7919) % N));
  for (let i = 0; i < N; i++) scheduler.unschedule(entries[i]!);
  return ((performance.now() - start) * 1e6) / N;
}

function timerArmDisarm(): number {
  const start = performance.now();
  const timers: ReturnType<typeof setTimeout>[] = new Array(N);
  for (let i = 0; i < N; i++) {
    timers[i] = setTimeout(() => {}, 60_000 + ((i * 7919) % N));
    timers[i]!.unref();
  }
  for (let i = 0; i < N; i++) clearTimeout(timers[i]);
  return ((performance.now() - start) * 1e6) / N;
}

/** Per chunk, a deadline moving later: a no-op for the heap (lazy), a re-arm for a per-stream timer. */
function heapPerChunk(): number {
  const scheduler = new DeadlineScheduler(systemClock);
  const entry: ScheduledEntry = { heapIndex: -1, scheduledAt: Infinity, checkDue: () => Infinity };
  const base = performance.now() + 60_000;
  scheduler.schedule(entry, base);
  const start = performance.now();
  for (let i = 0; i < N * 10; i++) scheduler.schedule(entry, base + i);
  const ns = ((performance.now() - start) * 1e6) / (N * 10);
  scheduler.unschedule(entry);
  return ns;
}

function timerPerChunk(): number {
  let timer = setTimeout(() => {}, 60_000);
  timer.unref();
  const start = performance.now();
  for (let i = 0; i < N * 10; i++) {
    // timer.refresh() is Node-only; clear + set is what a portable per-stream timer costs.
    clearTimeout(timer);
    timer = setTimeout(() => {}, 60_000 + i);
    timer.unref();
  }
  const ns = ((performance.now() - start) * 1e6) / (N * 10);
  clearTimeout(timer);
  return ns;
}

console.log(`# scheduler bench: node ${process.version}; ${N} deadlines, median of ${ROUNDS}`);
for (const [name, fn] of [
  ["scheduler.heap.arm_disarm_ns", heapArmDisarm],
  ["scheduler.timer_per_stream.arm_disarm_ns", timerArmDisarm],
  ["scheduler.heap.per_chunk_ns", heapPerChunk],
  ["scheduler.timer_per_stream.per_chunk_ns", timerPerChunk],
] as const) {
  fn();
  console.log(`figure ${name} ${median(Array.from({ length: ROUNDS }, fn)).toFixed(1)} ns`);
}
