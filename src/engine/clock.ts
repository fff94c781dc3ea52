/**
 * Where time comes from. Production uses the monotonic `performance.now()` and the global
 * `setTimeout` (looked up at call time, so vitest/sinon fake timers drive it too); tests can pass a
 * virtual clock whose single `advance()` call moves time and runs everything that falls due.
 */

export interface Clock {
  /** Monotonic milliseconds (never jumps with the wall clock). */
  now(): number;
  /** Wall-clock epoch milliseconds, used only to turn a `Date` deadline into monotonic time. */
  wallNow(): number;
  /** Runs `callback` once after `ms` milliseconds. Must not keep the process alive on its own. */
  setTimer(callback: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
  /**
   * Optional: runs `callback` once the current event-loop turn (this task and its microtasks) is
   * over. With it, the engine reads the clock about once per turn instead of twice per chunk (see
   * event-loop-turns.ts); without it, every reading is fresh.
   */
  afterTurn?(callback: () => void): void;
}

import { MAX_TIMER_DELAY } from "./constants.ts";

export { MAX_TIMER_DELAY };

import { checkKeys, checkObject, fail, fieldError, kind } from "./validate.ts";

const CLOCK_METHODS = ["now", "wallNow", "setTimer", "clearTimer"] as const;

/** Refuses anything that is not a Clock at once, naming the field (a missing method would only crash later, in a timer). */
export function checkClock(where: string, field: string, value: unknown): asserts value is Clock {
  let detail: string | undefined;
  if (typeof value !== "object" || value === null) detail = kind(value);
  else {
    const missing = CLOCK_METHODS.filter((name) => typeof (value as Record<string, unknown>)[name] !== "function");
    const clock = value as Clock;
    if (missing.length > 0) detail = `an object without ${missing.join(", ")}`;
    else if (clock.afterTurn !== undefined && typeof clock.afterTurn !== "function")
      detail = "afterTurn is not a function";
  }
  if (detail !== undefined) throw fieldError(where, field, "a Clock ({ now, wallNow, setTimer, clearTimer })", detail);
}

/** A finite number of milliseconds, for the virtual clock's own calls (`max`: largest magnitude). */
function checkMs(where: string, field: string, value: unknown, { min = -Infinity, max = Infinity } = {}): number {
  if (typeof value !== "number") throw fieldError(where, field, "a number of milliseconds", typeof value);
  if (!Number.isFinite(value) || value < min || Math.abs(value) > max) {
    const range = `${min === 0 ? ", 0 or more" : ""}${max < Infinity ? ", at most Number.MAX_SAFE_INTEGER in size" : ""}`;
    throw fieldError(where, field, `a finite number of milliseconds${range}`, value, RangeError);
  }
  return value;
}
// Captured once: setImmediate (Node, Deno, Bun), a macrotask that runs after every queued microtask.
const immediate = (globalThis as { setImmediate?: (fn: () => void) => void }).setImmediate?.bind(globalThis);

/** Runs `fn` in a macrotask after every queued microtask (for the virtual clock: lets streams settle). */
function runAfterMicrotasks(fn: () => void): void {
  if (immediate !== undefined) {
    immediate(fn);
    return;
  }
  const channel = new MessageChannel();
  channel.port1.onmessage = () => {
    channel.port1.close();
    fn();
  };
  channel.port2.postMessage(null);
}

interface UnrefTimerHost {
  Deno?: { unrefTimer?(id: number): void };
}

// Captured once: the per-call global lookup of `performance` costs more than the reading itself.
const monotonicNow: () => number =
  typeof performance === "object" && typeof performance.now === "function"
    ? performance.now.bind(performance)
    : Date.now;

export const systemClock: Clock = {
  now: monotonicNow,
  wallNow: () => Date.now(),
  // Per-turn readings only where a turn's end is cheap to hear of (setImmediate: Node, Deno, Bun).
  // Without it (workerd) the only hook is a MessageChannel per turn, which cost a guarded download
  // there more than half the CPU of the bytes themselves. A reading per use is exact and costs less
  // (deployed Workers' clocks do not even move between I/O).
  ...(immediate !== undefined ? { afterTurn: (callback: () => void) => immediate(callback) } : {}),
  setTimer(callback, ms) {
    const handle: unknown = setTimeout(callback, Math.min(Math.max(ms, 0), MAX_TIMER_DELAY));
    // Node and Bun return an object with unref(); Deno returns a number and has Deno.unrefTimer.
    if (typeof (handle as { unref?: unknown } | null)?.unref === "function") {
      (handle as { unref(): void }).unref();
    } else if (typeof handle === "number") {
      (globalThis as UnrefTimerHost).Deno?.unrefTimer?.(handle);
    }
    return handle;
  },
  clearTimer(handle) {
    clearTimeout(handle as Parameters<typeof clearTimeout>[0]);
  },
};

/**
 * workerd cancels a request's timers when that request ends, so one timer shared by all requests
 * (armed by whichever came first) silently dies with it. There, deadlines made without an explicit
 * clock get a clock of their own, and withDeadlines gives each request its own.
 */
export const TIMERS_BELONG_TO_REQUESTS: boolean =
  (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent === "Cloudflare-Workers";

/** The clock for deadlines made without one: the shared system clock, or (workerd) one of their own. */
export function defaultClock(): Clock {
  return TIMERS_BELONG_TO_REQUESTS ? isolatedClock(systemClock) : systemClock;
}

/**
 * A clock with the same time and timers as `base` but its own identity, so it gets its own
 * scheduler (one native timer) and its own per-turn readings. For runtimes whose timers belong to
 * the request that set them (workerd): give each request its own clock.
 */
export function isolatedClock(base: Clock = systemClock): Clock {
  checkClock("isolatedClock", "base", base);
  const clock: Clock = {
    now: () => base.now(),
    wallNow: () => base.wallNow(),
    setTimer: (callback, ms) => base.setTimer(callback, ms),
    clearTimer: (handle) => base.clearTimer(handle),
  };
  if (base.afterTurn !== undefined) clock.afterTurn = (callback) => base.afterTurn!(callback);
  return clock;
}

/**
 * Like `systemClock`, but looks `performance.now` and `setTimeout` up on every call, so that
 * vitest/sinon fake timers installed after import drive it. Slower per reading; for tests.
 */
export const globalTimersClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimer: (callback, ms) => systemClock.setTimer(callback, ms),
  clearTimer: (handle) => clearTimeout(handle as Parameters<typeof clearTimeout>[0]),
};

export interface VirtualClock extends Clock {
  /**
   * Moves time forward by `ms`, running every timer that falls due in order, and letting promise
   * and stream callbacks settle after each one. The only call a test needs to drive time.
   */
  advance(ms: number): Promise<void>;
  /** Advances to an absolute virtual time. */
  advanceTo(time: number): Promise<void>;
  /**
   * Moves time forward by `ms` as a blocked event loop does (a long task, a GC pause): no timer runs
   * meanwhile; then each timer that fell due runs once, late, in order. Timers those set run on a
   * later `advance`, so a test can deliver what "arrived during the stall" in between.
   */
  stall(ms: number): Promise<void>;
  /** Settles pending promise/stream work without moving time. */
  settle(): Promise<void>;
  /** Resolves after `ms` of virtual time (for scripting peers and handlers in tests). */
  sleep(ms: number): Promise<void>;
  /** Number of timers scheduled and not yet run or cleared. */
  readonly pendingTimers: number;
}

interface VirtualTimer {
  at: number;
  seq: number;
  callback: () => void;
}

/**
 * A deterministic clock for tests. Time moves only through `advance`/`advanceTo`.
 * `wallStart` is the epoch time that virtual time 0 maps to (for `Date` deadlines).
 */
export function createVirtualClock(options: { start?: number; wallStart?: number } = {}): VirtualClock {
  checkObject("createVirtualClock", options, "options must be an object like { start, wallStart }");
  checkKeys("createVirtualClock", options, ["start", "wallStart"], "start or wallStart");
  const SAFE = { max: Number.MAX_SAFE_INTEGER };
  const SAFE_DURATION = { min: 0, max: Number.MAX_SAFE_INTEGER };
  let now = options.start === undefined ? 0 : checkMs("createVirtualClock", "start", options.start, SAFE);
  const wallOffset =
    (options.wallStart === undefined
      ? 1_700_000_000_000
      : checkMs("createVirtualClock", "wallStart", options.wallStart, SAFE)) - now;
  let seq = 0;
  const timers = new Set<VirtualTimer>();
  let turnCallbacks: (() => void)[] = [];

  // A virtual turn ends when promise and stream work has settled; time moves only after that.
  const settle = async (): Promise<void> => {
    for (;;) {
      await new Promise<void>((resolve) => runAfterMicrotasks(resolve));
      if (turnCallbacks.length === 0) return;
      const due = turnCallbacks;
      turnCallbacks = [];
      for (const callback of due) callback();
    }
  };

  function nextDue(limit: number): VirtualTimer | undefined {
    let best: VirtualTimer | undefined;
    for (const t of timers) {
      if (t.at <= limit && (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq))) best = t;
    }
    return best;
  }

