/**
 * Counters that leak tests (and curious operators) can read: a guard that ended but still counts
 * here, or a scheduled deadline left behind, is a leak.
 */
import { type Clock, checkClock, systemClock } from "./clock.ts";
import { schedulerFor, schedulerTotals } from "./scheduler.ts";

/** Mutated by the engine; read through `deadlineDebugCounters()`. */
export const liveCounts = { guards: 0, listeners: 0 };

export interface DeadlineDebugCounters {
  /** Guarded streams that have not ended yet, across all clocks. */
  liveGuards: number;
  /** Deadlines waiting in the clock's scheduler. */
  scheduledDeadlines: number;
  /** Whether the clock's one native timer is pending. */
  timerArmed: boolean;
  /** Native timer wake-ups of the clock's scheduler so far. */
  timerWakeups: number;
  /**
   * Time the clock's event loop was seen stalled (its timer woke more than 100 ms late), in ms, and
   * not charged to any peer's idle or minRate clock.
   */
  stalledMs: number;
  /**
   * Deadlines (body deadlines and handler deadlines) waiting in any clock's scheduler. Where each
   * request has its own clock (`timerScope: "request"`, the default on workerd), the figures of one
   * clock say nothing about the others: this one counts them all.
   */
  allScheduledDeadlines: number;
  /** Native timers pending, across all clocks. */
  allTimersArmed: number;
  /**
   * `stalledMs` summed over every clock's scheduler (each saw the stalls it was armed across: where
   * each request has its own clock, one stall can be counted by several).
   */
  allStalledMs: number;
  /** withDeadlines' "client went away" listeners on requests' signals not yet removed. */
  disconnectListeners: number;
}

export function deadlineDebugCounters(clock: Clock = systemClock): DeadlineDebugCounters {
  checkClock("deadlineDebugCounters", "clock", clock);
  const scheduler = schedulerFor(clock);
  return {
    liveGuards: liveCounts.guards,
    scheduledDeadlines: scheduler.size,
    timerArmed: scheduler.armed,
    timerWakeups: scheduler.wakeups,
    stalledMs: scheduler.stalled,
    allScheduledDeadlines: schedulerTotals.scheduled,
    allTimersArmed: schedulerTotals.armed,
    allStalledMs: schedulerTotals.stalled,
    disconnectListeners: liveCounts.listeners,
  };
}
