/** Runs the scenario table against runtime rows and collects the runtime × scenario matrix. */
import { launch, type RunningServer, type RuntimeRow } from "../../harness/runtime-launchers.ts";
import { appliesTo, CONFORMANCE_CONFIG, type Scenario, SCENARIOS } from "./scenarios.ts";
import { judgeOutput, RUNTIME_LINES } from "./server-output.ts";

/**
 * The server's observations of one kind ("timeout": what onTimeout saw; "diagnostics-timeout": what a
 * diagnostics_channel subscriber got), without their times, sorted: two kinds compare as multisets.
 */
export function observedFirings(server: RunningServer, kind: string): string[] {
  return server.observations
    .filter((o) => o.event === kind)
    .map(({ t: _, event: __, ...fields }) => JSON.stringify(fields))
    .sort();
}

export type CellKind = "ok" | "FAIL" | "limit" | "n/a";

export interface Cell {
  row: RuntimeRow;
  scenario: string;
  kind: CellKind;
  detail: string;
  ms: number;
  /** The server printed a runtime's own documented lines for this scenario's firings (server-output.ts). */
  outputLimit?: boolean;
}

/** Runs one scenario on a running server; a thrown error is a failed cell, never a crash. */
export async function runCell(
  scenario: Scenario,
  row: RuntimeRow,
  server: Awaited<ReturnType<typeof launch>>,
): Promise<Cell> {
  const limitRow = scenario.knownLimit?.rows.includes(row) ?? false;
  const started = performance.now();
  const logSince = server.log.length;
  const observationsSince = server.observations.length;
  try {
    const result = await scenario.run(server, limitRow);
    const ms = performance.now() - started;
    // Every scenario also judges what the server printed: one line per firing, nothing else.
    const output = await judgeOutput(server, logSince, observationsSince);
    const limit = limitRow || output.runtimeLines;
    const kind: CellKind = result.ok && output.ok ? (limit ? "limit" : "ok") : "FAIL";
    const detail = `${
      limitRow
        ? `${result.detail} [known limit: ${scenario.knownLimit!.expected}; ${scenario.knownLimit!.reference}]`
        : result.detail
    }; ${output.detail}`;
    return { row, scenario: scenario.id, kind, detail, ms, outputLimit: output.runtimeLines };
  } catch (error) {
    return {
      row,
      scenario: scenario.id,
      kind: "FAIL",
      detail: `threw: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
      ms: performance.now() - started,
    };
  }
}

export async function runRow(row: RuntimeRow, onCell?: (cell: Cell) => void): Promise<Cell[]> {
  const cells: Cell[] = [];
  const applicable = SCENARIOS.filter((s) => appliesTo(s, row));
  for (const s of SCENARIOS.filter((s) => !appliesTo(s, row)))
    cells.push({ row, scenario: s.id, kind: "n/a", detail: "", ms: 0 });
  if (applicable.length === 0) return cells;
  const server = await launch(row, CONFORMANCE_CONFIG);
  try {
    for (const scenario of applicable) {
      const cell = await runCell(scenario, row, server);
      cells.push(cell);
      onCell?.(cell);
    }
  } finally {
    await server.stop();
  }
  return cells;
}

export function formatMatrix(cells: Cell[], rows: RuntimeRow[]): string {
  const ids = SCENARIOS.map((s) => s.id);
  const width = Math.max(...ids.map((id) => id.length)) + 2;
  const col = 12;
  const lines = [`${"scenario".padEnd(width)}${rows.map((r) => r.padEnd(col)).join("")}`];
  for (const id of ids) {
    const parts = rows.map((row) => {
      const cell = cells.find((c) => c.row === row && c.scenario === id);
      return (cell ? cell.kind : "-").padEnd(col);
    });
    lines.push(`${id.padEnd(width)}${parts.join("")}`);
  }
  const limits = SCENARIOS.filter((s) => s.knownLimit).map(
    (s) =>
      `  limit = known platform limit, its documented behaviour asserted: ${s.id} on ${s.knownLimit!.rows.join(", ")}: ${s.knownLimit!.expected} (${s.knownLimit!.reference})`,
  );
  // Every cell also asserts the server's output: one report line per firing and nothing else, but
  // for a runtime's own documented lines (a cell whose firings make some is a limit too).
  for (const row of rows)
    for (const line of RUNTIME_LINES[row] ?? [])
      if (line.perScenario !== undefined)
        limits.push(`  limit = output on ${row}: besides each report, lines ${line.pattern} (${line.reference})`);
  return [...lines, "", ...limits].join("\n");
}
