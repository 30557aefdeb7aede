#!/usr/bin/env python3
"""Training throughput and peak memory, side by side in one run, alternating rounds:
logattn's C++ model (`logattn bench train`) against the same model in PyTorch
(logattn.torch_model) with the reference formulation of the attention and with logattn's
operator (kernel="logattn"), same configuration, same 2 threads; the median of the rounds.

Run:  PYTHONPATH=build/python /usr/bin/python3 bench/compare_training.py [--preset small]
"""
import argparse
import json
import os
import subprocess
import sys
import textwrap

TORCH_CHILD = textwrap.dedent(r"""
    import json, resource, sys, time, torch
    from logattn.torch_model import GenerativeLanguageModel
    torch.set_num_threads(2)
    cfg = json.loads(sys.argv[1]); B, T, steps = map(int, sys.argv[2:5])
    torch.manual_seed(0)
    model = GenerativeLanguageModel(**cfg, kernel=sys.argv[5])
    opt = torch.optim.AdamW(model.param_groups(0.1), lr=1e-4, betas=(0.9, 0.95))
    x = torch.randint(cfg["vocab"], (B, T)); y = torch.randint(cfg["vocab"], (B, T))
    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    step()
    t0 = time.perf_counter()
    for _ in range(steps): step()
    sec = (time.perf_counter() - t0) / steps
    print(json.dumps({"seconds_per_step": sec, "tokens_per_s": B * T / sec,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")

PRESETS = {
    "small": {"vocab": 256, "d_emb": 256, "n_layers": 4, "n_heads": 8, "d_key": 32, "d_val": 32},
    "paper": {"vocab": 50304, "d_emb": 768, "n_layers": 24, "n_heads": 24, "d_key": 32, "d_val": 32},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.path.join(a.build, "python"))

    def logattn_binary():
        return json.loads(subprocess.run(
            [os.path.join(a.build, "logattn"), "bench", "train", "--preset", a.preset, "--batch",
             str(a.batch), "--context", str(a.context), "--steps", str(a.steps), "--json"],
            capture_output=True, text=True, check=True).stdout)

    def torch_child(kernel):
        out = subprocess.run([sys.executable, "-c", TORCH_CHILD, json.dumps(PRESETS[a.preset]),
                              str(a.batch), str(a.context), str(a.steps), kernel],
                             capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise SystemExit(f"PyTorch ({kernel}) failed: " + out.stderr.strip().splitlines()[-1])
        return json.loads(out.stdout)

    runs = {"logattn": logattn_binary, "PyTorch + op": lambda: torch_child("logattn"),
            "PyTorch": lambda: torch_child("reference")}
    results = {name: [] for name in runs}
    for _ in range(a.rounds):
        for name, run in runs.items():
            results[name].append(run())
    median = {name: sorted(rs, key=lambda r: r["seconds_per_step"])[len(rs) // 2]
              for name, rs in results.items()}
    ours = median["logattn"]
    if a.json:
        print(json.dumps({"preset": a.preset, "parameters": ours["parameters"], "batch": a.batch,
                          "context": a.context, "rounds": a.rounds, "median": median}))
        return 0
    print(f"preset {a.preset} ({ours['parameters']:,} parameters), batch {a.batch} x context "
          f"{a.context}, 2 threads, median of {a.rounds} alternating rounds")
    print(f"{'':>13} {'s/step':>9} {'tokens/s':>10} {'peak MiB':>9} {'vs PyTorch':>11}")
    ref = median["PyTorch"]
    for name, r in median.items():
        print(f"{name:>13} {r['seconds_per_step']:>9.3f} {r['tokens_per_s']:>10.0f} "
              f"{r['peak_mib']:>9.0f} {r['tokens_per_s'] / ref['tokens_per_s']:>10.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
