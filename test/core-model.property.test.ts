/**
 * The implementation against the reference model (test/support/deadline-model.ts) on thousands of
 * random schedules: chunk sizes and gaps, consumer pauses, producer pauses, limit changes mid-stream.
 * They must agree on whether, when (to 1 µs of virtual time) and why a stream fails.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  createVirtualClock,
  deadlineDebugCounters,
  guardInboundStream,
  guardOutboundStream,
  type TimeoutError,
} from "../src/index.ts";
import { evaluate, type ModelLimits, SLICE, type Schedule } from "./support/deadline-model.ts";
import { scriptedConsumer, scriptedSource } from "./support/scripted-streams.ts";

const RUNS = Number(process.env.MODEL_RUNS ?? 1500);

// Scenario times are whole milliseconds; idle/total/grace end in .5 and changes happen at .25, so
// those deadlines never coincide with an event. Rate deadlines can; the model flags such ties.
const halfMs = (min: number, max: number) => fc.integer({ min, max }).map((k) => k + 0.5);
const limitsArb: fc.Arbitrary<ModelLimits> = fc.record(
  {
    idle: fc.option(halfMs(20, 4000), { nil: null }),
    minRate: fc.option(
      fc.integer({ min: 1, max: 200_000 }).map((r) => r / 10),
      { nil: null },
    ),
    grace: halfMs(50, 4000),
    total: fc.option(halfMs(100, 40_000), { nil: null }),
  },
  { requiredKeys: [] },
);
// A patch never pairs an explicit "off" minRate with a grace (that is a RangeError by design).
const patchArb = limitsArb
  .map((p) => (p.minRate === null && p.grace !== undefined ? { ...p, grace: undefined } : p))
  .map(dropUndefined);
const startLimitsArb = limitsArb.map((p) => (p.minRate == null ? { ...p, grace: undefined } : p)).map(dropUndefined);

function dropUndefined(p: ModelLimits): ModelLimits {
  return Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) as ModelLimits;
}

function scheduleArb(direction: "inbound" | "outbound"): fc.Arbitrary<Schedule> {
  // Outbound chunks up to 100 KiB: whole to a consumer that asked first, else split into 64 KiB
  // slices, taken as bursts (which earn credit).
  const maxBytes = direction === "outbound" ? 100 * 1024 : 20_000;
  return fc
    .record({
      limits: startLimitsArb,
      gaps: fc.array(
        fc.record({ gap: fc.integer({ min: 0, max: 2500 }), bytes: fc.integer({ min: 1, max: maxBytes }) }),
        { maxLength: 14 },
      ),
      endGap: fc.integer({ min: 0, max: 3000 }),
      firstReadAt: fc.integer({ min: 0, max: 2000 }),
      pauses: fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 30 }),
      changes: fc.array(fc.record({ at: fc.integer({ min: 0, max: 30_000 }).map((k) => k + 0.25), patch: patchArb }), {
        maxLength: 3,
      }),
    })
    .map(({ limits, gaps, endGap, firstReadAt, pauses, changes }) => {
      let at = 0;
      const chunks = gaps.map(({ gap, bytes }) => ({ at: (at += gap), bytes }));
      return {
        direction,
        limits,
        chunks,
        endAt: at + endGap,
        firstReadAt,
        pauses,
        changes: changes.sort((a, b) => a.at - b.at),
      };
    });
}

interface Observed {
  kind: "closed" | "timeout" | "other";
  at: number;
  limit?: string;
  bytes: number;
  consumerBytes: number;
}

/**
 * "byob": the source is a byte stream and the consumer reads BYOB into 64 KiB buffers, which the
 * model's reads match: inbound chunks fit one read, and outbound chunks are taken 64 KiB at a time
 * (whether or not they waited: the read's buffer, not the guard, cuts them).
 */
type ReadMode = "default" | "byob";

async function runImplementation(s: Schedule, mode: ReadMode = "default"): Promise<Observed> {
  const clock = createVirtualClock();
  const source = scriptedSource(clock, s.chunks, { endAt: s.endAt, bytes: mode === "byob" });
  let fired: { at: number; error: TimeoutError } | undefined;
  const guard = s.direction === "inbound" ? guardInboundStream : guardOutboundStream;
  const { readable, controller } = guard(source.stream, {
    clock,
    ...s.limits,
    onTimeout: (error) => (fired = { at: clock.now(), error }),
  });
  for (const change of s.changes) clock.setTimer(() => controller.set(change.patch), change.at);
  const consumer = scriptedConsumer(clock, readable, {
    startAt: s.firstReadAt,
    pauseAfter: (i) => s.pauses[i] ?? 0,
    byob: mode === "byob" ? SLICE : undefined,
  });
  await clock.advanceTo(200_000);
  if (fired) {
    expect(consumer.error).toBe(fired.error);
    expect(source.cancelReason).toBe(fired.error);
    return {
      kind: "timeout",
      at: fired.at,
      limit: fired.error.limit,
      bytes: fired.error.bytes,
      consumerBytes: consumer.bytes,
    };
  }
  if (controller.state === "closed" && consumer.done) {
    return {
      kind: "closed",
      at: consumer.endedAt ?? NaN,
      bytes: controller.stats.bytes,
      consumerBytes: consumer.bytes,
    };
  }
  return { kind: "other", at: NaN, bytes: controller.stats.bytes, consumerBytes: consumer.bytes };
}

