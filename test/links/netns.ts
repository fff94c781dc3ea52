/**
 * Network namespaces for the links harness: a server namespace and a client namespace, joined by one veth pair per
 * link, with addresses 10.200.<link>.1 (server side) and 10.200.<link>.2 (client side) on a /30 that exists only
 * between those two namespaces, and a `tc … tbf` rate limit on both ends (netem is not available everywhere; tbf is).
 * Everything is created with `ip` and `tc` (Debian's iproute2) and needs root. Every exit path removes it: the
 * owner calls `cleanup()` (idempotent, synchronous), and `installCleanup()` calls it on exit, SIGINT, SIGTERM and
 * uncaught errors. Namespaces left by a run that was killed (SIGKILL) are removed by the next run.
 */
import { execFileSync, spawnSync } from "node:child_process";

const PREFIX = "sdlinks";

export interface LinkSpec {
  name: string;
  /** kbit/s on each direction; null: no shaping (the veth's own speed). */
  rateKbit: number | null;
  /** tbf's queue, in ms of the rate. */
  queueMs: number;
}

export interface Link extends LinkSpec {
  index: number;
  serverAddress: string;
  clientAddress: string;
}

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8" });
  if (result.error) throw new Error(`${command} ${args.join(" ")}: ${result.error.message}`);
  if (result.status !== 0)
    throw new Error(`${command} ${args.join(" ")} failed (exit ${result.status}): ${result.stderr.trim()}`);
  return result.stdout;
}

const has = (command: string, args: string[]) => spawnSync(command, args, { stdio: "ignore" }).status === 0;

/**
 * Root, `ip` and `tc`: present, or installed from Debian's iproute2 under CI=true; otherwise an Error that says how.
 */
