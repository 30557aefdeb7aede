#!/usr/bin/env python3
"""Time to first token with exact prefix reuse on and off: two `logattn serve` processes of one
model side by side (--prefix-cache-mb 0 and the default), each asked, in alternating rounds,
for one token after a long shared system prompt and a short question that changes every
request; prints the median seconds of each, their ratio, the memory one kept prefix holds
beside a key/value cache of the same model at the same length, and each server's /metrics
counters for the prefix cache. The answers of the two servers are compared (they must be
equal, log-probabilities included).

A request of one token (not streamed) is timed whole: reading the prompt, sampling the token
and reading it.

Run:  /usr/bin/python3 bench/serve_prefix.py --preset small   [--system-tokens 4000]
      /usr/bin/python3 bench/serve_prefix.py --preset paper   [--rounds 5] [--json]
(a checkpoint of the preset with random weights is made with `logattn train --steps 1`;
 --model uses a checkpoint instead.)
"""
import argparse
import json
import os
import random
import re
import statistics
import struct
import subprocess
import tempfile
import time
import urllib.request


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def metrics(base):
    with urllib.request.urlopen(base + "/metrics", timeout=60) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^(logattn_\w+) (\S+)$", text, re.M)}


def random_checkpoint(exe, preset, folder):
    """A checkpoint of the preset with random weights (`logattn train --steps 1`)."""
    run = os.path.join(folder, "run")
    subprocess.run([exe, "train", "--preset", preset, "--steps", "1", "--batch", "1",
                    "--context", "64", "--eval-every", "1", "--eval-batches", "1",
                    "--out", run], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return os.path.join(run, "model.safetensors")


def checkpoint_config(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["config"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--preset", default="small", choices=["small", "paper"])
    ap.add_argument("--model", help="a checkpoint instead of the preset's random weights")
    ap.add_argument("--system-tokens", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    exe = os.path.join(a.build, "logattn")
    tmp = tempfile.mkdtemp(prefix="logattn-prefix-")
    model = a.model or random_checkpoint(exe, a.preset, tmp)
    cfg = checkpoint_config(model)
    servers, bases = [], []
    for mb in ("0", None):
        cmd = [exe, "serve", "--model", model, "--port", "0"]
        if mb is not None:
            cmd += ["--prefix-cache-mb", mb]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        servers.append(p)
        bases.append(re.search(r"(http://\S+)", p.stdout.readline()).group(1))
    try:
        # Words, so that GPT-2's tokenizer makes about one token of each; bytes make ~5.
        rng = random.Random(1)
        words = ["the", "king", "of", "rome", "and", "his", "fair", "daughter", "went",
                 "to", "sea", "with", "a", "ship", "full", "gold"]
        per_word = 1 if cfg["vocab"] > 256 else 4.6
        system = " ".join(rng.choice(words) for _ in range(int(a.system_tokens / per_word)))

        def ask(base, i):
            body = {"prompt": system + f"\nQuestion {i}: where did they go?\nAnswer:",
                    "max_tokens": 1, "temperature": 0, "logprobs": 5}
            t0 = time.perf_counter()
            out = post(base + "/v1/completions", body)
            return time.perf_counter() - t0, out

        # Two warm-up requests each: the second finds where prompts branch and keeps it.
        for i in range(2):
            for base in bases:
                ask(base, 1000 + i)
        times = [[], []]
        prompt_tokens = 0
        for r in range(a.rounds):
            outs = []
            for k in (r % 2, 1 - r % 2):  # alternating which goes first
                t, out = ask(bases[k], r)
                times[k].append(t)
                outs.append((k, out))
            outs.sort(key=lambda x: x[0])
            a0, a1 = outs[0][1]["choices"][0], outs[1][1]["choices"][0]
            if (a0["text"], a0["logprobs"]) != (a1["text"], a1["logprobs"]):
                raise SystemExit(f"round {r}: the answers differ with reuse on and off")
            prompt_tokens = outs[0][1]["usage"]["prompt_tokens"]
        off, on = statistics.median(times[0]), statistics.median(times[1])
        m_on = metrics(bases[1])
        L, H, dk, dv = cfg["n_layers"], cfg["n_heads"], cfg["d_key"], cfg["d_val"]
        kv_bytes = prompt_tokens * L * H * (dk + dv) * 4
        entry = m_on["logattn_prefix_cache_bytes"] / max(1, m_on["logattn_prefix_cache_entries"])
        if a.json:
            print(json.dumps({"preset": a.preset if not a.model else model,
                              "prompt_tokens": prompt_tokens, "rounds": a.rounds,
                              "off_ms": off * 1e3, "on_ms": on * 1e3,
                              "kept_prefix_bytes": entry, "kv_cache_bytes": kv_bytes,
                              "hits": m_on["logattn_prefix_hits_total"],
                              "answers_equal": True}))
            return
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                    if l.startswith("model name")), "?")
        print(f"logattn bench serve_prefix: {a.preset if not a.model else model}, "
              f"{prompt_tokens} prompt tokens, {a.rounds} rounds, CPU {cpu}, "
              f"{os.cpu_count()} cores")
        print(f"time to first token, reuse off: {off * 1e3:9.1f} ms (median)")
        print(f"time to first token, reuse on:  {on * 1e3:9.1f} ms (median)")
        print(f"faster with reuse:              {off / on:9.1f}x")
        print(f"one kept prefix:                {entry / 1e6:9.3f} MB (state, logits, tokens)")
        print(f"a float32 key/value cache:      {kv_bytes / 1e6:9.3f} MB at {prompt_tokens} "
              f"tokens ({L} layers x {H} heads x (d_key {dk} + d_val {dv}))")
        for name in ("lookups_total", "hits_total"):
            print(f"logattn_prefix_{name}: {m_on['logattn_prefix_' + name]:.0f}")
        print(f"prompt tokens read / reused: {m_on['logattn_prompt_tokens_read_total']:.0f} / "
              f"{m_on['logattn_prompt_tokens_reused_total']:.0f}")
        print("answers with reuse on and off: equal (text and log-probabilities)")
    finally:
        for p in servers:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
