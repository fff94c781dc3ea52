/**
 * Workers without the `enable_request_signal` compatibility flag: workerd then neither calls a
 * response body's cancel() on a disconnect nor aborts request.signal, and (with nothing pending in
 * ctx.waitUntil) runs no timer of the request again. The adapter keeps the guarded body's pipe in
 * ctx.waitUntil, so workerd cancels the body and the producer is freed all the same.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCell } from "./conformance/conformance-runner.ts";
import { launch, type RunningServer } from "./conformance/runtime-launchers.ts";
import { CONFORMANCE_CONFIG, SCENARIOS } from "./conformance/scenarios.ts";

describe("stream-deadlines/workers without enable_request_signal", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await launch("workers", CONFORMANCE_CONFIG, 120_000, { DEMO_WORKERS_FLAGS: "" });
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
  });

  it("a client disconnect still cancels the producer promptly", async () => {
    const scenario = SCENARIOS.find((s) => s.id === "client-disconnect")!;
    const cell = await runCell(scenario, "workers", server);
    expect(cell.kind, cell.detail).toBe("ok");
  }, 60_000);

  it("a stalled reader of a declared-length download is still cut and seen truncated", async () => {
    const scenario = SCENARIOS.find((s) => s.id === "stalled-reader")!;
    const cell = await runCell(scenario, "workers", server);
    expect(cell.kind, cell.detail).toBe("ok");
  }, 60_000);
});
