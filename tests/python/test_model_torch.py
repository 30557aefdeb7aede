"""PyTorch parity of the language model: logattn's C++ model (tests/model/dump_for_torch)
and logattn.torch_model (written from DESIGN.md), given the same weights and tokens, agree
on logits (1e-4 relative), loss, every parameter's gradient (1e-3 relative) and the losses
of 5 AdamW steps. The PyTorch side runs in float64."""
import os
import subprocess
import tempfile
import unittest

import numpy as np
import torch

from logattn import safetensors_io
from logattn.torch_model import load_checkpoint, save_checkpoint

DUMP = os.environ.get("LOGATTN_DUMP_FOR_TORCH")


@unittest.skipUnless(DUMP, "LOGATTN_DUMP_FOR_TORCH is not set (ctest sets it)")
class ModelParity(unittest.TestCase):
    attention = "log"

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        subprocess.run([DUMP, cls.dir, cls.attention], check=True)
        cls.out, _ = safetensors_io.load(os.path.join(cls.dir, "outputs.safetensors"))

    def model(self):
        return load_checkpoint(os.path.join(self.dir, "model.safetensors"), torch.float64)

    def batch(self):
        return (torch.from_numpy(self.out["tokens"]).long(),
                torch.from_numpy(self.out["targets"]).long())

    def test_logits_loss_and_gradients(self):
        model, config = self.model()
        x, y = self.batch()
        logits = model(x)
        ours = torch.from_numpy(self.out["logits"]).double()
        self.assertLess(((logits - ours).abs().max() / logits.abs().max()).item(), 1e-4)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        self.assertAlmostEqual(loss.item(), float(self.out["loss"][0]), delta=1e-5 * loss.item())
        loss.backward()
        for name, p in model.named_parameters():
            g = torch.from_numpy(self.out["grad." + name]).double()
            rel = ((p.grad - g).norm() / p.grad.norm()).item()
            self.assertLess(rel, 1e-3, name)

    def test_five_adamw_steps(self):
        model, _ = self.model()
        x, y = self.batch()
        opt = torch.optim.AdamW(model.param_groups(0.1), lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
        losses = []
        for _ in range(5):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
            loss.backward()
            opt.step()
            losses.append(loss.item())
        np.testing.assert_allclose(self.out["adam_losses"], losses, rtol=1e-4)

    def test_pytorch_state_dict_round_trip(self):
        model, config = self.model()
        path = os.path.join(self.dir, "from_torch.safetensors")
        save_checkpoint(model, config, path)
        back, _ = load_checkpoint(path, torch.float64)
        for (n1, p1), (n2, p2) in zip(model.state_dict().items(), back.state_dict().items()):
            self.assertEqual(n1, n2)
            self.assertTrue(torch.allclose(p1, p2, rtol=1e-6, atol=1e-7))


class TwinParity(ModelParity):
    """The same checks for the conventional-attention twin."""
    attention = "softmax"


if __name__ == "__main__":
    unittest.main()
