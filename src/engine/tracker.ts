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

/** A wait on the consumer this long or longer (the socket was full) ends a burst of takes. */
export const BURST_GAP_MS = 50;
/** A burst earns credit up to this many bytes (Linux's default maximum send buffer, tcp_wmem). */
export const OUTBOUND_BURST_CREDIT_MAX = 4 * 1024 * 1024;

import { type Clock, defaultClock } from "./clock.ts";
import { type DeadlineScheduler, type ScheduledEntry, schedulerFor } from "./scheduler.ts";
import { liveCounts } from "./debug-counters.ts";
import type { EventLoopTurns, Turn } from "./event-loop-turns.ts";
import { type DeadlineLimits, type ResolvedLimits, applyLimits, emptyLimits, parseLimits } from "./limits.ts";
import { type DeadlineDirection, type DeadlineLimitName, TimeoutError } from "./timeout-error.ts";

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

  declare readonly direction: DeadlineDirection;
  declare readonly subject: string;
  declare private readonly clock: Clock;
  declare private readonly scheduler: DeadlineScheduler;
  declare private readonly turns: EventLoopTurns;
  private readonly current: ResolvedLimits = emptyLimits();
  declare private readonly startedAt: number;
  private totalDue = Infinity;
  private _state: GuardState = "active";
  private _error: TimeoutError | undefined;
  private abortController: AbortController | undefined;
  declare private readonly userOnTimeout: ((error: TimeoutError) => void) | undefined;
  /** Set by the stream guard once it is attached. */
  source: GuardedSource | undefined = undefined;
  /** Told once of a firing and once of the end, however the stream ends. */
  declare owner: TrackerOwner | undefined;
  private retired = false;

  private waiting = false;
  /** The turn in which the current wait began; it counts from that turn's end (see event-loop-turns.ts). */
  private waitTurn: Turn | undefined;
  private waitedBefore = 0;
  private bytes = 0;
  /** Rate credit in bytes, as of the start of the current wait (or of the last change). */
  private credit = 0;
  /** Outbound: bytes taken since the consumer last kept a chunk waiting BURST_GAP_MS or more (see the rate model). */
  private burstBytes = 0;
  /** Whether a guard has pulled yet (see failedOnFirstPull). */
  private firstPullSeen = false;
  /** During a wait, credit drains from max(wait start, creditFrom): a limit change restarts it. */
  private creditFrom = -Infinity;

  constructor(options: TrackerOptions) {
    const patch = options.parsedLimits ?? parseLimits(options.limits, `${options.subject} limits`);
    this.direction = options.direction;
    this.subject = options.subject;
    this.clock = options.clock ?? defaultClock();
    this.scheduler = schedulerFor(this.clock);
    this.turns = this.scheduler.turns;
    this.userOnTimeout = options.onTimeout;
    this.owner = options.owner;
    this.startedAt = options.startedAt ?? this.clock.now();
    liveCounts.guards++;
    const now = options.startedAt === undefined ? this.startedAt : this.clock.now();
    this.applyPatch(patch, now);
    // Never fire inside the constructor (a Date total in the past, a total shorter than the time
    // since `startedAt`): neither the stream nor the owner is attached yet, so the firing would
    // reach nobody and the stream would hang. Due already: the scheduler fires it at once (timer 0).
    this.scheduler.schedule(this, this.nextDue(now));
  }

  get state(): GuardState {
    return this._state;
  }

  get ended(): boolean {
    return this._state !== "active";
  }

  get error(): TimeoutError | undefined {
    return this._error;
  }

  get limits(): Readonly<ResolvedLimits> {
    return { ...this.current };
  }

  get signal(): AbortSignal {
    if (this.abortController === undefined) {
      this.abortController = new AbortController();
      if (this._error !== undefined) this.abortController.abort(this._error);
    }
    return this.abortController.signal;
  }

  get stats(): DeadlineStats {
    const now = this.clock.now();
    const idleFor = this.waiting && !this.ended ? Math.max(0, now - this.waitStartAt(now)) : 0;
    const waited = this.waitedBefore + idleFor;
    const due = this.ended ? Infinity : this.nextDue(now);
    return {
      state: this._state,
      bytes: this.bytes,
      elapsed: now - this.startedAt,
      waited,
      idleFor,
      waiting: this.waiting && !this.ended,
      rate: waited > 0 ? (this.bytes * 1000) / waited : 0,
      rateCredit: this.current.minRate === null ? null : this.creditNow(now),
      remaining: due === Infinity ? null : Math.max(0, due - now),
    };
  }

  set(limits: DeadlineLimits): void {
    const patch = parseLimits(limits, `${this.subject} limits`);
    if (this.ended || this.retired) return;
    const now = this.clock.now();
    this.applyPatch(patch, now);
    this.reschedule(now);
  }

  clear(): void {
    this.set({ idle: null, minRate: null, total: null });
  }

  /** Whether the peer is to blame right now (its clock runs). */
  get waitingNow(): boolean {
    return this.waiting && !this.ended;
  }

  /** The time the peer has been to blame in total, as of `now` (the clock idle and minRate run on), ms. */
  waitedAt(now: number): number {
    return this.waitedBefore + (this.waiting && !this.ended ? Math.max(0, now - this.waitStartAt(now)) : 0);
  }

  /** The peer is to blame from now on: a read waits on it (inbound) or a chunk waits for it (outbound). */
  startWaiting(): void {
    if (this.waiting || this.ended) return;
    const turn = this.turns.turn();
    this.waiting = true;
    this.waitTurn = turn;
    this.creditFrom = -Infinity;
    const { idle, minRate } = this.current;
    if (idle === null && minRate === null) return;
    // The wait began no earlier than turn.start: checking from there on is early enough, and the
    // check itself decides on the real figures (lazily; usually the entry is already due later).
    let due = this.totalDue;
    if (idle !== null) due = Math.min(due, turn.start + idle);
    if (minRate !== null) due = Math.min(due, turn.start + (this.credit * 1000) / minRate);
    this.scheduler.schedule(this, due);
  }

  /**
   * A `total` already past when the stream was made (a Date in the past) fails it before any byte
   * moves (guards check on their first pull, fetchWithDeadlines before sending), as a read after a past Go deadline fails. (The
   * scheduler would fire it on its next tick anyway; data already buffered could slip out first.)
   */
  checkOverdue(): void {
    if (this.totalDue === Infinity || this.ended) return;
    const now = this.turns.turn().start;
    if (this.totalDue <= now) this.fire("total", now);
  }

  /**
   * For the guards' pull: on the first call only, runs checkOverdue; true when that failed the
   * stream (the pull then has nothing to do). Later calls return false at once.
   */
  failedOnFirstPull(): boolean {
    if (this.firstPullSeen) return false;
    this.firstPullSeen = true;
    this.checkOverdue();
    return this.ended;
  }

  /** `n` bytes moved (delivered by or taken by the peer); ends the current wait if any. */
  progress(n: number): void {
    this.bytes += n;
    const minRate = this.current.minRate;
    if (this.waiting) {
      this.waiting = false;
      const began = this.waitTurn!.end; // NaN: the wait began in this very turn and counts as zero
      this.waitTurn = undefined;
      if (!Number.isNaN(began)) {
        const end = this.turns.turn().start;
        if (end > began) this.waitedBefore += end - began;
        if (end - began >= BURST_GAP_MS) this.burstBytes = 0; // the socket made us wait: a new burst
        if (minRate !== null) {
          const drained = end - Math.max(began, this.creditFrom);
          if (drained > 0) this.credit -= (minRate * drained) / 1000;
        }
      }
      this.owner?.trackerWaitEnded?.(this);
    }
    if (minRate !== null) {
      let cap = (minRate * this.current.grace) / 1000;
      if (this.direction === "outbound") {
        this.burstBytes += n;
        if (this.burstBytes > cap) cap = Math.min(this.burstBytes, Math.max(cap, OUTBOUND_BURST_CREDIT_MAX));
      }
      this.credit = Math.min(cap, this.credit + n);
    }
  }

  /** The stream ended without a timeout. Frees its scheduler entry. */
  finish(state: "closed" | "cancelled" | "errored"): void {
    if (this.ended) return;
    if (this.waiting) {
      const now = this.clock.now();
      this.waitedBefore += Math.max(0, now - this.waitStartAt(now));
      this.waiting = false;
      this.waitTurn = undefined;
    }
    this._state = state;
    this.release();
  }

  checkDue(now: number): number {
    if (this.ended) return Infinity;
    const fired = this.dueLimit(now);
    if (fired !== null) {
      this.fire(fired, now);
      return Infinity;
    }
    return this.nextDue(now);
  }

  /**
   * The consumer cancelled the stream: ends it, and returns the reason to cancel the source with
   * (the owner's, when it knows the cause better than the runtime said).
   */
  cancelledByConsumer(reason: unknown): unknown {
    const owner = this.owner;
    this.finish("cancelled");
    return owner?.cancelReason !== undefined ? owner.cancelReason(this, reason) : reason;
  }

  /**
   * Fails the stream from outside (the client went away): errors it and cancels the source with
   * `reason`. No deadline fired, so no TimeoutError and no report.
   */
  abort(reason: unknown): void {
    if (this.ended) return;
    this.finish("cancelled");
    this.source?.fail(reason);
  }

  /**
   * Stops all deadline work but leaves the stream flowing as a plain pass-through: for a request
   * body nobody needs bounded any more (its response has ended). Frees the scheduler entry.
   */
  retire(): void {
    if (this.ended || this.retired) return;
    this.current.idle = this.current.minRate = this.current.total = this.current.totalAt = null;
    this.totalDue = Infinity;
    this.retired = true;
    this.scheduler.unschedule(this);
    liveCounts.guards--;
  }

  private release(): void {
    this.scheduler.unschedule(this);
    if (!this.retired) liveCounts.guards--;
    this.retired = true;
    const owner = this.owner;
    this.owner = undefined;
    if (this._state !== "timedOut") owner?.trackerSettled(this);
  }

  /** When the current wait counts from, judged at `now` (a wait begun in the running turn: from now). */
  private waitStartAt(now: number): number {
    const began = this.waitTurn?.end ?? now;
    return Number.isNaN(began) ? now : began;
  }

  private creditNow(now: number): number {
    if (!this.waiting) return this.credit;
    const drained = now - Math.max(this.waitStartAt(now), this.creditFrom);
    return drained > 0 ? this.credit - ((this.current.minRate ?? 0) * drained) / 1000 : this.credit;
  }

  private applyPatch(patch: Partial<ResolvedLimits>, now: number): void {
    const rateChanged = applyLimits(this.current, patch);
    if (rateChanged && this.current.minRate !== null) {
      this.credit = (this.current.minRate * this.current.grace) / 1000;
      this.creditFrom = now;
    }
    if (patch.total !== undefined || patch.totalAt !== undefined) {
      const { total, totalAt } = this.current;
      if (total !== null) this.totalDue = this.startedAt + total;
      else if (totalAt !== null) this.totalDue = now + (totalAt - this.clock.wallNow());
      else this.totalDue = Infinity;
    }
  }

  private idleDue(now: number): number {
    return this.waiting && this.current.idle !== null ? this.waitStartAt(now) + this.current.idle : Infinity;
  }

  private rateDue(now: number): number {
    const minRate = this.current.minRate;
    if (!this.waiting || minRate === null) return Infinity;
    return Math.max(this.waitStartAt(now), this.creditFrom) + (this.credit * 1000) / minRate;
  }

  private nextDue(now: number): number {
    return Math.min(this.totalDue, this.idleDue(now), this.rateDue(now));
  }

  /** The limit that is due at `now`, the earliest-due one when several are. */
  private dueLimit(now: number): DeadlineLimitName | null {
    let best: DeadlineLimitName | null = null;
    let bestAt = now;
    if (this.totalDue <= bestAt) {
      best = "total";
      bestAt = this.totalDue;
    }
    const idleDue = this.idleDue(now);
    if (idleDue <= bestAt && (best === null || idleDue < bestAt)) {
      best = "idle";
      bestAt = idleDue;
    }
    const rateDue = this.rateDue(now);
    if (rateDue <= bestAt && (best === null || rateDue < bestAt)) best = "minRate";
    return best;
  }

  /** Fires what is due now, or makes sure the scheduler looks again when the next limit is due. */
  private reschedule(now: number): void {
    if (this.ended) return;
    const due = this.nextDue(now);
    if (due <= now) {
      this.fire(this.dueLimit(now)!, now);
      return;
    }
    this.scheduler.schedule(this, due);
  }

  private fire(limit: DeadlineLimitName, now: number): void {
    if (this.ended) return;
    const idleFor = this.waiting ? Math.max(0, now - this.waitStartAt(now)) : 0;
    const waited = this.waitedBefore + idleFor;
    const c = this.current;
    const limitValue =
      limit === "idle"
        ? c.idle!
        : limit === "minRate"
          ? c.minRate!
          : c.total !== null
            ? c.total
            : Math.max(0, this.totalDue - this.startedAt); // a Date already past when set: a limit of 0
    const error = new TimeoutError({
      subject: this.subject,
      direction: this.direction,
      limit,
      limitValue,
      ...(limit === "minRate" ? { grace: c.grace } : {}),
      bytes: this.bytes,
      elapsed: now - this.startedAt,
      waited,
      idleFor,
      rate: waited > 0 ? (this.bytes * 1000) / waited : 0,
    });
    this._error = error;
    this.waitedBefore = waited;
    this.waiting = false;
    this.waitTurn = undefined;
    this._state = "timedOut";
    const owner = this.owner;
    this.release();
    // Stream first (pending reads reject, source cancelled), then the signal, then the reports:
    // whoever reacts to the signal already sees the stream failed.
    this.source?.fail(error);
    this.abortController?.abort(error);
    owner?.trackerFired(this, error);
    owner?.trackerSettled(this);
    if (this.userOnTimeout !== undefined) {
      try {
        this.userOnTimeout(error);
      } catch (callbackError) {
        queueMicrotask(() => {
          throw callbackError;
        });
      }
    }
  }
}
