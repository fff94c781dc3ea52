/**
 * What a slow upload that is waiting for its next bytes costs a Deno server, by the way its body is
 * read: `npx tsx bench/attack/deno-read-memory.ts [N] [MODE…]` (default 1000 connections, every mode
 * of deno-read-memory-server.ts). For each mode: a fresh server, N connections that each send the
 * head of a POST with Content-Length 8192 and 10 bytes of body, then nothing; after 4 s, the server's
 * RSS (the largest VmRSS of the deno process tree) against its RSS before, per connection.
 * Prints one `figure deno.pending_read.<mode> <KiB> KiB per connection` line per mode.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

const MODES = ["native", "default", "pipe", "byob-4k", "byob-16k", "byob-64k", "guarded"];
const [nArg, ...modeArgs] = process.argv.slice(2);
const N = Number(nArg ?? 1000);
if (!Number.isInteger(N) || N < 1 || N > 5000) throw new RangeError(`N must be an integer 1–5000, got ${nArg}`);
const modes = modeArgs.length > 0 ? modeArgs : MODES;
const deno = new URL("../../node_modules/.bin/deno", import.meta.url).pathname;
const server = new URL("./deno-read-memory-server.ts", import.meta.url).pathname;

function treeRss(root: number): number {
  const pids = [root];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]?.split(" ")[1]);
      if (ppid === root) pids.push(Number(entry));
    } catch {}
  }
  let largest = 0;
  for (const pid of pids) {
    try {
      const kib = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
      largest = Math.max(largest, kib);
    } catch {}
  }
  return largest; // KiB
}

for (const mode of modes) {
  const port = 19_000 + Math.floor(Math.random() * 1000);
  const child = spawn(deno, ["run", "-A", server, mode, String(port)], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  let out = "";
  child.stdout.on("data", (data) => (out += data));
  for (let i = 0; i < 300 && !out.includes("listening"); i++) await sleep(100);
  if (!out.includes("listening")) throw new Error(`the ${mode} server did not start`);
  await sleep(300);
  const before = treeRss(child.pid ?? 0);
  const sockets: net.Socket[] = [];
  for (let i = 0; i < N; i++) {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    socket.write(`POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 8192\r\n\r\n${"x".repeat(10)}`);
    sockets.push(socket);
    if (i % 100 === 99) await sleep(50);
  }
  await sleep(4000);
  const during = treeRss(child.pid ?? 0);
  for (const socket of sockets) socket.destroy();
  child.kill("SIGKILL");
  await sleep(300);
  const perConnection = (during - before) / N;
  console.log(
    `figure deno.pending_read.${mode} ${perConnection.toFixed(1)} KiB per connection (RSS ${(before / 1024).toFixed(0)} -> ${(during / 1024).toFixed(0)} MiB, ${N} pending uploads)`,
  );
}
