#!/usr/bin/env python3
"""Generation, side by side in one run: `logattn generate` against the reference's way of
generating in PyTorch (one token at a time, carrying every layer's log-space state H_S, H_Z
and EmbedPosition's last h between calls, as its `using_prev_context=True` does), same model
(`small` preset, random weights written as a logattn checkpoint), same prompt, greedy;
PyTorch on 1 and on 2 threads, the faster of the two being the baseline; logattn on both
cores; rounds alternate the measurements, medians reported. Also reports how many greedy
tokens the two agree on.

Run:  PYTHONPATH=build/python /usr/bin/python3 bench/compare_generation.py [--tokens 256]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from logattn.torch_model import GenerativeLanguageModel, save_checkpoint

SMALL = {"vocab": 256, "d_emb": 256, "n_layers": 4, "n_heads": 8, "d_key": 32, "d_val": 32,
         "context": 256}


class ReferenceGenerator:
    """The reference's recurrent generation: constant-size log-space states per layer."""

    def __init__(self, model):
        self.m = model
        self.h = None
        self.states = [None] * len(model.layers)

    @torch.no_grad()
    def step(self, token):
        m = self.m
        x = m.embed(torch.tensor([token]))                           # [1, E]
        u, l = m.embed_pos.dense(x).split(m.embed_pos.d_emb, dim=-1)
        prev = torch.zeros_like(l) if self.h is None else self.h
        self.h = torch.logaddexp(F.logsigmoid(u) + prev, l)
        x = x + self.h
        for i, layer in enumerate(m.layers):
            p = layer.feedforward1(x).view(layer.n_heads, -1)            # [H, 2dk + dv]
            q, k, lv = p.split([layer.d_key, layer.d_key, layer.d_val], dim=-1)
            hs, hz = k.unsqueeze(-1) + lv.unsqueeze(-2), k             # [H, dk, dv], [H, dk]
            if self.states[i] is not None:
                hs = torch.logaddexp(self.states[i][0], hs)
                hz = torch.logaddexp(self.states[i][1], hz)
            self.states[i] = (hs, hz)
            y = (torch.logsumexp(q.unsqueeze(-1) + hs, dim=-2)
                 - torch.logsumexp(q + hz, dim=-1, keepdim=True))      # [H, dv]
            x = x + layer.feedforward2(y.reshape(1, -1))
        return (m.lnorm(x) @ m.embed.weight.T)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = GenerativeLanguageModel(**SMALL).eval()
    with tempfile.TemporaryDirectory() as d:
        ck = os.path.join(d, "model.safetensors")
        save_checkpoint(model, SMALL, ck)
        prompt = bytes((i * 37 + 11) % 94 + 32 for i in range(a.prompt_tokens)).decode("ascii")

        out = subprocess.run([os.path.join(a.build, "logattn"), "generate", "--model", ck,
                              "--prompt", prompt, "-n", str(a.tokens), "--temperature", "0"],
                             capture_output=True, check=True)
        ours = list(out.stdout[len(prompt):len(prompt) + a.tokens])
    # Rounds that alternate the three measurements, so that a slow spell of this shared
    # machine falls on all of them; medians over the rounds.
    def logattn_time():
        # Measured inside the process (same preset; speed does not depend on the weights).
        bench = subprocess.run([os.path.join(a.build, "logattn"), "bench", "generate",
                                "--context", str(a.prompt_tokens), "--tokens", str(a.tokens),
                                "--json"], capture_output=True, text=True, check=True)
        return json.loads(bench.stdout)[0]["ms_per_token"] / 1e3

    def torch_time(threads):
        torch.set_num_threads(threads)
        gen = ReferenceGenerator(model)
        for ch in prompt.encode()[:-1]:
            gen.step(ch)
        logits = gen.step(prompt.encode()[-1])
        ref = []
        t0 = time.perf_counter()
        for _ in range(a.tokens):
            tok = int(logits.argmax())
            ref.append(tok)
            logits = gen.step(tok)
        return (time.perf_counter() - t0) / a.tokens, ref

    rows = []  # (logattn, PyTorch 1 thread, PyTorch 2 threads) per round
    for _ in range(a.rounds):
        t1, ref = torch_time(1)
        ours_s = logattn_time()
        t2, _ = torch_time(2)
        rows.append((ours_s, t1, t2))
    med = [statistics.median(r[i] for r in rows) for i in range(3)]
    best = 1 if med[1] <= med[2] else 2
    ratios = [r[best] / r[0] for r in rows]
    agree = next((i for i, (x, y) in enumerate(zip(ours, ref)) if x != y), len(ref))
    if a.json:
        print(json.dumps({"prompt_tokens": a.prompt_tokens, "tokens": a.tokens,
                          "rounds": a.rounds, "logattn_ms": med[0] * 1e3,
                          "torch_1_thread_ms": med[1] * 1e3, "torch_2_threads_ms": med[2] * 1e3,
                          "best_threads": best, "ratio": med[best] / med[0],
                          "ratio_min": min(ratios), "ratio_max": max(ratios),
                          "greedy_tokens_agree": agree}))
        return 0
    print(f"small preset, prompt {a.prompt_tokens} tokens, {a.tokens} greedy tokens, "
          f"median of {a.rounds} alternating rounds")
    print(f"  logattn generate:                        {med[0] * 1e3:8.3f} ms/token "
          f"({1 / med[0]:8.0f} tokens/s; logattn bench generate)")
    for threads in (1, 2):
        t = med[threads]
        print(f"  PyTorch reference method, {threads} thread(s): {t * 1e3:8.3f} ms/token "
              f"({1 / t:8.0f} tokens/s)")
    print(f"  logattn: {med[best] / med[0]:.1f}x the tokens/s of PyTorch's faster setting "
          f"({best} thread(s)); per round {min(ratios):.1f}x-{max(ratios):.1f}x; greedy tokens "
          f"identical for the first {agree} of {a.tokens}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
