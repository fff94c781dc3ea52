/**
 * Every TypeScript block of README.md, CONTRIBUTING.md and docs/*.md type-checks as written, with its
 * runtime's types (see test/support/doc-snippets.ts for the markers), against this repository's sources.
 */
import { describe, expect, it, vi } from "vitest";
import { allSnippets, extractSnippets, snippetModule, typeCheckSnippets } from "./support/doc-snippets.ts";

describe("the docs' TypeScript blocks", () => {
  it("are found in README.md and docs/, with a runtime for each", () => {
    const snippets = allSnippets();
    const files = new Set(snippets.map((s) => s.file));
    expect(files).toContain("README.md");
    for (const runtime of ["node", "deno", "bun", "workers"])
      expect(snippets.some((s) => s.runtime === runtime)).toBe(true);
    // The runtime docs' first block is each adapter's example, checked with that runtime's types.
    expect(snippets.filter((s) => s.file.startsWith("docs/runtime-")).map((s) => [s.file, s.runtime])).toEqual(
      expect.arrayContaining([
        ["docs/runtime-bun.md", "bun"],
        ["docs/runtime-deno.md", "deno"],
        ["docs/runtime-node.md", "node"],
        ["docs/runtime-workers.md", "workers"],
      ]),
    );
  });

  it("type-check as written", () => {
    const diagnostics = typeCheckSnippets(allSnippets());
    expect(diagnostics.map((d) => d.message)).toEqual([]);
  }, 120_000);

  it("a block with a type error, an undefined name or a wrong runtime is reported at its line", () => {
    const markdown = [
      "# t",
      "",
      "```ts",
      'import { withDeadlines } from "stream-deadlines";',
      "withDeadlines(() => new Response(), { request: { idel: 1 } });",
      "```",
      "",
      "```typescript",
      "export default { fetch: withDeadlines(handler) };",
      "```",
      "",
      "<!-- check: node -->",
      "```ts",
      'Deno.serve(() => new Response("no Deno types for Node"));',
      "```",
      "",
      "<!-- check: deno -->",
      "",
      "```ts",
      'import { withDenoDeadlines } from "stream-deadlines/deno";',
      'Deno.serve({ hostname: "127.0.0.1" }, withDenoDeadlines(() => new Response("ok")));',
      "```",
    ].join("\n");
    const snippets = extractSnippets("t.md", markdown);
    expect(snippets.map((s) => [s.line, s.runtime])).toEqual([
      [3, "node"],
      [8, "node"],
      [13, "node"],
      [19, "deno"],
    ]);
    const messages = typeCheckSnippets(snippets).map((d) => d.message);
    expect(messages).toEqual([
      expect.stringMatching(/^t\.md:5:\d+ \[node\] TS2353: .*'idel'/),
      expect.stringMatching(/^t\.md:9:\d+ \[node\] TS2304: Cannot find name 'withDeadlines'/),
      expect.stringMatching(/^t\.md:9:\d+ \[node\] TS2304: Cannot find name 'handler'/),
      expect.stringMatching(/^t\.md:14:\d+ \[node\] TS2304: Cannot find name 'Deno'/),
    ]);
  }, 120_000);

  it("a check comment must name a known runtime and sit right before a block", () => {
    expect(() => extractSnippets("t.md", "<!-- check: python -->\n```ts\n```\n")).toThrow(/t\.md:1: bad check/);
    expect(() => extractSnippets("t.md", "<!-- check: bun -->\ntext\n```ts\n```\n")).toThrow(/right before/);
    expect(() => extractSnippets("t.md", "```ts\nconst a = 1;\n")).toThrow(/unclosed/);
  });
});

describe("the docs' whole-program blocks run as written", () => {
  it("withDeadlines' example counts an upload's bytes, for an authenticated caller and for any other", async () => {
    const block = (await import(snippetModule("with-deadlines-example"))) as {
      default: { fetch: (request: Request) => Promise<Response> };
    };
    const upload = (headers: Record<string, string>) =>
      block.default.fetch(new Request("http://localhost/upload", { method: "POST", body: "hello", headers }));
    const authenticated = await upload({ authorization: "Bearer demo" });
    expect([authenticated.status, await authenticated.json()]).toEqual([200, { bytes: 5 }]);
    const anonymous = await upload({});
    expect([anonymous.status, await anonymous.json()]).toEqual([200, { bytes: 5 }]);
  });

  it("the virtual-time example prints the state and code it says", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    try {
      await import(snippetModule("virtual-clock-example"));
      expect(log.mock.calls).toEqual([["timedOut", "ERR_DEADLINE_IDLE"]]);
    } finally {
      log.mockRestore();
    }
  });
});
