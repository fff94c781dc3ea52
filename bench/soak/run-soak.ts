/**
 * Soak: mixed honest, slow-honest and stalled HTTP/1.1 traffic against the fixture server (the demo,
 * observed: harness/fixture) on each runtime in turn, for `--minutes N` each, with modest concurrency.
 *
 *   npm run soak -- --minutes N [node] [deno] [bun] [workers]      (default: all four, 10 minutes each)
 *
 * Traffic, in loops that run for the whole soak (each request on a new connection, raw HTTP/1.1):
 *   honest       3 loops: POST /upload of 64 KiB (SHA-256 checked), then GET /download of 256 KiB
 *                (the demo's byte pattern and length checked), each at full speed, 250 ms apart
 *   slow-honest  2 loops: an upload of 16 KiB dripped in 1 KiB pieces every 250 ms (4 KiB/s, 4 s), then
 *                an SSE stream with quiet gaps (GET /events?every=700&count=8, about 5 s)
 *   stalled      1 loop: an upload that declares 64 KiB, sends 100 bytes and stops (a 408 is expected), then
 *                a 64 MiB download the client never reads (closed by the client after 8 s)
 * Limits: request and response `{ idle: 2000, minRate: 1024, grace: 2000 }`, handler 5 s, as the attack
 * bench's guarded servers. Only stalled peers should fire: one firing per stalled request, none for the rest.
 *
 * Printed: the server's RSS (its whole process tree, and by process name) at the start and each minute; the deadlines fired
 * against the stalled requests made (and any on honest ones); honest failures; and, once the traffic has
 * stopped, /debug/counters (live guards, scheduled deadlines, armed timers, disconnect listeners: all 0).
 * `figure soak.<runtime>.…` lines on stdout; progress on stderr. A bench, not a test: it fails no build.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { downloadByte } from "../../demo/demo-app.ts";
import { connect, exchange, requestHead, sleep } from "../../harness/raw-http-client.ts";
import { type FixtureConfig, launch, type RunningServer, type RuntimeRow } from "../../harness/runtime-launchers.ts";

const args = process.argv.slice(2);
const minutesAt = args.indexOf("--minutes");
const MINUTES = minutesAt >= 0 ? Number(args[minutesAt + 1]) : 10;
if (!(MINUTES > 0)) throw new Error(`soak: --minutes must be a positive number, got ${args[minutesAt + 1]}`);
const RUNTIMES = ["node", "deno", "bun", "workers"] as const;
type Runtime = (typeof RUNTIMES)[number];
const asked = args.filter((a): a is Runtime => (RUNTIMES as readonly string[]).includes(a));
const chosen: Runtime[] = asked.length > 0 ? asked : [...RUNTIMES];
const ROW: Record<Runtime, RuntimeRow> = { node: "node20", deno: "deno", bun: "bun", workers: "workers" };

const LIMITS = { idle: 2000, minRate: 1024, grace: 2000 };
const CONFIG: FixtureConfig = {
  request: LIMITS,
  response: LIMITS,
  handler: 5000,
  authenticated: { idle: 60_000, minRate: 256, grace: 10_000, total: null },
  sseHeartbeat: null,
};

const log = (line: string) => process.stderr.write(`soak: ${line}\n`);
const figure = (runtime: string, name: string, value: string | number) =>
  process.stdout.write(`figure soak.${runtime}.${name} ${value}\n`);
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

// ---- RSS of the server's process tree (the launcher's process and every descendant), from /proc:
// the total, and by process name (workerd's tree holds miniflare's Node and workerd: which one grows?).
interface TreeRss {
  total: number;
  byName: Map<string, number>;
}
function rssOfTree(root: number): TreeRss {
  const parents = new Map<number, number>();
  const rss = new Map<number, number>();
  const names = new Map<number, string>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parents.set(Number(entry), Number(fields[1]));
      names.set(Number(entry), stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")));
      const status = readFileSync(`/proc/${entry}/status`, "utf8");
      const match = /VmRSS:\s+(\d+) kB/.exec(status);
      rss.set(Number(entry), match ? Number(match[1]) * 1024 : 0);
    } catch {
      // the process ended meanwhile
    }
  }
  const inTree = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, parent] of parents)
      if (!inTree.has(pid) && inTree.has(parent)) {
        inTree.add(pid);
        grew = true;
      }
  }
  let total = 0;
  const byName = new Map<string, number>();
  for (const pid of inTree) {
    const bytes = rss.get(pid) ?? 0;
    total += bytes;
    const name = names.get(pid) ?? "?";
    byName.set(name, (byName.get(name) ?? 0) + bytes);
  }
  return { total, byName };
}
const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

// ---- the traffic
type Kind = "honest" | "slow" | "stalled";
interface Done {
  kind: Kind;
  id: string;
  what: string;
  ok: boolean;
  detail: string;
}

const UPLOAD = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 7 + 3) & 0xff));
const UPLOAD_SHA = createHash("sha256").update(UPLOAD).digest("hex");
const DRIP = UPLOAD.subarray(0, 16 * 1024);
const DRIP_SHA = createHash("sha256").update(DRIP).digest("hex");

function patternOk(body: Buffer): boolean {
  for (let i = 0; i < body.length; i++) if (body[i] !== downloadByte(i)) return false;
  return true;
}

async function upload(
  port: number,
  id: string,
  body: Buffer,
  sha: string,
  pieceMs: number,
): Promise<[boolean, string]> {
  const socket = await connect(port);
  socket.on("error", () => {});
  const ex = exchange(
    socket,
    requestHead("POST", `/upload?id=${id}`, { "Content-Length": body.length, Connection: "close" }),
    30_000,
  );
  if (pieceMs === 0) socket.write(body);
  else
    for (let at = 0; at < body.length && !socket.destroyed; at += 1024) {
      socket.write(body.subarray(at, at + 1024));
      await sleep(pieceMs);
    }
  const r = await ex.response;
  socket.destroy();
  if (r.status !== 200) return [false, `upload: status ${r.status} (${r.ending})`];
  const answer = JSON.parse(r.body.toString()) as { bytes: number; sha256: string };
  return [answer.bytes === body.length && answer.sha256 === sha, `upload: ${r.body.toString()}`];
}

async function download(port: number, id: string, bytes: number): Promise<[boolean, string]> {
  const socket = await connect(port);
  socket.on("error", () => {});
  const r = await exchange(
    socket,
    requestHead("GET", `/download?bytes=${bytes}&id=${id}`, { Connection: "close" }),
    30_000,
  ).response;
  socket.destroy();
  const ok = r.status === 200 && r.ending === "complete" && r.body.length === bytes && patternOk(r.body);
  return [ok, `download: status ${r.status}, ${r.body.length} B, ${r.ending}`];
}

async function events(port: number, id: string): Promise<[boolean, string]> {
  const socket = await connect(port);
  socket.on("error", () => {});
  const r = await exchange(
    socket,
    requestHead("GET", `/events?every=700&count=8&id=${id}`, { Connection: "close" }),
    30_000,
  ).response;
  socket.destroy();
  const count = (r.body.toString().match(/^data: /gm) ?? []).length;
  return [
    r.status === 200 && count === 8 && r.ending === "complete",
    `events: status ${r.status}, ${count} events, ${r.ending}`,
  ];
}

/** For each stalled upload: from its last byte sent to the 408's status line (the limit: idle 2000 ms). */
let stalledUploadAnswerMs: number[] = [];

