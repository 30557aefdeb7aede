"""The paper's model in PyTorch on logattn's operator (logattn.torch_model, kernel="logattn"):
the same outputs and gradients as on the reference formulation within float32's error, and
trained with DistributedDataParallel by 2 processes (gloo, loopback): bit for bit what one
process does with the batch's two halves, (g_a + g_b) / 2: each half's gradient is computed
alike in both, and DDP sums the two (a + b = b + a exactly) and halves the sum (exact). One
backward of the whole batch differs from that only in the order of sums inside it."""
import os
import socket
import tempfile
import unittest

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from logattn import torch_model
from logattn.torch_model import GenerativeLanguageModel
from test_attention import assert_within, bound

CONFIG = dict(vocab=256, d_emb=32, n_layers=2, n_heads=2, d_key=8, d_val=8)
STEPS, BATCH, CONTEXT = 3, 4, 24


def batches():
    g = torch.Generator().manual_seed(11)
    return [torch.randint(0, 256, (BATCH, CONTEXT + 1), generator=g) for _ in range(STEPS)]


def new_model(kernel="logattn"):
    torch.manual_seed(3)
    return GenerativeLanguageModel(**CONFIG, kernel=kernel)


def loss_of(model, tokens):
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, CONFIG["vocab"]), tokens[:, 1:].reshape(-1))


def ddp_worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    model = torch.nn.parallel.DistributedDataParallel(new_model())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    half = BATCH // 2
    for tokens in batches():
        opt.zero_grad()
        loss_of(model, tokens[rank * half:(rank + 1) * half]).backward()
        opt.step()
    if rank == 0:
        torch.save(model.module.state_dict(), out)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TorchModelOnTheOperator(unittest.TestCase):
    def test_the_switch_puts_the_operator_in_every_layer(self):
        # The operator against the reference formulation in float64, on the shapes a layer
        # gives it (non-contiguous views of the projection), within its forward bound with
        # the float64 -> float32 rounding of its inputs.
        g = torch.Generator().manual_seed(5)
        p = torch.randn(2, 24, 2, 2 * 8 + 8, generator=g, dtype=torch.float64).transpose(1, 2)
        q, k, lv = p.split([8, 8, 8], dim=-1)
        ours = torch_model.logattn_attention(q, k, lv)
        want = torch_model.log_attention(q, k, lv)
        tol, _ = bound(q.numpy(), k.numpy(), lv.numpy(), True, True, cast=True)
        assert_within(self, ours.numpy(), want.numpy(), tol)
        model = new_model("logattn")
        self.assertTrue(all(layer.attend is torch_model.logattn_attention
                            for layer in model.layers))
        self.assertTrue(all(layer.attend is torch_model.log_attention
                            for layer in new_model("reference").layers))

    def test_unknown_kernel_and_twin_on_the_operator_are_refused(self):
        with self.assertRaisesRegex(ValueError, "unknown attention kernel"):
            GenerativeLanguageModel(**CONFIG, kernel="cuda")
        with self.assertRaisesRegex(ValueError, "softmax twin runs in PyTorch"):
            GenerativeLanguageModel(**CONFIG, attention="softmax", kernel="logattn")


@unittest.skipUnless(dist.is_available() and dist.is_gloo_available(), "no gloo backend")
class DistributedDataParallel(unittest.TestCase):
    def test_two_processes_equal_one_accumulating_the_two_halves(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "ddp.pt")
            mp.spawn(ddp_worker, args=(free_port(), out), nprocs=2, join=True)
            ddp = torch.load(out)
        torch.set_num_threads(1)
        model = new_model()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        half = BATCH // 2
        params = list(model.parameters())
        for tokens in batches():
            ga, gb = (torch.autograd.grad(loss_of(model, tokens[r * half:(r + 1) * half]), params)
                      for r in range(2))
            for p, a, b in zip(params, ga, gb):
                p.grad = (a + b) / 2
            opt.step()
        one = model.state_dict()
        self.assertEqual(sorted(one), sorted(ddp))
        for name in one:
            self.assertTrue(torch.equal(one[name], ddp[name]), name)


if __name__ == "__main__":
    unittest.main()
