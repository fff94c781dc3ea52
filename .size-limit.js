// Bundle-size budgets, checked by test/bundle-size.test.ts (by hand: `npm run build && npx size-limit`).
// Each entry is what an application importing these names bundles from the built package: esbuild,
// ESM, minified, gzip level 9. SIZE_LIMIT_BUILD points at another build directory (the test's own).
//
// The limits hold today's figures with a few per cent of headroom, so growth is caught. The targets
// are half the weight of the one-file core (10.4 KB and 5.8 KB): 5 KiB for withDeadlines +
// deadlines and 2.5 KiB for guardInboundStream; not reached yet (10.1 KiB and 5.7 KiB after the
// layer split; 10.5 KiB once the edge semantics of issue 15 landed: the handler's own time, nested
// layers joining, framework error answers; 10.7 KiB and 5.9 KiB after the byte-stream guards: +492 B and
// +184 B, the BYOB paths of both guards and the response body's type probe), so they are not the limits.
const build = process.env.SIZE_LIMIT_BUILD ?? "dist";
const esm = (config) => ({ ...config, format: "esm" });

export default [
  {
    name: "withDeadlines + deadlines",
    path: `${build}/src/index.js`,
    import: "{ withDeadlines, deadlines }",
    gzip: true,
    limit: "11.4 KiB",
    modifyEsbuildConfig: esm,
  },
  {
    name: "guardInboundStream",
    path: `${build}/src/index.js`,
    import: "{ guardInboundStream }",
    gzip: true,
    limit: "6.1 KiB",
    modifyEsbuildConfig: esm,
  },
];
