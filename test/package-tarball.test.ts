/**
 * The package as npm would publish it. A clean copy of the repository is packed with `npm pack`
 * in a temporary directory (the "prepack" script empties dist/ and runs `npm run build`); then:
 *
 * - the tarball holds package.json, README.md, LICENSE and the built modules only (no tests,
 *   benches, demo, docs, tools), each module with its declarations and a source map carrying its
 *   sources, and one built module per source module;
 * - the core (".") imports nothing outside itself; "./node" only node:* and srvx; "./deno", "./bun"
 *   and "./workers" nothing outside the package; any other subpath only packages it declares (and
 *   no node:*); the same holds for the declaration files (so the core's types need no @types/node);
 * - publint (strict, suggestions included) and @arethetypeswrong/cli (profile esm-only: node16
 *   from ESM and bundler resolution; node10 and require() are out of scope for an ESM-only
 *   package) find nothing;
 * - the tarball is installed with npm into a fresh project ("type": "module"), and every subpath
 *   in package.json's exports (read at test time) is imported on each runtime;
 * - a TypeScript consumer importing every subpath type-checks (strict, skipLibCheck off) under
 *   moduleResolution "bundler" and "node16", and the subpaths whose declarations name no node:*
 *   module also type-check without @types/node; and with lib ES2022 (no DOM lib) and only one
 *   runtime's types: @types/node, @types/bun, @cloudflare/workers-types (each installed alone), or
 *   Deno's own (`deno check --all`).
 *
 * The import matrix (✓ loads with the expected exports; ✗ fails as stated):
 *
 *   subpath     node20  node24  deno  bun  workerd  workerd + nodejs_compat
 *   .             ✓       ✓      ✓     ✓      ✓        ✓
 *   ./node        ✓       ✓      ✓     ✓      ✗        ✓
 *   ./deno        ✓       ✓      ✓     ✓      ✓        ✓
 *   ./bun         ✓       ✓      ✓     ✓      ✓        ✓
 *   ./workers     ✓       ✓      ✓     ✓      ✓        ✓
 *   (others)      ✓       ✓      ✓     ✓      ✓        ✓
 *
 * ✗: on Workers without nodejs_compat (the configuration the README documents for
 * "./workers"), "./node" fails with `No such module "node:http"`: it is the Node adapter and
 * imports node:http and srvx/node. Every other subpath loads everywhere: the adapters touch their
 * runtime's globals only when called. Deno runs with no permissions, resolving from the
 * project's node_modules.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { publint } from "publint";
import { formatMessage } from "publint/utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKERS_COMPATIBILITY_DATE, WORKERS_COMPATIBILITY_FLAGS } from "../harness/workers-config.ts";
import { NODE24_BINARY } from "../harness/runtime-launchers.ts";
import { type ConsumerConfig, consumerSource, typecheckConsumer } from "./package-tarball/consumer-typecheck.ts";
import { moduleGraph, packageNameOf } from "./package-tarball/module-graph.ts";
import {
  type ProbeReport,
  probeModuleSource,
  probeOnWorkerd,
  probeWithProcess,
} from "./package-tarball/runtime-probes.ts";
import { childEnv, type StagedPackage, stageBuildAndPack, unpack } from "./package-tarball/stage-and-pack.ts";

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const DENO = join(root, "node_modules/.bin/deno");
const BUN = join(root, "node_modules/.bin/bun");

interface Manifest {
  name: string;
  files: string[];
  exports: Record<string, string | { types: string; default: string }>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as Manifest;
/** Every importable subpath, as package.json declares them now ("./hono" included once it is there). */
const SUBPATHS = Object.keys(pkg.exports).filter((key) => key !== "./package.json");
const entryOf = (sub: string) => {
  const target = pkg.exports[sub];
  if (typeof target !== "object") throw new Error(`${sub}: expected { types, default }`);
  return target;
};
const strip = (p: string) => p.replace(/^\.\//, "");

/** Names each known subpath must export at run time (at least these); any other subpath: at least one. */
const EXPECTED_EXPORTS: Record<string, string[]> = {
  ".": [
    "withDeadlines",
    "deadlines",
    "TimeoutError",
    "isTimeoutError",
    "guardInboundStream",
    "guardOutboundStream",
    "fetchWithDeadlines",
    "upstreamDeadlines",
  ],
  "./node": ["serve", "createNodeListener", "nodeServerLimits"],
  "./deno": ["withDenoDeadlines", "serve", "serveOnError"],
  "./bun": ["withBunDeadlines", "serve", "BUN_DEFAULT_IDLE_TIMEOUT"],
  "./workers": ["withWorkersDeadlines"],
  "./otel": ["installOpenTelemetry", "timeoutErrorType", "TIMEOUT_SPAN_EVENT"],
};

/** What each known subpath (its modules, built JS and declarations) may import from outside the package. */
const ALLOWED_OUTSIDE: Record<string, (spec: string) => boolean> = {
  ".": () => false,
  "./node": (spec) => spec.startsWith("node:") || packageNameOf(spec) === "srvx",
  "./deno": () => false,
  "./bun": () => false,
  "./workers": () => false,
  // The OpenTelemetry API (an optional peer dependency); diagnostics_channel is looked up at run time.
  "./otel": (spec) => packageNameOf(spec) === "@opentelemetry/api",
};
/** Any other subpath: packages it declares as dependencies or peers, no Node builtins. */
const declared = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
const allowedOutside = (sub: string) =>
  ALLOWED_OUTSIDE[sub] ?? ((spec: string) => !spec.startsWith("node:") && declared.has(packageNameOf(spec)));

type Runtime = "node20" | "node24" | "deno" | "bun" | "workerd" | "workerd+nodejs_compat";
const RUNTIMES: Runtime[] = ["node20", "node24", "deno", "bun", "workerd", "workerd+nodejs_compat"];
/** The documented failures: runtime -> subpath -> the error its import must throw. Everything else loads. */
const CANNOT_LOAD: Partial<Record<Runtime, Record<string, RegExp>>> = {
  workerd: { "./node": /^Error: No such module "node:http"/ },
};

let work: string;
let staged: StagedPackage;
let packageDir: string;
let projectDir: string;
/** What each subpath exports on Node 20: the reference for the other runtimes and the consumer's types. */
let reference: ProbeReport;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "sd-package-"));
  staged = await stageBuildAndPack(root, work);
  packageDir = await unpack(staged.tarball, join(work, "unpacked"));

  projectDir = join(work, "consumer");
  const peers = Object.entries(pkg.peerDependencies ?? {}).map(([name, range]) => `${name}@${range}`);
  mkdirSync(projectDir);
  writeFileSync(
    join(projectDir, "package.json"),
    JSON.stringify({ name: "sd-consumer", private: true, type: "module" }, null, 2),
  );
  await run(
    "npm",
    [
      "install",
      "--prefix",
      projectDir,
      "--no-audit",
      "--no-fund",
      "--prefer-offline",
      "--loglevel",
      "error",
      staged.tarball,
      ...peers,
    ],
    {
      cwd: projectDir,
      env: childEnv(),
      maxBuffer: 16 << 20,
    },
  );
  writeFileSync(join(projectDir, "probe.mjs"), probeModuleSource(pkg.name, SUBPATHS));
  reference = await probeWithProcess(process.execPath, ["probe.mjs"], projectDir);
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the packed tarball", () => {
  it("holds package.json, README.md, LICENSE and the built modules of src/ and adapters/, nothing else", () => {
    const paths = staged.pack.files.map((f) => f.path).sort();
    const outside = paths.filter(
      (p) => !["package.json", "README.md", "LICENSE"].includes(p) && !/^dist\/(src|adapters)\//.test(p),
    );
    expect(outside, "files outside the whitelist").toEqual([]);
    expect(paths).toEqual(expect.arrayContaining(["package.json", "README.md", "LICENSE"]));
    expect(paths.filter((p) => /(^|\/)(test|bench|demo|docs|tools|examples)\/|\.test\.|\.check\./.test(p))).toEqual([]);
    for (const entry of pkg.files)
      expect(
        paths.some((p) => p === entry || p.startsWith(`${entry}/`)),
        `"files" entry ${entry} ships something`,
      ).toBe(true);

    // One built module (JS, declarations, source map) per source module, and no other file.
    const expected: string[] = [];
    for (const dir of ["src", "adapters"]) {
      // src/ has layer folders (engine, guards, http): every module, at any depth.
      const names = readdirSync(join(root, dir), { recursive: true, encoding: "utf8" });
      for (const name of names.filter((n) => n.endsWith(".ts") && !n.endsWith(".d.ts"))) {
        const base = `dist/${dir}/${name.replace(/\.ts$/, "")}`;
        expected.push(`${base}.js`, `${base}.d.ts`, `${base}.js.map`);
      }
    }
    expect(paths.filter((p) => p.startsWith("dist/"))).toEqual(expected.sort());
    expect(staged.pack.unpackedSize, "unpacked size").toBeLessThan(1 << 20);
  });

  it("has both files of every exports entry, types first; each module its declarations and a source map with its sources", () => {
    for (const sub of SUBPATHS) {
      const target = entryOf(sub);
      expect(Object.keys(target)[0], `${sub}: "types" first`).toBe("types");
      expect(Object.keys(target), sub).toContain("default");
      for (const [condition, file] of Object.entries(target))
        expect(existsSync(join(packageDir, strip(file))), `${sub} ${condition}: ${file}`).toBe(true);
    }
    const js = staged.pack.files.map((f) => f.path).filter((p) => p.endsWith(".js"));
    for (const file of js) {
      expect(existsSync(join(packageDir, file.replace(/\.js$/, ".d.ts"))), `${file}: declarations`).toBe(true);
      const source = readFileSync(join(packageDir, file), "utf8");
      expect(source, file).toMatch(/\n\/\/# sourceMappingURL=[\w.-]+\.js\.map\s*$/);
      const map = JSON.parse(readFileSync(join(packageDir, `${file}.map`), "utf8")) as {
        sources: string[];
        sourcesContent?: (string | null)[];
      };
      expect(map.sourcesContent?.length, `${file}.map: sourcesContent`).toBe(map.sources.length);
      expect(
        map.sourcesContent!.every((s) => typeof s === "string" && s.length > 0),
        `${file}.map: every source inline`,
      ).toBe(true);
    }
  });

  it("core imports nothing outside itself; each adapter only what its runtime has (built JS and declarations)", () => {
    const used = new Set<string>();
    for (const sub of SUBPATHS) {
      const allowed = allowedOutside(sub);
      for (const entry of [strip(entryOf(sub).default), strip(entryOf(sub).types)]) {
        const graph = moduleGraph(packageDir, entry);
        expect(graph.broken, `${sub} (${entry}): relative imports to missing files`).toEqual([]);
        expect(
          graph.files.every((f) => f.startsWith("dist/")),
          `${sub}: stays in dist`,
        ).toBe(true);
        if (sub === ".")
          expect(
            graph.files.every((f) => f.startsWith("dist/src/")),
            "the core reaches no adapter",
          ).toBe(true);
        const refused = [...graph.outside]
          .filter(([spec]) => !allowed(spec))
          .map(([spec, from]) => `${spec} (from ${from.join(", ")})`);
        expect(refused, `${sub} (${entry}) imports from outside the package`).toEqual([]);
        if (entry.endsWith(".js")) for (const spec of graph.outside.keys()) used.add(packageNameOf(spec));
      }
    }
    // Every runtime dependency is imported by some subpath (none is there for nothing).
    for (const dep of Object.keys(pkg.dependencies ?? {}))
      expect(used.has(dep), `dependency ${dep} is imported by a subpath`).toBe(true);
  });

  it("publint finds nothing (strict, suggestions included)", async () => {
    const tarball = new Uint8Array(readFileSync(staged.tarball)).buffer;
    const { messages, pkg: linted } = await publint({ pack: { tarball }, strict: true, level: "suggestion" });
    expect(messages.map((m) => `${m.type}: ${formatMessage(m, linted) ?? m.code}`)).toEqual([]);
  });

  it("@arethetypeswrong/cli finds no problem for ESM consumers (node16 from ESM, bundler) on any entry point", async () => {
    const cliPackage = require.resolve("@arethetypeswrong/cli/package.json");
    const bin = (JSON.parse(readFileSync(cliPackage, "utf8")) as { bin: Record<string, string> }).bin.attw!;
    let stdout: string;
    try {
      ({ stdout } = await run(
        process.execPath,
        [join(dirname(cliPackage), bin), staged.tarball, "--profile", "esm-only", "--format", "json"],
        { env: childEnv(), maxBuffer: 64 << 20 },
      ));
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; message: string };
      const problems = e.stdout?.startsWith("{")
        ? JSON.stringify((JSON.parse(e.stdout) as { problems: unknown }).problems, null, 1)
        : e.stdout;
      throw new Error(`attw failed: ${e.message}\n${problems ?? ""}\n${e.stderr ?? ""}`);
    }
    const report = JSON.parse(stdout) as {
      analysis: {
        entrypoints: Record<string, unknown>;
        problems: { kind: string; entrypoint: string; resolutionKind?: string }[];
      };
    };
    expect(Object.keys(report.analysis.entrypoints)).toEqual(expect.arrayContaining(SUBPATHS));
    const esmProblems = report.analysis.problems.filter(
      (p) => p.resolutionKind !== "node10" && p.resolutionKind !== "node16-cjs",
    );
    expect(esmProblems).toEqual([]);
  });
});

