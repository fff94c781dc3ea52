import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it, vi } from "vitest";
import { createDemoApp, DEFAULT_DEMO_CONFIG, type DemoEvent, demoConfigFrom } from "../demo/demo-app.ts";
import { createFixtureApp } from "../harness/fixture/fixture-app.ts";
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
    const heard: [DemoEvent, string][] = [];
    const app = createDemoApp(DEFAULT_DEMO_CONFIG, (event, request) => heard.push([event, request.url]));
    const fetch = withDeadlines(app.handler, { ...app.options, onTimeout: false });
    const index = await ((await fetch(new Request("http://x/"))) as Response).text();
    for (const endpoint of [
      "POST /upload",
      "GET  /download?bytes=N",
      "GET  /events?every=MS&count=K",
      "GET  /slow?ms=MS",
    ])
      expect(index).toContain(endpoint);
    const upload = (await fetch(new Request("http://x/upload", { method: "POST", body: "12345" }))) as Response;
    const answer = await upload.json();
    expect(answer).toEqual({ bytes: 5, sha256: createHash("sha256").update("12345").digest("hex") });
    // GET / says what an upload answers: every field of it.
    const uploadLine = index.split("\n").find((line) => line.includes("POST /upload "));
    for (const key of Object.keys(answer)) expect(uploadLine).toContain(`"${key}"`);
    const download = (await fetch(new Request("http://x/download?bytes=70000"))) as Response;
    const bytes = new Uint8Array(await download.arrayBuffer());
    expect(bytes.length).toBe(70000);
    expect(bytes[65537]).toBe((65537 * 31 + 7) & 0xff);
    // The listener hears what the producers saw, with the request it belongs to.
    expect(heard).toContainEqual([{ event: "download-complete", bytes: 70000 }, "http://x/download?bytes=70000"]);
    expect(((await fetch(new Request("http://x/download?bytes=-1"))) as Response).status).toBe(400);
    // The test protocol lives in the fixture server (harness/fixture), never in the demo.
    for (const path of ["/debug/counters", "/fault/throw-before"])
      expect(((await fetch(new Request(`http://x${path}`))) as Response).status, path).toBe(404);
    expect(((await fetch(new Request("http://x/nope"))) as Response).status).toBe(404);
  });
});

describe("the fixture server of the tests and benches (the demo, observed)", () => {
  it("serves the demo's endpoints, the debug counters and the faults, and prints each event as an @observe line", async () => {
    const app = createFixtureApp(DEFAULT_DEMO_CONFIG);
    const fetch = withDeadlines(app.handler, { ...app.options, onTimeout: false });
    const lines: string[] = [];
    const log = vi.spyOn(console, "log").mockImplementation((line: string) => void lines.push(line));
    try {
      expect(await ((await fetch(new Request("http://x/"))) as Response).text()).toMatch(/^stream-deadlines demo/);
      const download = (await fetch(new Request("http://x/download?bytes=10&id=r1"))) as Response;
      expect((await download.arrayBuffer()).byteLength).toBe(10);
      const counters = await ((await fetch(new Request("http://x/debug/counters"))) as Response).json();
      expect(Object.keys(counters).sort()).toEqual([
        "allScheduledDeadlines",
        "allStalledMs",
        "allTimersArmed",
        "disconnectListeners",
        "liveGuards",
        "scheduledDeadlines",
        "stalledMs",
        "timerArmed",
        "timerWakeups",
      ]);
      expect(((await fetch(new Request("http://x/fault/nope"))) as Response).status).toBe(404);
    } finally {
      log.mockRestore();
    }
    const observed = lines.filter((line) => line.startsWith("@observe ")).map((line) => JSON.parse(line.slice(9)));
    expect(observed).toEqual([{ t: expect.any(Number), id: "r1", event: "download-complete", bytes: 10 }]);
  });
});
