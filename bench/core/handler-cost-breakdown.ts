/**
 * Where a wrapped request spends its time, piece by piece (a diagnostic; prints microseconds per request).
 * Runs on Node (`npx tsx`), Bun and Deno alike: `bun bench/core/handler-cost-breakdown.ts`.
 */
import { guardOutboundStream, withDeadlines } from "../../src/index.ts";
const N = 20000;
async function time(name: string, f: () => Promise<void>) {
  for (let i = 0; i < 2000; i++) await f();
  const t = performance.now();
  for (let i = 0; i < N; i++) await f();
  console.log(name.padEnd(50), (((performance.now() - t) * 1000) / N).toFixed(2), "us");
}
const bare = () => new Response("hello world\n", { headers: { "content-type": "text/plain" } });
const wrapped = withDeadlines(bare, { onTimeout: false });
for (let r = 0; r < 2; r++) {
  await time("new Request only", async () => {
    new Request("http://localhost/hello");
  });
  await time("bare: req + handler + text()", async () => {
    await (await bare()).text();
    new Request("http://localhost/hello");
  });
  await time("Response(string).body read", async () => {
    const r = bare();
    const rd = r.body!.getReader();
    while (!(await rd.read()).done);
  });
  await time("new Response(r.body) + text()", async () => {
    const r = bare();
    await new Response(r.body, r).text();
  });
  await time("new Response(guarded) + text()", async () => {
    const r = bare();
    await new Response(guardOutboundStream(r.body!, { idle: 30000, minRate: 240 }).readable, r).text();
  });
  await time("new Response(guarded) read via reader", async () => {
    const r = bare();
    const rd = new Response(guardOutboundStream(r.body!, { idle: 30000, minRate: 240 }).readable, r).body!.getReader();
    while (!(await rd.read()).done);
  });
  await time("guarded read via reader (no Response)", async () => {
    const r = bare();
    const rd = guardOutboundStream(r.body!, { idle: 30000, minRate: 240 }).readable.getReader();
    while (!(await rd.read()).done);
  });
  await time("AbortSignal listener add/remove", async () => {
    const ac = new AbortController();
    const f = () => {};
    ac.signal.addEventListener("abort", f, { once: true });
    ac.signal.removeEventListener("abort", f);
  });
  await time("floor: req + read the body + new Response(bytes) + text()", async () => {
    new Request("http://localhost/hello");
    const r = bare();
    const rd = r.body!.getReader();
    const chunks: Uint8Array[] = [];
    for (;;) {
      const x = await rd.read();
      if (x.done) break;
      chunks.push(x.value);
    }
    await new Response(chunks[0] as Uint8Array<ArrayBuffer>, r).text();
  });
  await time("wrapped full", async () => {
    await ((await wrapped(new Request("http://localhost/hello"))) as Response).text();
  });
}
