export { TimeoutError, isTimeoutError, TIMEOUT_ERROR_CODES } from "./engine/timeout-error.ts";
export type {
  TimeoutErrorDetails,
  TimeoutErrorCode,
  DeadlineDirection,
  DeadlineLimitName,
} from "./engine/timeout-error.ts";
export { DEFAULT_GRACE_MS } from "./engine/limits.ts";
export type { DeadlineLimits, ResolvedLimits } from "./engine/limits.ts";
export { systemClock, globalTimersClock, createVirtualClock, isolatedClock, MAX_TIMER_DELAY } from "./engine/clock.ts";
export type { Clock, VirtualClock } from "./engine/clock.ts";
export type { DeadlineController, DeadlineStats, GuardState } from "./engine/tracker.ts";
export type { GuardOptions, GuardedStream } from "./guards/common.ts";
export { guardInboundStream } from "./guards/inbound.ts";
export { guardOutboundStream, OUTBOUND_SLICE_BYTES } from "./guards/outbound.ts";
export { deadlineDebugCounters } from "./engine/debug-counters.ts";
export type { DeadlineDebugCounters } from "./engine/debug-counters.ts";
export { withDeadlines } from "./http/with-deadlines.ts";
export { deadlines } from "./http/controls.ts";
export type { RequestDeadlines } from "./http/controls.ts";
export { DEFAULT_REQUEST_LIMITS, DEFAULT_RESPONSE_LIMITS } from "./http/options.ts";
export type { WithDeadlinesOptions, RequestPolicy } from "./http/options.ts";
export { defaultTimeoutResponse, defaultTimeoutReporter } from "./http/timeout-answer.ts";
export type { TimeoutEvent, TimeoutEventJSON } from "./http/timeout-answer.ts";
export { UNGUARDED_DECLARED_LENGTH } from "./http/pass-through.ts";
export { fetchWithDeadlines, upstreamDeadlines } from "./guards/fetch.ts";
export type { FetchWithDeadlinesInit, UpstreamDeadlineOptions } from "./guards/fetch.ts";
