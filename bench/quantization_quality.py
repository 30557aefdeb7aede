#!/usr/bin/env python3
"""What quantization costs in quality and what it saves in file size, side by side in one run:
a float32 checkpoint, its bf16 and q8_0 quantizations (`logattn quantize`), each evaluated on
held-out tokens (`logattn eval`: mean cross-entropy) and generating 256 tokens greedily from
the same prompt (`logattn generate --temperature 0`), compared with float32's text.

Run:  /usr/bin/python3 bench/quantization_quality.py --model runs/x/model.safetensors \\
          --tokens runs/x/data/val.bin --prompt "ROMEO:"
      /usr/bin/python3 bench/quantization_quality.py --recipe small   [--json]
(--recipe trains the model first, with a fixed number of steps: `small` on
 data/tinyshakespeare.txt as the training recipe does, `paper` on the default corpus.)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


# The models of docs/quantization.md, trained here with a fixed number of steps.
RECIPES = {
    "small": {"train": ["--data", "data/tinyshakespeare.txt", "--steps", "800", "--batch", "8",
                        "--context", "256", "--lr", "3e-3", "--min-lr", "1e-4", "--warmup", "100",
                        "--eval-every", "800", "--eval-batches", "16"],
              "prompt": "ROMEO:", "context": 256, "eval_tokens": 0},
    "paper": {"train": ["--preset", "paper", "--steps", "40", "--batch", "2", "--context", "256",
                        "--warmup", "5", "--eval-every", "40", "--eval-batches", "2"],
              "prompt": "The", "context": 256, "eval_tokens": 8192},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", help="a float32 checkpoint (or --recipe)")
    ap.add_argument("--tokens", help="held-out tokens (.bin)")
    ap.add_argument("--recipe", choices=sorted(RECIPES), help="train the model first")
    ap.add_argument("--prompt", default="\n")
    ap.add_argument("--context", type=int, default=0)
    ap.add_argument("--eval-tokens", type=int, default=0, help="the first N held-out tokens")
    ap.add_argument("-n", "--generate", type=int, default=256)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    logattn = os.path.join(a.build, "logattn")
    if not a.recipe and not (a.model and a.tokens):
        ap.error("give --model and --tokens, or --recipe")

    def run(*args):
        r = subprocess.run([logattn, *args], capture_output=True, encoding="latin-1")
        if r.returncode != 0:
            sys.exit(f"logattn {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    rows = []
    with tempfile.TemporaryDirectory() as d:
        if a.recipe:
            r = RECIPES[a.recipe]
            run("train", *r["train"], "--out", os.path.join(d, "run"))
            a.model = os.path.join(d, "run", "model.safetensors")
            a.tokens = os.path.join(d, "run", "data", "val.bin")
            a.prompt, a.context, a.eval_tokens = r["prompt"], r["context"], r["eval_tokens"]
        if a.eval_tokens:  # uint16 tokens: the first N
            with open(a.tokens, "rb") as f:
                head = f.read(2 * a.eval_tokens)
            a.tokens = os.path.join(d, "eval.bin")
            with open(a.tokens, "wb") as f:
                f.write(head)
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

    def same_chars(text):
        same = 0
        while same < min(len(text), len(f32_text)) and text[same] == f32_text[same]:
            same += 1
        return same
    if a.json:
        print(json.dumps({"recipe": a.recipe, "model": a.model if not a.recipe else None,
                          "train": RECIPES[a.recipe]["train"] if a.recipe else None,
                          "eval_tokens": a.eval_tokens, "generate": a.generate,
                          "rows": [{"type": t, "file_mb": mb, "loss": loss,
                                    "same_text": text == f32_text,
                                    "same_chars": same_chars(text), "chars": len(f32_text)}
                                   for t, mb, loss, text in rows]}))
        return
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
