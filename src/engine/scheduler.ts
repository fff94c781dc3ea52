/**
 * One native timer for all deadlines of a clock.
 *
 * Entries sit in a binary min-heap keyed by `scheduledAt`, a time at which the entry must be looked
 * at again. Progress (a chunk, a reset idle timer) only moves an entry's real due time later, so
 * the hot path writes no heap and arms no timer: the entry is re-checked lazily when its old time
 * comes and re-inserted at its real due time. Only a due time moving *earlier* (a read starting,
 * a limit tightened) touches the heap, and only then may the one native timer be re-armed.
 *
 * Starvation of our own event loop is not charged to peers (as Kestrel's heartbeat): while the next
 * deadline is less than HEARTBEAT_HORIZON_MS away, the timer wakes at least every HEARTBEAT_MS, so a
 * stalled loop (a long task, a GC pause, a starved process) shows up as a late wake-up. Lateness
 * beyond STALL_TOLERANCE_MS is added to `stalled`, which the trackers take off the wait in progress;
 * and the first sweep after a stall waits one more timer task, so the I/O that queued during the
 * stall is read before any deadline is judged. The next sweep runs whatever that task cost: the deferral never repeats, so a loop that
 * stays overloaded still fires its deadlines, at most one tolerance per wake-up slower.
 */

import type { Clock } from "./clock.ts";
import {
  HEARTBEAT_HORIZON_MS,
  HEARTBEAT_MS,
  MAX_TIMER_DELAY,
  STALL_TOLERANCE_MS,
  SWEEP_BATCH_LIMIT,
  SWEEP_LOOKAHEAD_MS,
} from "./constants.ts";
import { EventLoopTurns } from "./event-loop-turns.ts";

export interface ScheduledEntry {
  /** Owned by the scheduler: position in the heap, -1 when not scheduled. */
  heapIndex: number;
  /** Owned by the scheduler: when the entry will next be checked. */
  scheduledAt: number;
  /**
   * Called at or after `scheduledAt`. Fires the deadline if it is due at `now` and returns
   * Infinity, or returns the time it is really due (Infinity: nothing to watch now).
   */
  checkDue(now: number): number;
}

/**
 * Totals over every clock's scheduler, for `deadlineDebugCounters()`: where each request has its own
 * clock (workerd), one clock's figures say nothing about the others.
 */
export const schedulerTotals = { scheduled: 0, armed: 0, stalled: 0 };

export class DeadlineScheduler {
  #clock: Clock;
  /** Per-turn clock readings shared by every deadline of this clock. */
  readonly turns: EventLoopTurns;
  #heap: ScheduledEntry[] = [];
  #timer: unknown;
  #armedAt = Infinity;
  /** True while a sweep runs: re-inserted entries arm the timer once, at the end. */
  #sweeping = false;
  /** Native timer wake-ups so far (for benchmarks and leak tests). */
  wakeups = 0;
  /** Event-loop stall time not charged to peers so far, ms (only grows; see above). */
  stalled = 0;
  /** Whether the last wake-up was a stall whose sweep was put off by one timer task. */
  #deferred = false;

  constructor(clock: Clock) {
    this.#clock = clock;
    this.turns = new EventLoopTurns(clock);
  }

  /** Entries waiting to be checked. */
  get size(): number {
    return this.#heap.length;
  }

