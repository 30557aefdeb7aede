#!/usr/bin/env bash
# Sets up, builds and runs every test: the Release build (with the Python and PyTorch
# tests), then the same C++ tests under AddressSanitizer and UndefinedBehaviorSanitizer.
# Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
(cd build && ctest --output-on-failure -j2)

echo "== AddressSanitizer + UndefinedBehaviorSanitizer =="
BUILD_DIR=build-sanitize BUILD_TYPE=RelWithDebInfo \
  CMAKE_ARGS="-DLOGATTN_SANITIZE=ON -DLOGATTN_PYTHON=OFF" source scripts/setup.sh
(cd build-sanitize && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j2)
echo "logattn: all tests passed"
