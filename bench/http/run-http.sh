#!/usr/bin/env bash
# `npm run bench:http`: builds the benches with tsc, runs the HTTP bench on every runtime (bare and
# guarded side by side), the Workers proxy CPU bench, the Node scale bench (10,000 stalled uploads) and
# timer accuracy under load per runtime, and draws docs/performance.svg from the HTTP figures.
#
#   bash bench/http/run-http.sh [--quick] [--http-only] [node node-h2 deno bun workers]
# Runtimes named: only those in the HTTP bench. --http-only: the HTTP bench alone (no chart, no
# docs/ written, none of the benches after it).
set -euo pipefail
cd "$(dirname "$0")/../.."
npx tsc -p bench/tsconfig.build.json
echo '{"type":"module"}' > .bench-out/package.json
node .bench-out/bench/http/run-http.js "$@"
for arg in "$@"; do
  if [ "$arg" = "--http-only" ]; then exit 0; fi
done
node .bench-out/bench/http/render-performance.js
npx tsx bench/workers/run-workers-proxy.ts
bash bench/scale/run-scale.sh
npx tsx bench/http/run-accuracy-http.ts
