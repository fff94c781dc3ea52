/** package.json (npm, built files) and jsr.json (Deno users, sources) name the same entry points. */
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  exports: Record<string, string | { types: string; default: string }>;
  sideEffects: boolean;
  type: string;
};
const jsr = JSON.parse(readFileSync(new URL("../jsr.json", import.meta.url), "utf8")) as {
  exports: Record<string, string>;
  version: string;
};

/** "./dist/adapters/node.js" and "./adapters/node.ts" are the same module, built and as source. */
const sourceOf = (built: string) => built.replace(/^\.\/dist\//, "./").replace(/\.js$/, ".ts");

describe("package exports", () => {
  it("jsr.json exports exactly the subpaths package.json does, each to the source of the same module", () => {
    const npmEntries = Object.entries(pkg.exports).filter(([key]) => key !== "./package.json");
    expect(Object.keys(jsr.exports).sort()).toEqual(npmEntries.map(([key]) => key).sort());
    for (const [key, target] of npmEntries) {
      if (typeof target === "string") throw new Error(`${key}: expected { types, default }`);
      expect(Object.keys(target)[0], `${key}: "types" comes first`).toBe("types");
      expect(jsr.exports[key], key).toBe(sourceOf(target.default));
      expect(sourceOf(target.types.replace(/\.d\.ts$/, ".js")), key).toBe(sourceOf(target.default));
      expect(existsSync(new URL(`../${jsr.exports[key]}`, import.meta.url)), `${key}: ${jsr.exports[key]} exists`).toBe(
        true,
      );
    }
  });

  it("is ESM without side effects, and both manifests carry the same version", () => {
    expect(pkg.type).toBe("module");
    expect(pkg.sideEffects).toBe(false);
    expect(jsr.version).toBe(
      (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version,
    );
  });
});
