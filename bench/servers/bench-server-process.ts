/** Starts a bench server process and waits for its "listening on http://…" line (any runtime). */
import { type ChildProcess, spawn } from "node:child_process";

export interface ListeningServer {
  /** The server's base URL, without a trailing slash. */
  url: string;
  child: ChildProcess;
}

export function startListeningServer(
  command: string,
  args: string[],
  cwd: string,
  label: string,
): Promise<ListeningServer> {
  const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label}: no "listening on" in 60 s\n${log}`)), 60_000);
    const onData = (data: Buffer) => {
      log += data.toString();
      const match = /listening on (http:\/\/[^\s]+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve({ url: match[1]!.replace(/\/$/, ""), child });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", () => reject(new Error(`${label}: server exited\n${log}`)));
  });
}
