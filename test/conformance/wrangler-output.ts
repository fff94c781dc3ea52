/**
 * What `wrangler dev` printed while the conformance scenarios ran, judged: one warning line per
 * firing (the demo's onTimeout prints one console.warn line, as the library's default does), and no
 * `✘ [ERROR]` entry except the two workerd itself logs for a response body cut after its headers
 * (a known platform limit: docs/runtime-workers.md, "wrangler dev").
 */
import type { Observation } from "../../harness/runtime-launchers.ts";

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour codes, which wrangler prints whatever NO_COLOR says
const ANSI = /\x1b\[[0-9;]*m/g;

export interface OutputTally {
  firings: number;
  /** Firings whose response body was cut after its headers (the only ones workerd logs errors for). */
  responseCuts: number;
  warnLines: number;
  /** `✘ [ERROR]` entries, without colours. */
  errors: string[];
  /** Of those, the two workerd logs for a cut response body: "Uncaught Error: …" and "Uncaught exception: … remote.jsg.Error: TimeoutError: …". */
  responseCutErrors: string[];
}

export function tallyWranglerOutput(log: string[], observations: Observation[]): OutputTally {
  const lines = log.map((line) => line.replace(ANSI, ""));
  const firings = observations.filter((o) => o.event === "timeout");
  const errors = lines.filter((line) => line.includes("✘ [ERROR]"));
  return {
    firings: firings.length,
    responseCuts: firings.filter((o) => o.direction === "response" && o.afterHeaders === true).length,
    warnLines: lines.filter((line) => /^▲ \[WARNING\] \[stream-deadlines\] /.test(line)).length,
    errors,
    responseCutErrors: errors.filter((line) =>
      /✘ \[ERROR\] Uncaught (Error|exception: .*remote\.jsg\.Error: TimeoutError): response body stalled: /.test(line),
    ),
  };
}
