/**
 * What the shipped files import, read with TypeScript's own pre-processor (import/export
 * declarations, dynamic import(), `/// <reference types>`; comments and strings are not mistaken
 * for imports). Relative imports are followed inside the unpacked package; everything else is an
 * "outside" import: a Node builtin (node:*) or a package.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import ts from "typescript";

export function specifiersOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
  return [...info.importedFiles.map((f) => f.fileName), ...info.typeReferenceDirectives.map((d) => d.fileName)];
}

export interface ModuleGraph {
  /** Files reached from the entry, relative to the package root ("dist/src/index.js"), sorted. */
  files: string[];
  /** Imports that leave the package, with the files that make them. */
  outside: Map<string, string[]>;
  /** Relative imports that point at no shipped file. */
  broken: string[];
}

/** Follows relative imports from `entry` (a path relative to `packageDir`). */
export function moduleGraph(packageDir: string, entry: string): ModuleGraph {
  const seen = new Set<string>();
  const outside = new Map<string, string[]>();
  const broken: string[] = [];
  const queue = [posix.normalize(entry)];
  while (queue.length > 0) {
    const rel = queue.pop()!;
    if (seen.has(rel)) continue;
    seen.add(rel);
    for (const spec of specifiersOf(join(packageDir, rel))) {
      if (spec.startsWith("./") || spec.startsWith("../")) {
        let target = posix.join(posix.dirname(rel), spec);
        // Declaration files name their siblings by the source's extension (".ts") or the output's (".js").
        if (rel.endsWith(".d.ts")) target = target.replace(/\.(ts|js)$/, ".d.ts");
        if (existsSync(join(packageDir, target))) queue.push(target);
        else broken.push(`${rel} -> ${spec}`);
      } else {
        outside.set(spec, [...(outside.get(spec) ?? []), rel]);
      }
    }
  }
  return { files: [...seen].sort(), outside, broken };
}

/** "srvx/node" -> "srvx", "@scope/pkg/x" -> "@scope/pkg", "node:http" -> "node:http". */
export function packageNameOf(spec: string): string {
  if (spec.startsWith("node:")) return spec;
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
}
