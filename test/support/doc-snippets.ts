/**
 * The TypeScript blocks of the Markdown docs, and a type-check of them as written against the
 * package's own sources ("stream-deadlines" is src/index.ts, "stream-deadlines/<name>" is
 * adapters/<name>.ts).
 *
 * A block is a fence opened with ```ts or ```typescript. An HTML comment on the line before it (blank
 * lines allowed between) says which runtime's types it needs and, optionally, a name that tests use
 * to run it: `<!-- check: deno -->`, `<!-- check: node id: hono-app -->`. Without a comment a block
 * is checked as Node code. Each block is its own module (`export {}` is appended), so blocks never
 * see each other's names.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

export const ROOT = resolve(import.meta.dirname, "../..");

export const RUNTIMES = ["node", "deno", "bun", "workers"] as const;
export type SnippetRuntime = (typeof RUNTIMES)[number];

export interface Snippet {
  /** Markdown file, relative to the repository root. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  runtime: SnippetRuntime;
  id: string | undefined;
  code: string;
}

const CHECK_COMMENT = /^<!--\s*check:\s*([a-z]+)(?:\s+id:\s*([\w-]+))?\s*-->$/;
const FENCE_OPEN = /^```(ts|typescript)\s*$/;

/** The Markdown files whose blocks are checked: README.md, CONTRIBUTING.md and docs/*.md. */
export function docFiles(): string[] {
  const docs = readdirSync(join(ROOT, "docs"))
    .filter((name) => name.endsWith(".md"))
    .sort()
    .map((name) => `docs/${name}`);
  return ["README.md", "CONTRIBUTING.md", ...docs];
}

/** Every TypeScript block of one Markdown text. Throws on a malformed check comment or an unclosed fence. */
export function extractSnippets(file: string, markdown: string): Snippet[] {
  const lines = markdown.split("\n");
  const snippets: Snippet[] = [];
  let pending: { runtime: SnippetRuntime; id: string | undefined; line: number } | undefined;
  let inOtherFence = false;
  for (let i = 0; i < lines.length; i++) {
    const text = (lines[i] ?? "").trimEnd();
    if (inOtherFence) {
      if (text.startsWith("```")) inOtherFence = false;
      continue;
    }
    if (text.startsWith("<!--") && text.includes("check:")) {
      const match = CHECK_COMMENT.exec(text);
      const runtime = match?.[1] as SnippetRuntime | undefined;
      if (match === null || runtime === undefined || !RUNTIMES.includes(runtime))
        throw new Error(`${file}:${i + 1}: bad check comment ${JSON.stringify(text)} (runtimes: ${RUNTIMES})`);
      pending = { runtime, id: match[2], line: i + 1 };
      continue;
    }
    if (FENCE_OPEN.test(text)) {
      const start = i;
      const body: string[] = [];
      for (i++; i < lines.length && !(lines[i] ?? "").startsWith("```"); i++) body.push(lines[i] ?? "");
      if (i >= lines.length) throw new Error(`${file}:${start + 1}: unclosed code block`);
      snippets.push({
        file,
        line: start + 1,
        runtime: pending?.runtime ?? "node",
        id: pending?.id,
        code: `${body.join("\n")}\n`,
      });
      pending = undefined;
      continue;
    }
    if (text.startsWith("```")) {
      inOtherFence = true;
      pending = undefined;
      continue;
    }
    if (text !== "" && pending !== undefined)
      throw new Error(`${file}:${pending.line}: a check comment must come right before a ts block`);
  }
  return snippets;
}

/** Every TypeScript block of the docs. */
export function allSnippets(): Snippet[] {
  return docFiles().flatMap((file) => {
    let text: string;
    try {
      text = readFileSync(join(ROOT, file), "utf8");
    } catch {
      return [];
    }
    return extractSnippets(file, text);
  });
}

/**
 * The project config whose options each runtime's blocks are checked with: the options every project
 * shares (Node's types), or those of the adapter's check against its runtime's real types.
 */
const CONFIG: Record<SnippetRuntime, string> = {
  node: "tsconfig.base.json",
  deno: "test/types/tsconfig.deno.json",
  bun: "test/types/tsconfig.bun.json",
  workers: "test/types/tsconfig.workers.json",
};

function compilerOptions(runtime: SnippetRuntime): ts.CompilerOptions {
  const configPath = join(ROOT, CONFIG[runtime]);
  const parsed = ts.getParsedCommandLineOfConfigFile(
    configPath,
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
      },
    },
  );
  if (parsed === undefined) throw new Error(`cannot read ${configPath}`);
  const adapters = (name: string) => [join(ROOT, "adapters", `${name}.ts`)];
  return {
    ...parsed.options,
    // A project's build settings, not its type rules: the blocks are one in-memory program per runtime.
    composite: false,
    incremental: false,
    tsBuildInfoFile: undefined,
    noEmit: true,
    // The import lines of the docs, as a user writes them, resolved to this repository's sources.
    paths: {
      "stream-deadlines": [join(ROOT, "src/index.ts")],
      "stream-deadlines/node": adapters("node"),
      "stream-deadlines/deno": adapters("deno"),
      "stream-deadlines/bun": adapters("bun"),
      "stream-deadlines/workers": adapters("workers"),
      "stream-deadlines/hono": adapters("hono"),
      "stream-deadlines/otel": adapters("otel"),
    },
  };
}

