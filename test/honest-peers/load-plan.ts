/**
 * What the honest-peers load client is asked to do, and what it reports: shared by the test
 * (test/honest-peers.test.ts) and the client process (load-client.ts).
 */

export interface PacedUploads {
  count: number;
  /** Body size of each upload. */
  bytes: number;
  /** Bytes per second the client sends. */
  rate: number;
  /** One write every `tickMs` (rate × tickMs / 1000 bytes each). */
  tickMs: number;
}

export interface PacedDownloads {
  count: number;
  /** Download i is `GET /download?bytes=sizes[i % sizes.length]`. */
  sizes: number[];
  /** Bytes per second the client reads (counted from the response head)... */
  rate: number;
  /** ...for the first `pacedBytes` of each body; the rest as fast as the server sends. Default: the whole body. */
  pacedBytes?: number;
}

export interface LoadSpec {
  port: number;
  protocol: "http1" | "h2c";
  /** Transfers of each kind in flight at once. */
  concurrency: { uploads: number; downloads: number };
  uploads: PacedUploads;
  downloads: PacedDownloads;
  /** Negative controls, run at the same time as the load: the same bodies, paced far below the minimum rate. */
  controls: { upload: PacedUploads; download: PacedDownloads };
  /** A transfer not over after this long is reported as stuck. */
  transferTimeoutMs: number;
  /** HTTP/2 only: streams are spread over this many sessions. */
  h2Sessions?: number;
  /** A `GET /` every this many ms while the load runs (see LoadResult.serverProbe). */
  probeEveryMs: number;
}

export interface Failure {
  index: number;
  detail: string;
}

export interface ClassResult {
  count: number;
  ok: number;
  failures: Failure[];
  /** Worst lateness of the client against its own pacing schedule (a write, or a resume of reading), ms. */
  maxLagMs: number;
  /** 99th percentile of the per-transfer worst lateness, ms. */
  p99LagMs: number;
  /** Longest and median transfer, ms (from the request head to the verified end). */
  maxMs: number;
  medianMs: number;
  /** From the first transfer's start to the last one's end, ms. */
  elapsedMs: number;
  /** Most transfers of this kind in flight at once. */
  peakInFlight: number;
  /** Bytes of body moved and checked. */
  bytes: number;
}

export interface ControlResult {
  /** Uploads: the status (408 expected). Downloads: 200 (headers went out before the cut). */
  status: number;
  /** Downloads: "complete" | "truncated" | "reset" | "timeout". Uploads: "answered" or the same words. */
  ending: string;
  /** Body bytes the client had sent (upload) or received (download) when the transfer ended. */
  bytes: number;
  /** From the request head to the end of the exchange, ms. */
  ms: number;
  maxLagMs: number;
}

export interface LoadResult {
  uploads: ClassResult;
  downloads: ClassResult;
  controls: { upload: ControlResult; download: ControlResult };
  /** The client's own event loop (perf_hooks.monitorEventLoopDelay), ms. */
  loopDelay: { p99Ms: number; maxMs: number };
  /** CPU time the client process used (user + system), ms. */
  clientCpuMs: number;
  /**
   * How responsive the server stayed: `GET /` every `probeEveryMs` during the load, from request
   * to whole answer. Not judged; it shows how late the server's event loop ran.
   */
  serverProbe: { count: number; failed: number; p50Ms: number; p99Ms: number; maxMs: number };
  elapsedMs: number;
}

export const RESULT_PREFIX = "@load-result ";
