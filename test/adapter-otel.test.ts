/**
 * stream-deadlines/otel with the real OpenTelemetry SDK (in-memory span and metric exporters), over
 * real sockets: on Node through the Node adapter, and on Bun through the Bun adapter (a Bun process
 * running the same scenarios, test/otel/otel-scenarios.ts), and on workerd with nodejs_compat (the
 * Worker calls its own handler: test/otel/worker-otel.ts). Each of a request idle timeout (408), a
 * handler deadline (503) and a response idle timeout after the headers is seen as a span event,
 * `error.type`, an error status and the counter. Short real limits (300 ms), generous margins.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { afterAll, describe, expect, it } from "vitest";
import { WORKERS_COMPATIBILITY_DATE } from "../demo/serve-workers-config.ts";
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

describe("stream-deadlines/otel on workerd", () => {
  const dir = mkdtempSync(join(tmpdir(), "sd-otel-worker-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Bundles `entry` for workerd (node:* left to workerd) and answers one request with it. */
  async function runWorker(entry: string, flags: string[]): Promise<Response> {
    // The OTel packages' CommonJS require("async_hooks") / require("events"): workerd's own modules.
    writeFileSync(join(dir, "async_hooks.mjs"), 'export * from "node:async_hooks";\n');
    writeFileSync(join(dir, "events.mjs"), 'export * from "node:events";\n');
    const script = join(dir, `${flags.join("-") || "plain"}.mjs`);
    await build({
      entryPoints: [entry],
      outfile: script,
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      alias: { async_hooks: join(dir, "async_hooks.mjs"), events: join(dir, "events.mjs") },
      external: ["node:*"],
      logLevel: "warning",
    });
    const mf = new Miniflare({
      modules: true,
      scriptPath: script,
      modulesRoot: dir,
      compatibilityDate: WORKERS_COMPATIBILITY_DATE,
      compatibilityFlags: flags,
    });
    try {
      const response = await mf.dispatchFetch("http://worker/run");
      return new Response(await response.text(), { status: response.status });
    } finally {
      await mf.dispose();
    }
  }

  it("with nodejs_compat (the OTel SDK bundled into the Worker): the same", async () => {
    const response = await runWorker(join(root, "test/otel/worker-otel.ts"), ["nodejs_compat"]);
    const text = await response.text();
    expect(response.status, text).toBe(200);
    expectEveryFiring(JSON.parse(text) as OtelResults);
  });

  it("without nodejs_compat, installOpenTelemetry() throws its clear error (there is no diagnostics_channel)", async () => {
    const entry = join(dir, "install.ts");
    writeFileSync(
      entry,
      `import { installOpenTelemetry } from ${JSON.stringify(join(root, "adapters/otel.ts"))};
export default {
  fetch() {
    try {
      installOpenTelemetry();
      return new Response("installed");
    } catch (error) {
      return new Response(String(error), { status: 500 });
    }
  },
};
`,
    );
    const response = await runWorker(entry, []);
    expect([response.status, await response.text()]).toEqual([
      500,
      "Error: stream-deadlines/otel: installOpenTelemetry needs node:diagnostics_channel (process.getBuiltinModule)," +
        " which this runtime lacks (on Cloudflare Workers, enable the nodejs_compat compatibility flag)",
    ]);
  });
});
