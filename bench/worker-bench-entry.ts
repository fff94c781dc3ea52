/** The bench handler as a Worker; `__BARE__` is set at bundle time by bench/serve-bench-workers.ts. */
import { withWorkersDeadlines } from "../adapters/workers.ts";
import { benchHandler } from "./http-bench-app.ts";

declare const __BARE__: boolean;

export default { fetch: __BARE__ ? benchHandler : withWorkersDeadlines(benchHandler, { onTimeout: false }) };
