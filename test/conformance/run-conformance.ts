/**
 * `npm run conformance [-- row …] [--write FILE.md]`: runs every scenario against every runtime row
 * (or the rows named) and prints the runtime × scenario matrix, then each cell's measured details.
 * `--write` also records the matrix and details as Markdown (docs/conformance.md).
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { type Cell, formatMatrix, runRow } from "./conformance-runner.ts";
import { ALL_ROWS, NODE24_BINARY, type RuntimeRow } from "../../harness/runtime-launchers.ts";
import { WRANGLER_BIN } from "../../harness/wrangler-dev.ts";
import { SCENARIOS } from "./scenarios.ts";

const argv = process.argv.slice(2);
const writeIndex = argv.indexOf("--write");
const writeFile = writeIndex >= 0 ? argv[writeIndex + 1] : undefined;
const named = argv.filter((a, i) => !a.startsWith("-") && (writeIndex < 0 || i !== writeIndex + 1)) as RuntimeRow[];
const rows = named.length ? named : ALL_ROWS;
for (const row of rows)
  if (!ALL_ROWS.includes(row)) throw new TypeError(`unknown row "${row}" (expected ${ALL_ROWS.join(", ")})`);

const cells: Cell[] = [];
for (const row of rows) {
  try {
    cells.push(
      ...(await runRow(row, (cell) =>
        console.error(`${cell.kind.padEnd(5)} ${row} ${cell.scenario} (${Math.round(cell.ms)} ms) ${cell.detail}`),
      )),
    );
  } catch (error) {
    console.error(`FAIL  ${row}: could not start: ${error instanceof Error ? error.message : String(error)}`);
  }
}
console.log(`\n${formatMatrix(cells, rows)}\n`);
const failed = cells.filter((c) => c.kind === "FAIL");
console.log(`${cells.filter((c) => c.kind === "ok" || c.kind === "limit").length} passed, ${failed.length} failed`);
process.exitCode = failed.length ? 1 : 0;

function versionOf(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: "utf8" }).split("\n")[0]!.trim();
  } catch {
    return "not installed";
  }
}

function packageVersion(name: string): string {
  const file = new URL(`../../node_modules/${name}/package.json`, import.meta.url);
  return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
}

if (writeFile) {
  const bin = (name: string) => new URL(`../../node_modules/.bin/${name}`, import.meta.url).pathname;
  const versions = [
    `node ${process.version}`,
    `node 24: ${versionOf(NODE24_BINARY, ["--version"])}`,
    versionOf(bin("deno"), ["--version"]),
    `bun ${versionOf(bin("bun"), ["--version"])}`,
    versionOf(bin("workerd"), ["--version"]),
    `hono ${packageVersion("hono")} on @hono/node-server ${packageVersion("@hono/node-server")}`,
    `wrangler ${versionOf(NODE24_BINARY, [WRANGLER_BIN, "--version"])} (its own ${versionOf(
      new URL("../../node_modules/wrangler/node_modules/workerd/bin/workerd", import.meta.url).pathname,
      ["--version"],
    )})`,
  ];
  const details = cells
    .filter((c) => c.kind !== "n/a")
    .map(
      (c) =>
        `| ${c.row} | ${c.scenario} | ${c.kind} | ${Math.round(c.ms)} | ${c.detail.replaceAll("|", "\\|").replaceAll("\n", " ")} |`,
    );
  const md = [
    "# Conformance matrix",
    "",
    `Measured by \`npm run conformance -- --write docs/conformance.md\` on ${new Date().toISOString().slice(0, 10)} (${versions.join("; ")}).`,
    "Each scenario runs over raw TCP (node:net, node:http2) against the fixture server on each runtime (the",
    "demo, observed: harness/fixture), with the short limits of test/conformance/scenarios.ts (idle 600 ms,",
    "handler 500 ms, …). `limit` = a known platform limit whose documented behaviour was asserted.",
    "Every cell also judges what the server printed meanwhile: one report line per firing (the library's",
    "default `console.warn`), matching the firings, and nothing else (test/conformance/server-output.ts).",
    "`hono-node` is the fixture app as a Hono app with the `stream-deadlines/hono` middleware, served by",
    "@hono/node-server with `applyNodeServerLimits` (demo/hosts/hono-node.ts).",
    "",
    "## Scenarios",
    "",
    ...SCENARIOS.map(
      (s) =>
        `- \`${s.id}\`: ${s.title}${s.knownLimit ? ` (known limit on ${s.knownLimit.rows.join(", ")}: ${s.knownLimit.expected}; ${s.knownLimit.reference})` : ""}`,
    ),
    "",
    "## Matrix",
    "",
    "```",
    formatMatrix(cells, rows),
    "```",
    "",
    "## What was measured",
    "",
    "| runtime | scenario | result | ms | measured |",
    "| --- | --- | --- | --- | --- |",
    ...details,
    "",
  ];
  writeFileSync(writeFile, md.join("\n"));
  console.log(`wrote ${writeFile}`);
}
