// Bundle-size budgets, checked by test/bundle-size.test.ts (by hand: `npm run build && npx size-limit`).
// Each entry is what an application importing these names bundles from the built package: esbuild,
// ESM, minified, gzip level 9. SIZE_LIMIT_BUILD points at another build directory (the test's own).
//
// The limits hold today's figures with about 2% of headroom, so growth is caught. The targets are half
// the weight of the one-file core (10.4 KB and 5.8 KB): 5 KiB for withDeadlines + deadlines and 2.5 KiB
// for guardInboundStream; not reached, so they are not the limits. History of the figures (B gzipped):
//   one-file core                                          10.4 KB      5.8 KB
//   layer split                                            10.1 KiB     5.7 KiB
//   edge semantics (issue 15: handler's own time, joins)   10.5 KiB     -
//   byte-stream guards (BYOB paths, the body type probe)   11,435 B     6,078 B
//   #private engine and HTTP state (a minifier shortens    10,575 B     5,550 B
//     them), lighter module tops, tighter tracker (-860 B, -528 B)
//   engine trims: fixed figures in an import-free module   10,567 B     5,447 B
//     (inlined by esbuild), fewer duplicate paths in the
//     tracker, limits, clock checks, inbound guard (-91 B,
//     -99 B from 10,658 B and 5,546 B)
//   HTTP trims: the exchange makes its firing and peek   10,504 B     5,447 B
//     itself, one try for a nested layer's join, fewer
//     duplicate checks (-63 B); outbound slicing only for
//     a slow reader (+0 B)
//   stall forgiveness (a 1 s heartbeat while the next    10,626 B     5,525 B
//     deadline is under an hour away; a late wake-up is
//     not charged to peers, the handler deadline counts
//     it as client time), less two tracker methods moved
//     out to their only callers, allStalledMs (+122 B,
//     +78 B; limits 10.55 and 5.5 KiB)
//   exchange.ts split (516 -> 443 lines): the response     10,723 B     5,511 B
//     body's peek and guard in response-body.ts, the
//     request copy whole in request-copy.ts, the handler's
//     error in handler-deadline.ts (+104 B from 10,619 B,
//     the calls between modules; the guard alone unchanged)
//   a wait's due time written out in startWaiting     10,751 B     5,538 B
//     (per-chunk overhead about 90 -> 40-80 ns; +28 B,
//     +27 B)
//   the exchange awaits the peek itself (one promise     10,745 B     5,538 B
//     less per response with a body; -6 B)
//   exchange.ts at 403 lines: its signal and the watch    10,790 B     5,538 B
//     on the client in exchange-signal.ts, made only when
//     used (+45 B, one class more)
// What remains is mostly distinct logic that gzip cannot fold: the tracker (about a third of
// guardInboundStream), TimeoutError's checks and message, the scheduler, the clocks, limit parsing.
// bench/size/run-size-ablation.ts weighs each feature: with every message, every argument check and
// every optional feature taken out together, the bundles still weigh 5,991 B and 2,850 B, over both
// targets (docs/performance.md, "The bundles' weight, feature by feature").
const build = process.env.SIZE_LIMIT_BUILD ?? "dist";
const esm = (config) => ({ ...config, format: "esm" });

export default [
  {
    name: "withDeadlines + deadlines",
    path: `${build}/src/index.js`,
    import: "{ withDeadlines, deadlines }",
    gzip: true,
    limit: "10.55 KiB",
    modifyEsbuildConfig: esm,
  },
  {
    name: "guardInboundStream",
    path: `${build}/src/index.js`,
    import: "{ guardInboundStream }",
    gzip: true,
    limit: "5.5 KiB",
    modifyEsbuildConfig: esm,
  },
];
