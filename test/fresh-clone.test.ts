/**
 * A fresh clone installs as the README says: `npm ci` (with npm 11, which Node 24 ships, and with
 * npm 10, which Node 20 ships) accepts the committed lockfiles, and every dependency's install script
 * is either allowed or denied in package.json's allowScripts.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = new URL("..", import.meta.url).pathname;
let clone: string;

/** `npm ci --dry-run` in `dir` with the given npm (argv prefix); resolves exit code and output. */
function npmCiDryRun(npm: string[], dir: string) {
  const [command, ...args] = npm;
  const result = spawnSync(command!, [...args, "ci", "--dry-run", "--ignore-scripts", "--no-audit", "--no-fund"], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, npm_config_update_notifier: "false" },
    timeout: 120_000,
  });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

const NPMS: [string, string[]][] = [
  ["the npm on this machine", ["npm"]],
  ["npm 10", ["npx", "--yes", "npm@10"]],
];

describe("a fresh clone of the committed tree", () => {
  beforeAll(() => {
    clone = mkdtempSync(join(tmpdir(), "sd-fresh-clone-"));
    execFileSync("git", ["clone", "--quiet", "--no-local", root, clone]);
  });
  afterAll(() => rmSync(clone, { recursive: true, force: true }));

  for (const [name, npm] of NPMS) {
    it(`${name} accepts the lockfiles (npm ci --dry-run), at the root and in tools/node24`, () => {
      for (const dir of [clone, join(clone, "tools/node24")]) {
        const { status, output } = npmCiDryRun(npm, dir);
        expect(output).not.toMatch(/Missing: .* from lock file|EUSAGE/);
        expect(status, output).toBe(0);
      }
    });
  }

  it("a drifted lockfile is refused (the check above can fail)", () => {
    const drifted = mkdtempSync(join(tmpdir(), "sd-drift-"));
    try {
      execFileSync("git", ["clone", "--quiet", "--no-local", root, drifted]);
      // A dependency the lockfile does not know: what a forgotten `npm install` leaves behind.
      execFileSync("npm", ["pkg", "set", "devDependencies.is-number=7.0.0"], { cwd: drifted });
      const { status, output } = npmCiDryRun(["npm"], drifted);
      expect(status).not.toBe(0);
      expect(output).toMatch(/in sync|Missing: is-number/);
    } finally {
      rmSync(drifted, { recursive: true, force: true });
    }
  });
});

describe("install scripts", () => {
  it("every installed dependency with an install script is allowed or denied in package.json's allowScripts", () => {
    const version = execFileSync("npm", ["--version"], { encoding: "utf8" }).trim();
    if (Number(version.split(".")[0]) < 11) {
      // npm 10 has no allowScripts: it runs every install script. The lockfile test above covers it.
      expect(Number(version.split(".")[0])).toBe(10);
      return;
    }
    const listed = execFileSync("npm", ["install-scripts", "ls"], { cwd: root, encoding: "utf8" });
    expect(listed).toMatch(/No packages with unreviewed install scripts/);
  });
});
