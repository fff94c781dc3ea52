/**
 * Builds and packs the package the way a clean clone would: the repository (without what
 * .gitignore lists: node_modules, dist, tarballs, …) is copied to a temporary directory, its
 * node_modules linked in, then `npm pack` runs there (its "prepack" script builds). The
 * repository's own dist/ is never read or written, so a stale build there cannot leak into the
 * result and tests running meanwhile are not disturbed.
 */
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { basename, join, relative, sep } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** What `npm pack --json` reports for one tarball. */
export interface PackReport {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

/**
 * The environment for npm and the runtimes started from a test: without the variables `npm test`
 * exports (npm_config_local_prefix, npm_package_*, …), which would point a nested npm at the repository.
 */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    const k = key.toLowerCase();
    if (k.startsWith("npm_") && !k.startsWith("npm_config_")) continue;
    if (k === "npm_config_local_prefix" || k === "npm_config_prefix") continue;
    env[key] = value;
  }
  return { ...env, NO_COLOR: "1", FORCE_COLOR: "0", npm_config_update_notifier: "false", ...extra };
}

/** A filter for cpSync that drops .git and whatever the root .gitignore names (its simple patterns). */
function gitignoreFilter(root: string): (source: string) => boolean {
  const patterns = readFileSync(join(root, ".gitignore"), "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#") && !line.startsWith("!"))
    .map((line) => line.replace(/^\//, "").replace(/\/$/, ""));
  return (source) => {
    const rel = relative(root, source).split(sep).join("/");
    if (rel === "") return true;
    const name = basename(rel);
    if (name === ".git" || name === "node_modules") return false;
    return !patterns.some((p) => {
      if (p.includes("/")) return rel === p || rel.startsWith(`${p}/`);
      if (p.startsWith("*")) return name.endsWith(p.slice(1));
      return name === p;
    });
  };
}

export interface StagedPackage {
  /** The clean copy of the repository, built. */
  stageDir: string;
  /** Absolute path of the packed .tgz. */
  tarball: string;
  pack: PackReport;
}

/** Copies `root` into `workDir/stage` and packs it (building it) into `workDir`. */
export async function stageBuildAndPack(root: string, workDir: string): Promise<StagedPackage> {
  const stageDir = join(workDir, "stage");
  mkdirSync(stageDir, { recursive: true });
  cpSync(root, stageDir, { recursive: true, filter: gitignoreFilter(root) });
  symlinkSync(join(root, "node_modules"), join(stageDir, "node_modules"), "dir");
  // `npm pack` runs the package's "prepack" script, which empties dist/ and runs `npm run build`:
  // the path `npm publish` takes.
  let stdout: string;
  try {
    ({ stdout } = await run("npm", ["pack", "--json", "--foreground-scripts", "--pack-destination", workDir], {
      cwd: stageDir,
      env: childEnv(),
      maxBuffer: 16 << 20,
    }));
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`npm pack (with its prepack build) failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
  }
  // npm prints the lifecycle scripts' output before the JSON array.
  const [pack] = JSON.parse(stdout.slice(stdout.search(/^\[/m))) as PackReport[];
  if (!pack) throw new Error(`npm pack reported nothing:\n${stdout}`);
  if (!pack.files.some((f) => f.path.startsWith("dist/")))
    throw new Error(`npm pack did not build dist/ (is the "prepack" script gone?):\n${stdout}`);
  return { stageDir, tarball: join(workDir, pack.filename), pack };
}

/** Unpacks a tarball into `dir` (npm tarballs hold one top-level folder, "package"). */
export async function unpack(tarball: string, dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  await run("tar", ["-xzf", tarball, "-C", dir]);
  return join(dir, "package");
}
