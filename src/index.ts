export { TimeoutError, isTimeoutError, TIMEOUT_ERROR_CODES } from "./timeout-error.ts";
export type { TimeoutErrorDetails, TimeoutErrorCode, DeadlineDirection, DeadlineLimitName } from "./timeout-error.ts";
export { DEFAULT_GRACE_MS } from "./limits.ts";
export type { DeadlineLimits, ResolvedLimits } from "./limits.ts";
export { systemClock, globalTimersClock, createVirtualClock, isolatedClock, MAX_TIMER_DELAY } from "./clock.ts";
export type { Clock, VirtualClock } from "./clock.ts";
export type { DeadlineController, DeadlineStats, GuardState } from "./deadline-tracker.ts";
export type { GuardOptions, GuardedStream } from "./guard-common.ts";
export { guardInboundStream } from "./guard-inbound.ts";
export { guardOutboundStream, OUTBOUND_SLICE_BYTES } from "./guard-outbound.ts";
export { deadlineDebugCounters } from "./debug-counters.ts";
export type { DeadlineDebugCounters } from "./debug-counters.ts";
export {
  withDeadlines,
  deadlines,
  defaultTimeoutResponse,
  defaultTimeoutReporter,
  DEFAULT_REQUEST_LIMITS,
  DEFAULT_RESPONSE_LIMITS,
  UNGUARDED_DECLARED_LENGTH,
} from "./with-deadlines.ts";
export type { WithDeadlinesOptions, RequestDeadlines, RequestPolicy, TimeoutEvent } from "./with-deadlines.ts";
export { fetchWithDeadlines, upstreamDeadlines } from "./guard-fetch.ts";
export type { FetchWithDeadlinesInit, UpstreamDeadlineOptions } from "./guard-fetch.ts";