  async function advanceTo(target: number): Promise<void> {
    checkMs("virtual clock advanceTo", "time", target);
    if (!(target >= now)) fail("virtual clock", `cannot move back from ${now} to ${target}`, ": ", RangeError);
    await settle();
    for (;;) {
      const timer = nextDue(target);
      if (timer === undefined) break;
      timers.delete(timer);
      now = Math.max(now, timer.at);
      timer.callback();
      await settle();
    }
    now = target;
    await settle();
  }

  const clock: VirtualClock = {
    now: () => now,
    wallNow: () => now + wallOffset,
    setTimer(callback, ms) {
      const timer: VirtualTimer = { at: now + Math.max(0, ms), seq: seq++, callback };
      timers.add(timer);
      return timer;
    },
    clearTimer(handle) {
      timers.delete(handle as VirtualTimer);
    },
    afterTurn(callback) {
      turnCallbacks.push(callback);
    },
    advance: (ms) => {
      try {
        checkMs("virtual clock advance", "ms", ms, SAFE_DURATION);
      } catch (error) {
        return Promise.reject(error);
      }
      return advanceTo(now + ms);
    },
    advanceTo,
    async stall(ms) {
      checkMs("virtual clock stall", "ms", ms, SAFE_DURATION);
      await settle();
      now += ms;
      const overdue = [...timers].filter((t) => t.at <= now).sort((a, b) => a.at - b.at || a.seq - b.seq);
      for (const timer of overdue) {
        if (!timers.delete(timer)) continue; // cleared by an earlier one
        timer.callback();
        await settle();
      }
    },
    settle,
    sleep(ms) {
      try {
        checkMs("virtual clock sleep", "ms", ms, SAFE_DURATION);
      } catch (error) {
        return Promise.reject(error);
      }
      return new Promise<void>((resolve) => clock.setTimer(resolve, ms));
    },
    get pendingTimers() {
      return timers.size;
    },
  };
  return clock;
}
