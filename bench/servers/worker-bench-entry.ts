/** The bench handler as a Worker; `__VARIANT__` is set at bundle time by bench/servers/serve-bench-workers.ts. */
import { withWorkersDeadlines } from "../../adapters/workers.ts";
import { benchHandler } from "../shared/http-bench-app.ts";
import { GENERIC_VARIANTS } from "../shared/http-bench-variants.ts";
import { subscribeIfAsked } from "../shared/subscribe.ts";

declare const __VARIANT__: string;
declare const __SUBSCRIBED__: boolean;

subscribeIfAsked(__SUBSCRIBED__ ? ["--subscribed"] : []);

const fetch =
  __VARIANT__ === "guarded" ? withWorkersDeadlines(benchHandler, { onTimeout: false }) : GENERIC_VARIANTS[__VARIANT__];
if (fetch === undefined) throw new Error(`worker-bench-entry: unknown variant ${__VARIANT__}`);
export default { fetch };
