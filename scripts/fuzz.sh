#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan; build-fuzz/) and runs each: first
# its regression inputs (tests/fuzz/regressions/<target>/, every crash found so far), then
# fuzzing from its seeds (tests/fuzz/corpus/<target>/) for SECONDS, JOBS targets at a time.
# An input that crashes, leaks, trips a sanitizer, escapes with anything but a clear
# logattn::Error, runs over 1 s (10 s for GPT-2's 1.5 MB files) or uses over 2 GB fails
# the run; its input is kept in build-fuzz/artifacts/<target>/. Prints executions and
# findings per target.
#   bash scripts/fuzz.sh [SECONDS=20] [JOBS=nproc]      (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-20}
JOBS=${2:-$(nproc)}
TARGETS=(safetensors checkpoint model_config resume state tokens tokenizer gpt2_files completion_request
  http_request)
export LOGATTN_GPT2_DIR=${LOGATTN_GPT2_DIR:-$PWD/build/gpt2}
export OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1

CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLOGATTN_FUZZ=ON -DLOGATTN_TESTS=OFF -DLOGATTN_PYTHON=OFF >/dev/null
cmake --build build-fuzz --target fuzz -j"$(nproc)" >/dev/null

run_target() {
  local t=$1 bin=build-fuzz/tests/fuzz/$1_fuzz work=build-fuzz/corpus/$1 art=build-fuzz/artifacts/$1
  mkdir -p "$work" "$art"
  # A hang is an input slower than 1 s; gpt2_files' inputs are GPT-2's files themselves
  # (1.5 MB of JSON and merges, about 1 s to read under the sanitizers), so 10 s there.
  local timeout=1
  [ "$t" = gpt2_files ] && timeout=10
  local flags=(-timeout=$timeout -rss_limit_mb=2048 -artifact_prefix="$art/" -print_final_stats=1)
  if [ -d "tests/fuzz/regressions/$t" ]; then
    "$bin" "${flags[@]}" -runs=0 tests/fuzz/regressions/"$t"/* >"$art/regressions.log" 2>&1 ||
      { echo "$t: a regression input fails again (see $art/regressions.log)"; return 1; }
  fi
  "$bin" "${flags[@]}" -max_total_time="$SECONDS_EACH" "$work" "tests/fuzz/corpus/$t" \
    >"$art/fuzz.log" 2>&1 || { echo "$t: FOUND a failure (see $art/fuzz.log and $art/)"; return 1; }
}

failed=0
pids=()
for t in "${TARGETS[@]}"; do
  run_target "$t" &
  pids+=($!)
  if ((${#pids[@]} >= JOBS)); then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done

printf '%-18s %12s %10s %8s %s\n' target executions exec/s corpus result
total=0
for t in "${TARGETS[@]}"; do
  log=build-fuzz/artifacts/$t/fuzz.log
  runs=$(grep -oP 'stat::number_of_executed_units:\s+\K[0-9]+' "$log" 2>/dev/null || echo 0)
  rate=$(grep -oP 'stat::average_exec_per_sec:\s+\K[0-9]+' "$log" 2>/dev/null || echo 0)
  corpus=$(find "build-fuzz/corpus/$t" -type f | wc -l)
  result=ok
  grep -qE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error|SUMMARY' "$log" 2>/dev/null &&
    result=FAILED
  printf '%-18s %12s %10s %8s %s\n' "$t" "$runs" "$rate" "$corpus" "$result"
  total=$((total + runs))
done
echo "total executions: $total (${SECONDS_EACH} s per target, $JOBS at a time)"
exit $failed
