import { describe, expect, it } from "vitest";
import { isTimeoutError, TimeoutError } from "../src/index.ts";

const details = {
  subject: "request body",
  direction: "inbound" as const,
  limit: "idle" as const,
  limitValue: 10_000,
  bytes: 2048,
  elapsed: 12_000,
  waited: 10_500,
  idleFor: 10_000,
  rate: 195,
};

describe("TimeoutError", () => {
  it("is a TimeoutError by name (AbortSignal.timeout interop) with a stable code", () => {
    const error = new TimeoutError(details);
    expect(error.name).toBe("TimeoutError");
    expect(error.code).toBe("ERR_DEADLINE_IDLE");
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toBe("request body stalled: no data for 10.0 s (idle limit 10 s, 2 KiB received)");
  });

  it("serialises its fields for logs", () => {
    const json = JSON.parse(JSON.stringify(new TimeoutError(details)));
    expect(json).toMatchObject({ ...details, name: "TimeoutError", code: "ERR_DEADLINE_IDLE" });
  });

  it("is recognised across copies of the package by its Symbol.for brand", () => {
    // What a second copy of the package would create: a different class with the same brand.
    class OtherCopyTimeoutError extends Error {}
    Object.defineProperty(OtherCopyTimeoutError.prototype, Symbol.for("stream-deadlines.TimeoutError"), {
      value: true,
    });
    const foreign = new OtherCopyTimeoutError("x");
    expect(isTimeoutError(foreign)).toBe(true);
    expect(foreign instanceof TimeoutError).toBe(true);
    expect(isTimeoutError(new DOMException("t", "TimeoutError"))).toBe(false);
    expect(isTimeoutError(null)).toBe(false);
    expect(new Error("x") instanceof TimeoutError).toBe(false);
  });

  it("words each limit so a person understands it at a glance", () => {
    expect(
      new TimeoutError({ ...details, limit: "minRate", limitValue: 1024, grace: 5000, rate: 300.4, bytes: 3000 })
        .message,
    ).toBe("request body too slow: 300.4 B/s over 10.5 s, below the minimum 1 KiB/s (grace 5 s, 2.9 KiB received)");
    expect(
      new TimeoutError({
        ...details,
        subject: "response body",
        direction: "outbound",
        limit: "total",
        limitValue: 60_000,
        elapsed: 60_000,
        bytes: 5 * 1024 * 1024,
      }).message,
    ).toBe("response body exceeded its total deadline after 60.0 s (total limit 60 s, 5 MiB sent)");
    expect(
      new TimeoutError({ ...details, subject: "handler", direction: null, limit: "handler", limitValue: 250 }).message,
    ).toBe("handler did not return a response within 250 ms (handler deadline)");
  });
});
