import { defineConfig } from "vitest/config";

/**
 * Tests that open sockets or start runtimes: real servers, raw TCP clients, child processes of Deno,
 * Bun and workerd. They run one file at a time (they measure real timing on a 2-core machine).
 * Everything else is the unit project: no socket (test/support/no-sockets.ts enforces it), files in
 * parallel, `npm run test:unit`.
 */
const SOCKET_TESTS = [
  "test/adapter-*.test.ts",
  "test/conformance.test.ts",
  "test/faults.test.ts",
  "test/honest-peers.test.ts",
  "test/bad-input-http.test.ts",
  "test/guard-fetch-http.test.ts",
  "test/hono-middleware.test.ts",
  "test/package-tarball.test.ts",
  "test/fresh-clone.test.ts",
  "test/demo-bare.test.ts",
  "test/frameworks.test.ts",
  "test/h2-abuse.test.ts",
];

/**
 * Unit tests that read process-wide state (the debug counters, the diagnostics channels' subscribers): they
 * need a module graph of their own, which the other unit files share within a worker.
 */
const PROCESS_WIDE_TESTS = [
  "test/core-model.property.test.ts",
  "test/with-deadlines.test.ts",
  "test/observability.test.ts",
];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    reporters: ["default", "./test/support/ci-summary-reporter.ts"],
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: [...SOCKET_TESTS, ...PROCESS_WIDE_TESTS],
          setupFiles: ["./test/support/no-sockets.ts"],
          // One module graph per worker instead of one per file: 17 s -> 11-13 s for the unit tests on
          // this 2-core machine. These files keep no state between them (each makes its own clock).
          isolate: false,
        },
      },
      {
        extends: true,
        test: {
          name: "unit-isolated",
          include: PROCESS_WIDE_TESTS,
          setupFiles: ["./test/support/no-sockets.ts"],
        },
      },
      {
        extends: true,
        test: { name: "sockets", include: SOCKET_TESTS, fileParallelism: false },
      },
    ],
  },
});
