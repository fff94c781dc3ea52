/**
 * Core throughput bench: what a guard costs per byte and per chunk.
 *
 * Baseline is a minimal pull-based pass-through wrapper (highWaterMark 0), not the bare source:
 * any wrapper adds one stream layer (an extra read/enqueue hop per chunk), and that layer is not
 * the library's cost. The ratio printed is guarded / pass-through throughput, so 1.000 means the
 * deadline bookkeeping is free and 0.900 means it costs 10% on top of a wrapper.
 *
 * Run: npx tsx bench/core/run-core.ts [--quick] [--processes N]
 *      node --expose-gc --import tsx bench/core/run-core.ts   (adds a GC before every timed sample)
 * Output: one `ratio <scenario> <x.xxx>` line per scenario, plus `figure ...` lines.
 *
 * One process's ratios move by up to ±0.06 between runs of the same code (each process's JIT makes
 * its own choices), more than most changes to the per-chunk path. `--processes N` runs the bench in
 * N fresh processes, one after the other, and prints each one's ratios, then their medians as the
 * `ratio` lines and their range as `figure <scenario>.ratio_range`.
 */
import { execFileSync } from "node:child_process";
import { deadlineDebugCounters, guardInboundStream, guardOutboundStream } from "../../src/index.ts";
import type { GuardedStream, GuardOptions } from "../../src/index.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

const quick = process.argv.includes("--quick");
/** Odd, so the median is one measured sample rather than an average of two. */
const ROUNDS = quick ? 3 : 9;
/** Each timed sample repeats fresh bodies until it lasts about this long (see runSample). */
const SAMPLE_TARGET_MS = quick ? 25 : 250;
/** Warm-up per scenario, alternating variants: long enough for both to reach optimized code. */
const WARMUP_MS = quick ? 60 : 600;
const WARMUP_MIN_BODIES = 3;
/** --quick shrinks every body 8x: a smoke run, its figures are not to be compared. */
const SIZE_DIVISOR = quick ? 8 : 1;

/** Realistic server limits that never fire during a run but keep every code path live. */
const LIMITS: GuardOptions = { idle: 30_000, minRate: 1024, total: 600_000 };

type Guard = (source: ReadableStream<Uint8Array>, options?: GuardOptions) => GuardedStream;

interface Scenario {
  name: string;
  guard: Guard;
  chunkBytes: number;
  totalBytes: number;
}

const scenarios: Scenario[] = [
  { name: "core.inbound.64k", guard: guardInboundStream, chunkBytes: 64 * KiB, totalBytes: 256 * MiB },
  { name: "core.outbound.64k", guard: guardOutboundStream, chunkBytes: 64 * KiB, totalBytes: 256 * MiB },
  { name: "core.inbound.1k", guard: guardInboundStream, chunkBytes: 1 * KiB, totalBytes: 32 * MiB },
  { name: "core.outbound.1k", guard: guardOutboundStream, chunkBytes: 1 * KiB, totalBytes: 32 * MiB },
];

/**
 * Pull-based source, highWaterMark 0, enqueuing synchronously in pull: the cheapest possible
 * producer, so what is measured is the wrappers. One preallocated chunk is reused: no allocation
 * or copy per chunk (neither wrapper reads the bytes).
 */
function makeSource(chunk: Uint8Array, count: number): ReadableStream<Uint8Array> {
  let left = count;
  return new ReadableStream<Uint8Array>(
    {
      pull(c) {
        if (left === 0) {
          c.close();
          return;
        }
        left--;
        c.enqueue(chunk);
      },
    },
    { highWaterMark: 0 },
  );
}

