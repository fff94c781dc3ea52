/**
 * The per-turn clock readings (src/engine/event-loop-turns.ts) on a clock whose turns are driven by hand:
 * real time moves within a turn here, so the conservative rules are visible.
 */
import { describe, expect, it } from "vitest";
import { EventLoopTurns, USES_PER_TURN } from "../src/engine/event-loop-turns.ts";
import { type Clock, guardInboundStream } from "../src/index.ts";

function handTurnedClock() {
  let now = 0;
  let reads = 0;
  let endTurn: (() => void)[] = [];
  const timers = new Set<{ at: number; cb: () => void }>();
  const clock: Clock = {
    now: () => (reads++, now),
    wallNow: () => now,
    setTimer: (cb, ms) => {
      const t = { at: now + ms, cb };
      timers.add(t);
      return t;
    },
    clearTimer: (t) => void timers.delete(t as never),
    afterTurn: (cb) => void endTurn.push(cb),
  };
  return {
    clock,
    set: (t: number) => (now = t),
    reads: () => reads,
    closeTurn: () => {
      const due = endTurn;
      endTurn = [];
      for (const cb of due) cb();
    },
    runTimers: () => {
      for (const t of [...timers]) if (t.at <= now) timers.delete(t), t.cb();
    },
  };
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("clock readings per event-loop turn", () => {
  it("a wait counts from the end of the turn it began in, and progress at the start of its turn", async () => {
    const h = handTurnedClock();
    let deliver!: (chunk: Uint8Array) => void;
    const source = new ReadableStream<Uint8Array>(
      { pull: (c) => new Promise<void>((r) => (deliver = (x) => (c.enqueue(x), r()))) },
      { highWaterMark: 0 },
    );
    const { readable, controller } = guardInboundStream(source, {
      clock: h.clock,
      idle: 1000,
      minRate: 100,
      grace: 10_000,
    });
    const reader = readable.getReader();
    h.set(100);
    const pending = reader.read(); // the wait begins in a turn that opens at 100 ...
    await flush();
    h.set(105);
    h.closeTurn(); // ... and ends at 105: the wait counts from 105, never from before it began
    h.set(300);
    deliver(new Uint8Array(10)); // progress in a turn that opens at 300
    await pending;
    expect(controller.stats.waited).toBe(195);
    h.closeTurn();
  });

  it("an idle deadline is never early: it fires at turn end + idle, not turn start + idle", async () => {
    const h = handTurnedClock();
    const source = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }, { highWaterMark: 0 });
    const { readable, controller } = guardInboundStream(source, { clock: h.clock, idle: 1000 });
    h.set(0);
    readable
      .getReader()
      .read()
      .catch(() => {});
    await flush();
    h.set(40); // the turn ran 40 ms after the read began
    h.closeTurn();
    h.set(1000);
    h.runTimers(); // checked at turn start + idle: not due yet
    expect(controller.state).toBe("active");
    h.set(1040);
    h.runTimers();
    expect(controller.error?.idleFor).toBe(1000);
  });

  it("a wait that begins and ends within one turn counts as zero, with no clock reading per chunk", async () => {
    const h = handTurnedClock();
    let sent = 0;
    const source = new ReadableStream<Uint8Array>(
      { pull: (c) => (sent++ < 1000 ? c.enqueue(new Uint8Array(8)) : c.close()) },
      { highWaterMark: 0 },
    );
    const { readable, controller } = guardInboundStream(source, { clock: h.clock, idle: 1000, minRate: 1 });
    const readsBefore = h.reads();
    const reader = readable.getReader();
    while (!(await reader.read()).done) h.set(h.reads()); // time moves, but the turn never ends
    // A turn is renewed every USES_PER_TURN uses, plus one reading to arm the timer and one at the
    // close: far fewer than the two per chunk (2,000 here) that exact readings would take.
    expect(h.reads() - readsBefore).toBeLessThanOrEqual(Math.ceil(2000 / USES_PER_TURN) + 3);
    expect(controller.stats.bytes).toBe(8000);
  });

  it("a turn that runs long is renewed after a few uses, so a wait counts from near its real start", () => {
    const h = handTurnedClock();
    const turns = new EventLoopTurns(h.clock);
    // A burst: the end-of-turn hook does not run, but uses keep coming, 1 ms apart.
    h.set(0);
    turns.turn();
    h.set(5);
    const waitBegan = turns.turn(); // a wait begins at 5, in a turn opened at 0
    for (let t = 6; t < 6 + 2 * USES_PER_TURN; t++) {
      h.set(t);
      turns.turn();
    }
    // It counts from its turn's end, which came within USES_PER_TURN uses of 5, not at the burst's end.
    expect(waitBegan.end).toBeGreaterThanOrEqual(5);
    expect(waitBegan.end).toBeLessThanOrEqual(5 + USES_PER_TURN);
    h.closeTurn();
  });
});
