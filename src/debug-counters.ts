/**
 * Counters that leak tests (and curious operators) can read: a guard that ended but still counts
 * here, or a scheduled deadline left behind, is a leak.
 */
import { type Clock, systemClock } from "./clock.ts";
import { schedulerFor } from "./deadline-scheduler.ts";

/** Mutated by the engine; read through `deadlineDebugCounters()`. */
export const liveCounts = { guards: 0 };

export interface DeadlineDebugCounters {
  /** Guarded streams (and handler deadlines) that have not ended yet, across all clocks. */
  liveGuards: number;
  /** Deadlines waiting in the clock's scheduler. */
  scheduledDeadlines: number;
  /** Whether the clock's one native timer is pending. */
  timerArmed: boolean;
  /** Native timer wake-ups of the clock's scheduler so far. */
  timerWakeups: number;
}

export function deadlineDebugCounters(clock: Clock = systemClock): DeadlineDebugCounters {
  const scheduler = schedulerFor(clock);
  return {
    liveGuards: liveCounts.guards,
    scheduledDeadlines: scheduler.size,
    timerArmed: scheduler.armed,
    timerWakeups: scheduler.wakeups,
  };
}
