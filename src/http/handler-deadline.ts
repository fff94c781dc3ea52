/**
 * The handler deadline (Go's TimeoutHandler): one scheduler entry. It measures the handler's own
 * time since the request's arrival: the clock pauses while the handler waits on a read of the
 * request body that the client has not satisfied (the request body's own limits govern that time,
 * the request tracker's blamed clock), and runs at every other moment.
 */
import type { Clock } from "../engine/clock.ts";
import { type ScheduledEntry, schedulerFor } from "../engine/scheduler.ts";
import { TimeoutError } from "../engine/timeout-error.ts";

/** Told when the handler deadline passes; says how much of the time so far was the client's. */
export interface HandlerDeadlineOwner {
  handlerDeadlinePassed(now: number, limit: number): void;
  /** The time the client has been to blame so far (a read of the request body pending and unsatisfied), ms. */
  clientTime(now: number): number;
  /** Whether the client is to blame right now (the handler's clock is paused). */
  readonly clientToBlame: boolean;
}

export class HandlerDeadline implements ScheduledEntry {
  heapIndex = -1;
  scheduledAt = Infinity;
  /** When the deadline is next looked at (Infinity: off, or paused until the client's wait ends). */
  #due = Infinity;
  /** The limit in force, ms of the handler's own time; null: off. */
  #limit: number | null = null;
  #owner: HandlerDeadlineOwner;
  #clock: Clock;
  #startedAt: number;

  constructor(owner: HandlerDeadlineOwner, clock: Clock, startedAt: number) {
    this.#owner = owner;
    this.#clock = clock;
    this.#startedAt = startedAt;
  }

  checkDue(now: number): number {
    if (this.#limit === null || now < this.#due) return this.#due;
    this.#due = this.#nextDue(now);
    if (this.#due <= now) {
      const limit = this.#limit;
      this.stop();
      this.#owner.handlerDeadlinePassed(now, limit);
      return Infinity;
    }
    return this.#due;
  }

  /**
   * When the handler's own time reaches the limit if the client is not to blame from now on;
   * Infinity while it is (the client's wait ending calls resume()).
   */
  #nextDue(now: number): number {
    if (this.#owner.clientToBlame) return Infinity;
    return now + (this.#limit! - (now - this.#startedAt - this.#owner.clientTime(now)));
  }

  /** Sets the limit, ms of the handler's own time; a limit already passed fires inside this call. */
  set(ms: number | null): void {
    if (ms === null) {
      this.stop();
      return;
    }
    this.#limit = ms;
    const now = this.#clock.now();
    this.#due = now; // looked at now: fires if already past, else finds its next due time
    this.#reschedule(this.checkDue(now));
  }

  /**
   * The client's wait ended: the handler's clock runs again from now. Still scheduled: nothing to do
   * (a pause only moves the deadline later, and checkDue recomputes it from the figures), so the
   * per-chunk path writes no heap. Unscheduled because a check found the clock paused: schedule it
   * again. Never fires inside this call (it runs inside the request body's progress): a deadline
   * already due fires on the scheduler's next tick.
   */
  resume(): void {
    if (this.#limit === null || this.heapIndex >= 0) return;
    const now = this.#clock.now();
    this.#due = Math.max(now, this.#nextDue(now));
    this.#reschedule(this.#due);
  }

  #reschedule(at: number): void {
    const scheduler = schedulerFor(this.#clock);
    scheduler.unschedule(this); // the deadline may move later: re-insert at the exact time
    if (at !== Infinity) scheduler.schedule(this, at);
  }

  stop(): void {
    this.#limit = null;
    this.#due = Infinity;
    schedulerFor(this.#clock).unschedule(this);
  }
}

/** The handler deadline's error: `bytes` of the upload read so far, `elapsed` ms since the request's arrival. */
export function handlerTimeoutError(limit: number, bytes: number, elapsed: number): TimeoutError {
  return new TimeoutError({
    subject: "handler",
    direction: null,
    limit: "handler",
    limitValue: limit,
    bytes,
    elapsed,
    waited: 0,
    idleFor: 0,
    rate: 0,
  });
}
