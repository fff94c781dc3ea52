/**
 * The attack bench's bare baseline (`npm run demo -- --runtime node --bare`) must survive a client that leaves in
 * the middle of an upload: before, the handler's `Error: aborted` (ECONNRESET) was an unhandled rejection that ended
 * the process, so the "bare" figures were not those of a bare server.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { connect } from "node:net";
import { createRequire } from "node:module";
import { afterEach, describe, expect, it } from "vitest";

const require = createRequire(import.meta.url);
const runScript = new URL("../demo/run.ts", import.meta.url).pathname;

let child: ChildProcess | undefined;
afterEach(() => {
  if (child?.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  child = undefined;
});

/** Starts the bare Node demo on a free port; resolves with its URL and a getter of everything it printed. */
async function startBare(): Promise<{ url: string; output: () => string }> {
  const process_ = spawn(
    process.execPath,
    ["--import", require.resolve("tsx"), runScript, "--runtime", "node", "--bare", "--port", "0"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  child = process_;
  let output = "";
  process_.stdout!.on("data", (chunk: Buffer) => (output += chunk));
  process_.stderr!.on("data", (chunk: Buffer) => (output += chunk));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bare demo did not start in 20 s:\n${output}`)), 20_000);
    process_.stdout!.on("data", () => {
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    process_.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`bare demo exited (${code}) before listening:\n${output}`));
    });
  });
  return { url, output: () => output };
}

/** Sends an upload's head and part of its body, then resets the connection (RST) without finishing it. */
async function uploadThenReset(url: URL): Promise<void> {
  const socket = connect(Number(url.port), url.hostname);
  await once(socket, "connect"); // rejects on a connection error (a dead server)
  socket.on("error", () => {}); // the reset is ours
  socket.write(`POST /upload HTTP/1.1\r\nHost: ${url.host}\r\nContent-Length: 1000000\r\n\r\n${"x".repeat(10_000)}`);
  await new Promise((resolve) => setTimeout(resolve, 300)); // the handler is now reading the body
  socket.resetAndDestroy();
  await once(socket, "close");
}

describe("the bare Node demo (the attack bench's baseline)", () => {
  it("survives an upload whose client resets the connection, and answers the next request", async () => {
    const { url, output } = await startBare();
    for (let i = 0; i < 3; i++) {
      await uploadThenReset(new URL(url));
      await new Promise((resolve) => setTimeout(resolve, 500)); // an unhandled rejection would end the process here
      expect(child!.exitCode, output()).toBeNull();
    }
    const index = await fetch(`${url}/`);
    expect(index.status).toBe(200);
    expect(await index.text()).toContain("POST /upload");
    const upload = await fetch(`${url}/upload`, { method: "POST", body: "12345" });
    expect(await upload.json()).toMatchObject({ bytes: 5 });
    expect(output()).not.toMatch(/Error: aborted|ECONNRESET/);
  }, 40_000);
});
