/**
 * The OpenTelemetry scenarios inside workerd (bundled and run with nodejs_compat by
 * test/adapter-otel.test.ts): the same firings as test/otel/otel-scenarios.ts, with the handler
 * called through withWorkersDeadlines from the Worker itself (workerd cannot open a socket to itself),
 * each call inside its own server span. GET /run answers the results as JSON.
 */
import { type Span, SpanKind, context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { deadlineChannels } from "../../adapters/diagnostics.ts";
import { installOpenTelemetry } from "../../adapters/otel.ts";
import { withWorkersDeadlines } from "../../adapters/workers.ts";
import type { OtelResults } from "./otel-scenarios.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const handler = async (request: Request): Promise<Response> => {
  const path = new URL(request.url).pathname;
  if (path.startsWith("/upload")) return new Response(`${(await request.arrayBuffer()).byteLength}`);
  if (path === "/slow") return new Promise<Response>(() => {});
  return new Response(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new Uint8Array(64 * 1024));
      },
    }),
  );
};

/** 10 bytes, then nothing (the body never ends). */
const stalledUpload = () =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new Uint8Array(10));
    },
  });

async function run(ctx: { waitUntil(promise: Promise<unknown>): void }): Promise<OtelResults> {
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const spanExporter = new InMemorySpanExporter();
  const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] }).getTracer("t");
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const uninstall = installOpenTelemetry({ meterProvider });
  let firingsSeen = 0;
  const countFiring = () => firingsSeen++;
  deadlineChannels()!.timeout.subscribe(countFiring);
  const fetch = withWorkersDeadlines(handler, {
    request: { idle: 300 },
    response: { idle: 300 },
    handler: 600,
    onTimeout: false,
  });
  const open: Span[] = [];
  const call = (method: string, path: string, body?: ReadableStream<Uint8Array>) => {
    const span = tracer.startSpan(`${method} ${path}`, { kind: SpanKind.SERVER });
    open.push(span);
    const init = body === undefined ? { method } : ({ method, body, duplex: "half" } as RequestInit);
    return context.with(trace.setSpan(context.active(), span), () =>
      fetch(new Request(`http://worker${path}`, init), {}, ctx),
    );
  };
  const statuses: Record<string, number> = {};
  const first = call("POST", "/upload", stalledUpload());
  await sleep(100);
  const second = call("POST", "/upload/2", stalledUpload());
  statuses.upload = (await first).status;
  statuses.upload2 = (await second).status;
  statuses.slow = (await call("GET", "/slow")).status;
  const download = await call("GET", "/download");
  statuses.download = download.status;
  await download.body!.getReader().read(); // the client takes one chunk, then nothing more
  for (let waited = 0; firingsSeen < 4 && waited < 5000; waited += 50) await sleep(50);
  await sleep(100);
  deadlineChannels()!.timeout.unsubscribe(countFiring);
  uninstall();
  for (const span of open) span.end();
  await reader.forceFlush();
  const spans = spanExporter.getFinishedSpans().map((span) => ({
    name: span.name,
    status: { ...span.status },
    attributes: { ...span.attributes },
    events: span.events.map((event) => ({ name: event.name, attributes: { ...event.attributes } })),
  }));
  const metrics = metricExporter
    .getMetrics()
    .at(-1)!
    .scopeMetrics.flatMap((scope) => scope.metrics)
    .map((metric) => ({
      name: metric.descriptor.name,
      unit: metric.descriptor.unit,
      points: metric.dataPoints.map((point) => ({ attributes: { ...point.attributes }, value: point.value })),
    }));
  await meterProvider.shutdown();
  // (contextManager.disable() throws on workerd: its AsyncLocalStorage has no disable(). One run per isolate.)
  return { statuses, firingsSeen, spans, metrics };
}

export default {
  async fetch(_request: Request, _env: unknown, ctx: { waitUntil(promise: Promise<unknown>): void }) {
    try {
      return Response.json(await run(ctx));
    } catch (error) {
      return new Response(error instanceof Error ? (error.stack ?? error.message) : String(error), { status: 500 });
    }
  },
};
