/** Runs load-client.ts in a process of its own and returns its LoadResult. */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type LoadResult, type LoadSpec, RESULT_PREFIX } from "./load-plan.ts";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

export async function runLoadClient(spec: LoadSpec, timeoutMs: number): Promise<LoadResult> {
  const child = spawn(
    process.execPath,
    ["--import", require.resolve("tsx"), join(here, "load-client.ts"), JSON.stringify(spec)],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1" },
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (data: string) => (stdout += data));
  child.stderr.setEncoding("utf8").on("data", (data: string) => (stderr += data));
  let timedOut = false;
  const killer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once("exit", (exitCode) => resolve(exitCode)));
  clearTimeout(killer);
  const line = stdout.split("\n").find((l) => l.startsWith(RESULT_PREFIX));
  if (!line) {
    throw new Error(
      `the load client ${timedOut ? `did not finish within ${timeoutMs} ms` : `exited with code ${code}`} without a result\n--- stdout ---\n${stdout.slice(-2000)}\n--- stderr ---\n${stderr.slice(-2000)}`,
    );
  }
  return JSON.parse(line.slice(RESULT_PREFIX.length)) as LoadResult;
}