export function checkPrerequisites(log: (line: string) => void): void {
  if (process.platform !== "linux")
    throw new Error(`the links harness needs Linux network namespaces (${process.platform})`);
  if (process.getuid?.() !== 0)
    throw new Error("the links harness needs root (it creates network namespaces): run it as root, e.g. with sudo");
  if (!has("ip", ["-V"]) || !has("tc", ["-V"])) {
    if (process.env.CI !== "true")
      throw new Error("`ip` and `tc` are missing: install Debian's iproute2 (apt-get install -y iproute2)");
    log("ip/tc missing: installing iproute2 (CI=true)");
    execFileSync("sh", ["-c", "apt-get update && apt-get install -y iproute2"], { stdio: "inherit" });
    if (!has("ip", ["-V"]) || !has("tc", ["-V"])) throw new Error("iproute2 installed, but `ip` or `tc` still missing");
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Namespaces of earlier runs whose process is gone (killed with SIGKILL): their processes and the namespaces. */
export function removeStale(log: (line: string) => void): void {
  for (const line of run("ip", ["netns", "list"]).split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const match = new RegExp(`^${PREFIX}-(\\d+)-`).exec(name);
    if (!match || alive(Number(match[1]))) continue;
    log(`removing namespace ${name} left by an earlier run (pid ${match[1]} is gone)`);
    killInside(name);
    spawnSync("ip", ["netns", "del", name], { stdio: "ignore" });
  }
}

/** Kills what still runs inside a namespace of ours (only processes this harness started live there). */
function killInside(ns: string): void {
  const pids = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).stdout ?? "";
  for (const pid of pids.split(/\s+/).filter(Boolean).map(Number))
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
}

export class Topology {
  readonly serverNs = `${PREFIX}-${process.pid}-srv`;
  readonly clientNs = `${PREFIX}-${process.pid}-cli`;
  readonly links: Link[] = [];
  private readonly namespaces: string[] = [];
  private cleaned = false;

  /** Creates the two namespaces (and their loopbacks). Throws with the reason where namespaces cannot be made. */
  constructor() {
    this.addNamespace(this.serverNs);
    this.addNamespace(this.clientNs);
  }

  private addNamespace(ns: string): void {
    try {
      run("ip", ["netns", "add", ns]);
    } catch (error) {
      throw new Error(`cannot create network namespace ${ns}: ${(error as Error).message}`);
    }
    this.namespaces.push(ns);
    run("ip", ["-n", ns, "link", "set", "lo", "up"]);
  }

  /** Adds a veth pair between the two namespaces, on its own /30, shaped by tbf on both ends. */
  addLink(spec: LinkSpec): Link {
    const index = this.links.length + 1;
    if (index > 250) throw new Error("too many links");
    const clientNs = this.clientNs;
    const serverDev = `l${index}s`;
    const clientDev = `l${index}c`;
    const serverAddress = `10.200.${index}.1`;
    const clientAddress = `10.200.${index}.2`;
    run("ip", [
      "link",
      "add",
      serverDev,
      "netns",
      this.serverNs,
      "type",
      "veth",
      "peer",
      "name",
      clientDev,
      "netns",
      clientNs,
    ]);
    run("ip", ["-n", this.serverNs, "addr", "add", `${serverAddress}/30`, "dev", serverDev]);
    run("ip", ["-n", clientNs, "addr", "add", `${clientAddress}/30`, "dev", clientDev]);
    run("ip", ["-n", this.serverNs, "link", "set", serverDev, "up"]);
    run("ip", ["-n", clientNs, "link", "set", clientDev, "up"]);
    if (spec.rateKbit !== null) {
      for (const [ns, dev] of [
        [this.serverNs, serverDev],
        [clientNs, clientDev],
      ] as const)
        run("tc", ["-n", ns, "qdisc", "add", "dev", dev, "root", ...tbfArgs(spec.rateKbit, spec.queueMs)]);
    }
    const link = { ...spec, index, serverAddress, clientAddress };
    this.links.push(link);
    return link;
  }

  /** The qdisc of a link's server end, as `tc` shows it (for the report). */
  describe(link: Link): string {
    return run("tc", ["-n", this.serverNs, "qdisc", "show", "dev", `l${link.index}s`]).trim();
  }

  /** Removes every namespace (and so every veth and qdisc) this topology made, killing what runs inside first. */
  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const ns of [...this.namespaces].reverse()) {
      killInside(ns);
      spawnSync("ip", ["netns", "del", ns], { stdio: "ignore" });
    }
  }

  /** Whether any of this topology's namespaces still exists (for the harness's own check after cleanup). */
  leftovers(): string[] {
    const present = new Set(
      run("ip", ["netns", "list"])
        .split("\n")
        .map((line) => line.split(" ")[0]),
    );
    return this.namespaces.filter((ns) => present.has(ns));
  }
}

/**
 * tbf: `rate` on each direction; a bucket of 4 KiB or 10 ms of the rate (enough for whole packets), and a queue of
 * `queueMs` of the rate, at least 4 KiB. The queue sets the round trip under load, hence TCP's retransmission
 * timeout, hence how long a lost segment holds up everything behind it (docs/links.md).
 */
export function tbfArgs(rateKbit: number, queueMs: number): string[] {
  const bytesPerSecond = (rateKbit * 1000) / 8;
  const burst = Math.max(4096, Math.round(bytesPerSecond * 0.01));
  const limit = Math.max(4096, Math.round((bytesPerSecond * queueMs) / 1000));
  return ["tbf", "rate", `${rateKbit}kbit`, "burst", String(burst), "limit", String(limit)];
}

/** Calls `topology.cleanup()` on every way out of the process. */
export function installCleanup(cleanup: () => void): void {
  process.once("exit", cleanup);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
    process.once(signal, () => {
      process.stderr.write(`\nlinks: ${signal}: removing the namespaces\n`);
      cleanup();
      process.exit(signal === "SIGINT" ? 130 : signal === "SIGTERM" ? 143 : 129);
    });
  for (const event of ["uncaughtException", "unhandledRejection"] as const)
    process.once(event, (error: unknown) => {
      process.stderr.write(`\nlinks: ${event}: ${error instanceof Error ? error.stack : String(error)}\n`);
      cleanup();
      process.exit(1);
    });
}