async function stalledUpload(port: number, id: string): Promise<[boolean, string]> {
  const socket = await connect(port);
  socket.on("error", () => {});
  const ex = exchange(
    socket,
    requestHead("POST", `/upload?id=${id}`, { "Content-Length": 65536, Connection: "close" }),
    20_000,
  );
  socket.write(UPLOAD.subarray(0, 100));
  const sentAt = performance.now();
  const r = await ex.response;
  socket.destroy();
  stalledUploadAnswerMs.push(r.statusAt - sentAt);
  return [r.status === 408, `stalled upload: status ${r.status} (${r.ending})`];
}

async function stalledDownload(port: number, id: string): Promise<[boolean, string]> {
  const socket = await connect(port);
  socket.on("error", () => {});
  const ex = exchange(socket, requestHead("GET", `/download?bytes=${64 * 1024 * 1024}&id=${id}`, {}), 20_000);
  await ex.headers;
  socket.pause(); // reads nothing more: the kernel's buffers fill, then the server's writes wait
  await sleep(8000);
  socket.destroy();
  return [true, "stalled download: left after 8 s"];
}

async function runSoak(runtime: Runtime): Promise<void> {
  log(`${runtime}: starting the fixture server (load ${load()})`);
  const server: RunningServer = await launch(ROW[runtime], CONFIG, 120_000);
  const port = server.port;
  const done: Done[] = [];
  stalledUploadAnswerMs = [];
  let counter = 0;
  let running = true;
  const loop = (kind: Kind, steps: ((id: string) => Promise<[boolean, string]>)[], names: string[], pauseMs: number) =>
    (async () => {
      for (let i = 0; running; i++) {
        const id = `${kind}-${++counter}`;
        const step = i % steps.length;
        let result: [boolean, string];
        try {
          result = await steps[step]!(id);
        } catch (error) {
          result = [false, `${names[step]}: ${(error as Error).message}`];
        }
        done.push({ kind, id, what: names[step]!, ok: result[0], detail: result[1] });
        await sleep(pauseMs);
      }
    })();
  try {
    // Warm-up, then the baseline RSS.
    for (let i = 0; i < 5; i++) {
      await upload(port, `warm-${i}`, UPLOAD, UPLOAD_SHA, 0);
      await download(port, `warm-d${i}`, 262144);
    }
    const samples: TreeRss[] = [rssOfTree(server.pid)];
    const rss: number[] = [samples[0]!.total];
    const loads: string[] = [load()];
    log(`${runtime}: listening on ${port}; RSS ${mib(rss[0]!)} MiB; ${MINUTES} min of traffic`);
    const loops = [
      ...Array.from({ length: 3 }, () =>
        loop(
          "honest",
          [(id) => upload(port, id, UPLOAD, UPLOAD_SHA, 0), (id) => download(port, id, 262144)],
          ["upload", "download"],
          250,
        ),
      ),
      ...Array.from({ length: 2 }, () =>
        loop("slow", [(id) => upload(port, id, DRIP, DRIP_SHA, 250), (id) => events(port, id)], ["drip", "sse"], 100),
      ),
      loop(
        "stalled",
        [(id) => stalledUpload(port, id), (id) => stalledDownload(port, id)],
        ["upload", "download"],
        1000,
      ),
    ];
    const started = performance.now();
    // A sample each minute, and one at the end of a fractional last minute.
    const marks = Array.from({ length: Math.floor(MINUTES) }, (_, i) => i + 1);
    if (MINUTES % 1 !== 0) marks.push(MINUTES);
    for (const minute of marks) {
      await sleep(Math.max(0, started + minute * 60_000 - performance.now()));
      samples.push(rssOfTree(server.pid));
      rss.push(samples.at(-1)!.total);
      loads.push(load());
      const fails = done.filter((d) => d.kind !== "stalled" && !d.ok).length;
      log(
        `${runtime}: minute ${minute}: RSS ${mib(rss.at(-1)!)} MiB, ${done.length} requests, ${fails} honest failures, load ${load()}`,
      );
    }
    running = false;
    await Promise.all(loops);
    // Settle: nothing of any request may be left.
    const settleStart = performance.now();
    let counters: Record<string, number | boolean> | undefined;
    for (;;) {
      const socket = await connect(port);
      socket.on("error", () => {});
      const r = await exchange(socket, requestHead("GET", "/debug/counters", { Connection: "close" }), 5000).response;
      socket.destroy();
      if (r.status === 200) counters = JSON.parse(r.body.toString()) as Record<string, number | boolean>;
      const clean =
        counters !== undefined &&
        counters.liveGuards === 0 &&
        counters.allScheduledDeadlines === 0 &&
        counters.allTimersArmed === 0 &&
        counters.disconnectListeners === 0;
      if (clean || performance.now() - settleStart > 10_000) break;
      await sleep(200);
    }
    const treeEnd = rssOfTree(server.pid);
    const rssEnd = treeEnd.total;

    // Firings: the server's own reports (the demo's onTimeout), by request id.
    const fired = new Map<string, number>();
    for (const o of server.observations)
      if (o.event === "timeout" && typeof o.id === "string") fired.set(o.id, (fired.get(o.id) ?? 0) + 1);
    const of = (kind: Kind) => done.filter((d) => d.kind === kind);
    const stalled = of("stalled");
    const stalledFired = stalled.filter((d) => (fired.get(d.id) ?? 0) === 1).length;
    const stalledTwice = stalled.filter((d) => (fired.get(d.id) ?? 0) > 1).length;
    const honestFired = [...of("honest"), ...of("slow")].filter((d) => fired.has(d.id));
    const honestFailed = [...of("honest"), ...of("slow")].filter((d) => !d.ok);
    const stalledWrong = stalled.filter((d) => !d.ok);

    figure(runtime, "minutes", MINUTES);
    figure(runtime, "rss_mib_per_minute", rss.map(mib).join(" "));
    figure(runtime, "rss_mib_end", mib(rssEnd));
    // Per process name (summed over processes of that name), each minute, then after settling.
    for (const name of new Set(samples.flatMap((s) => [...s.byName.keys()])))
      figure(
        runtime,
        `rss_mib_per_minute.${name.replace(/[^\w-]/g, "_")}`,
        [...samples, treeEnd].map((s) => mib(s.byName.get(name) ?? 0)).join(" "),
      );
    figure(runtime, "rss_growth_mib", mib(rss.at(-1)! - rss[0]!));
    figure(runtime, "load_per_minute", loads.map((l) => l.split(" ")[0]).join(" "));
    figure(
      runtime,
      "requests",
      `${done.length} (honest ${of("honest").length}, slow ${of("slow").length}, stalled ${stalled.length})`,
    );
    figure(runtime, "fired_on_stalled", `${stalledFired}/${stalled.length} (twice: ${stalledTwice})`);
    figure(runtime, "fired_on_honest", honestFired.length);
    figure(runtime, "honest_failures", honestFailed.length);
    figure(runtime, "stalled_upload_not_408", stalledWrong.length);
    const answers = [...stalledUploadAnswerMs].sort((a, b) => a - b);
    figure(
      runtime,
      "stalled_upload_408_after",
      `${answers[0]?.toFixed(0)} / ${answers[Math.floor(answers.length / 2)]?.toFixed(0)} / ${answers.at(-1)?.toFixed(0)} ms (min / median / max; idle 2000 ms)`,
    );
    figure(runtime, "counters_after", JSON.stringify(counters));
    for (const d of [...honestFailed, ...stalledWrong].slice(0, 10)) log(`${runtime}: ${d.kind} ${d.id}: ${d.detail}`);
    for (const d of honestFired.slice(0, 10)) log(`${runtime}: fired on ${d.kind} ${d.id} (${d.what})`);
    const unfired = stalled.filter((d) => !fired.has(d.id)).slice(0, 10);
    for (const d of unfired) log(`${runtime}: no firing for stalled ${d.id} (${d.what}): ${d.detail}`);
  } finally {
    running = false;
    await server.stop();
  }
}

log(`${MINUTES} min per runtime: ${chosen.join(", ")}; load ${load()}`);
for (const runtime of chosen) await runSoak(runtime);
