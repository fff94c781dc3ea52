/**
 * Where the bundles' bytes go, feature by feature. Each patch in ./ablations/ takes one feature (or
 * one concern, such as the messages' words) out of a copy of src/; the copy is bundled as the budget
 * bundles the package (esbuild: ESM, minified, tree-shaken, gzip level 9) and its size printed beside
 * the unpatched copy's. A patch that no longer applies fails the run: the figures are never stale.
 *
 * The bundles are made from the TypeScript sources (esbuild strips the types; a patched copy need not
 * type-check), so the baseline differs by some tens of bytes from size-limit's, which bundles the
 * built package; the differences between rows are what this bench is for.
 *
 *   npx tsx bench/size/run-size-ablation.ts [--modules] [name…]
 *
 * `--modules` adds, for each bundle, its modules' minified bytes (largest first) as a `#` line.
 *
 * Prints `figure size.<bundle>.<ablation> <gzip bytes> B` (and `….minified`), then a table of the gzip
 * sizes with what each ablation saves.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { ROOT as repoRoot } from "../shared/paths.ts";

/** Issue 14's targets for the budget entries (half the one-file core's weight), by entry name. */
const TARGETS: Record<string, number> = { "withDeadlines + deadlines": 5 * 1024, guardInboundStream: 2.5 * 1024 };

/** The budget entries of .size-limit.js, read from it: what an app imports, and a figure name. */
const sizeLimit = (await import(pathToFileURL(join(repoRoot, ".size-limit.js")).href)) as {
  default: { name: string; import: string }[];
};
const BUNDLES = sizeLimit.default.map((entry) => ({
  label: entry.name,
  name: entry.name
    .replace(/([a-z])([A-Z])/g, "$1_$2")
    .replace(/[^A-Za-z]+/g, "_")
    .toLowerCase(), // "withDeadlines + deadlines": with_deadlines_deadlines
  imports: entry.import.replace(/[{}]/g, "").trim(),
}));

const ablationsDir = join(repoRoot, "bench/size/ablations");

interface Size {
  gzip: number;
  minified: number;
  /** Minified bytes of each module in the bundle, largest first. */
  modules: [string, number][];
}

async function measure(root: string, imports: string): Promise<Size> {
  const result = await build({
    stdin: { contents: `export { ${imports} } from "./src/index.ts";`, resolveDir: root, loader: "ts" },
    bundle: true,
    minify: true,
    treeShaking: true,
    format: "esm",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  const code = result.outputFiles[0]!.contents;
  const inputs = Object.values(result.metafile.outputs)[0]!.inputs;
  const modules = Object.entries(inputs)
    .map(([file, input]): [string, number] => [file.replace(/^.*?src\//, ""), input.bytesInOutput])
    .filter(([, bytes]) => bytes > 0)
    .sort((a, b) => b[1] - a[1]);
  return { gzip: gzipSync(code, { level: 9 }).length, minified: code.length, modules };
}

/** A copy of src/ with `patch` applied (none: the baseline). */
function patchedCopy(patch: string | undefined): string {
  const dir = mkdtempSync(join(tmpdir(), "stream-deadlines-ablation-"));
  cpSync(join(repoRoot, "src"), join(dir, "src"), { recursive: true });
  // package.json's `"sideEffects": false` lets esbuild drop unused modules whole, as in an app's bundle.
  for (const file of ["package.json", "tsconfig.base.json"]) cpSync(join(repoRoot, file), join(dir, file));
  if (patch !== undefined) {
    try {
      execFileSync("git", ["apply", "--whitespace=nowarn", join(ablationsDir, patch)], { cwd: dir, stdio: "pipe" });
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? String(error);
      throw new Error(`ablation ${patch} no longer applies to src/ (rewrite it):\n${stderr}`);
    }
  }
  return dir;
}

const showModules = process.argv.includes("--modules");
const wanted = process.argv.slice(2).filter((arg) => arg !== "--modules");
const patches = readdirSync(ablationsDir)
  .filter((file) => file.endsWith(".patch"))
  .filter((file) => wanted.length === 0 || wanted.includes(file.replace(/\.patch$/, "")))
  .sort();
if (wanted.length > 0 && patches.length !== wanted.length)
  throw new Error(`unknown ablation in ${wanted.join(", ")}; known: ${readdirSync(ablationsDir).join(", ")}`);

const rows: { name: string; sizes: Size[] }[] = [];
for (const patch of [undefined, ...patches]) {
  const dir = patchedCopy(patch);
  try {
    const name = patch === undefined ? "baseline" : patch.replace(/\.patch$/, "");
    const sizes = [];
    for (const bundle of BUNDLES) {
      const size = await measure(dir, bundle.imports);
      const figure = `size.${bundle.name}.${name.replaceAll("-", "_")}`;
      console.log(`figure ${figure} ${size.gzip} B`);
      console.log(`figure ${figure}.minified ${size.minified} B`);
      if (showModules) console.log(`# ${figure} modules: ${size.modules.map(([f, b]) => `${f} ${b}`).join(", ")}`);
      sizes.push(size);
    }
    rows.push({ name, sizes });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const base = rows[0]!.sizes;
console.log("# gzip bytes of each bundle, with the change from the baseline in brackets");
console.log(`# targets: ${BUNDLES.map((b) => `${b.name} ${TARGETS[b.label] ?? "none"} B`).join(", ")}`);
console.log(`# ${"ablation".padEnd(32)} ${BUNDLES.map((b) => b.name.padStart(24)).join(" ")}`);
for (const row of rows) {
  const cells = row.sizes.map((size, i) => {
    const delta = row === rows[0] ? "" : ` (${size.gzip - base[i]!.gzip})`;
    return `${size.gzip}${delta}`.padStart(24);
  });
  console.log(`# ${row.name.padEnd(32)} ${cells.join(" ")}`);
}
