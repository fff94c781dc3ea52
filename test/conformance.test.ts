/**
 * The conformance suite in `npm test`: every scenario (test/conformance/scenarios.ts) over real TCP
 * against the fixture server (the demo, observed) on every runtime row. A known platform limit is asserted as its documented
 * behaviour ("limit"), never skipped. The matrix is printed at the end.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cell, formatMatrix, runCell } from "./conformance/conformance-runner.ts";
import { ALL_ROWS, launch, type RunningServer } from "../harness/runtime-launchers.ts";
import { appliesTo, CONFORMANCE_CONFIG, SCENARIOS } from "./conformance/scenarios.ts";

const cells: Cell[] = [];

afterAll(() => {
  console.log(`\nconformance matrix (runtime × scenario)\n${formatMatrix(cells, ALL_ROWS)}\n`);
});

for (const row of ALL_ROWS) {
  const scenarios = SCENARIOS.filter((s) => appliesTo(s, row));
  describe(`conformance: ${row}`, () => {
    let server: RunningServer;
    beforeAll(async () => {
      server = await launch(row, CONFORMANCE_CONFIG);
    }, 120_000);
    afterAll(async () => {
      await server?.stop();
    });
    for (const scenario of scenarios) {
      const limitRow = scenario.knownLimit?.rows.includes(row) ?? false;
      it(`${scenario.id}${limitRow ? ` (known limit: ${scenario.knownLimit!.reference})` : ""}`, async () => {
        const cell = await runCell(scenario, row, server);
        cells.push(cell);
        expect(
          cell.kind,
          `${row} ${scenario.id}: ${cell.detail}\n--- server log ---\n${server.log.slice(-20).join("\n")}`,
        ).toBe(limitRow || cell.outputLimit ? "limit" : "ok");
      }, 90_000);
    }
    // Every firing onTimeout saw was published once on the adapter's diagnostics channel (the demo
    // subscribes when observed). The workers row runs without nodejs_compat: no channel there.
    it("every firing is published exactly once on diagnostics_channel", () => {
      const firings = (kind: string) =>
        server.observations
          .filter((o) => o.event === kind)
          .map(({ t: _, event: __, ...fields }) => JSON.stringify(fields))
          .sort();
      expect(firings("timeout").length).toBeGreaterThan(0);
      expect(firings("diagnostics-timeout")).toEqual(row === "workers" ? [] : firings("timeout"));
    });
  });
}
