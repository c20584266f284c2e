#!/usr/bin/env bash
# The one test command: installs what is missing, builds, and runs every test against real parts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node scripts/run-tests.mjs "$@"
