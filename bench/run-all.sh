#!/usr/bin/env bash
# `npm run bench`: builds the benches with tsc (no tsx: its per-closure name helper distorts
# per-request figures) and runs the in-process ones in turn. Each prints `ratio`/`figure` lines.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.bench.json
echo '{"type":"module"}' > .bench-out/package.json
node .bench-out/bench/run-core.js "$@"
node .bench-out/bench/run-handler.js "$@"
node .bench-out/bench/run-accuracy.js "$@"
node .bench-out/bench/run-scheduler.js
