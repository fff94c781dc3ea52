/**
 * The OpenTelemetry scenarios, shared by Node (test/adapter-otel.test.ts, in process) and Bun (run by
 * bun-otel.ts in a Bun process): the real OTel SDK with in-memory exporters, stream-deadlines/otel
 * installed, a server whose every request runs inside an HTTP server span (as an instrumentation
 * makes it), and firings over real sockets: two overlapping request idle timeouts (408), a handler deadline
 * (503), a response idle timeout after the headers (a cut body). Returns plain JSON, so a Bun
 * process can print it.
 */
import diagnostics from "node:diagnostics_channel";
import net from "node:net";
import { type Span, SpanKind, context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { TIMEOUT_CHANNEL } from "../../adapters/diagnostics.ts";
import { installOpenTelemetry } from "../../adapters/otel.ts";
import type { WithDeadlinesOptions } from "../../src/index.ts";

export type Handler = (request: Request) => Response | Promise<Response>;
/** Runs `fn` inside a new active server span (ended by the scenarios once the firing is seen). */
export type InSpan = <T>(name: string, fn: () => T) => T;
/** Starts the runtime's server with its adapter, every request inside `inSpan`. */
export type StartServer = (
  handler: Handler,
  options: WithDeadlinesOptions,
  inSpan: InSpan,
) => Promise<{ port: number; close(): Promise<void> }>;

export interface OtelResults {
  statuses: Record<string, number>;
  firingsSeen: number;
  spans: {
    name: string;
    status: { code: number; message?: string };
    attributes: Record<string, unknown>;
    events: { name: string; attributes: Record<string, unknown> }[];
  }[];
  metrics: { name: string; unit: string; points: { attributes: Record<string, unknown>; value: unknown }[] }[];
}

const LIMITS: WithDeadlinesOptions = {
  request: { idle: 300 },
  response: { idle: 300 },
  handler: 600,
  onTimeout: false,
};

const handler: Handler = async (request) => {
  const path = new URL(request.url).pathname;
  if (path.startsWith("/upload")) return new Response(`${(await request.arrayBuffer()).byteLength}`);
  if (path === "/slow") return new Promise<Response>(() => {});
  // /download: a chunk always ready, for a client that stops reading after the headers.
  return new Response(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new Uint8Array(64 * 1024));
      },
    }),
  );
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends `head` (and `body`), returns the status of the answer; `pauseAfterHeaders` stops reading then. */
function rawRequest(port: number, head: string, body: Uint8Array | undefined, pauseAfterHeaders: boolean) {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  const status = new Promise<number>((resolve) => {
    let text = "";
    const onData = (chunk: Buffer) => {
      text += chunk.toString("latin1");
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (match === null) return;
      socket.off("data", onData);
      if (pauseAfterHeaders) socket.pause();
      else socket.resume();
      resolve(Number(match[1]));
    };
    socket.on("data", onData);
    socket.on("close", () => resolve(0));
  });
  socket.write(head);
  if (body !== undefined) socket.write(body);
  return { socket, status };
}

export async function runOtelScenarios(start: StartServer): Promise<OtelResults> {
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
  diagnostics.subscribe(TIMEOUT_CHANNEL, countFiring);
  const open: Span[] = [];
  const inSpan: InSpan = (name, fn) => {
    const span = tracer.startSpan(name, { kind: SpanKind.SERVER });
    open.push(span);
    return context.with(trace.setSpan(context.active(), span), fn);
  };
  const server = await start(handler, LIMITS, inSpan);
  const statuses: Record<string, number> = {};
  try {
    const head = (method: string, path: string, extra = "") =>
      `${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${extra}\r\n`;
    const upload = (path: string) =>
      rawRequest(server.port, head("POST", path, "Content-Length: 100\r\n"), new Uint8Array(10), false);
    // Two uploads at once: the second one's deadline fires from the timer the first one armed (one
    // native timer per clock), in the first one's async context: its span must be found all the same.
    const scenarios: { names: string[]; run: () => Promise<ReturnType<typeof rawRequest>[]> }[] = [
      {
        names: ["upload", "upload2"],
        run: async () => {
          const first = upload("/upload");
          await sleep(100);
          return [first, upload("/upload/2")];
        },
      },
      { names: ["slow"], run: async () => [rawRequest(server.port, head("GET", "/slow"), undefined, false)] },
      { names: ["download"], run: async () => [rawRequest(server.port, head("GET", "/download"), undefined, true)] },
    ];
    for (const scenario of scenarios) {
      const expected = firingsSeen + scenario.names.length;
      const exchanges = await scenario.run();
      for (const [i, { status }] of exchanges.entries()) statuses[scenario.names[i]!] = await status;
      for (let waited = 0; firingsSeen < expected && waited < 10_000; waited += 50) await sleep(50);
      await sleep(100); // nothing more fires (a second firing would be counted)
      for (const { socket } of exchanges) socket.destroy();
    }
  } finally {
    await server.close();
    diagnostics.unsubscribe(TIMEOUT_CHANNEL, countFiring);
    uninstall();
  }
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
  contextManager.disable();
  return { statuses, firingsSeen, spans, metrics };
}
