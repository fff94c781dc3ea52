/**
 * Summarises a V8 `.cpuprofile` (CDP's Profiler.stop, `node --cpu-prof`, `bun --cpu-prof`): self
 * time by function and by file, as a share of the samples that were not idle, and in µs per
 * request when the number of requests is given.
 *
 *   npx tsx bench/profile/summarize-cpuprofile.ts FILE.cpuprofile [--requests N] [--top 40] [--inclusive NAME,NAME]
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
  hitCount?: number;
}

export interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

const IDLE = new Set(["(idle)", "(program)"]);

function shortUrl(url: string): string {
  const i = url.lastIndexOf("/main/");
  return i >= 0 ? url.slice(i + 6) : url.replace(/^file:\/\//, "");
}

export function summarize(
  profile: CpuProfile,
  { top = 40, requests, inclusive = [] as string[] }: { top?: number; requests?: number; inclusive?: string[] } = {},
): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Time per node: from samples and time deltas when present (exact), else hit counts.
  const timeOf = new Map<number, number>();
  if (profile.samples && profile.timeDeltas) {
    for (let i = 0; i < profile.samples.length; i++) {
      const next = profile.timeDeltas[i + 1] ?? 0;
      timeOf.set(profile.samples[i]!, (timeOf.get(profile.samples[i]!) ?? 0) + Math.max(0, next));
    }
  } else {
    const total = profile.endTime - profile.startTime;
    const hits = profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0);
    for (const n of profile.nodes) timeOf.set(n.id, ((n.hitCount ?? 0) * total) / Math.max(1, hits));
  }
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const key = (n: CpuProfileNode) =>
    `${n.callFrame.functionName || "(anonymous)"} ${shortUrl(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ""}`;
  const selfByFn = new Map<string, number>();
  const selfByFile = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  for (const n of profile.nodes) {
    const t = timeOf.get(n.id) ?? 0;
    if (IDLE.has(n.callFrame.functionName)) {
      if (n.callFrame.functionName === "(idle)") idle += t;
      else busy += t; // (program): native work outside JS (the runtime's own server), counted as busy
    } else busy += t;
    selfByFn.set(key(n), (selfByFn.get(key(n)) ?? 0) + t);
    const file = n.callFrame.url
      ? shortUrl(n.callFrame.url)
      : n.callFrame.functionName.startsWith("(")
        ? n.callFrame.functionName
        : "(native)";
    selfByFile.set(file, (selfByFile.get(file) ?? 0) + t);
  }
  // Inclusive time of named functions (anything under them, counted once per sample stack).
  const inclusiveOf = new Map<string, number>(inclusive.map((name) => [name, 0]));
  if (inclusive.length) {
    for (const n of profile.nodes) {
      const t = timeOf.get(n.id) ?? 0;
      if (t === 0) continue;
      const seen = new Set<string>();
      for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
        const name = byId.get(id)!.callFrame.functionName;
        if (inclusiveOf.has(name) && !seen.has(name)) {
          seen.add(name);
          inclusiveOf.set(name, inclusiveOf.get(name)! + t);
        }
      }
    }
  }
  const fmt = (t: number) =>
    `${((100 * t) / busy).toFixed(1).padStart(5)}%${requests ? ` ${(t / requests).toFixed(2).padStart(6)} us/req` : ""}`;
  const lines: string[] = [];
  lines.push(
    `busy ${(busy / 1000).toFixed(0)} ms${requests ? ` (${(busy / requests).toFixed(2)} us/req)` : ""}, idle ${(idle / 1000).toFixed(0)} ms`,
  );
  lines.push("-- self time by function");
  for (const [name, t] of [...selfByFn]
    .filter(([n]) => !n.startsWith("(idle)"))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top))
    lines.push(`${fmt(t)}  ${name}`);
  lines.push("-- self time by file");
  for (const [name, t] of [...selfByFile]
    .filter(([n]) => n !== "(idle)")
    .sort((a, b) => b[1] - a[1])
    .slice(0, 20))
    lines.push(`${fmt(t)}  ${name}`);
  if (inclusive.length) {
    lines.push("-- inclusive");
    for (const [name, t] of inclusiveOf) lines.push(`${fmt(t)}  ${name}`);
  }
  return lines.join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file)
    throw new Error("usage: summarize-cpuprofile.ts FILE.cpuprofile [--requests N] [--top N] [--inclusive a,b]");
  const opt = (name: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  console.log(
    summarize(profile, {
      top: Number(opt("top") ?? 40),
      requests: opt("requests") ? Number(opt("requests")) : undefined,
      inclusive: opt("inclusive")?.split(",") ?? [],
    }),
  );
}
