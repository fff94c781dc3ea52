/**
 * Faults, on every runtime row, over real sockets against the fixture server (the demo, observed;
 * test/faults/fault-cases.ts has the faults, harness/fixture/faults.ts the misbehaving handlers): client resets and half-closes mid-upload
 * and mid-download, handlers that throw before and after returning a Response, producers that fail
 * mid-stream or ignore their cancel, limits changed inside pull() or while a read is pending, and a
 * thousand uploads timing out at the same instant.
 *
 * After every fault: the server still answers GET /; /debug/counters comes back to zero live guards,
 * zero scheduled deadlines and armed timers (across every clock: on workerd each request has its
 * own) and zero disconnect listeners; and no request's firing was reported twice (the fixture
 * server tags each report with the request's id). Where a runtime cannot do what a fault asks,
 * its documented behaviour is asserted instead ("known limit", with its reference), never skipped.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launch, type RunningServer } from "../harness/runtime-launchers.ts";
import { type Check, FAULT_CONFIG, FAULT_ROWS, FAULTS, observationsOf, settle, storm } from "./faults/fault-cases.ts";
import { type FaultClient, faultClient } from "./faults/fault-client.ts";

/** Uploads in the storm, per row. */
const STORM = 1000;
/** How far ahead of the first connection the storm's shared deadline lies (all handlers run well before it). */
const STORM_LEAD_MS = 4000;

/** The soft limit on open files of this process (the storm's client sockets count against it). */
function openFileLimit(): number {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined || soft === "unlimited" ? Infinity : Number(soft);
  } catch {
    return Infinity; // not Linux: the storm asks for what it needs and fails loudly if refused
  }
}

/** Request ids with more than one timeout report, and the number of reports without an id. */
function reportAudit(server: RunningServer): { twice: string[]; untagged: number; reports: number } {
  const perId = new Map<string, number>();
  let untagged = 0;
  let reports = 0;
  for (const o of server.observations) {
    if (o.event !== "timeout") continue;
    reports++;
    if (typeof o.id !== "string") untagged++;
    else perId.set(o.id, (perId.get(o.id) ?? 0) + 1);
  }
  return { twice: [...perId].filter(([, n]) => n > 1).map(([id, n]) => `${id}×${n}`), untagged, reports };
}

function expectChecks(checks: Check[], label: string, server: RunningServer): void {
  const failed = checks.filter(([ok]) => !ok).map(([, what]) => what);
  const all = checks.map(([ok, what]) => `  ${ok ? "ok  " : "FAIL"} ${what}`).join("\n");
  expect(failed, `${label}\n${all}\n--- server log (last lines) ---\n${server.log.slice(-15).join("\n")}`).toEqual([]);
}

// The fault cases judge each runtime's own handling of broken handlers and peers: not the Hono row (a
// framework on @hono/node-server) nor wrangler dev (workerd, as the "workers" row), which run the
// conformance scenarios.
for (const row of FAULT_ROWS) {
  const protocol = row === "node20-h2c" ? "h2" : "h1";
  describe(`faults: ${row}`, () => {
    let server: RunningServer;
    let client: FaultClient;
    let requests = 0;

    beforeAll(async () => {
      server = await launch(row, FAULT_CONFIG);
      client = faultClient(server.port, protocol);
    }, 120_000);
    afterAll(async () => {
      client?.close();
      await server?.stop();
    });

    /** What every fault must leave behind: a server that answers, nothing of any request, no report twice. */
    async function aftermath(): Promise<Check[]> {
      const settled = await settle(client);
      const index = await client.get("/");
      const audit = reportAudit(server);
      return [
        [
          index.status === 200 && index.text.startsWith("stream-deadlines demo"),
          `the server still answers: GET / ${index.status}`,
        ],
        [
          settled.clean,
          `nothing left: counters ${JSON.stringify(settled.counters)} (${Math.round(settled.ms)} ms after the fault)`,
        ],
        [audit.twice.length === 0, `requests reported twice: ${audit.twice.join(", ") || "none"}`],
      ];
    }

    for (const fault of FAULTS) {
      const limitRow = fault.knownLimit?.rows.includes(row) ?? false;
      it(`${fault.id}: ${fault.title}${limitRow ? ` [known limit: ${fault.knownLimit!.expected}; ${fault.knownLimit!.reference}]` : ""}`, async () => {
        const facts = await fault.run({ server, client, row, id: (prefix) => `${row}-${prefix}-${++requests}` });
        const common = await aftermath();
        // Observations are read once the server has settled: nothing of these requests can fire any more.
        for (const f of facts) f.seen = observationsOf(server, f.id);
        expectChecks([...fault.judge(facts, row, limitRow), ...common], `${row} ${fault.id}`, server);
      }, 60_000);
    }

    it(`${STORM} stalled uploads time out at the same instant: each cut (408) and reported exactly once`, async () => {
      const fdLimit = openFileLimit();
      // Our side holds one socket per upload (the server is another process, with its own limit).
      expect(
        fdLimit,
        `the open-files soft limit (${fdLimit}) must leave room for ${STORM} client sockets`,
      ).toBeGreaterThan(STORM + 200);
      const result = await storm(server, protocol, STORM, STORM_LEAD_MS);
      const common = await aftermath();
      console.log(
        `faults: ${row}: storm of ${STORM}: connections opened in ${result.openMs} ms, all handlers running after ${result.readyAfter ?? "(not before the instant)"} ms, ` +
          `firings reported from ${result.earliest} to ${result.latest} ms after the instant`,
      );
      expectChecks(
        [
          [result.statuses["408"] === STORM, `client statuses: ${JSON.stringify(result.statuses)}`],
          [result.endings.complete === STORM, `408 bodies complete: ${JSON.stringify(result.endings)}`],
          [
            result.reportsPerId["1"] === STORM,
            `reports per request (count: requests): ${JSON.stringify(result.reportsPerId)}`,
          ],
          [
            result.reports === STORM && result.otherLimit === 0,
            `${result.reports} reports (onTimeout calls), ${result.otherLimit} for another limit than total`,
          ],
          // Server and test read the same wall clock from two processes: a few ms of reading apart.
          [result.earliest >= -50, `no firing before the instant: earliest ${result.earliest} ms`],
          ...common,
        ],
        `${row} storm`,
        server,
      );
    }, 90_000);

    it("over the whole run: every timeout report belongs to one request, none twice", async () => {
      const audit = reportAudit(server);
      expect(audit.reports, "the faults made firings").toBeGreaterThan(STORM);
      expect(audit.untagged, "reports without a request id").toBe(0);
      expect(audit.twice, "requests reported more than once").toEqual([]);
    });
  });
}
