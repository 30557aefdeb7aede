"""torch.ops.logattn.attention (logattn/torch_ops.py): the CPU kernel against the float64
oracle within the forward's bound, states carried between calls, the Meta kernel's shapes,
gradients by torch.autograd.gradcheck (tolerance derived below), TorchScript (script and
trace) equal to eager, tensors passed without copies, and bad input refused by name."""
import unittest

import numpy as np
import torch
from torch.autograd.gradcheck import GradcheckError

import logattn.torch  # noqa: F401  (registers torch.ops.logattn)
from logattn import torch_ops
from test_attention import U, assert_within, bound, oracle

torch.set_num_threads(2)


def qkv(seed, B=2, H=3, n=40, dk=8, dv=4, scale=1.0, log_values=False):
    g = torch.Generator().manual_seed(seed)
    q, k = (scale * torch.randn(B, H, n, dk, generator=g) for _ in range(2))
    v = torch.randn(B, H, n, dv, generator=g)
    return q, k, v


class Forward(unittest.TestCase):
    def test_against_the_oracle_within_the_bound(self):
        for causal in (True, False):
            for log_values in (False, True):
                q, k, v = qkv(1)
                y, log_d, final = torch.ops.logattn.attention(q, k, v, causal, log_values)
                self.assertEqual(final.numel(), 0)
                self.assertEqual((y.dtype, log_d.dtype), (torch.float32, torch.float32))
                want, want_d = oracle(q.numpy(), k.numpy(), v.numpy(), causal, log_values)
                tol, tol_d = bound(q.numpy(), k.numpy(), v.numpy(), causal, log_values)
                assert_within(self, y.numpy(), want, tol)
                assert_within(self, log_d.numpy(), want_d, tol_d)

    def test_the_state_carries_a_sequence_across_calls(self):
        # The second call sees the first call's keys through the state alone: both halves
        # equal the rows of one call over the whole sequence, within its bound.
        for log_values in (False, True):
            q, k, v = qkv(2, n=50)
            want, _ = oracle(q.numpy(), k.numpy(), v.numpy(), True, log_values)
            tol, _ = bound(q.numpy(), k.numpy(), v.numpy(), True, log_values)
            y1, _, s1 = torch.ops.logattn.attention(q[:, :, :20], k[:, :, :20], v[:, :, :20],
                                                    True, log_values, None, True)
            self.assertEqual(tuple(s1.shape), (2, 3, torch_ops.state_size(8, 4)))
            y2, _, s2 = torch.ops.logattn.attention(q[:, :, 20:], k[:, :, 20:], v[:, :, 20:],
                                                    True, log_values, s1, True)
            assert_within(self, torch.cat([y1, y2], dim=2).numpy(), want, tol)
            # The state is an input, not changed in place.
            _, _, again = torch.ops.logattn.attention(q[:, :, :20], k[:, :, :20], v[:, :, :20],
                                                      True, log_values, None, True)
            self.assertTrue(torch.equal(s1, again))
            self.assertFalse(torch.equal(s1, s2))

    def test_float32_contiguous_tensors_are_not_copied(self):
        q, _, _ = qkv(3)
        self.assertEqual(torch_ops._array(q).__array_interface__["data"][0], q.data_ptr())
        # Other layouts and dtypes are converted (a copy).
        t = q.transpose(2, 3)
        self.assertNotEqual(torch_ops._array(t).__array_interface__["data"][0], t.data_ptr())

    def test_meta_tensors_give_the_shapes(self):
        q = torch.empty(2, 3, 7, 5, device="meta")
        v = torch.empty(2, 3, 7, 4, device="meta", dtype=torch.float32)
        y, log_d, final = torch.ops.logattn.attention(q, q, v, True, True, None, True)
        self.assertEqual((y.device.type, tuple(y.shape)), ("meta", (2, 3, 7, 4)))
        self.assertEqual(tuple(log_d.shape), (2, 3, 7))
        self.assertEqual(tuple(final.shape), (2, 3, torch_ops.state_size(5, 4)))
        gq, gk, gv = torch.ops.logattn.attention_backward(q, q, v, y, log_d, y, True, True, None)
        self.assertEqual([tuple(g.shape) for g in (gq, gk, gv)],
                         [(2, 3, 7, 5), (2, 3, 7, 5), (2, 3, 7, 4)])
        with self.assertRaisesRegex(ValueError, "initial_state must be"):
            torch.ops.logattn.attention(q, q, v, True, True, torch.empty(2, 3, 9, device="meta"))

    def test_bad_input_is_refused_by_name(self):
        q, k, v = qkv(4)
        with self.assertRaisesRegex(ValueError, r"logattn.attention: q must be \[B, H, n, d\]"):
            torch.ops.logattn.attention(q[0], k, v)
        with self.assertRaisesRegex(ValueError, "the same d_key"):
            torch.ops.logattn.attention(q, k[..., :3], v)
        with self.assertRaisesRegex(ValueError, "initial_state must be"):
            torch.ops.logattn.attention(q, k, v, True, False, torch.zeros(2, 3, 5))
        with self.assertRaisesRegex(ValueError, "floating-point"):
            torch.ops.logattn.attention(q.long(), k, v)
        # A NaN or inf inside the state carried in is refused, as in q, k, v.
        for value in (float("nan"), float("inf")):
            state = torch.zeros(q.shape[0], q.shape[1], 2 * q.shape[3] + v.shape[3] +
                                q.shape[3] * v.shape[3])
            state[0, 0, -1] = value
            with self.assertRaisesRegex(ValueError, "s is finite"):
                torch.ops.logattn.attention(q, k, v, True, False, state)


