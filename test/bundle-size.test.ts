/**
 * The bundle-size budget (.size-limit.js): the core is built as `npm run build` builds it (into a
 * temporary directory, so dist/ is left alone), and size-limit bundles each entry with esbuild (ESM,
 * minified) and measures it gzipped at level 9. Every entry must fit its limit (see .size-limit.js
 * for the limits and the targets).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");
const build = mkdtempSync(join(tmpdir(), "stream-deadlines-size-"));
afterAll(() => rmSync(build, { recursive: true, force: true }));

interface SizeResult {
  name: string;
  passed: boolean;
  size: number;
  sizeLimit: number;
}

describe("bundle size", () => {
  it("withDeadlines + deadlines and guardInboundStream stay within their size limits", () => {
    execFileSync(
      process.execPath,
      [
        join(root, "node_modules/typescript/bin/tsc"),
        ...["-p", "src/tsconfig.json", "--outDir", join(build, "src")],
        // The build info goes with the build, not to dist/ (where tsc -b would take it for dist's).
        ...["--tsBuildInfoFile", join(build, "src.tsbuildinfo")],
      ],
      {
        cwd: root,
        stdio: "pipe",
      },
    );
    const run = spawnSync(process.execPath, [join(root, "node_modules/size-limit/bin.js"), "--json"], {
      cwd: root,
      env: { ...process.env, SIZE_LIMIT_BUILD: build },
      encoding: "utf8",
    });
    const results = JSON.parse(run.stdout) as SizeResult[];
    const figures = results.map((r) => `${r.name}: ${r.size} B (limit ${r.sizeLimit} B)`).join("\n");
    console.log(figures);
    expect(results.map((r) => r.name)).toEqual(["withDeadlines + deadlines", "guardInboundStream"]);
    for (const result of results) {
      expect(result.size, figures).toBeGreaterThan(1000); // a real bundle was measured
      expect(result.size, figures).toBeLessThanOrEqual(result.sizeLimit);
      expect(result.passed, figures).toBe(true);
    }
  });
});
