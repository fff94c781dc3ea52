/**
 * Type-checks a consumer of the installed package with the repository's TypeScript, as a user's
 * project would: strict, skipLibCheck off (the shipped .d.ts files are checked too). The consumer
 * imports every subpath, and for each one requires that the value exports its types declare are
 * exactly the names the runtime reported, and that each is typed (not `any`).
 */
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { childEnv } from "./stage-and-pack.ts";

const run = promisify(execFile);

/**
 * Short uses of the known entry points, as the README shows them; a subpath absent from the
 * package's exports is left out.
 */
const USAGE: Record<string, string> = {
  ".": `{
  const handler = (request: Request) => new Response(request.body);
  const wrapped: (request: Request) => Promise<Response> = m.withDeadlines(handler, { request: { idle: 10_000, minRate: 1024 }, response: { idle: 30_000 } });
  const error: unknown = null;
  if (m.isTimeoutError(error)) error.code satisfies string;
  void wrapped;
}`,
  "./node": `{
  const listener = m.createNodeListener((request) => new Response(request.url), { request: { idle: 10_000 } });
  void listener;
  const started = m.serve(() => new Response("ok"), { port: 0, headersTimeout: 10_000 });
  void started;
}`,
  "./deno": `void m.withDenoDeadlines((request: Request) => new Response(request.url), { request: { idle: 10_000 } });`,
  "./bun": `void m.withBunDeadlines((request: Request) => new Response(request.url), { idleTimeout: 10 });`,
  "./workers": `void m.withWorkersDeadlines((request: Request) => new Response(request.url), { response: { idle: 30_000 } });`,
};

/** The consumer module for `subpaths` (subpath -> runtime export names). */
export function consumerSource(packageName: string, subpaths: Record<string, string[]>): string {
  const lines = [
    `type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;`,
    `type NotAny = { readonly __streamDeadlinesProbe: "no export has this type" };`,
  ];
  Object.entries(subpaths).forEach(([sub, names], i) => {
    const m = `m${i}`;
    lines.push(``, `// ${sub}`, `import * as ${m} from ${JSON.stringify(packageName + sub.slice(1))};`);
    const union = names.length > 0 ? names.map((n) => JSON.stringify(n)).join(" | ") : "never";
    lines.push(`export const sameNames${i}: Same<keyof typeof ${m}, ${union}> = true;`);
    for (const name of names)
      lines.push(
        `// @ts-expect-error: ${sub} ${name} is typed, not any`,
        `export const typed${i}_${name}: NotAny = ${m}.${name};`,
      );
    const usage = USAGE[sub];
    if (usage)
      lines.push(`export function use${i}(m: typeof ${m}): void ${usage.startsWith("{") ? usage : `{ ${usage} }`}`);
  });
  return `${lines.join("\n")}\n`;
}

export interface ConsumerConfig {
  name: string;
  module: string;
  moduleResolution: string;
  /** Type packages to include: `["node"]`, `["bun"]`, `["@cloudflare/workers-types"]` or `[]`. */
  types: string[];
  /** Files to check (relative to `dir`, or absolute). */
  files: string[];
  /** The `lib` setting. Default: ES2022 with the DOM libs. */
  lib?: string[];
  /**
   * Where the tsconfig is written, and so where `types` are looked up (its node_modules). Default: the
   * consumer project, with the repository's node_modules/@types as the type root.
   */
  dir?: string;
}

/** Writes tsconfig.<name>.json into `projectDir` and runs tsc on it; resolves with tsc's output on failure, "" on success. */
export async function typecheckConsumer(root: string, projectDir: string, config: ConsumerConfig): Promise<string> {
  const dir = config.dir ?? projectDir;
  const tsconfig = {
    compilerOptions: {
      module: config.module,
      moduleResolution: config.moduleResolution,
      target: "ES2022",
      lib: config.lib ?? ["ES2022", "DOM", "DOM.Iterable"],
      strict: true,
      noEmit: true,
      skipLibCheck: false,
      types: config.types,
      ...(config.dir === undefined ? { typeRoots: [join(root, "node_modules/@types")] } : {}),
    },
    files: config.files,
  };
  const file = join(dir, `tsconfig.${config.name}.json`);
  writeFileSync(file, JSON.stringify(tsconfig, null, 2));
  try {
    await run(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", file, "--pretty", "false"], {
      cwd: dir,
      env: childEnv(),
      maxBuffer: 16 << 20,
    });
    return "";
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    return `${config.name}: ${e.stdout || e.stderr || e.message}`;
  }
}