describe("installed from the tarball, every subpath imports", () => {
  async function probe(runtime: Runtime): Promise<ProbeReport> {
    switch (runtime) {
      case "node20":
        return probeWithProcess(process.execPath, ["probe.mjs"], projectDir);
      case "node24":
        if (!existsSync(NODE24_BINARY))
          throw new Error(`node 24 is not installed at ${NODE24_BINARY}: run \`npm ci --prefix tools/node24\``);
        return probeWithProcess(NODE24_BINARY, ["probe.mjs"], projectDir);
      case "deno":
        // No permissions: importing the package needs none. Bare specifiers resolve from node_modules.
        return probeWithProcess(
          DENO,
          ["run", "--quiet", "--no-lock", "--node-modules-dir=manual", "probe.mjs"],
          projectDir,
        );
      case "bun":
        return probeWithProcess(BUN, ["probe.mjs"], projectDir);
      case "workerd":
        return probeOnWorkerd(projectDir, pkg.name, SUBPATHS, WORKERS_COMPATIBILITY_DATE, WORKERS_COMPATIBILITY_FLAGS);
      case "workerd+nodejs_compat":
        return probeOnWorkerd(projectDir, pkg.name, SUBPATHS, WORKERS_COMPATIBILITY_DATE, [
          ...WORKERS_COMPATIBILITY_FLAGS,
          "nodejs_compat",
        ]);
    }
  }

  it.each(RUNTIMES)("on %s", async (runtime) => {
    const report = await probe(runtime);
    expect(Object.keys(report).sort()).toEqual([...SUBPATHS].sort());
    for (const sub of SUBPATHS) {
      const result = report[sub]!;
      const failure = CANNOT_LOAD[runtime]?.[sub];
      if (failure) {
        expect(result.ok, `${sub} on ${runtime} must fail (documented)`).toBe(false);
        if (!result.ok) expect(result.error, `${sub} on ${runtime}`).toMatch(failure);
        continue;
      }
      if (!result.ok) throw new Error(`${sub} does not load on ${runtime}: ${result.error}`);
      const expected = EXPECTED_EXPORTS[sub];
      if (expected) expect(result.exports, `${sub} on ${runtime}`).toEqual(expect.arrayContaining(expected));
      else expect(result.exports.length, `${sub} on ${runtime} exports something`).toBeGreaterThan(0);
      const ref = reference[sub];
      expect(result.exports, `${sub} on ${runtime}: the same names as on node20`).toEqual(
        ref?.ok ? ref.exports : undefined,
      );
    }
  });
});

