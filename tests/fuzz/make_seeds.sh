#!/usr/bin/env bash
# Writes the seed corpora under tests/fuzz/corpus/<target>/ with the logattn executable
# (default build/logattn): small valid files of every kind the fuzz targets read, for the
# micro model of fuzz_util.h, so that mutations start past the first checks.
#   bash tests/fuzz/make_seeds.sh [path/to/logattn]
set -euo pipefail
cd "$(dirname "$0")"
BIN=$(realpath "${1:-../../build/logattn}")
C=corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$C" && mkdir -p "$C"/{safetensors,checkpoint,model_config,resume,state,tokens,tokenizer,gpt2_files,completion_request,http_request}

micro='{"vocab": 256, "d_emb": 8, "n_layers": 1, "n_heads": 2, "d_key": 2, "d_val": 2, "context": 8}'
echo "$micro" > "$C/model_config/micro.json"
echo '{"vocab_sz": 50304, "d_emb": 768, "n_layers": 24, "n_heads": 24, "d_key": 32, "d_val": 32, "context": 1024}' \
  > "$C/model_config/reference.json"
echo '{"vocab": 256, "d_emb": 32, "n_layers": 2, "n_heads": 4, "d_key": 8, "d_val": 8, "context": 32, "attention": "softmax"}' \
  > "$C/model_config/twin.json"

# Tokens: bytes of a text as uint16.
/usr/bin/python3 -c 'import sys; t = b"To be, or not to be, that is the question.\n" * 3; sys.stdout.buffer.write(b"".join(bytes([c, 0]) for c in t))' \
  > "$tmp/t.bin"
cp "$tmp/t.bin" "$C/tokens/text.bin"
printf '\x01\x00\xff\xff\x00' > "$C/tokens/odd.bin"

# A two-step run: checkpoint, resume file and log, with the options resume_fuzz.cc expects.
echo "$micro" > "$tmp/micro.json"
"$BIN" train --model-config "$tmp/micro.json" --tokenizer bytes --tokens "$tmp/t.bin" \
  --out "$tmp/run" --steps 2 --batch 2 --context 8 --warmup 0 --eval-every 1 \
  --eval-batches 1 >/dev/null 2>&1
cp "$tmp/run/model.safetensors" "$C/checkpoint/micro.safetensors"
cp "$tmp/run/model.safetensors" "$C/safetensors/checkpoint.safetensors"
cp "$tmp/run/resume.safetensors" "$C/resume/resume.safetensors"
cp "$tmp/run/log.jsonl" "$C/resume/log.jsonl"
"$BIN" generate --model "$tmp/run/model.safetensors" --prompt "To be" -n 2 \
  --save-state "$C/state/state.safetensors" >/dev/null 2>&1

# Quantized checkpoints (q8_0 needs rows of whole blocks of 32).
blocks='{"vocab": 256, "d_emb": 32, "n_layers": 1, "n_heads": 2, "d_key": 4, "d_val": 16, "context": 8}'
echo "$blocks" > "$tmp/blocks.json"
"$BIN" train --model-config "$tmp/blocks.json" --tokenizer bytes --tokens "$tmp/t.bin" \
  --out "$tmp/blocks" --steps 1 --batch 2 --context 8 --warmup 0 --eval-every 1 \
  --eval-batches 1 >/dev/null 2>&1
for t in q8_0 bf16; do
  "$BIN" quantize --model "$tmp/blocks/model.safetensors" --out "$C/checkpoint/$t.safetensors" \
    --type "$t" >/dev/null
done

# safetensors of other dtypes and a metadata block.
/usr/bin/python3 - "$C/safetensors/dtypes.safetensors" <<'PY'
import json, struct, sys
import numpy as np
arrays = {"a": np.arange(6, dtype=np.float16).reshape(2, 3), "b": np.ones(2, np.float64),
          "c": np.zeros((1, 2), np.float32)}
