/** Where the repository is, whether a bench runs from its source (tsx) or built into .bench-out/ by tsc. */
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const up = join(dirname(fileURLToPath(import.meta.url)), "../.."); // bench/shared -> the root, or .bench-out
/** The repository's root directory. */
export const ROOT = basename(up) === ".bench-out" ? dirname(up) : up;