/** Where the blocks' modules seem to be (they exist only in memory): inside the repository, so
 * "hono" and the runtimes' type packages resolve from its node_modules, and package.json makes them ESM. */
const VIRTUAL_DIR = join(ROOT, ".doc-snippets");

export function snippetFileName(snippet: Snippet): string {
  return `${snippet.file.replace(/[/.]/g, "_")}_L${snippet.line}.ts`;
}

export interface SnippetDiagnostic {
  snippet: Snippet | undefined;
  message: string;
  /** Markdown file and line (or source file and line) and column, for ordering. */
  at: [string, number, number];
}

/**
 * Parsed declaration files of node_modules (the libs, @types/*, hono), shared by the programs of
 * every runtime and every call: parsing them is most of a program's cost. Keyed by what parsing
 * depends on.
 */
const libraryFiles = new Map<string, ts.SourceFile>();

function compilerHost(options: ts.CompilerOptions, blocks: Map<string, string>): ts.CompilerHost {
  const host = ts.createCompilerHost(options, true);
  return {
    ...host,
    fileExists: (fileName) => blocks.has(fileName) || host.fileExists(fileName),
    readFile: (fileName) => blocks.get(fileName) ?? host.readFile(fileName),
    getSourceFile(fileName, languageVersion, onError, shouldCreateNewSourceFile) {
      const block = blocks.get(fileName);
      if (block !== undefined) return ts.createSourceFile(fileName, block, languageVersion, true);
      if (!fileName.includes("/node_modules/"))
        return host.getSourceFile(fileName, languageVersion, onError, shouldCreateNewSourceFile);
      const version = typeof languageVersion === "object" ? languageVersion : { languageVersion };
      const key = `${version.languageVersion}:${version.impliedNodeFormat}:${fileName}`;
      let file = libraryFiles.get(key);
      if (file === undefined) {
        file = host.getSourceFile(fileName, languageVersion, onError, shouldCreateNewSourceFile);
        if (file !== undefined) libraryFiles.set(key, file);
      }
      return file;
    },
  };
}

/**
 * Type-checks blocks, one program per runtime (the blocks are modules in memory). Each diagnostic in
 * a block is reported at its line in the Markdown file; the program's global and option diagnostics
 * are reported too. The sources themselves are checked by `tsc`, not here.
 */
export function typeCheckSnippets(snippets: Snippet[]): SnippetDiagnostic[] {
  const out: SnippetDiagnostic[] = [];
  for (const runtime of RUNTIMES) {
    const group = snippets.filter((s) => s.runtime === runtime);
    if (group.length === 0) continue;
    const byPath = new Map<string, Snippet>();
    const blocks = new Map<string, string>();
    for (const snippet of group) {
      const path = join(VIRTUAL_DIR, runtime, snippetFileName(snippet));
      blocks.set(path, `${snippet.code}export {};\n`);
      byPath.set(path, snippet);
    }
    const options = compilerOptions(runtime);
    const program = ts.createProgram([...blocks.keys()], options, compilerHost(options, blocks));
    const diagnostics = [
      ...program.getOptionsDiagnostics(),
      ...program.getGlobalDiagnostics(),
      ...[...blocks.keys()].flatMap((path) => {
        const file = program.getSourceFile(path);
        if (file === undefined) throw new Error(`${path} is not in the program`);
        return [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)];
      }),
    ];
    for (const d of diagnostics) {
      const message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
      const snippet = d.file === undefined ? undefined : byPath.get(d.file.fileName);
      if (d.file === undefined || d.start === undefined) {
        out.push({ snippet, message: `[${runtime}] TS${d.code}: ${message}`, at: ["", 0, 0] });
        continue;
      }
      const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
      const at: [string, number, number] =
        snippet === undefined
          ? [relative(ROOT, d.file.fileName), line + 1, character + 1]
          : [snippet.file, snippet.line + 1 + line, character + 1];
      out.push({ snippet, message: `${at.join(":")} [${runtime}] TS${d.code}: ${message}`, at });
    }
  }
  return out.sort((a, b) => a.at[0].localeCompare(b.at[0]) || a.at[1] - b.at[1] || a.at[2] - b.at[2]);
}

/**
 * The block named `id` (`<!-- check: node id: … -->`) as a module file a test can import and run: the
 * block as written, with its "stream-deadlines" and "stream-deadlines/<name>" imports pointed at
 * src/index.ts and adapters/<name>.ts. Written under .scratch/ (git-ignored); returns its path.
 */
export function snippetModule(id: string, snippets: Snippet[] = allSnippets()): string {
  const found = snippets.filter((s) => s.id === id);
  if (found.length !== 1) throw new Error(`expected one block with id ${id}, found ${found.length}`);
  const snippet = found[0] as Snippet;
  const code = snippet.code.replace(
    /from "stream-deadlines(?:\/(\w+))?"/g,
    (_, name: string | undefined) =>
      `from ${JSON.stringify(name === undefined ? join(ROOT, "src/index.ts") : join(ROOT, "adapters", `${name}.ts`))}`,
  );
  const path = join(ROOT, ".scratch/doc-snippets", snippetFileName(snippet));
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, code);
  return path;
}
