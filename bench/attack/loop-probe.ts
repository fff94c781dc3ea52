/**
 * Loaded into a Node server of the attack bench with `--import` (bench/attack/run-attack.ts): every
 * 200 ms it prints one line to stderr, `# loop-probe <epoch ms> <max delay ms> <p99 delay ms> <rss MiB> <cpu ms>`,
 * the event loop's delay over those 200 ms (monitorEventLoopDelay, 10 ms resolution) and the process's
 * RSS, and the CPU time it used in them (user + system). The timestamps are `performance.timeOrigin + performance.now()`, as the bench's own, so the
 * bench can line them up with the honest failures and the cuts.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";

const histogram = monitorEventLoopDelay({ resolution: 10 });
histogram.enable();
let cpu = process.cpuUsage();
const timer = setInterval(() => {
  const used = process.cpuUsage(cpu);
  cpu = process.cpuUsage();
  const now = performance.timeOrigin + performance.now();
  const max = histogram.max / 1e6;
  const p99 = histogram.percentile(99) / 1e6;
  histogram.reset();
  process.stderr.write(
    `# loop-probe ${now.toFixed(0)} ${max.toFixed(1)} ${p99.toFixed(1)} ${(process.memoryUsage.rss() / 2 ** 20).toFixed(1)} ` +
      `${((used.user + used.system) / 1000).toFixed(0)}\n`,
  );
}, 200);
timer.unref();
