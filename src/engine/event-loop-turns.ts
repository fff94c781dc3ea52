/**
 * Clock readings per event-loop turn instead of per chunk.
 *
 * A reading costs ~40 ns on this machine, as much as the rest of the per-chunk work together. So
 * the engine reads the clock once when a turn first needs the time (`turn.start`) and once when the
 * turn is over (`turn.end`, via the clock's `afterTurn`). Then:
 * - a wait that begins in a turn is taken to begin at `turn.end`: never before it really began, so
 *   a deadline can be late by what was left of that turn but never early;
 * - progress in a turn is taken to happen at `turn.start`: never after it really happened, so the
 *   blamed time is never over-counted.
 * A wait that begins and ends within one turn counts as zero. On a virtual clock time does not move
 * within a turn, so both are exact.
 *
 * A turn also ends after USES_PER_TURN uses: the end-of-turn hook (setImmediate) runs only after
 * libuv's poll phase, which under a burst handles thousands of I/O callbacks first. Measured with
 * 10,000 connections arriving at once, one such "turn" lasted 1.3 s and made deadlines that late.
 * Renewing it every few uses bounds that to a few callbacks, for one reading per USES_PER_TURN.
 */
import type { Clock } from "./clock.ts";

export interface Turn {
  /** Clock reading when the turn first needed the time. */
  readonly start: number;
  /** Clock reading when the turn was over; NaN while it is still running. */
  end: number;
}

/** Uses of one turn before it is renewed with a fresh reading (see above). */
export const USES_PER_TURN = 16;

export class EventLoopTurns {
  #current: Turn | null = null;
  #uses = 0;
  #closeQueued = false;
  #clock: Clock;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** The running turn (opened, with one clock reading, if none is). */
  turn(): Turn {
    const running = this.#current;
    if (running !== null && ++this.#uses < USES_PER_TURN) return running;
    const now = this.#clock.now();
    if (this.#clock.afterTurn === undefined) return { start: now, end: now }; // no turn hook: exact readings
    if (running !== null) running.end = now; // renewed: the next turn starts where this one ended
    const opened: Turn = { start: now, end: NaN };
    this.#current = opened;
    this.#uses = 0;
    if (!this.#closeQueued) {
      this.#closeQueued = true;
      this.#clock.afterTurn(this.#close);
    }
    return opened;
  }

  #close = (): void => {
    this.#closeQueued = false;
    const running = this.#current;
    if (running === null) return;
    running.end = this.#clock.now();
    this.#current = null;
  };
}
