/** The handler deadline (Go's TimeoutHandler): one scheduler entry, counted from the request's arrival. */
import type { Clock } from "../engine/clock.ts";
import { type ScheduledEntry, schedulerFor } from "../engine/scheduler.ts";

/** Told when the handler deadline passes. */
export interface HandlerDeadlineOwner {
  handlerDeadlinePassed(now: number, limit: number): void;
}

export class HandlerDeadline implements ScheduledEntry {
  heapIndex = -1;
  scheduledAt = Infinity;
  due = Infinity;
  limit = 0;
  constructor(
    private readonly owner: HandlerDeadlineOwner,
    private readonly clock: Clock,
  ) {}
  checkDue(now: number): number {
    if (this.due === Infinity) return Infinity;
    if (now >= this.due) {
      this.due = Infinity;
      this.owner.handlerDeadlinePassed(now, this.limit);
      return Infinity;
    }
    return this.due;
  }
  set(ms: number | null, startedAt: number): void {
    if (ms === null) {
      this.stop();
      return;
    }
    this.limit = ms;
    this.due = startedAt + ms;
    const now = this.clock.now();
    if (now >= this.due) {
      this.checkDue(now);
      return;
    }
    const scheduler = schedulerFor(this.clock);
    scheduler.unschedule(this); // the deadline may move later: re-insert at the exact time
    scheduler.schedule(this, this.due);
  }
  stop(): void {
    this.due = Infinity;
    schedulerFor(this.clock).unschedule(this);
  }
}
