/**
 * stream-deadlines and OpenTelemetry: `installOpenTelemetry()` subscribes to the library's
 * diagnostics channels (adapters/diagnostics.ts), so every firing under any adapter (and under the
 * Hono middleware when it owns the request) is seen by the tools that already read your traces and
 * metrics:
 *
 * - on the request's span (the HTTP server span your instrumentation made, active when the exchange
 *   began): a span event `stream_deadlines.timeout`, the attribute `error.type`
 *   (`request_idle_timeout`, `response_min_rate_timeout`, `handler_timeout`, …) and an error status;
 * - a counter `stream_deadlines.timeouts` and a histogram `stream_deadlines.timeout.body.size` (the
 *   bytes a body had moved when its deadline fired: 0 is a peer that never started, a high value
 *   a transfer that stalled midway).
 *
 * The span is looked up when the exchange starts, in the request's own async context: a deadline
 * fires from a timer shared by all requests, where the active span is not the request's.
 */
import { type Attributes, type MeterProvider, type Span, SpanStatusCode, metrics, trace } from "@opentelemetry/api";
import type { TimeoutEvent } from "../src/index.ts";
import { type RequestStartMessage, deadlineChannels } from "./diagnostics.ts";

export type { TimeoutEvent } from "../src/index.ts";

export interface OpenTelemetryOptions {
  /** Where the counter and histogram are made. Default: the global MeterProvider (`metrics.getMeterProvider()`). */
  meterProvider?: MeterProvider;
}

/** The span event's name. */
export const TIMEOUT_SPAN_EVENT = "stream_deadlines.timeout";

const LIMIT_NAMES = { idle: "idle", minRate: "min_rate", total: "total", handler: "handler" } as const;

/**
 * The `error.type` of a firing, as the HTTP semantic conventions want it (low cardinality, snake
 * case): `request_idle_timeout`, `request_min_rate_timeout`, `request_total_timeout`, the same with
 * `response_`, and `handler_timeout`.
 */
export function timeoutErrorType(event: Pick<TimeoutEvent, "direction" | "limit">): string {
  return event.direction === "handler" ? "handler_timeout" : `${event.direction}_${LIMIT_NAMES[event.limit]}_timeout`;
}

/**
 * Subscribes to the diagnostics channels and reports every firing to OpenTelemetry. Returns the
 * function that uninstalls it. Needs `node:diagnostics_channel` (Node, Deno, Bun, workerd with
 * `nodejs_compat`): elsewhere it throws.
 */
export function installOpenTelemetry(options: OpenTelemetryOptions = {}): () => void {
  const where = "stream-deadlines/otel: installOpenTelemetry";
  if (typeof options !== "object" || options === null) throw new TypeError(`${where}: options must be an object`);
  const channels = deadlineChannels();
  if (channels === undefined) {
    throw new Error(
      `${where} needs node:diagnostics_channel (process.getBuiltinModule), which this runtime lacks` +
        " (on Cloudflare Workers, enable the nodejs_compat compatibility flag)",
    );
  }
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter("stream-deadlines");
  const counter = meter.createCounter("stream_deadlines.timeouts", {
    description: "Deadlines that fired (request body, response body, handler)",
    unit: "{timeout}",
  });
  const bodySize = meter.createHistogram("stream_deadlines.timeout.body.size", {
    description: "Bytes the body had moved when its deadline fired",
    unit: "By",
  });
  /** The span of each exchange in flight, found when it started. */
  const spans = new WeakMap<Request, Span>();

  const onStart = (message: unknown) => {
    const span = trace.getActiveSpan();
    if (span !== undefined) spans.set((message as RequestStartMessage).request, span);
  };
  const onTimeout = (message: unknown) => {
    const event = message as TimeoutEvent;
    const errorType = timeoutErrorType(event);
    const limit = LIMIT_NAMES[event.limit];
    const metricAttributes: Attributes = {
      "stream_deadlines.direction": event.direction,
      "stream_deadlines.limit": limit,
      "error.type": errorType,
    };
    counter.add(1, metricAttributes);
    if (event.direction !== "handler") bodySize.record(event.bytes, metricAttributes);
    const span = spans.get(event.request) ?? trace.getActiveSpan();
    if (span === undefined) return;
    span.addEvent(TIMEOUT_SPAN_EVENT, {
      "stream_deadlines.direction": event.direction,
      "stream_deadlines.limit": limit,
      "stream_deadlines.limit_value": event.error.limitValue,
      "stream_deadlines.bytes": event.bytes,
      "stream_deadlines.blamed_wait_ms": event.error.waited,
      "stream_deadlines.elapsed_ms": event.elapsed,
      "stream_deadlines.rate": event.rate,
      "stream_deadlines.after_headers": event.afterHeaders,
      "error.type": errorType,
    });
    span.setAttribute("error.type", errorType);
    span.setStatus({ code: SpanStatusCode.ERROR, message: event.error.message });
  };
  const onEnd = (message: unknown) => {
    spans.delete((message as RequestStartMessage).request);
  };
  channels.start.subscribe(onStart);
  channels.timeout.subscribe(onTimeout);
  channels.end.subscribe(onEnd);
  let installed = true;
  return () => {
    if (!installed) return;
    installed = false;
    channels.start.unsubscribe(onStart);
    channels.timeout.unsubscribe(onTimeout);
    channels.end.unsubscribe(onEnd);
  };
}
