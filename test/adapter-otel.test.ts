/**
 * stream-deadlines/otel with the real OpenTelemetry SDK (in-memory span and metric exporters), over
 * real sockets: on Node through the Node adapter, and on Bun through the Bun adapter (a Bun process
 * running the same scenarios, test/otel/otel-scenarios.ts). Each of a request idle timeout (408), a
 * handler deadline (503) and a response idle timeout after the headers is seen as a span event,
 * `error.type`, an error status and the counter. Short real limits (300 ms), generous margins.
 */
import { execFile } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { createNodeListener } from "../adapters/node.ts";
import { type OtelResults, runOtelScenarios } from "./otel/otel-scenarios.ts";

const root = join(import.meta.dirname, "..");
const BUN = join(root, "node_modules/.bin/bun");

/** What each firing must look like, whatever the runtime. */
function expectEveryFiring(results: OtelResults): void {
  expect(results.statuses).toEqual({ upload: 408, upload2: 408, slow: 503, download: 200 });
  expect(results.firingsSeen).toBe(4);
  const upload = { direction: "request", limit: "idle", value: 300, type: "request_idle_timeout", after: false };
  const expected = [
    { span: "POST /upload/2", ...upload },
    {
      span: "POST /upload",
      direction: "request",
      limit: "idle",
      value: 300,
      type: "request_idle_timeout",
      after: false,
    },
    { span: "GET /slow", direction: "handler", limit: "handler", value: 600, type: "handler_timeout", after: false },
    {
      span: "GET /download",
      direction: "response",
      limit: "idle",
      value: 300,
      type: "response_idle_timeout",
      after: true,
    },
  ];
  for (const firing of expected) {
    const span = results.spans.find((s) => s.name === firing.span)!;
    expect(span, firing.span).toBeDefined();
    expect(span.status.code, firing.span).toBe(2); // SpanStatusCode.ERROR
    expect(span.status.message, firing.span).toMatch(/.+/);
    expect(span.attributes["error.type"], firing.span).toBe(firing.type);
    expect(span.events, firing.span).toHaveLength(1);
    const event = span.events[0]!;
    expect(event.name).toBe("stream_deadlines.timeout");
    expect(event.attributes).toMatchObject({
      "stream_deadlines.direction": firing.direction,
      "stream_deadlines.limit": firing.limit,
      "stream_deadlines.limit_value": firing.value,
      "stream_deadlines.after_headers": firing.after,
      "error.type": firing.type,
    });
    for (const field of ["bytes", "blamed_wait_ms", "elapsed_ms", "rate"])
      expect(typeof event.attributes[`stream_deadlines.${field}`], field).toBe("number");
    if (firing.direction !== "handler")
      expect(event.attributes["stream_deadlines.blamed_wait_ms"]).toBeGreaterThanOrEqual(300);
  }
  expect(results.spans.find((s) => s.name === "POST /upload")!.events[0]!.attributes["stream_deadlines.bytes"]).toBe(
    10,
  );
  const counter = results.metrics.find((m) => m.name === "stream_deadlines.timeouts")!;
  expect(counter.unit).toBe("{timeout}");
  expect(counter.points.map((p) => [p.attributes["error.type"], p.value]).sort()).toEqual([
    ["handler_timeout", 1],
    ["request_idle_timeout", 2],
    ["response_idle_timeout", 1],
  ]);
  expect(counter.points.find((p) => p.attributes["error.type"] === "handler_timeout")!.attributes).toEqual({
    "stream_deadlines.direction": "handler",
    "stream_deadlines.limit": "handler",
    "error.type": "handler_timeout",
  });
  const sizes = results.metrics.find((m) => m.name === "stream_deadlines.timeout.body.size")!;
  expect(sizes.unit).toBe("By");
  const uploads = sizes.points.find((p) => p.attributes["error.type"] === "request_idle_timeout")!;
  expect(uploads.value).toMatchObject({ count: 2, sum: 20 });
  const download = sizes.points.find((p) => p.attributes["error.type"] === "response_idle_timeout")!;
  expect((download.value as { count: number; sum: number }).count).toBe(1);
  expect((download.value as { count: number; sum: number }).sum).toBeGreaterThan(0);
  expect(sizes.points.some((p) => p.attributes["error.type"] === "handler_timeout")).toBe(false);
}

describe("stream-deadlines/otel with the OpenTelemetry SDK", () => {
  it("on Node (Node adapter, real sockets): span event, error.type, error status, counter, histogram", async () => {
    const results = await runOtelScenarios(async (handler, options, inSpan) => {
      const listener = createNodeListener(handler, options);
      const server = http.createServer((req, res) => inSpan(`${req.method} ${req.url}`, () => listener(req, res)));
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      return {
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((resolve) => {
            server.closeAllConnections();
            server.close(() => resolve());
          }),
      };
    });
    expectEveryFiring(results);
  });

  it("on Bun (Bun adapter, Bun.serve, the OTel packages from node_modules): the same", async () => {
    const { stdout } = await promisify(execFile)(BUN, ["run", join(root, "test/otel/bun-otel.ts")], {
      cwd: root,
      timeout: 60_000,
    });
    expectEveryFiring(JSON.parse(stdout.trim().split("\n").at(-1)!) as OtelResults);
  });
});
