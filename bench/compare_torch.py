#!/usr/bin/env python3
"""Side-by-side, in one run: logattn's attention against the PyTorch reference formulation
(logcumsumexp over [n, d_key, d_val], as the paper's reference code computes it) and against
this machine's sgemm rate (the matrix-product backend the process uses). Prints a table of ratios.

Run:  /usr/bin/python3 bench/compare_torch.py [--build build] [--json]
Needs Debian's python3-torch (scripts/setup.sh installs it). Each measurement runs in a
process of its own so that its peak memory (ru_maxrss) is its own.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import textwrap

TORCH_CHILD = textwrap.dedent(r"""
    import json, sys, time, resource, torch
    torch.set_num_threads(2)  # Debian's torch defaults to 1 thread here: match logattn's 2
    mode, B, H, n, dk, dv, min_time = sys.argv[1], *map(int, sys.argv[2:7]), float(sys.argv[7])
    g = torch.Generator().manual_seed(0)
    Q = torch.randn(B, H, n, dk, generator=g)
    K = torch.randn(B, H, n, dk, generator=g)
    log_V = torch.randn(B, H, n, dv, generator=g)
    def reference(Q, K, log_V):
        # The reference's causal path: log-states of every token, [B, H, n, dk, dv].
        H_S = torch.logcumsumexp(K.unsqueeze(-1) + log_V.unsqueeze(-2), dim=-3)
        H_Z = torch.logcumsumexp(K.unsqueeze(-1), dim=-3)
        log_S = torch.logsumexp(Q.unsqueeze(-1) + H_S, dim=-2)
        log_Z = torch.logsumexp(Q.unsqueeze(-1) + H_Z, dim=-2)
        return log_S - log_Z
    def run():
        if mode == "forward":
            with torch.no_grad():
                reference(Q, K, log_V)
        else:
            q, k, lv = (x.clone().requires_grad_() for x in (Q, K, log_V))
            y = reference(q, k, lv)
            y.backward(torch.ones_like(y))
    run()
    calls, t0 = 0, time.perf_counter()
    while True:
        run(); calls += 1
        el = time.perf_counter() - t0
        if el >= min_time: break
    sec = el / calls
    print(json.dumps({"seconds": sec, "tokens_per_s": B * n / sec,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def torch_measure(mode, B, H, n, dk, dv, min_time):
    out = subprocess.run([sys.executable, "-c", TORCH_CHILD, mode, str(B), str(H), str(n), str(dk),
                          str(dv), str(min_time)], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout)


def logattn(build, *args):
    out = subprocess.run([os.path.join(build, "logattn"), *args, "--json"], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dk", type=int, default=32)
    ap.add_argument("--dv", type=int, default=32)
    ap.add_argument("--forward-n", default="1024,2048,8192")
    ap.add_argument("--backward-n", default="1024,2048")
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    H, dk, dv = args.heads, args.dk, args.dv
    fwd_n = [int(x) for x in args.forward_n.split(",")]
    bwd_n = [int(x) for x in args.backward_n.split(",")]
    all_n = sorted(set(fwd_n + bwd_n))
    common = ["--heads", str(H), "--dk", str(dk), "--dv", str(dv), "--min-time", str(args.min_time)]
    ours_log = {r["n"]: r for r in logattn(args.build, "bench", "attention", "--n",
                                           ",".join(map(str, all_n)), "--log-values", *common)}
    ours_signed = {r["n"]: r for r in logattn(args.build, "bench", "attention", "--n",
                                              ",".join(map(str, all_n)), *common)}
    backend = "openblas" if os.environ.get("LOGATTN_GEMM") == "openblas" else "onednn"
    sgemm = logattn(args.build, "bench", "sgemm", "--backend", backend, "--rounds", "1")
    sgemm["gflops"] = sgemm["results"][0]["gflops"]
    torch_version = __import__("torch").__version__
    rows = []
    # "of sgemm": the forward's 4 n dk dv FLOPs per head against the sgemm rate.
    for mode, ns, key in (("forward", fwd_n, "forward"), ("backward", bwd_n, "forward_backward")):
        for n in ns:
            ref = torch_measure(mode, 1, H, n, dk, dv, args.min_time)
            ol, os_ = ours_log[n][key], ours_signed[n][key]
            rows.append({"n": n, "pass": "forward" if mode == "forward" else "fwd+bwd",
                         "torch": ref, "log_values": ol, "signed": os_,
                         "of_sgemm": os_["gflops"] / sgemm["gflops"] if mode == "forward"
                         else None})
    if args.json:
        print(json.dumps({"heads": H, "dk": dk, "dv": dv, "torch_version": torch_version,
                          "sgemm": sgemm["sgemm"], "sgemm_gflops": sgemm["gflops"],
                          "threads": sgemm["threads"], "rows": rows}))
        return
    print(f"B=1 H={H} dk={dk} dv={dv}; PyTorch {torch_version} on 2 threads; "
          f"sgemm ({sgemm['sgemm']}) {sgemm['gflops']:.1f} GFLOP/s on {sgemm['threads']} threads")
    print(f"{'n':>6} {'pass':>8} {'PyTorch tok/s':>14} {'PyT MiB':>8} {'logattn log-v tok/s':>20} "
          f"{'ratio':>7} {'MiB':>7} {'signed tok/s':>13} {'ratio':>7} {'of sgemm':>8}")
    for r in rows:
        ref, ol, os_ = r["torch"], r["log_values"], r["signed"]
        if "error" in ref:
            print(f"{r['n']:>6} {r['pass']:>8} PyTorch failed: {ref['error']}")
            continue
        print(f"{r['n']:>6} {r['pass']:>8} "
              f"{ref['tokens_per_s']:>14.0f} {ref['peak_mib']:>8.0f} "
              f"{ol['tokens_per_s']:>20.0f} {ol['tokens_per_s'] / ref['tokens_per_s']:>6.0f}x "
              f"{ol['peak_mib']:>7.0f} {os_['tokens_per_s']:>13.0f} "
              f"{os_['tokens_per_s'] / ref['tokens_per_s']:>6.0f}x "
              + (f"{r['of_sgemm']:>7.1%}" if r["of_sgemm"] is not None else f"{'-':>8}"))


if __name__ == "__main__":
    main()
