#!/usr/bin/env bash
# The HTTP/2 bench on Node (bench/h2/run-h2.ts): 1,000 stalled streams over 10 h2c connections, a
# slow-read client, rapid reset; bare vs guarded, server in its own process. Builds with tsc like
# bench/scale/run-scale.sh. Usage: bash bench/h2/run-h2.sh [--n N] [--connections C] [--idle MS] [--watch MS]
set -euo pipefail
cd "$(dirname "$0")/../.."
npx tsc -p bench/tsconfig.build.json
echo '{"type":"module"}' > .bench-out/package.json
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec node .bench-out/bench/h2/run-h2.js "$@"
