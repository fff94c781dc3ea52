/** How every workerd started here is configured (the demo, the fixture server, the benches, the package test). */
export { WORKERS_COMPATIBILITY_DATE, WORKERS_COMPATIBILITY_FLAGS } from "../demo/serve-workers-config.ts";
