"""PyTorch parity of the language model: logattn's C++ model (tests/model/dump_for_torch)
and logattn.torch_model (written from docs/design.md), given the same weights and tokens. The
PyTorch side runs in float64, as the exact reference. Every stage of the C++ model (its
trace) is checked on the float32 inputs it really had, within that stage's error bound
(model_stages.py): the full forward, the loss, the backward and every parameter's gradient,
and generation through the model's state (a prompt, then one token at a time); then 5
AdamW steps against torch.optim.AdamW given the same gradients."""
import os
import subprocess
import tempfile
import unittest

import numpy as np
import torch

from logattn import safetensors_io
from logattn.torch_model import load_checkpoint, save_checkpoint
from model_stages import U, Stages
from test_attention import assert_within

DUMP = os.environ.get("LOGATTN_DUMP_FOR_TORCH")


def load_named(model, tensors, prefix):
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(tensors[prefix + name]).double())


@unittest.skipUnless(DUMP, "LOGATTN_DUMP_FOR_TORCH is not set (ctest sets it)")
class ModelParity(unittest.TestCase):
    attention = "log"

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        subprocess.run([DUMP, cls.dir, cls.attention], check=True)
        cls.out, _ = safetensors_io.load(os.path.join(cls.dir, "outputs.safetensors"))

    def setUp(self):
        self.checked = []

    def model(self):
        return load_checkpoint(os.path.join(self.dir, "model.safetensors"), torch.float64)

    def batch(self):
        return (torch.from_numpy(self.out["tokens"]).long(),
                torch.from_numpy(self.out["targets"]).long())

    def check(self, name, got, want, bound):
        with self.subTest(name):
            got = got if isinstance(got, np.ndarray) else got.detach().numpy()
            want, bound = (t.detach().numpy() for t in (want, bound))
            self.assertEqual(got.shape, want.shape, name)
            assert_within(self, got, want, bound)
        self.checked.append(name)

    def stages(self, model, prefix):
        get = lambda name, shape: torch.from_numpy(self.out[prefix + name]).double().view(*shape)
        return Stages(model, self.check, get)

    def test_forward_loss_and_backward_stage_by_stage(self):
        model, _ = self.model()
        x, y = self.batch()
        st = self.stages(model, "trace.")
        logits = st.forward(x)
        self.assertTrue(np.array_equal(self.out["logits"], logits.numpy().astype(np.float32)))
        st.loss(logits, y, torch.from_numpy(self.out["loss"]).double())
        grads = {name: self.out["grad." + name] for name, _ in model.named_parameters()}
        st.backward(x, y, grads)
        self.assertEqual(set(grads), set(n for n in self.checked if n in grads))
        self.assertIn("dul", self.checked)

    def test_generation_through_the_state_stage_by_stage(self):
        # Sequence 0: a prompt of 20 tokens, then one token at a time; the head sees each
        # call's last position, 19 .. T-1.
        model, _ = self.model()
        x, _ = self.batch()
        T = x.shape[1]
        logits = self.stages(model, "gen.").forward(x[:1], last_rows=list(range(19, T)))
        self.assertTrue(np.array_equal(self.out["gen_logits"], logits[0].numpy().astype(np.float32)))
        self.assertIn("a.1", self.checked)

    def test_five_adamw_steps(self):
        """torch.optim.AdamW (float64), given the C++ run's gradients of each step, must reach
        the C++ weights within the update's running bound: the moments' errors carried from
        step to step (em, ev) and each step's roundings, with the float constants beta1,
        beta2 of the C++ optimizer (off from 0.9, 0.95 by <= u). Each step starts from the
        C++ weights, as the C++ run's next gradient did."""
        model, _ = self.model()
        lr, b1, b2, eps, wd = 1e-2, 0.9, 0.95, 1e-8, 0.1
        opt = torch.optim.AdamW(model.param_groups(wd), lr=lr, betas=(b1, b2), eps=eps)
        decays = {id(p): g["weight_decay"] > 0 for g in opt.param_groups for p in g["params"]}
        self.assertEqual(sum(decays.values()), 2 + 3 * len(model.layers))
        db1 = abs(float(np.float32(b1)) - b1)
        db2 = abs(float(np.float32(b2)) - b2)
        err = {name: [torch.zeros_like(p) for _ in range(2)] for name, p in model.named_parameters()}
        # The first step's loss is the traced forward's, bit for bit (same weights, same run).
        self.assertEqual(self.out["adam_losses"][0], self.out["loss"][0])
        for s in range(5):
            prev = {}
            for name, p in model.named_parameters():
                st = opt.state.get(p, {})
                m0 = st["exp_avg"].clone() if st else torch.zeros_like(p)
                v0 = st["exp_avg_sq"].clone() if st else torch.zeros_like(p)
                prev[name] = (p.detach().clone(), m0, v0)
                p.grad = torch.from_numpy(self.out[f"adam.{s}.grad.{name}"]).double()
            opt.step()
            t = s + 1
            bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
            for name, p in model.named_parameters():
                w0, m0, v0 = prev[name]
                em, ev = err[name]
                g = p.grad
                m, v = opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]
                em = b1 * em + db1 * (m0.abs() + g.abs()) + U * (b1 * m0.abs() + (1 - b1) * g.abs() + m.abs())
                ev = b2 * ev + db2 * (v0 + g * g) + U * (b2 * v0 + 2 * (1 - b2) * g * g + v)
                rs = v.sqrt() / bc2 ** 0.5
                den = rs + eps
                # sqrt, / sqrt(bc2) (itself rounded) and + eps: 3 u rs + u eps + u den.
                eden = torch.where(v > 0, ev / (2 * v.sqrt().clamp_min(1e-300) * bc2 ** 0.5), 0) \
                    + 3 * U * rs + U * eps + U * den
                upd = lr / bc1 * m / den
                # lr / bc1 rounded to float, the division and the product: 3 u |upd|.
                eupd = lr / bc1 * (em / den + m.abs() * eden / den ** 2) + 3 * U * upd.abs()
                # The step starts from the C++ weights (below), so only its own roundings:
                # w * shrink (shrink rounded, and the product), - upd.
                ew = eupd + U * p.abs()
                if decays[id(p)]:
                    ew = ew + 2 * U * (w0 * (1 - lr * wd)).abs()
                err[name] = [em, ev]
                self.check(f"step {s} {name}", self.out[f"adam.{s}.weight.{name}"], p, ew)
            # The next step starts from the C++ run's weights, as its loss and gradient did.
            load_named(model, self.out, f"adam.{s}.weight.")

    def test_pytorch_state_dict_round_trip(self):
        model, config = self.model()
        path = os.path.join(self.dir, "from_torch.safetensors")
        save_checkpoint(model, config, path)
        back, _ = load_checkpoint(path, torch.float64)
        # The checkpoint holds float32: the float64 weights that came from float32 survive
        # the round trip bit for bit.
        for (n1, p1), (n2, p2) in zip(model.state_dict().items(), back.state_dict().items()):
            self.assertEqual(n1, n2)
            self.assertTrue(torch.equal(p1, p2), n1)


class TwinParity(ModelParity):
    """The same checks for the conventional-attention twin."""
    attention = "softmax"


if __name__ == "__main__":
    unittest.main()
