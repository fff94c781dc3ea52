/**
 * The deadline engine of one body direction: limits, the gated clock, the rate credit, the
 * figures, and firing exactly once. The stream guards tell it when the peer becomes to blame
 * (`startWaiting`) and when bytes move (`progress`); the scheduler asks it when it is due.
 *
 * Rate model (credit, as Apache mod_reqtimeout's MinRate, with a cap):
 *   credit starts at minRate × grace, drains at minRate per second of blamed time, grows by
 *   every byte, and never exceeds minRate × grace. The deadline fires when credit reaches 0.
 *   Guarantee: the peer may fall at most `grace` behind `minRate` on the blamed clock, and a
 *   fast start banks at most `grace` worth of credit.
 *
 * Outbound, one exception to the cap: bytes the runtime takes without keeping a chunk waiting for
 * 50 ms or more (one burst: the socket had room) have only reached the socket's buffers, and the
 * client reads them during the wait that follows. The kernel lets a writer go on only once a third of its send
 * buffer has drained (measured on Linux: 1.4–2.5 MiB at a time), so an honest reader at 2× minRate
 * shows up as a burst, then a long wait. The cap is therefore at least the last burst's bytes
 * (up to 4 MiB): the time a client at minRate needs to read what it was just given.
 */

import { BURST_GAP_MS, OUTBOUND_BURST_CREDIT_MAX } from "./constants.ts";

export { BURST_GAP_MS, OUTBOUND_BURST_CREDIT_MAX };

import { type Clock, defaultClock } from "./clock.ts";
import { type DeadlineScheduler, type ScheduledEntry, schedulerFor } from "./scheduler.ts";
import { liveCounts } from "./debug-counters.ts";
import type { Turn } from "./event-loop-turns.ts";
import { type DeadlineLimits, type ResolvedLimits, emptyLimits, parseLimits } from "./limits.ts";
import { type DeadlineDirection, TimeoutError } from "./timeout-error.ts";

/** active: moving bytes; closed: completed; timedOut: a deadline fired; cancelled: its consumer cancelled it; errored: the source failed. */
export type GuardState = "active" | "closed" | "timedOut" | "cancelled" | "errored";

export interface DeadlineStats {
  state: GuardState;
  /** Bytes delivered by the peer (inbound) or taken by the peer (outbound). */
  bytes: number;
  /** Wall time since the guard started, ms. */
  elapsed: number;
  /** Time the peer has been to blame in total, ms (the clock idle and minRate run on). */
  waited: number;
  /** How long the current wait has lasted, ms (0 when the peer is not to blame right now). */
  idleFor: number;
  /** Whether the peer is to blame right now (a read waits on it, or a chunk waits for it). */
  waiting: boolean;
  /** bytes / waited, in bytes per second (0 before any wait). */
  rate: number;
  /** Rate credit left, in bytes (null without minRate). */
  rateCredit: number | null;
  /** Time left until the earliest limit fires if nothing moves, ms (null when none can fire now). */
  remaining: number | null;
}

/** The live handle on one guarded stream: read its figures, change its limits at any moment. */
export interface DeadlineController {
  readonly direction: DeadlineDirection;
  readonly subject: string;
  readonly state: GuardState;
  /** The limits now in force (a copy). */
  readonly limits: Readonly<ResolvedLimits>;
  /** A snapshot of the figures now. */
  readonly stats: DeadlineStats;
  /** Aborts, with the TimeoutError as its reason, when a deadline of this stream fires. */
  readonly signal: AbortSignal;
  /** The TimeoutError, once one fired. */
  readonly error: TimeoutError | undefined;
  /**
   * Changes limits now: fields given replace the current ones (`0`/`null` turns one off, absent or
   * `undefined` keeps it). Takes effect at once: a tightened limit already exceeded fires inside
   * this call. Changing minRate or grace starts a fresh grace period. After the stream has ended
   * (timed out, closed, cancelled) it validates its input and does nothing: nothing revives a
   * stream that already failed.
   */
  set(limits: DeadlineLimits): void;
  /** Turns every limit off. */
  clear(): void;
}

