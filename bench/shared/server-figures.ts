/**
 * What a bench's Node server process reports (bench/scale, bench/h2): JSON event lines on stdout,
 * memory after a full GC, and the event loop's delay. Run the server with `--expose-gc`.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";

/** Prints one event line (`{"event":…}`), read by bench/shared/event-lines.ts. */
export function emit(event: string, data: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
}

/** Heap and RSS after two full GCs; throws without `--expose-gc`. */
export function memory(): { heapUsed: number; rss: number; external: number; arrayBuffers: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error("bench server: run node with --expose-gc");
  gc();
  gc();
  const { heapUsed, rss, external, arrayBuffers } = process.memoryUsage();
  return { heapUsed, rss, external, arrayBuffers };
}

export const LOOP_RESOLUTION_MS = 10;
const ms = (ns: number) => ns / 1e6;
/**
 * Node's histogram records the whole interval between two ticks of its timer, the sampling period
 * included (an idle loop reads 10.2 ms at a 10 ms resolution). The delay is what exceeds the
 * period, as fastify's under-pressure and Kibana compute it; the raw intervals are kept beside it.
 */
const delayOf = (ns: number) => Math.max(0, ms(ns) - LOOP_RESOLUTION_MS);

/** The event loop's delay, recorded from now on: `reset()` starts a window, `figures()` reads it. */
export function loopDelay(): { reset(): void; figures(): Record<string, number> } {
  const histogram = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  histogram.enable();
  return {
    reset: () => histogram.reset(),
    figures: () => ({
      p50: delayOf(histogram.percentile(50)),
      p99: delayOf(histogram.percentile(99)),
      max: delayOf(histogram.max),
      intervalP50: ms(histogram.percentile(50)),
      intervalP99: ms(histogram.percentile(99)),
      intervalMax: ms(histogram.max),
      resolution: LOOP_RESOLUTION_MS,
      samples: histogram.count,
    }),
  };
}
