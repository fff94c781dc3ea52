import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createVirtualClock, guardInboundStream, guardOutboundStream } from "../src/index.ts";
import { parseLimits } from "../src/engine/limits.ts";

const guards = [guardInboundStream, guardOutboundStream];

describe("limit validation: clear errors naming the field and the value", () => {
  const cases: [string, unknown, RegExp, ErrorConstructor][] = [
    ["idle", -1, /idle must be a positive finite number of milliseconds .*got -1/, RangeError],
    ["idle", NaN, /idle .*got NaN/, RangeError],
    ["idle", Infinity, /idle .*got Infinity/, RangeError],
    ["idle", "10s", /idle must be a number of milliseconds .*got string "10s"/, TypeError],
    ["idle", 10n, /idle .*got bigint 10n/, TypeError],
    ["minRate", -100, /minRate .*got -100/, RangeError],
    ["minRate", Infinity, /minRate .*got Infinity/, RangeError],
    ["minRate", {}, /minRate must be a number of bytes per second.*got object/, TypeError],
    ["grace", 0, /grace must be a positive finite number .*got 0/, RangeError],
    ["grace", -5, /grace .*got -5/, RangeError],
    ["grace", "5", /grace must be a number .*got string "5"/, TypeError],
    ["total", -1, /total .*got -1/, RangeError],
    ["total", new Date(NaN), /total must be a valid Date .*Invalid Date/, RangeError],
    ["total", [1], /total .*got an array/, TypeError],
  ];
  for (const [field, value, message, type] of cases) {
    it(`${field}: ${String(value)} is refused`, () => {
      for (const guard of guards) {
        expect(() => guard(new ReadableStream(), { [field]: value })).toThrow(type);
        expect(() => guard(new ReadableStream(), { [field]: value })).toThrow(message);
      }
    });
  }

  it("a grace with a minimum rate of 0 is refused", () => {
    expect(() => parseLimits({ minRate: 0, grace: 1000 })).toThrow(/grace is 1000 but minRate is 0/);
    expect(() => parseLimits({ minRate: null, grace: 1000 })).toThrow(RangeError);
  });

  it("unknown fields are refused (a typo never becomes 'no limit')", () => {
    expect(() => parseLimits({ idleTimeout: 5 })).toThrow(/unknown limit "idleTimeout"/);
    expect(() => guardInboundStream(new ReadableStream(), { minrate: 5 } as never)).toThrow(/unknown option "minrate"/);
  });

  it("0 and null turn a limit off; undefined leaves it unchanged", () => {
    expect(parseLimits({ idle: 0, minRate: null, total: 0 })).toEqual({
      idle: null,
      minRate: null,
      total: null,
      totalAt: null,
    });
    expect(parseLimits({ idle: undefined })).toEqual({});
  });

  it("set() validates the same way, and a refused set() changes nothing", async () => {
    const clock = createVirtualClock();
    const { controller } = guardInboundStream(new ReadableStream(), { clock, idle: 1000 });
    expect(() => controller.set({ idle: 500, total: -1 })).toThrow(/total/);
    expect(controller.limits.idle).toBe(1000);
    expect(() => controller.set(null as never)).not.toThrow();
    expect(() => controller.set(5 as never)).toThrow(/limits must be an object/);
  });

  it("any value that is not a valid limit throws a TypeError or RangeError; never a crash later", () => {
    fc.assert(
      fc.property(fc.constantFrom("idle", "minRate", "grace", "total"), fc.anything(), (field, value) => {
        let outcome: unknown;
        try {
          parseLimits({ [field]: value });
          outcome = "accepted";
        } catch (error) {
          outcome = error;
        }
        if (outcome === "accepted") {
          const ok =
            value === undefined ||
            value === null ||
            (typeof value === "number" && Number.isFinite(value) && value >= 0 && !(field === "grace" && value === 0));
          expect(ok || (field === "total" && value instanceof Date && !Number.isNaN(value.getTime()))).toBe(true);
        } else {
          expect(outcome instanceof TypeError || outcome instanceof RangeError).toBe(true);
          expect(String((outcome as Error).message)).toContain(field);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
