"""logattn.torch against the PyTorch reference formulation (logcumsumexp over
[n, d_key, d_val], as the paper's code computes it), in float64, outputs and autograd
gradients."""
import unittest

import torch

from logattn.torch import LogAttention, attention
from test_attention import assert_within, bound, grad_bound

torch.set_num_threads(2)


def reference(Q, K, log_V, causal=True):
    if causal:
        H_S = torch.logcumsumexp(K.unsqueeze(-1) + log_V.unsqueeze(-2), dim=-3)
        H_Z = torch.logcumsumexp(K.unsqueeze(-1), dim=-3)
    else:
        H_S = torch.logsumexp(K.unsqueeze(-1) + log_V.unsqueeze(-2), dim=-3, keepdim=True)
        H_Z = torch.logsumexp(K.unsqueeze(-1), dim=-3, keepdim=True)
    log_S = torch.logsumexp(Q.unsqueeze(-1) + H_S, dim=-2)
    log_Z = torch.logsumexp(Q.unsqueeze(-1) + H_Z, dim=-2)
    return log_S - log_Z


def inputs(seed, n=90, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(2, 3, n, d, generator=g, dtype=torch.float64)
            for d in (16, 16, 8)]


class AgainstReference(unittest.TestCase):
    def test_outputs(self):
        for causal in (True, False):
            Q, K, V = inputs(0)
            ours = LogAttention(is_causal=causal)(Q, K, V)
            ref = reference(Q, K, V, causal)
            # The op computes in float32 from the float64 inputs rounded once: the forward
            # bound of test_attention.bound, with that rounding (cast=True). The log-space
            # reference in float64 is exact to far below it.
            tol, _ = bound(Q.numpy(), K.numpy(), V.numpy(), causal, True, cast=True)
            assert_within(self, ours.detach().numpy(), ref.numpy(), tol)

    def test_gradients_match_autograd(self):
        for causal in (True, False):
            Q, K, V = inputs(1)
            gy = torch.randn(2, 3, 90, 8, generator=torch.Generator().manual_seed(2),
                             dtype=torch.float64)
            grads = []
            for fn in (lambda q, k, v: attention(q, k, v, causal=causal, log_values=True),
                       lambda q, k, v: reference(q, k, v, causal)):
                xs = [x.clone().requires_grad_() for x in (Q, K, V)]
                fn(*xs).backward(gy)
                grads.append([x.grad for x in xs])
            for b in range(2):
                for h in range(3):
                    tols = grad_bound(Q[b, h].numpy(), K[b, h].numpy(), V[b, h].numpy(),
                                      gy[b, h].numpy(), causal, True, cast=True)
                    for ours, ref, tol in zip(grads[0], grads[1], tols):
                        assert_within(self, ours[b, h].numpy(), ref[b, h].numpy(), tol)

    def test_gradcheck_signed_values(self):
        # Signed values have no log-space reference; check against finite differences of a
        # float64 quadratic form instead.
        g = torch.Generator().manual_seed(3)
        Q, K, V = (torch.randn(1, 2, 20, d, generator=g, dtype=torch.float64) for d in (4, 4, 3))

        def quadratic(q, k, v):
            w = torch.exp(q.unsqueeze(-2) + k.unsqueeze(-3)).sum(-1)  # [B, H, t, s]
            w = w * torch.tril(torch.ones(20, 20, dtype=torch.float64))
            return (w / w.sum(-1, keepdim=True)) @ v

        gy = torch.randn(1, 2, 20, 3, generator=g, dtype=torch.float64)
        xs = [x.clone().requires_grad_() for x in (Q, K, V)]
        attention(*xs).backward(gy)
        rs = [x.clone().requires_grad_() for x in (Q, K, V)]
        quadratic(*rs).backward(gy)
        for h in range(2):
            tols = grad_bound(Q[0, h].numpy(), K[0, h].numpy(), V[0, h].numpy(), gy[0, h].numpy(),
                              True, False, cast=True)
            for a, b, tol in zip(xs, rs, tols):
                assert_within(self, a.grad[0, h].numpy(), b.grad[0, h].numpy(), tol)

    def test_using_prev_context_continues_the_sequence(self):
        Q, K, V = inputs(4, n=100)
        whole = LogAttention()(Q, K, V)
        attn = LogAttention()
        first = attn(Q[..., :60, :], K[..., :60, :], V[..., :60, :])
        second = attn(Q[..., 60:, :], K[..., 60:, :], V[..., 60:, :], using_prev_context=True)
        # Both float32 evaluations are within the forward bound of the exact outputs.
        tol, _ = bound(Q.numpy(), K.numpy(), V.numpy(), True, True, cast=True)
        assert_within(self, torch.cat([first, second], dim=-2).detach().numpy(),
                      whole.detach().numpy(), 2 * tol)
        again = attn(Q[..., 60:, :], K[..., 60:, :], V[..., 60:, :])  # fresh context
        self.assertGreater((again - second).abs().max().item(), 1e-3)


if __name__ == "__main__":
    unittest.main()
