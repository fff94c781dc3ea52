/** The demo as a Cloudflare Worker (bundled by demo/serve-workers.ts through demo/hosts/workerd.ts). */
import { DEMO } from "./demo-app.ts";
import { workerFor } from "./hosts/worker.ts";

export default workerFor(DEMO);