def gradcheck_inputs(seed, log_values):
    # Multiples of 2^-12 with |x| < 2: x +- h (h = 2^-10) is exact in float32, so the op sees
    # exactly the perturbation gradcheck makes.
    g = torch.Generator().manual_seed(seed)
    def draw(*shape):
        x = (0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)).clamp(-1.9, 1.9)
        return (torch.round(x * 4096) / 4096).requires_grad_()
    return draw(1, 2, 6, 3), draw(1, 2, 6, 3), draw(1, 2, 6, 2)


class Gradients(unittest.TestCase):
    def test_gradcheck(self):
        """gradcheck compares the backward with central differences (f(x + h) - f(x - h)) / 2h
        of the float32 forward. Their error: the forward's rounding, e <= max bound() per
        evaluation, gives e / h; truncation, h^2 / 6 max |f'''|, where each derivative of
        the softmax weights in q or k brings a factor of at most 2 A (A = max|q| + max|k|)
        and one in log-values at most 2, so |f'''| <= 8 (A + 1)^3 (V + 1) (V = max |v|).
        The backward's own float32 error is far below both."""
        h = 2.0 ** -10
        for causal in (True, False):
            for log_values in (False, True):
                q, k, v = gradcheck_inputs(5, log_values)
                a = q.abs().max().item() + k.abs().max().item()
                vmax = v.abs().max().item()
                e = max(b.max() for b in bound(*(x.detach().numpy() for x in (q, k, v)),
                                               causal, log_values)).item()
                atol = e / h + h * h / 6 * 8 * (a + 1) ** 3 * (vmax + 1)
                fn = lambda q, k, v: torch.ops.logattn.attention(q, k, v, causal, log_values)[0]
                self.assertTrue(torch.autograd.gradcheck(fn, (q, k, v), eps=h, atol=atol,
                                                         rtol=0, nondet_tol=0),
                                (causal, log_values))
                # And it fails a backward that is wrong by 5%.
                q2, k2, v2 = (x.detach().clone().requires_grad_() for x in (q, k, v))
                scaled = lambda q, k, v: ScaledGradient.apply(fn(q, k, v))
                with self.assertRaises(GradcheckError):
                    torch.autograd.gradcheck(scaled, (q2, k2, v2), eps=h, atol=atol, rtol=0)

    def test_gradients_flow_with_a_state_in(self):
        q, k, v = qkv(6, n=12)
        _, _, s = torch.ops.logattn.attention(q, k, v, True, True, None, True)
        q2, k2, v2 = (x.clone().requires_grad_() for x in qkv(7, n=12))
        y, _, _ = torch.ops.logattn.attention(q2, k2, v2, True, True, s, True)
        y.sum().backward()
        self.assertTrue(all(x.grad is not None and torch.isfinite(x.grad).all()
                            for x in (q2, k2, v2)))


class ScaledGradient(torch.autograd.Function):
    """Identity whose backward is 5% too large."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return 1.05 * g


class Attend(torch.nn.Module):
    def forward(self, q, k, v):
        y, _, final = torch.ops.logattn.attention(q, k, v, True, True, None, True)
        return y, final


class TorchScript(unittest.TestCase):
    def test_script_and_trace_equal_eager(self):
        eager = Attend()
        for compiled in (torch.jit.script(Attend()),
                         torch.jit.trace(Attend(), qkv(8, n=16), check_trace=False)):
            outs, grads = [], []
            for module in (eager, compiled):
                q, k, v = (x.requires_grad_() for x in qkv(9, n=16))
                y, final = module(q, k, v)
                y.square().sum().backward()
                outs.append((y.detach(), final))
                grads.append([x.grad for x in (q, k, v)])
            self.assertTrue(all(torch.equal(a, b) for a, b in zip(*outs)))
            self.assertTrue(all(torch.equal(a, b) for a, b in zip(*grads)))
        self.assertIn("logattn::attention", str(torch.jit.script(Attend()).graph))


if __name__ == "__main__":
    unittest.main()