  /** Whether a native timer is pending. */
  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /** Makes sure `entry` is checked no later than `at`. O(1) when it already is. */
  schedule(entry: ScheduledEntry, at: number): void {
    if (entry.heapIndex >= 0) {
      if (at >= entry.scheduledAt) return;
      entry.scheduledAt = at;
      this.#siftUp(entry.heapIndex);
    } else {
      if (at === Infinity) return;
      entry.scheduledAt = at;
      entry.heapIndex = this.#heap.length;
      this.#heap.push(entry);
      schedulerTotals.scheduled++;
      this.#siftUp(entry.heapIndex);
    }
    if (at < this.#armedAt && !this.#sweeping) this.#arm(at);
  }

  unschedule(entry: ScheduledEntry): void {
    const i = entry.heapIndex;
    if (i < 0) return;
    const last = this.#heap.pop()!;
    schedulerTotals.scheduled--;
    entry.heapIndex = -1;
    entry.scheduledAt = Infinity;
    if (last !== entry) {
      this.#heap[i] = last;
      last.heapIndex = i;
      this.#siftDown(i);
      this.#siftUp(last.heapIndex);
    }
    if (this.#heap.length === 0 && !this.#sweeping) this.#disarm();
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    else schedulerTotals.armed++;
    const now = this.#clock.now();
    const delay = Math.min(Math.max(at - now, 0), at - now < HEARTBEAT_HORIZON_MS ? HEARTBEAT_MS : MAX_TIMER_DELAY);
    this.#armedAt = now + delay; // when the timer should wake: how late it woke tells a stall
    this.#timer = this.#clock.setTimer(this.#onTimer, delay);
  }

  #disarm(): void {
    if (this.#timer !== undefined) {
      this.#clock.clearTimer(this.#timer);
      schedulerTotals.armed--;
    }
    this.#timer = undefined;
    this.#armedAt = Infinity;
  }

  #onTimer = (): void => {
    const now = this.#clock.now();
    const late = now - this.#armedAt;
    this.#timer = undefined;
    schedulerTotals.armed--;
    this.#armedAt = Infinity;
    this.wakeups++;
    if (late > STALL_TOLERANCE_MS) {
      this.stalled += late - STALL_TOLERANCE_MS;
      schedulerTotals.stalled += late - STALL_TOLERANCE_MS;
      if (!this.#deferred) {
        this.#deferred = true;
        this.#arm(now); // a task from now: the I/O that queued during the stall comes first
        return;
      }
    }
    this.#deferred = false;
    const horizon = now + SWEEP_LOOKAHEAD_MS;
    const batch: ScheduledEntry[] = [];
    this.#sweeping = true;
    while (this.#heap.length > 0 && this.#heap[0]!.scheduledAt <= horizon && batch.length < SWEEP_BATCH_LIMIT) {
      const entry = this.#heap[0]!;
      this.unschedule(entry);
      batch.push(entry);
    }
    for (const entry of batch) {
      // checkDue may fire user-visible effects (abort listeners); one throwing must not strand the rest.
      let next = Infinity;
      try {
        next = entry.checkDue(now);
      } catch (error) {
        reportError(error);
      }
      if (next !== Infinity && entry.heapIndex < 0) this.schedule(entry, next);
    }
    this.#sweeping = false;
    if (this.#heap.length > 0 && this.#timer === undefined) this.#arm(this.#heap[0]!.scheduledAt);
  };

  #siftUp(i: number): void {
    const heap = this.#heap;
    const entry = heap[i]!;
    while (i > 0) {
      const parentIndex = (i - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (parent.scheduledAt <= entry.scheduledAt) break;
      heap[i] = parent;
      parent.heapIndex = i;
      i = parentIndex;
    }
    heap[i] = entry;
    entry.heapIndex = i;
  }

  #siftDown(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const entry = heap[i]!;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && heap[right]!.scheduledAt < heap[left]!.scheduledAt ? right : left;
      if (heap[child]!.scheduledAt >= entry.scheduledAt) break;
      heap[i] = heap[child]!;
      heap[i]!.heapIndex = i;
      i = child;
    }
    heap[i] = entry;
    entry.heapIndex = i;
  }
}

function reportError(error: unknown): void {
  const host = globalThis as { reportError?: (e: unknown) => void };
  if (typeof host.reportError === "function") host.reportError(error);
  else
    queueMicrotask(() => {
      throw error;
    });
}

const schedulers = new WeakMap<Clock, DeadlineScheduler>();

/** The shared scheduler of a clock (one native timer per clock). */
export function schedulerFor(clock: Clock): DeadlineScheduler {
  let scheduler = schedulers.get(clock);
  if (scheduler === undefined) {
    scheduler = new DeadlineScheduler(clock);
    schedulers.set(clock, scheduler);
  }
  return scheduler;
}
