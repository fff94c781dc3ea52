#!/usr/bin/env bash
# `npm run bench:http`: builds the benches with tsc, runs the HTTP bench on every runtime (bare and
# guarded side by side), the Workers proxy CPU bench, the Node scale bench (10,000 stalled uploads) and
# timer accuracy under load per runtime, and draws docs/performance.svg from the HTTP figures.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.bench.json
echo '{"type":"module"}' > .bench-out/package.json
node .bench-out/bench/run-http.js "$@"
node .bench-out/bench/render-performance.js
npx tsx bench/run-workers-proxy.ts
bash bench/run-scale.sh
npx tsx bench/run-accuracy-http.ts
