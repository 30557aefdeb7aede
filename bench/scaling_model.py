#!/usr/bin/env python3
"""Data-parallel scaling model of the paper preset, from measured numbers: each step, every
node computes forward and backward of its own batch (compute_s, measured with `logattn
bench train`), then the gradients (grad_mb, the preset's parameters in float32) are summed
by a ring all-reduce, which sends and receives 2 (N - 1) / N of them per node over the
network (bandwidth b) in 2 (N - 1) messages (latency each), without overlap:

    comm_s = 2 (N - 1) / N * grad_bytes * 8 / b + 2 (N - 1) * latency
    efficiency = compute_s / (compute_s + comm_s)

Prints the efficiency for N nodes and network bandwidths, and the global batch in tokens.

    /usr/bin/python3 bench/scaling_model.py --compute-s 4.17 --tokens-per-node 512 \\
        [--grad-mb 499.5] [--latency-us 50]
"""
import argparse


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compute-s", type=float, required=True,
                    help="seconds of one node's forward + backward + update per step")
    ap.add_argument("--tokens-per-node", type=int, required=True, help="batch x context per node")
    ap.add_argument("--grad-mb", type=float, default=499.5, help="gradient bytes per step, MB")
    ap.add_argument("--latency-us", type=float, default=50.0, help="per-message latency")
    ap.add_argument("--gbits", type=float, nargs="+", default=[10, 25, 100])
    ap.add_argument("--nodes", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64, 128, 256])
    a = ap.parse_args()
    print(f"compute {a.compute_s:.2f} s/step per node ({a.tokens_per_node} tokens), gradients "
          f"{a.grad_mb:.1f} MB, latency {a.latency_us:.0f} us")
    print(f"| nodes | global batch (tokens) | " +
          " | ".join(f"{g:g} Gb/s: comm s, efficiency" for g in a.gbits) + " |")
    print("|---:|---:|" + "---:|" * len(a.gbits))
    for n in a.nodes:
        cells = []
        for g in a.gbits:
            comm = 2 * (n - 1) / n * a.grad_mb * 1e6 * 8 / (g * 1e9) + \
                2 * (n - 1) * a.latency_us * 1e-6
            cells.append(f"{comm:.2f} s, {100 * a.compute_s / (a.compute_s + comm):.0f}%")
        print(f"| {n} | {n * a.tokens_per_node:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
