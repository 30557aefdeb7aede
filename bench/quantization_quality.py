#!/usr/bin/env python3
"""What quantization costs in quality and what it saves in file size, side by side in one run:
a float32 checkpoint, its bf16 and q8_0 quantizations (`logattn quantize`), each evaluated on
held-out tokens (`logattn eval`: mean cross-entropy) and generating 256 tokens greedily from
the same prompt (`logattn generate --temperature 0`), compared with float32's text.

Run:  /usr/bin/python3 bench/quantization_quality.py --model runs/x/model.safetensors \\
          --tokens runs/x/data/val.bin --prompt "ROMEO:"
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="held-out tokens (.bin)")
    ap.add_argument("--prompt", default="\n")
    ap.add_argument("--context", type=int, default=0)
    ap.add_argument("-n", "--generate", type=int, default=256)
    a = ap.parse_args()
    logattn = os.path.join(a.build, "logattn")

    def run(*args):
        r = subprocess.run([logattn, *args], capture_output=True, encoding="latin-1")
        if r.returncode != 0:
            sys.exit(f"logattn {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    rows = []
    with tempfile.TemporaryDirectory() as d:
        for t in ("f32", "bf16", "q8_0"):
            path = a.model
            if t != "f32":
                path = os.path.join(d, f"model-{t}.safetensors")
                run("quantize", "--model", a.model, "--out", path, "--type", t)
            ev = ["eval", "--model", path, "--tokens", a.tokens, "--json"]
            if a.context:
                ev += ["--context", str(a.context)]
            loss = json.loads(run(*ev))["loss"]
            text = run("generate", "--model", path, "--prompt", a.prompt, "-n", str(a.generate),
                       "--temperature", "0")
            rows.append((t, os.path.getsize(path) / 1e6, loss, text))
    f32_loss, f32_text = rows[0][2], rows[0][3]
    print(f"{a.model}: cross-entropy on {a.tokens}; greedy text of {a.generate} tokens after "
          f"{a.prompt!r}")
    print(f"{'weights':>8} {'file MB':>9} {'nats/token':>11} {'vs f32':>8} {'same text as f32':>18}")
    for t, mb, loss, text in rows:
        same = 0
        while same < min(len(text), len(f32_text)) and text[same] == f32_text[same]:
            same += 1
        share = "all" if text == f32_text else f"first {same} of {len(f32_text)} chars"
        print(f"{t:>8} {mb:>9.1f} {loss:>11.6f} {100 * (loss - f32_loss) / f32_loss:>+7.3f}% "
              f"{share:>18}")


if __name__ == "__main__":
    main()
