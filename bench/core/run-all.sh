#!/usr/bin/env bash
# `npm run bench`: builds the benches with tsc (no tsx: its per-closure name helper distorts
# per-request figures) and runs the in-process ones in turn. Each prints `ratio`/`figure` lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
npx tsc -p bench/tsconfig.build.json
echo '{"type":"module"}' > .bench-out/package.json
node .bench-out/bench/core/run-core.js "$@"
node .bench-out/bench/core/run-handler.js "$@"
node .bench-out/bench/core/run-accuracy.js "$@"
node .bench-out/bench/core/run-scheduler.js