describe("a TypeScript consumer of the installed package", () => {
  it("type-checks under moduleResolution bundler and node16; the subpaths whose types name no node:* module also without @types/node", async () => {
    const names: Record<string, string[]> = {};
    for (const sub of SUBPATHS) {
      const r = reference[sub];
      if (!r?.ok) throw new Error(`${sub} does not load on node20`);
      names[sub] = r.exports;
    }
    const needsNode = (sub: string) =>
      [...moduleGraph(packageDir, strip(entryOf(sub).types)).outside.keys()].some(
        (spec) => spec.startsWith("node:") || spec === "node",
      );
    const nodeFree = Object.fromEntries(Object.entries(names).filter(([sub]) => !needsNode(sub)));
    expect(Object.keys(nodeFree), "the core's types need no @types/node").toContain(".");
    writeFileSync(join(projectDir, "consumer.ts"), consumerSource(pkg.name, names));
    writeFileSync(join(projectDir, "consumer-node-free.ts"), consumerSource(pkg.name, nodeFree));
    const configs: ConsumerConfig[] = [
      { name: "bundler", module: "preserve", moduleResolution: "bundler", types: ["node"], files: ["consumer.ts"] },
      { name: "node16", module: "node16", moduleResolution: "node16", types: ["node"], files: ["consumer.ts"] },
      {
        name: "bundler-no-node-types",
        module: "preserve",
        moduleResolution: "bundler",
        types: [],
        files: ["consumer-node-free.ts"],
      },
    ];
    const failures = (await Promise.all(configs.map((config) => typecheckConsumer(root, projectDir, config)))).filter(
      Boolean,
    );
    expect(failures.join("\n")).toBe("");
  });

  it("type-checks with lib es2022 and one runtime's own types only (no DOM lib, skipLibCheck off): @types/node, @types/bun, @cloudflare/workers-types, Deno", async () => {
    const names: Record<string, string[]> = {};
    for (const sub of SUBPATHS) {
      const r = reference[sub];
      if (!r?.ok) throw new Error(`${sub} does not load on node20`);
      names[sub] = r.exports;
    }
    const pick = (...subs: string[]) => Object.fromEntries(subs.filter((s) => s in names).map((s) => [s, names[s]!]));
    writeFileSync(join(projectDir, "consumer-node.ts"), consumerSource(pkg.name, names));
    // What a project on each runtime imports: the core, its runtime's adapter, and the Hono middleware.
    writeFileSync(join(projectDir, "consumer-bun.ts"), consumerSource(pkg.name, pick(".", "./bun", "./hono")));
    writeFileSync(join(projectDir, "consumer-workers.ts"), consumerSource(pkg.name, pick(".", "./workers", "./hono")));
    writeFileSync(join(projectDir, "consumer-deno.ts"), consumerSource(pkg.name, pick(".", "./deno", "./hono")));
    // Each runtime's types installed alone, as a project of that runtime has them: @types/bun brings the
    // @types/node its bun-types asks for, not the repository's.
    const installed = (name: string) =>
      (JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")) as { version: string })
        .version;
    const envs = { bun: "@types/bun", workers: "@cloudflare/workers-types" } as const;
    for (const [env, types] of Object.entries(envs)) {
      const dir = join(work, `types-${env}`);
      mkdirSync(dir);
      writeFileSync(join(dir, "package.json"), JSON.stringify({ name: `sd-types-${env}`, private: true }));
      await run(
        "npm",
        [
          "install",
          "--no-audit",
          "--no-fund",
          "--prefer-offline",
          "--loglevel",
          "error",
          `${types}@${installed(types)}`,
        ],
        { cwd: dir, env: childEnv(), maxBuffer: 16 << 20 },
      );
    }
    const es2022 = { module: "preserve", moduleResolution: "bundler", lib: ["ES2022"] };
    const configs: ConsumerConfig[] = [
      { name: "es2022-node", ...es2022, types: ["node"], files: ["consumer-node.ts"] },
      {
        name: "es2022-bun",
        ...es2022,
        types: ["bun"],
        dir: join(work, "types-bun"),
        files: [join(projectDir, "consumer-bun.ts")],
      },
      {
        name: "es2022-workers",
        ...es2022,
        types: ["@cloudflare/workers-types"],
        dir: join(work, "types-workers"),
        files: [join(projectDir, "consumer-workers.ts")],
      },
    ];
    const failures = (await Promise.all(configs.map((config) => typecheckConsumer(root, projectDir, config)))).filter(
      Boolean,
    );
    // Deno type-checks with its own lib (no DOM), resolving the package from the project's node_modules;
    // --all includes the package's declarations.
    const deno = await run(
      join(root, "node_modules/.bin/deno"),
      ["check", "--all", "--no-lock", "--node-modules-dir=manual", "consumer-deno.ts"],
      { cwd: projectDir, env: childEnv({ DENO_NO_UPDATE_CHECK: "1" }), maxBuffer: 16 << 20 },
    ).then(
      () => "",
      (error: { stdout?: string; stderr?: string; message: string }) => `deno: ${error.stderr || error.message}`,
    );
    expect([...failures, deno].filter(Boolean).join("\n")).toBe("");
  });
});
