#!/usr/bin/env python3
"""Tokenisation throughput: logattn (1 and 2 threads) against js-tiktoken under Node.js,
side by side in one run, on the same text (default: tinyshakespeare).

    /usr/bin/python3 bench/compare_tokenizer.py [--data FILE] [--repeat N]
"""
import argparse
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt"))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "logattn"))
    a = ap.parse_args()
    env = dict(os.environ, NODE_PATH=os.path.join(ROOT, "build", "npm", "node_modules"))
    js = json.loads(subprocess.check_output(
        ["node", os.path.join(ROOT, "bench", "tiktoken_throughput.cjs"), a.data, str(a.repeat)],
        env=env, text=True))
    ours = [json.loads(l) for l in subprocess.check_output(
        [a.bin, "bench", "tokenize", "--data", a.data, "--threads", "1", "2",
         "--repeat", str(a.repeat), "--json"], text=True).splitlines()]
    print(f"text: {a.data} ({js['bytes']:,} bytes)")
    print(f"{'tokenizer':<22}{'threads':>8}{'tokens':>10}{'MB/s':>9}{'x js-tiktoken':>15}")
    print(f"{js['tokenizer']:<22}{1:>8}{js['tokens']:>10}{js['mb_per_s']:>9.2f}{1:>15.1f}")
    for r in ours:
        print(f"{'logattn gpt2':<22}{r['threads']:>8}{r['tokens']:>10}{r['mb_per_s']:>9.2f}"
              f"{r['mb_per_s'] / js['mb_per_s']:>15.1f}")
    if any(r["tokens"] != js["tokens"] for r in ours):
        raise SystemExit("token counts differ")


if __name__ == "__main__":
    main()