/** The stream guard a tracker fails when a deadline fires. */
export interface GuardedSource {
  /** Errors the guarded stream with `reason` and cancels its source with it. */
  fail(reason: unknown): void;
}

/** Who owns a tracker (withDeadlines' per-request state): told of firings and of the end. */
export interface TrackerOwner {
  trackerFired(tracker: DeadlineTracker, error: TimeoutError): void;
  trackerSettled(tracker: DeadlineTracker): void;
  /** A wait on the peer ended with progress (called only after a wait; firings and ends are told above). */
  trackerWaitEnded?(tracker: DeadlineTracker): void;
  /** The reason to cancel the source with, when the consumer cancelled with `reason` (default: that). */
  cancelReason?(tracker: DeadlineTracker, reason: unknown): unknown;
}

export interface TrackerOptions {
  direction: DeadlineDirection;
  subject: string;
  limits?: DeadlineLimits | undefined;
  /** Limits already validated by parseLimits (skips validating them again per stream). */
  parsedLimits?: Partial<ResolvedLimits> | undefined;
  clock?: Clock | undefined;
  onTimeout?: ((error: TimeoutError) => void) | undefined;
  owner?: TrackerOwner | undefined;
  /** When `total` counts from (default: now), e.g. a request's arrival for its response body. */
  startedAt?: number | undefined;
}

export class DeadlineTracker implements ScheduledEntry, DeadlineController {
  heapIndex = -1;
  scheduledAt = Infinity;
  readonly direction: DeadlineDirection;
  readonly subject: string;
  /** Set by the stream guard once it is attached. */
  source: GuardedSource | undefined;
  /** Told once of a firing and once of the end, however the stream ends. */
  owner: TrackerOwner | undefined;

  // Private (#) state: a minifier shortens these names, which are most of a tracker's weight.
  #clock: Clock;
  #scheduler: DeadlineScheduler;
  #limits: ResolvedLimits = emptyLimits();
  #startedAt: number;
  #totalDue = Infinity;
  #state: GuardState = "active";
  #error: TimeoutError | undefined;
  #abortController: AbortController | undefined;
  #onTimeout: ((error: TimeoutError) => void) | undefined;
  #retired = false;
  /**
   * The turn in which the current wait began (it counts from that turn's end, see
   * event-loop-turns.ts); undefined when the peer is not to blame.
   */
  #waitTurn: Turn | undefined;
  /** The scheduler's `stalled` when the current wait began: a stall of our loop since is taken off it. */
  #stallMark = 0;
  /** Stalls of our loop left out of the waits that have ended (see waitedAt). */
  #stalledBefore = 0;
  #waitedBefore = 0;
  #bytes = 0;
  /** Rate credit in bytes, as of the start of the current wait (or of the last change). */
  #credit = 0;
  /** Outbound: bytes taken since the consumer last kept a chunk waiting BURST_GAP_MS or more (see the rate model). */
  #burstBytes = 0;
  /** Whether a guard has pulled yet (see failedOnFirstPull). */
  #firstPullSeen = false;
  /**
   * During a wait, credit drains from max(wait start, creditFrom): a limit change restarts it. Kept
   * net of the scheduler's `stalled` (add it back to read it), so a later stall moves it too.
   */
  #creditFrom = -Infinity;

