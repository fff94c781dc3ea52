#!/usr/bin/env bash
# `npm run attack`: slowhttptest (slow body, slow read, slowloris) against the demo on every runtime,
# bare and guarded, while an honest client keeps making requests; prints `figure attack.…` lines and
# a table (bench/attack/run-attack.ts). Loopback only; about 8 minutes (--manual: about 4 a runtime); every
# process it starts is killed on the way out. Arguments pass through: e.g. `npm run attack -- node slowloris
# --seconds 20`, `npm run attack -- bun --manual`.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v slowhttptest >/dev/null 2>&1; then
  echo "# installing slowhttptest (Debian/Ubuntu package)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get install -y slowhttptest >/dev/null || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y slowhttptest >/dev/null; }
fi
if [ ! -r /proc/net/tcp ]; then
  echo "npm run attack: needs Linux (/proc/net/tcp is how the server's side of each connection is watched)" >&2
  exit 1
fi

# Up to 8,000 attack connections (--manual), the servers' and the honest client's: raise the soft limit to the
# hard one (the servers and slowhttptest inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 4096 2>/dev/null || true

exec npx tsx bench/attack/run-attack.ts "$@"
