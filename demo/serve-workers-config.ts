/** How every workerd we start here is configured (the demo, the benches). */

/** Newest date this workerd (1.20260426) accepts; the flags are what the adapter relies on. */
export const WORKERS_COMPATIBILITY_DATE = "2026-04-20";
export const WORKERS_COMPATIBILITY_FLAGS = ["enable_request_signal"];
