#!/usr/bin/env bash
# `npm run demo`: install what is missing, then run the demo stack (scripts/demo.ts) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# exec: signals (Ctrl-C, SIGTERM) go straight to the demo, which stops its parts in order.
exec npx tsx scripts/demo.ts