header, data = {"__metadata__": {"format": "x"}}, b""
for k, a in arrays.items():
    raw = a.tobytes()
    header[k] = {"dtype": {"float16": "F16", "float64": "F64", "float32": "F32"}[a.dtype.name],
                 "shape": list(a.shape), "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
h = json.dumps(header).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
PY

# Completion requests' bodies (logattn serve).
# The first byte picks the API: even (p) completions, odd (c) chat completions.
R="$C/completion_request"
printf 'p{"prompt": "ROMEO:", "max_tokens": 16, "temperature": 0}' > "$R/plain.json"
printf 'p{"model": "m", "prompt": ["Hello"], "max_tokens": 8, "temperature": 0.8, "top_p": 0.9, "top_k": 40, "seed": 7, "stop": ["\\n", "."], "stream": true, "n": 2, "user": "u", "logprobs": null, "echo": false}' > "$R/full.json"
printf 'p{"conversation": "conv-1a2b", "prompt": " next", "max_tokens": 4}' > "$R/conversation.json"
printf 'p{"prompt": "x", "max_tokens": 1e3, "temperature": -1}' > "$R/bad.json"
printf 'c{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "ROMEO:"}]}], "max_completion_tokens": 8, "stream": true, "stream_options": {"include_usage": true}, "stop": ["\\n"]}' > "$R/chat.json"

# Whole HTTP requests (logattn serve's connections): sized, chunked, pipelined, bad.
H="$C/http_request"
body='{"prompt": "ROMEO:", "max_tokens": 4, "temperature": 0}'
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
  "${#body}" "$body" > "$H/sized.http"
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n' \
  "${#body}" "$body" > "$H/chunked.http"
stream='{"prompt": "To", "max_tokens": 3, "stream": true, "n": 2}'
printf 'GET /health HTTP/1.1\r\nHost: x\r\n\r\nPOST /v1/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%sGET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n' \
  "${#stream}" "$stream" > "$H/pipelined.http"
printf 'GET /v1/conversations/x HTTP/1.1\r\nHost: x\r\n\r\nDELETE /v1/conversations/x HTTP/1.1\r\n\r\nPOST /v1/conversations HTTP/1.1\r\nContent-Length: 0\r\n\r\n' \
  > "$H/conversations.http"
chat='{"messages": [{"role": "user", "content": "To"}], "max_tokens": 3, "stream": true, "stream_options": {"include_usage": true}}'
printf 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s' "${#chat}" "$chat" > "$H/chat.http"
printf 'POST /v1/completions HTTP/1.1\r\nContent-Length: 99999999999\r\nX: y\r\n\r\n{' > "$H/bad.http"

# Tokenizer texts: words, numbers, contractions, spaces, newlines, non-ASCII, bad UTF-8.
printf "Hello world! It's 2024, isn't it?\n\n  Spaces   and\ttabs." > "$C/tokenizer/english.txt"
printf 'Ünïcödé — 日本語のテキスト 🤖🎉 and more' > "$C/tokenizer/unicode.txt"
printf '<|endoftext|>\xff\xfe\xc3( bad utf-8 \x80' > "$C/tokenizer/bytes.txt"

# GPT-2 files: raw (byte 0 even: 4-byte length of encoder.json, then both) and edits of
# the real files (byte 0 odd: which file, insert or replace; 4-byte offset; the bytes).
/usr/bin/python3 - "$C/gpt2_files" <<'PY'
import struct, sys
d = sys.argv[1]
enc, bpe = b'{"a": 0, "b": 1}', b"#version: 0.2\na b\n"
open(f"{d}/raw", "wb").write(b"\x00" + struct.pack("<I", len(enc)) + enc + bpe)
open(f"{d}/encoder_edit", "wb").write(b"\x01" + struct.pack("<I", 1000) + b'"\\u0120the": 262')
open(f"{d}/merges_insert", "wb").write(b"\x07" + struct.pack("<I", 40) + b"a b\n")
PY
echo "seeds written to tests/fuzz/$C"
