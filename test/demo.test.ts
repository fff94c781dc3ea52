import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createDemoApp, DEFAULT_DEMO_CONFIG, demoConfigFrom } from "../demo/demo-app.ts";
import { parseDemoArgs } from "../demo/demo-cli.ts";
import { withDeadlines } from "../src/index.ts";

describe("the demo", () => {
  it("README's config table states the defaults the demo uses", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const rows = Object.fromEntries(
      [...readme.matchAll(/^\| `(request|response|handler|authenticated|sseHeartbeat)` *\| `([^`]+)`/gm)].map((m) => [
        m[1],
        JSON.parse(m[2]!),
      ]),
    );
    expect(rows).toEqual({
      request: DEFAULT_DEMO_CONFIG.request,
      response: DEFAULT_DEMO_CONFIG.response,
      handler: DEFAULT_DEMO_CONFIG.handler,
      authenticated: DEFAULT_DEMO_CONFIG.authenticated,
      sseHeartbeat: DEFAULT_DEMO_CONFIG.sseHeartbeat,
    });
  });

  it("parses its command line and refuses mistakes", () => {
    expect(parseDemoArgs(["--runtime", "bun", "--port", "0", "--config", "x.json"])).toMatchObject({
      runtime: "bun",
      port: 0,
      configFile: "x.json",
    });
    expect(parseDemoArgs([], 9999).port).toBe(9999);
    expect(parseDemoArgs([]).bare).toBe(false);
    expect(parseDemoArgs(["--runtime", "deno", "--bare"])).toMatchObject({ runtime: "deno", bare: true });
    expect(() => parseDemoArgs(["--runtime", "java"])).toThrow(/--runtime must be/);
    expect(() => parseDemoArgs(["--port", "70000"])).toThrow(RangeError);
    expect(() => parseDemoArgs(["--prot", "1"])).toThrow(/unknown argument "--prot"/);
    expect(() => parseDemoArgs(["--config"])).toThrow(/needs a value/);
  });

  it("checks its config file", () => {
    expect(demoConfigFrom({ handler: 100 })).toEqual({ ...DEFAULT_DEMO_CONFIG, handler: 100 });
    expect(() => demoConfigFrom({ requests: {} })).toThrow(/unknown key "requests"/);
    expect(() => demoConfigFrom([])).toThrow(TypeError);
  });

  it("serves its endpoints in process: index, upload, download pattern, bad parameters, 404", async () => {
    const app = createDemoApp(DEFAULT_DEMO_CONFIG, () => {});
    const fetch = withDeadlines(app.handler, { ...app.options, onTimeout: false });
    const index = await ((await fetch(new Request("http://x/"))) as Response).text();
    for (const endpoint of [
      "POST /upload",
      "GET  /download?bytes=N",
      "GET  /events?every=MS&count=K",
      "GET  /slow?ms=MS",
    ])
      expect(index).toContain(endpoint);
    expect(index, "the index says what an upload answers").toContain('{"bytes":N,"sha256":"..."}');
    const upload = (await fetch(new Request("http://x/upload", { method: "POST", body: "12345" }))) as Response;
    expect(await upload.json()).toEqual({ bytes: 5, sha256: createHash("sha256").update("12345").digest("hex") });
    const download = (await fetch(new Request("http://x/download?bytes=70000"))) as Response;
    const bytes = new Uint8Array(await download.arrayBuffer());
    expect(bytes.length).toBe(70000);
    expect(bytes[65537]).toBe((65537 * 31 + 7) & 0xff);
    expect(((await fetch(new Request("http://x/download?bytes=-1"))) as Response).status).toBe(400);
    // Debug counters are only served to an observer (the fault tests), never by a plain demo.
    const plain = createDemoApp(DEFAULT_DEMO_CONFIG);
    expect(
      ((await withDeadlines(plain.handler, plain.options)(new Request("http://x/debug/counters"))) as Response).status,
    ).toBe(404);
    const observed = createDemoApp(DEFAULT_DEMO_CONFIG, () => {});
    const counters = await (
      (await withDeadlines(observed.handler, observed.options)(new Request("http://x/debug/counters"))) as Response
    ).json();
    expect(Object.keys(counters).sort()).toEqual([
      "allScheduledDeadlines",
      "allTimersArmed",
      "disconnectListeners",
      "liveGuards",
      "scheduledDeadlines",
      "timerArmed",
      "timerWakeups",
    ]);
    expect(((await fetch(new Request("http://x/nope"))) as Response).status).toBe(404);
  });
});
