/**
 * `npm run conformance [-- row …]`: runs every scenario against every runtime row (or the rows
 * named) and prints the runtime × scenario matrix, then each cell's measured details.
 */
import { type Cell, formatMatrix, runRow } from "./conformance-runner.ts";
import { ALL_ROWS, type RuntimeRow } from "./runtime-launchers.ts";

const named = process.argv.slice(2).filter((a) => !a.startsWith("-")) as RuntimeRow[];
const rows = named.length ? named : ALL_ROWS;
for (const row of rows) if (!ALL_ROWS.includes(row)) throw new TypeError(`unknown row "${row}" (expected ${ALL_ROWS.join(", ")})`);

const cells: Cell[] = [];
for (const row of rows) {
  try {
    cells.push(...(await runRow(row, (cell) => console.error(`${cell.kind.padEnd(5)} ${row} ${cell.scenario} (${Math.round(cell.ms)} ms) ${cell.detail}`))));
  } catch (error) {
    console.error(`FAIL  ${row}: could not start: ${error instanceof Error ? error.message : String(error)}`);
  }
}
console.log(`\n${formatMatrix(cells, rows)}\n`);
const failed = cells.filter((c) => c.kind === "FAIL");
console.log(`${cells.filter((c) => c.kind === "ok" || c.kind === "limit").length} passed, ${failed.length} failed`);
process.exitCode = failed.length ? 1 : 0;
