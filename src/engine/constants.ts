/**
 * The engine's fixed figures, kept in a module that imports nothing: a bundler (esbuild) writes
 * the values of such a module's constants in place of their names, where a module with imports
 * would keep a variable for each.
 */

/** Largest delay setTimeout accepts before it overflows and fires at once (2^31 - 1 ms, ~24.8 days). */
export const MAX_TIMER_DELAY = 2 ** 31 - 1;

/** grace when none is given: how far, in ms, the peer may fall behind minRate. */
export const DEFAULT_GRACE_MS = 5000;

/** A wait on the consumer this long or longer (the socket was full) ends a burst of takes (tracker.ts). */
export const BURST_GAP_MS = 50;
/** A burst earns credit up to this many bytes (Linux's default maximum send buffer, tcp_wmem). */
export const OUTBOUND_BURST_CREDIT_MAX = 4 * 1024 * 1024;

/**
 * Scheduler: entries due within this window after a firing are re-checked in the same sweep: entries whose
 * deadline moved later get re-inserted at once instead of each costing a native timer wake-up.
 * It never makes a deadline fire early: an entry fires only when its own check says it is due.
 */
export const SWEEP_LOOKAHEAD_MS = 25;

/**
 * At most this many entries per timer task: when thousands fall due at once, the rest are swept in
 * the next task (the timer re-arms at once), so the event loop keeps serving in between. Firing
 * 9,000 in one pass blocked the loop for a quarter of a second; a cut on Node (the 408 written, the
 * socket closed) costs about 0.1 ms, so 32 keep each task near 3 ms (bench/scale/run-scale.ts).
 */
export const SWEEP_BATCH_LIMIT = 32;

/**
 * Scheduler: while its next deadline is less than HEARTBEAT_HORIZON_MS away, its one timer wakes at
 * least this often (a heartbeat, as Kestrel's), so that a stall of our own event loop shows up as a
 * late wake-up (see STALL_TOLERANCE_MS).
 */
export const HEARTBEAT_MS = 1000;
/** An hour: a deadline further away than that (a long total) keeps no heartbeat until it is nearer. */
export const HEARTBEAT_HORIZON_MS = 3_600_000;

/**
 * A timer that wakes more than this late means our own event loop was stalled (a long task, a GC
 * pause, a starved process): what it was late beyond this is not charged to any peer (scheduler.ts).
 */
export const STALL_TOLERANCE_MS = 100;