type Tally = Record<"closed" | "idle" | "minRate" | "total" | "ambiguous", number>;

function agreesWithModel(direction: "inbound" | "outbound", tally: Tally, mode: ReadMode) {
  return fc.asyncProperty(scheduleArb(direction), async (schedule) => {
    const expected = evaluate({ ...schedule, byob: mode === "byob" });
    if (expected.ambiguous) tally.ambiguous++;
    fc.pre(!expected.ambiguous);
    tally[expected.kind === "closed" ? "closed" : expected.limit]++;
    const observed = await runImplementation(schedule, mode);
    expect(observed.kind).toBe(expected.kind);
    // The consumer sees an outbound end only when it next asks, so closing times are compared inbound only.
    if (expected.kind === "timeout" || direction === "inbound")
      expect(Math.abs(observed.at - expected.at)).toBeLessThan(1e-6);
    expect(observed.bytes).toBe(expected.bytes);
    if (expected.kind === "timeout") expect(observed.limit).toBe(expected.limit);
    else expect(observed.consumerBytes).toBe(schedule.chunks.reduce((sum, c) => sum + c.bytes, 0));
  });
}

/** The schedules must exercise every outcome, or agreement would prove little. */
function expectVariedOutcomes(tally: Tally) {
  const runs = tally.closed + tally.idle + tally.minRate + tally.total;
  // At least 3% each (outbound minRate runs about 5.5%: bursts of takes earn credit): 4 standard deviations of margin.
  for (const outcome of ["closed", "idle", "minRate", "total"] as const)
    expect(tally[outcome]).toBeGreaterThan(runs * 0.03);
  expect(tally.ambiguous).toBeLessThan(runs * 0.05);
}

describe("implementation agrees with the reference model", () => {
  for (const direction of ["inbound", "outbound"] as const) {
    it(`${direction}: ${RUNS} random schedules`, async () => {
      const tally: Tally = { closed: 0, idle: 0, minRate: 0, total: 0, ambiguous: 0 };
      await fc.assert(agreesWithModel(direction, tally, "default"), { numRuns: RUNS });
      expectVariedOutcomes(tally);
      expect(deadlineDebugCounters().liveGuards).toBe(0);
      console.log(`model ${direction}: ${JSON.stringify(tally)}`);
    });

    it(`${direction}, a byte stream read BYOB: ${RUNS} random schedules`, async () => {
      const tally: Tally = { closed: 0, idle: 0, minRate: 0, total: 0, ambiguous: 0 };
      await fc.assert(agreesWithModel(direction, tally, "byob"), { numRuns: RUNS });
      expectVariedOutcomes(tally);
      expect(deadlineDebugCounters().liveGuards).toBe(0);
      console.log(`model ${direction} byob: ${JSON.stringify(tally)}`);
    });
  }
});

describe("a peer that keeps up is never cut", () => {
  it("inbound and outbound at twice minRate, with gaps under idle and grace", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("inbound" as const, "outbound" as const),
        fc.integer({ min: 100, max: 100_000 }),
        fc.integer({ min: 100, max: 2000 }),
        fc.array(fc.integer({ min: 1, max: 1000 }), { minLength: 1, maxLength: 40 }),
        async (direction, minRate, idle, gaps) => {
          // Each gap of g ms carries 2·minRate·g bytes (at least 1): twice the minimum; no gap reaches
          // idle or the 1000 ms grace (the first gap has no earlier bytes to lean on).
          let at = 0;
          const bounded = gaps.map((g) => Math.min(g, idle - 1, 999));
          const chunks = bounded.map((g) => ({
            at: (at += g),
            bytes: Math.max(1, Math.ceil((2 * minRate * g) / 1000)),
          }));
          const schedule: Schedule = {
            direction,
            limits: { idle, minRate, grace: 1000 },
            chunks,
            endAt: at,
            firstReadAt: 0,
            pauses: [],
            changes: [],
          };
          const observed = await runImplementation(schedule);
          expect(observed.kind).toBe("closed");
        },
      ),
      { numRuns: 300 },
    );
  });
});
