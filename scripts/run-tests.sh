#!/usr/bin/env bash
# Sets up, builds and runs every test: the Release build (with the Python and PyTorch
# tests), then the same C++ tests under AddressSanitizer and UndefinedBehaviorSanitizer,
# then every fuzz target on its regression inputs and for a short bounded time
# (LOGATTN_FUZZ_SECONDS per target, default 15; 0 skips the fuzzing).
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

FUZZ_SECONDS=${LOGATTN_FUZZ_SECONDS:-15}
if [ "$FUZZ_SECONDS" != 0 ]; then
  echo "== Fuzzing (libFuzzer, ASan + UBSan): ${FUZZ_SECONDS} s per target =="
  bash scripts/fuzz.sh "$FUZZ_SECONDS"
fi
echo "logattn: all tests passed"
