#!/usr/bin/env python3
"""The cost of calling logattn's attention through PyTorch: forward and backward through
torch.ops.logattn.attention with autograd (torch tensors in, the dispatcher, the Python
kernels) against the same C++ kernels called directly on numpy arrays (logattn's pybind11
functions), side by side, alternating rounds, median; B = 1, the small preset's 8 heads of
d_key = d_val = 32, log-values, causal.

Run:  PYTHONPATH=build/python /usr/bin/python3 bench/torch_op_overhead.py [--n 256 8192]
"""
import argparse
import time

import torch

import logattn
import logattn.torch  # noqa: F401  (registers torch.ops.logattn)


def timed(fn, reps):
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[256, 8192])
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(2)
    print(f"{'n':>6} {'direct ms':>10} {'op ms':>9} {'overhead ms':>12} {'overhead':>9}")
    for n in a.n:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, 8, n, 32, generator=g) for _ in range(3))
        gy = torch.randn(1, 8, n, 32, generator=g)
        arrays = [x.numpy() for x in (q, k, v)]

        def direct():
            y, log_d = logattn.forward(*arrays, causal=True, log_values=True)
            logattn.backward(*arrays, y, log_d, gy.numpy(), causal=True, log_values=True)

        def op():
            xs = [x.detach().requires_grad_() for x in (q, k, v)]
            y = torch.ops.logattn.attention(*xs, True, True, None, False)[0]
            y.backward(gy)

        reps = max(1, 2000 // n)
        d, o = [], []
        for _ in range(a.rounds):
            d.append(timed(direct, reps))
            o.append(timed(op, reps))
        d, o = sorted(d)[len(d) // 2], sorted(o)[len(o) // 2]
        print(f"{n:>6} {d * 1e3:>10.3f} {o * 1e3:>9.3f} {(o - d) * 1e3:>12.3f} "
              f"{100 * (o - d) / d:>8.1f}%")


if __name__ == "__main__":
    main()