/** The baseline: one extra pull-based layer doing nothing but forwarding. */
function passThrough(source: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  return new ReadableStream<Uint8Array>(
    {
      pull(c) {
        return reader.read().then((r) => (r.done ? c.close() : c.enqueue(r.value)));
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/** A plain reader loop, the way a handler would consume a body. */
async function drain(readable: ReadableStream<Uint8Array>): Promise<number> {
  const reader = readable.getReader();
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return bytes;
    bytes += value.byteLength;
  }
}

const maybeGc = (globalThis as { gc?: () => void }).gc;

type Variant = "passthrough" | "guarded";

/** One full body through one variant; returns the bytes read. Construction counts (it is per-body cost too). */
async function runBody(s: Scenario, variant: Variant, chunk: Uint8Array, count: number): Promise<number> {
  const source = makeSource(chunk, count);
  if (variant === "passthrough") return drain(passThrough(source));
  const { readable, controller } = s.guard(source, LIMITS);
  const bytes = await drain(readable);
  // A guard that errored or timed out would make a meaningless (fast) figure.
  if (controller.state !== "closed") throw new Error(`${s.name}: guarded stream ended ${controller.state}, not closed`);
  return bytes;
}

/**
 * One sample: `reps` fresh bodies back to back through one variant; returns bytes per second.
 * A single 256 MiB body of 64 KiB chunks drains in a few ms, too short to time alone on a shared
 * 2-core box, so a sample repeats the body until it lasts about SAMPLE_TARGET_MS.
 */
async function runSample(
  s: Scenario,
  variant: Variant,
  chunk: Uint8Array,
  count: number,
  reps: number,
): Promise<number> {
  // GC before the sample (when exposed) so the previous sample's garbage is not collected on this one's clock.
  maybeGc?.();
  const expected = chunk.byteLength * count;
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const bytes = await runBody(s, variant, chunk, count);
    if (bytes !== expected) throw new Error(`${s.name} ${variant}: read ${bytes} bytes, expected ${expected}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  return (expected * reps) / seconds;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function spreadPct(values: number[]): number {
  const m = median(values);
  return ((Math.max(...values) - Math.min(...values)) / m) * 100;
}

async function runScenario(s: Scenario): Promise<void> {
  const totalBytes = s.totalBytes / SIZE_DIVISOR;
  const count = Math.max(1, Math.round(totalBytes / s.chunkBytes));
  const chunk = new Uint8Array(s.chunkBytes).fill(0x61);

  // Warm both variants (alternating) to optimized code before anything is timed, and learn how
  // long one body takes so every sample can be sized to SAMPLE_TARGET_MS.
  const bodyMs: number[] = [];
  const warmStart = performance.now();
  for (let i = 0; i < WARMUP_MIN_BODIES || performance.now() - warmStart < WARMUP_MS; i++) {
    for (const variant of ["passthrough", "guarded"] as const) {
      const t0 = performance.now();
      await runBody(s, variant, chunk, count);
      bodyMs.push(performance.now() - t0);
    }
  }
  // Fastest recent body: the estimate only sizes samples, both variants get the same reps.
  const reps = Math.max(1, Math.ceil(SAMPLE_TARGET_MS / Math.min(...bodyMs.slice(-6))));

  // Interleaved A/B rounds with alternating order: drift (thermal, GC heap growth, a noisy
  // neighbour) hits both variants alike instead of biasing whichever runs later.
  const pass: number[] = [];
  const guarded: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order: Variant[] = round % 2 === 0 ? ["passthrough", "guarded"] : ["guarded", "passthrough"];
    for (const variant of order) {
      const rate = await runSample(s, variant, chunk, count, reps);
      (variant === "guarded" ? guarded : pass).push(rate);
    }
  }

  console.log(
    `# ${s.name}: body ${count} x ${s.chunkBytes / KiB} KiB = ${((count * s.chunkBytes) / MiB).toFixed(0)} MiB, ${reps} bodies per sample`,
  );
  const passMed = median(pass);
  const guardMed = median(guarded);
  const chunksPerSecond = (rate: number) => rate / s.chunkBytes;
  console.log(
    `figure ${s.name}.passthrough_mib_s ${(passMed / MiB).toFixed(1)} MiB/s (spread ${spreadPct(pass).toFixed(1)}%)`,
  );
  console.log(
    `figure ${s.name}.guarded_mib_s ${(guardMed / MiB).toFixed(1)} MiB/s (spread ${spreadPct(guarded).toFixed(1)}%)`,
  );
  // The source does no per-byte work, so cost is per chunk: this is the figure that transfers
  // between chunk sizes (bytes/s just scales it).
  const passNs = 1e9 / chunksPerSecond(passMed);
  const guardNs = 1e9 / chunksPerSecond(guardMed);
  console.log(`figure ${s.name}.passthrough_ns_per_chunk ${passNs.toFixed(0)} ns`);
  console.log(`figure ${s.name}.guarded_ns_per_chunk ${guardNs.toFixed(0)} ns`);
  console.log(`figure ${s.name}.overhead_ns_per_chunk ${(guardNs - passNs).toFixed(0)} ns`);
  console.log(`ratio ${s.name} ${(guardMed / passMed).toFixed(3)}`);
}

/** `--processes N`: the bench in N child processes in turn; the medians of their ratios. */
function runProcesses(count: number): void {
  const args = process.argv.slice(2).filter((arg, i, all) => arg !== "--processes" && all[i - 1] !== "--processes");
  const ratios = new Map<string, number[]>();
  for (let run = 1; run <= count; run++) {
    const out = execFileSync(process.execPath, [...process.execArgv, process.argv[1]!, ...args], { encoding: "utf8" });
    const lines = out.split("\n").filter((line) => line.startsWith("ratio "));
    console.log(`# process ${run}: ${lines.map((line) => line.slice(6)).join(", ")}`);
    for (const line of lines) {
      const [, name, value] = line.split(" ");
      ratios.set(name!, [...(ratios.get(name!) ?? []), Number(value)]);
    }
  }
  for (const [name, values] of ratios) {
    console.log(`figure ${name}.ratio_range ${Math.min(...values).toFixed(3)}–${Math.max(...values).toFixed(3)}`);
    console.log(`ratio ${name} ${median(values).toFixed(3)}`);
  }
}

async function main(): Promise<void> {
  const processesAt = process.argv.indexOf("--processes");
  if (processesAt !== -1) {
    const count = Number(process.argv[processesAt + 1]);
    if (!Number.isInteger(count) || count < 1)
      throw new Error("--processes needs a whole number of processes, 1 or more");
    runProcesses(count);
    return;
  }
  console.log(
    `# stream-deadlines core bench: node ${process.version} ${process.platform}/${process.arch}` +
      `${quick ? " (--quick: smoke run, bodies /8)" : ""}; method: ~${WARMUP_MS} ms warm-up per scenario, ` +
      `then ${ROUNDS} interleaved rounds (pass-through vs guarded, order alternating), each sample ~${SAMPLE_TARGET_MS} ms ` +
      `of fresh bodies; median throughput each; ` +
      `ratio = guarded / pass-through; GC before each sample: ${maybeGc ? "yes" : "no (run node with --expose-gc)"}`,
  );
  const started = performance.now();
  for (const s of scenarios) await runScenario(s);
  // Every guard closed, so none may still be counted: a leak here would also skew later runs.
  const counters = deadlineDebugCounters();
  if (counters.liveGuards !== 0 || counters.scheduledDeadlines !== 0) {
    throw new Error(`leak after bench: ${JSON.stringify(counters)}`);
  }
  console.log(`# done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

await main();