  constructor(options: TrackerOptions) {
    const patch = options.parsedLimits ?? parseLimits(options.limits, `${options.subject} limits`);
    const clock = (this.#clock = options.clock ?? defaultClock());
    this.direction = options.direction;
    this.subject = options.subject;
    this.#scheduler = schedulerFor(clock);
    this.#onTimeout = options.onTimeout;
    this.owner = options.owner;
    const now = clock.now();
    this.#startedAt = options.startedAt ?? now;
    liveCounts.guards++;
    this.#apply(patch, now);
    // Never fire inside the constructor (a Date total in the past, a total shorter than the time
    // since `startedAt`): neither the stream nor the owner is attached yet, so the firing would
    // reach nobody and the stream would hang. Due already: the scheduler fires it at once (timer 0).
    this.#scheduler.schedule(this, this.#nextDue(now));
  }

  get state(): GuardState {
    return this.#state;
  }

  get ended(): boolean {
    return this.#state !== "active";
  }

  get error(): TimeoutError | undefined {
    return this.#error;
  }

  get limits(): Readonly<ResolvedLimits> {
    return { ...this.#limits };
  }

  get signal(): AbortSignal {
    if (this.#abortController === undefined) {
      this.#abortController = new AbortController();
      if (this.#error !== undefined) this.#abortController.abort(this.#error);
    }
    return this.#abortController.signal;
  }

  get stats(): DeadlineStats {
    const now = this.#clock.now();
    const due = this.ended ? Infinity : this.#nextDue(now);
    return {
      state: this.#state,
      ...this.#figures(now),
      rateCredit: this.#limits.minRate === null ? null : this.#creditAt(now),
      remaining: due === Infinity ? null : Math.max(0, due - now),
    };
  }

  /** The figures at `now`, as the stats and a TimeoutError give them. */
  #figures(now: number) {
    const idleFor = this.#idleFor(now);
    const waited = this.#waitedBefore + idleFor;
    const bytes = this.#bytes;
    return {
      bytes,
      elapsed: now - this.#startedAt,
      waited,
      idleFor,
      waiting: this.waitingNow,
      rate: waited > 0 ? (bytes * 1000) / waited : 0,
    };
  }

  set(limits: DeadlineLimits): void {
    const patch = parseLimits(limits, `${this.subject} limits`);
    if (this.ended || this.#retired) return;
    const now = this.#clock.now();
    this.#apply(patch, now);
    // Takes effect at once: a limit already exceeded fires here (checkDue), else the scheduler looks again when due.
    this.#scheduler.schedule(this, this.checkDue(now));
  }

  clear(): void {
    this.set({ idle: null, minRate: null, total: null });
  }

  /** Whether the peer is to blame right now (its clock runs). A wait always ends when the stream does. */
  get waitingNow(): boolean {
    return this.#waitTurn !== undefined;
  }

  /**
   * The time a wait on the peer lasted in total, as of `now`, ms, stalls of our loop during waits
   * included (for the handler deadline: the handler did not run during them either). The blamed
   * time (`stats.waited`, what idle and minRate judge) leaves those stalls out.
   */
  waitedAt(now: number): number {
    const stalled = this.#waitTurn === undefined ? 0 : this.#scheduler.stalled - this.#stallMark;
    return this.#waitedBefore + this.#idleFor(now) + this.#stalledBefore + stalled;
  }

  /** The peer is to blame from now on: a read waits on it (inbound) or a chunk waits for it (outbound). */
  startWaiting(): void {
    if (this.#waitTurn !== undefined || this.ended) return;
    const scheduler = this.#scheduler;
    const turn = (this.#waitTurn = scheduler.turns.turn());
    this.#stallMark = scheduler.stalled;
    this.#creditFrom = -Infinity;
    const { idle, minRate } = this.#limits;
    // The wait began no earlier than turn.start: checking from there on is early enough, and the
    // check itself decides on the real figures. This is #nextDue(turn.start), written out for the
    // per-chunk path: a wait that begins now counts, and drains its credit, from turn.start. Usually
    // the entry is already scheduled sooner (by an earlier wait), and nothing else is done.
    const start = turn.start;
    const due = Math.min(
      this.#totalDue,
      idle === null ? Infinity : start + idle,
      minRate === null ? Infinity : start + (this.#credit * 1000) / minRate,
    );
    if (due < this.scheduledAt) scheduler.schedule(this, due);
  }

  /**
   * A `total` already past when the stream was made (a Date in the past) fails it before any byte
   * moves (guards check on their first pull, fetchWithDeadlines before sending), as a read after a
   * past Go deadline fails. (The scheduler would fire it on its next tick anyway; data already
   * buffered could slip out first.)
   */
  checkOverdue(): void {
    if (this.#totalDue === Infinity || this.ended) return;
    const now = this.#scheduler.turns.turn().start;
    if (this.#totalDue <= now) this.#fire("total", now);
  }

  /**
   * For the guards' pull: on the first call only, runs checkOverdue; true when that failed the
   * stream (the pull then has nothing to do). Later calls return false at once.
   */
  failedOnFirstPull(): boolean {
    if (this.#firstPullSeen) return false;
    this.#firstPullSeen = true;
    this.checkOverdue();
    return this.ended;
  }

  /** `n` bytes moved (delivered by or taken by the peer); ends the current wait if any. */
  progress(n: number): void {
    this.#bytes += n;
    const minRate = this.#limits.minRate;
    const turn = this.#waitTurn;
    if (turn !== undefined) {
      const began = turn.end; // NaN: the wait began in this very turn and counts as zero
      if (Number.isNaN(began)) this.#waitTurn = undefined;
      else {
        // The wait ends at this turn's start (an ended turn is never renewed: `turn.end` stays).
        const end = this.#scheduler.turns.turn().start;
        if (end - began >= BURST_GAP_MS) this.#burstBytes = 0; // the socket made us wait: a new burst
        if (minRate !== null) this.#credit = this.#creditAt(end);
        this.#endWait(end);
      }
      this.owner?.trackerWaitEnded?.(this);
    }
    if (minRate !== null) {
      let cap = (minRate * this.#limits.grace) / 1000;
      if (this.direction === "outbound") {
        this.#burstBytes += n;
        if (this.#burstBytes > cap) cap = Math.min(this.#burstBytes, Math.max(cap, OUTBOUND_BURST_CREDIT_MAX));
      }
      this.#credit = Math.min(cap, this.#credit + n);
    }
  }

  /** The stream ended without a timeout. Frees its scheduler entry. */
  finish(state: "closed" | "cancelled" | "errored"): void {
    if (this.ended) return;
    if (this.#waitTurn !== undefined) this.#endWait(this.#clock.now());
    this.#end(state);
  }

  checkDue(now: number): number {
    if (this.ended) return Infinity;
    const total = this.#totalDue;
    const idle = this.#idleDue(now);
    const rate = this.#rateDue(now);
    const due = Math.min(total, idle, rate);
    if (due > now) return due;
    // The limit due at `now`, the earliest-due one when several are (ties: total, idle, minRate).
    this.#fire(due === total ? "total" : due === idle ? "idle" : "minRate", now);
    return Infinity;
  }

  /**
   * Stops all deadline work but leaves the stream flowing as a plain pass-through: for a request
   * body nobody needs bounded any more (its response has ended). Frees the scheduler entry.
   */
  retire(): void {
    if (this.ended || this.#retired) return;
    const limits = this.#limits;
    limits.idle = limits.minRate = limits.total = limits.totalAt = null;
    this.#totalDue = Infinity;
    this.#unschedule();
  }

  /** Frees the scheduler entry and the live count, once. */
  #unschedule(): void {
    this.#scheduler.unschedule(this);
    if (!this.#retired) liveCounts.guards--;
    this.#retired = true;
  }

  /** The wait in progress ends at `now` (the stream ended or a deadline fired). */
  #endWait(now: number): void {
    if (this.#waitTurn === undefined) return;
    this.#waitedBefore += this.#idleFor(now);
    this.#stalledBefore += this.#scheduler.stalled - this.#stallMark;
    this.#waitTurn = undefined;
  }

  /** The stream is over: frees the entry; the owner is told of an end that is not a firing. */
  #end(state: GuardState): void {
    this.#state = state;
    this.#unschedule();
    const owner = this.owner;
    this.owner = undefined;
    if (state !== "timedOut") owner?.trackerSettled(this);
  }

  /** How long the current wait has lasted at `now` (0 when none); a wait begun in the running turn: from now. */
  #idleFor(now: number): number {
    return this.#waitTurn === undefined ? 0 : Math.max(0, now - this.#waitStart(now));
  }

  /**
   * When the current wait counts from, judged at `now` (only during a wait): moved later by any stall
   * of our own loop since it began (see scheduler.ts).
   */
  #waitStart(now: number): number {
    const began = this.#waitTurn!.end;
    return Number.isNaN(began) ? now : began + this.#scheduler.stalled - this.#stallMark; // NaN: begun in the running turn
  }

  /** When credit drains from, during a wait. */
  #drainStart(now: number): number {
    return Math.max(this.#waitStart(now), this.#creditFrom + this.#scheduler.stalled);
  }

  #creditAt(now: number): number {
    if (this.#waitTurn === undefined) return this.#credit;
    const drained = now - this.#drainStart(now);
    return drained > 0 ? this.#credit - (this.#limits.minRate! * drained) / 1000 : this.#credit;
  }

  /** Applies a validated patch (see DeadlineController.set): a new minRate or grace starts a fresh grace period. */
  #apply(patch: Partial<ResolvedLimits>, now: number): void {
    const c = this.#limits;
    const rateChanged =
      (patch.minRate !== undefined && patch.minRate !== c.minRate) ||
      (patch.grace !== undefined && patch.grace !== c.grace);
    Object.assign(c, patch); // a patch holds only the fields given (parseLimits leaves out the rest)
    if (rateChanged && c.minRate !== null) {
      this.#credit = (c.minRate * c.grace) / 1000;
      this.#creditFrom = now - this.#scheduler.stalled;
    }
    if (patch.total !== undefined || patch.totalAt !== undefined)
      this.#totalDue =
        c.total !== null
          ? this.#startedAt + c.total
          : c.totalAt !== null
            ? now + (c.totalAt - this.#clock.wallNow())
            : Infinity;
  }

  #idleDue(now: number): number {
    const idle = this.#limits.idle;
    return this.#waitTurn !== undefined && idle !== null ? this.#waitStart(now) + idle : Infinity;
  }

  #rateDue(now: number): number {
    const minRate = this.#limits.minRate;
    if (this.#waitTurn === undefined || minRate === null) return Infinity;
    return this.#drainStart(now) + (this.#credit * 1000) / minRate;
  }

  #nextDue(now: number): number {
    return Math.min(this.#totalDue, this.#idleDue(now), this.#rateDue(now));
  }

  #fire(limit: "idle" | "minRate" | "total", now: number): void {
    const c = this.#limits;
    const error = new TimeoutError({
      subject: this.subject,
      direction: this.direction,
      limit,
      limitValue:
        limit === "total"
          ? (c.total ?? Math.max(0, this.#totalDue - this.#startedAt)) // a Date already past when set: 0
          : c[limit]!,
      grace: limit === "minRate" ? c.grace : undefined,
      ...this.#figures(now), // its `waiting` is not a detail: TimeoutError leaves it out
    });
    this.#error = error;
    this.#endWait(now);
    const owner = this.owner;
    this.#end("timedOut");
    // Stream first (pending reads reject, source cancelled), then the signal, then the reports:
    // whoever reacts to the signal already sees the stream failed.
    this.source?.fail(error);
    this.#abortController?.abort(error);
    owner?.trackerFired(this, error);
    owner?.trackerSettled(this);
    const onTimeout = this.#onTimeout;
    if (onTimeout !== undefined) {
      try {
        onTimeout(error);
      } catch (callbackError) {
        queueMicrotask(() => {
          throw callbackError;
        });
      }
    }
  }
}

/**
 * Fails a guarded stream from outside (the client went away): errors it and cancels its source with
 * `reason`. No deadline fired, so no TimeoutError and no report. (A function, not a method: what only
 * the HTTP layer calls stays out of a bundle that guards streams alone.)
 */
export function abortTracker(tracker: DeadlineTracker | undefined, reason: unknown): void {
  if (tracker === undefined || tracker.ended) return;
  tracker.finish("cancelled");
  tracker.source?.fail(reason);
}
