#!/usr/bin/env bash
# Sets up, builds, and runs logattn's default job (arguments are passed to `logattn`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec ./build/logattn "$@"
