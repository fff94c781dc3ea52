/**
 * Workers with `nodejs_compat`: the conformance scenarios against the demo on workerd with the flag
 * added (the conformance row runs without it), and every firing published exactly once on
 * diagnostics_channel, as on the other runtime rows (test/conformance.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKERS_COMPATIBILITY_FLAGS } from "../demo/serve-workers-config.ts";
import { observedFirings, runCell } from "./conformance/conformance-runner.ts";
import { launch, type RunningServer } from "../harness/runtime-launchers.ts";
import { appliesTo, CONFORMANCE_CONFIG, SCENARIOS } from "./conformance/scenarios.ts";

describe("workerd with nodejs_compat: diagnostics_channel", () => {
  let server: RunningServer;
  beforeAll(async () => {
    const flags = [...WORKERS_COMPATIBILITY_FLAGS, "nodejs_compat"].join(",");
    server = await launch("workers", CONFORMANCE_CONFIG, 60_000, { DEMO_WORKERS_FLAGS: flags });
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
  });

  for (const scenario of SCENARIOS.filter((s) => appliesTo(s, "workers"))) {
    const limitRow = scenario.knownLimit?.rows.includes("workers") ?? false;
    it(scenario.id, async () => {
      const cell = await runCell(scenario, "workers", server);
      expect(cell.kind, `${scenario.id}: ${cell.detail}\n${server.log.slice(-20).join("\n")}`).toBe(
        limitRow || cell.outputLimit ? "limit" : "ok", // outputLimit: workerd's own documented log of a cut body
      );
    }, 90_000);
  }

  it("every firing is published exactly once on diagnostics_channel", () => {
    const firings = (kind: string) => observedFirings(server, kind);
    expect(firings("timeout").length).toBeGreaterThan(0);
    expect(firings("diagnostics-timeout")).toEqual(firings("timeout"));
  });
});
