import { describe, expect, it } from "vitest";
import { createVirtualClock, deadlineDebugCounters, guardInboundStream, guardOutboundStream } from "../src/index.ts";
import { scriptedConsumer, scriptedSource } from "./support/scripted-streams.ts";

type Ending = "completed" | "timedOut" | "consumerCancelled" | "sourceErrored" | "sourceCancelledByPeer";
const endings: Ending[] = ["completed", "timedOut", "consumerCancelled", "sourceErrored", "sourceCancelledByPeer"];

describe("nothing outlives a guarded stream", () => {
  it("after 1000 streams end in every way, no guard, deadline, timer or pending read remains", async () => {
    const clock = createVirtualClock();
    const before = deadlineDebugCounters(clock).liveGuards;
    const sources: { finished: boolean }[] = [];
    const signals: AbortSignal[] = [];
    for (let i = 0; i < 1000; i++) {
      const ending = endings[i % endings.length]!;
      const guard = i % 2 === 0 ? guardInboundStream : guardOutboundStream;
      const inbound = i % 2 === 0;
      // Timing out: inbound, the peer goes quiet; outbound, the consumer stops taking.
      const chunks = [
        { at: 0, bytes: 10 },
        { at: ending === "timedOut" && inbound ? 50_000 : 10, bytes: 10 },
      ];
      const src = scriptedSource(
        clock,
        chunks,
        ending === "sourceErrored" || ending === "sourceCancelledByPeer"
          ? { errorAt: { at: 20, error: new Error(ending) } }
          : { endAt: 30 },
      );
      sources.push(src);
      const { readable, controller } = guard(src.stream, { clock, idle: 1000, minRate: 10, total: 100_000 });
      signals.push(controller.signal);
      if (ending === "consumerCancelled") {
        const reader = readable.getReader();
        void reader.read().then(() => reader.cancel("bye"));
      } else {
        scriptedConsumer(clock, readable, { pauseAfter: () => (ending === "timedOut" ? 150_000 : 0) });
      }
    }
    await clock.advance(200_000);
    expect(deadlineDebugCounters(clock)).toMatchObject({
      liveGuards: before,
      scheduledDeadlines: 0,
      timerArmed: false,
    });
    expect(clock.pendingTimers).toBe(0);
    // Every source ran to its end or was cancelled: no read is left pending on any of them. (The
    // guard keeps its reader on a finished source instead of releasing it: a release costs an Error
    // with a stack trace per stream, and a finished stream holds nothing.)
    expect(sources.filter((s) => !s.finished)).toHaveLength(0);
    expect(signals.filter((s) => s.aborted)).toHaveLength(200); // only the timed-out ones
  });
});
