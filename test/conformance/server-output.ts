/**
 * What a fixture server prints while a scenario runs, judged: the library's default report is one
 * `console.warn` line per firing (defaultTimeoutReporter), and nothing else reaches the server's
 * output for a firing: no stack, no error object, from the runtime, the framework or the library.
 * Generic over rows: a new row is judged by adding it, and a runtime's own documented lines are
 * listed in RUNTIME_LINES with where they are documented.
 */
import type { Observation, RunningServer, RuntimeRow } from "../../harness/runtime-launchers.ts";

/** The default report of one firing (src/http/timeout-answer.ts, defaultTimeoutReporter). */
const REPORT_LINE =
  /^\[stream-deadlines\] (\S+) (\S+) (request|response|handler) (idle|minRate|total|handler) timeout( after headers)?: .+ bytes=\d+ elapsed_ms=\d+ rate=\S+ \S*B\/s$/;

/** A line a runtime prints on its own, documented; `perScenario` counts how many a scenario's firings make. */
export interface RuntimeLine {
  pattern: RegExp;
  /** Where the line is documented. */
  reference: string;
  /**
   * How many such lines the scenario's firings make, exactly; "per-request": a line for every request,
   * firing or not (an access log); absent: at most one in the server's whole run.
   */
  perScenario?: ((firings: Observation[]) => number) | "per-request";
}

/**
 * How a row's tool shows a `console.warn` line: `wrangler dev` prints it as a boxed warning (`▲ [WARNING] `
 * before it, a blank line on each side, in colour). The prefix is taken off before the report is judged.
 */
const REPORT_PREFIX: Partial<Record<RuntimeRow, RegExp>> = { wrangler: /^▲ \[WARNING\] / };

/** Cut response bodies of the firings: after headers, in the response direction. */
const cutBodies = (firings: Observation[]) =>
  firings.filter((f) => f.afterHeaders === true && f.direction === "response").length;

/** The lines each runtime prints by itself that are not the library's report. */
export const RUNTIME_LINES: Partial<Record<RuntimeRow, RuntimeLine[]>> = {
  deno: [
    {
      // Printed by Deno the first time request.signal is read (the adapter reads it to see a client leave).
      pattern: /^Deno\.serve: request\.signal aborts on successful responses \(legacy behavior\)\./,
      reference: "docs/runtime-deno.md: once per process, in Deno's default signal mode",
    },
  ],
  workers: [
    // workerd logs a response body that fails after its headers as an uncaught exception, whatever
    // the reason it fails with (an undefined reason too): the error, then its native stack.
    {
      pattern: /^Uncaught exception: .*remote\.jsg\.Error: TimeoutError: /,
      reference: "docs/runtime-workers.md: workerd logs a cut response body",
      perScenario: (firings) => firings.filter((f) => f.afterHeaders === true && f.direction === "response").length,
    },
    {
      pattern: /^stack: /,
      reference: "docs/runtime-workers.md: workerd logs a cut response body",
      perScenario: (firings) => firings.filter((f) => f.afterHeaders === true && f.direction === "response").length,
    },
  ],
  wrangler: [
    {
      pattern: /^\[wrangler:info\] [A-Z]+ \S+ \d{3} /,
      reference: "docs/runtime-workers.md (under wrangler dev): its access log, one line per request",
      perScenario: "per-request",
    },
    // workerd under wrangler dev logs a response body that fails after its headers twice, as errors.
    {
      pattern: /^✘ \[ERROR\] Uncaught Error: response body /,
      reference: "docs/runtime-workers.md (under wrangler dev): two ✘ [ERROR] entries per cut response body",
      perScenario: cutBodies,
    },
    {
      pattern: /^✘ \[ERROR\] Uncaught exception: workerd\/jsg\/.*TimeoutError: response body /,
      reference: "docs/runtime-workers.md (under wrangler dev): two ✘ [ERROR] entries per cut response body",
      perScenario: cutBodies,
    },
  ],
};

/** A printed line without its colours and trailing blanks. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: the escape is what starts a colour code
const plain = (line: string) => line.replace(/\x1b\[[0-9;]*m/g, "").trimEnd();

export interface OutputVerdict {
  ok: boolean;
  detail: string;
  /** A documented runtime line was expected and seen (the cell is a known limit, asserted). */
  runtimeLines: boolean;
}

/** Lets late lines of the scenario's firings arrive (a runtime may log an error a few ms after the report). */
const SETTLE_MS = 300;

const key = (method: unknown, path: unknown, direction: unknown, limit: unknown) =>
  `${String(method)} ${String(path)} ${String(direction)} ${String(limit)}`;

/** Judges the lines the server printed since `logSince`, against the firings observed since `observationsSince`. */
export async function judgeOutput(
  server: RunningServer,
  logSince: number,
  observationsSince: number,
): Promise<OutputVerdict> {
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  const firings = server.observations.slice(observationsSince).filter((o) => o.event === "timeout");
  const lines = server.log.slice(logSince);
  const allowed = RUNTIME_LINES[server.row] ?? [];
  const problems: string[] = [];
  const reports: string[] = [];
  const runtimeCounts = new Map<RuntimeLine, number>();
  const prefix = REPORT_PREFIX[server.row];
  for (const printed of lines) {
    const line = plain(printed);
    if (line === "") continue; // a blank line says nothing (wrangler dev frames its warnings with them)
    const report = REPORT_LINE.exec(prefix === undefined ? line : line.replace(prefix, ""));
    if (report) {
      reports.push(key(report[1], report[2], report[3], report[4]));
      continue;
    }
    const known = allowed.find((a) => a.pattern.test(line));
    if (known) runtimeCounts.set(known, (runtimeCounts.get(known) ?? 0) + 1);
    else problems.push(`unexpected line ${JSON.stringify(line.slice(0, 160))}`);
  }
  const expected = firings.map((f) => key(f.method, f.path, f.direction, f.limit)).sort();
  reports.sort();
  if (JSON.stringify(reports) !== JSON.stringify(expected))
    problems.push(`report lines [${reports.join(", ")}] for firings [${expected.join(", ")}]`);
  let runtimeLines = false;
  for (const a of allowed) {
    const seen = runtimeCounts.get(a) ?? 0;
    if (a.perScenario === "per-request") continue;
    if (a.perScenario === undefined) {
      const inWholeRun = server.log.filter((line) => a.pattern.test(plain(line))).length;
      if (inWholeRun > 1)
        problems.push(`${inWholeRun} lines ${a.pattern} in the run, documented once (${a.reference})`);
      continue;
    }
    const want = a.perScenario(firings);
    if (seen !== want) problems.push(`${seen} lines ${a.pattern}, documented ${want} (${a.reference})`);
    if (want > 0) runtimeLines = true;
  }
  const documented = runtimeLines ? "; plus the runtime's own documented lines" : "";
  return {
    ok: problems.length === 0,
    detail:
      problems.length > 0
        ? `output: ${problems.join("; ")}`
        : `output: ${reports.length} line${reports.length === 1 ? "" : "s"} for ${firings.length} firing${firings.length === 1 ? "" : "s"}${documented}`,
    runtimeLines,
  };
}
