import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    // One file at a time: the conformance suite measures real timing on a 2-core machine.
    fileParallelism: false,
    reporters: ["default", "./test/support/ci-summary-reporter.ts"],
  },
});
