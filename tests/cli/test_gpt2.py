"""GPT-2 tokens at the command line: `logattn tokenize`, the tokenizer's errors, and the
paper-size model end to end (train a few steps on real text, save, load, evaluate, generate),
including a bare PyTorch state_dict of the reference model (no logattn metadata), whose loss
and greedy continuation logattn reproduces."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np
import torch

from logattn import safetensors_io
from logattn.torch_model import GenerativeLanguageModel, save_checkpoint

LOGATTN = os.environ.get("LOGATTN_BIN", "build/logattn")
PAPER = {"vocab": 50304, "d_emb": 768, "n_layers": 24, "n_heads": 24, "d_key": 32, "d_val": 32,
         "context": 1024}


def run(*args, env=None, timeout=600):
    return subprocess.run([LOGATTN, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


class Gpt2Cli(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.text = os.path.join(self.dir, "text.txt")
        with open(self.text, "w") as f:
            f.write("".join(f"All the world's a stage, and all the men and women merely "
                            f"players; they have their exits and their entrances {i}.\n"
                            for i in range(200)))

    def tearDown(self):
        shutil.rmtree(self.dir)

    def ids(self, text):
        r = run("tokenize", "--text", text)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_tokenize(self):
        self.assertEqual(self.ids("Hello world"), [15496, 995])
        r = run("tokenize", "--decode", "15496,995")
        self.assertEqual(r.stdout, "Hello world\n")
        out = os.path.join(self.dir, "tok")
        r = run("tokenize", "--data", self.text, "--out", out, "--threads", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("tokens", r.stdout)
        train = np.fromfile(os.path.join(out, "train.bin"), dtype="<u2")
        val = np.fromfile(os.path.join(out, "val.bin"), dtype="<u2")
        self.assertEqual(val[-1], 50256)  # end of text after the file
        r = run("tokenize", "--decode", ",".join(map(str, np.concatenate([train, val]))))
        with open(self.text) as f:
            self.assertEqual(r.stdout, f.read() + "<|endoftext|>\n")
        # Reused while the text is unchanged.
        r = run("tokenize", "--data", self.text, "--out", out)
        self.assertIn("up to date", r.stdout)

    def test_tokenize_errors(self):
        for args, msg in [((), "exactly one of"),
                          (("--text", "a", "--decode", "1"), "exactly one of"),
                          (("--decode", "12,x"), "'x' is not one"),
                          (("--decode", "50257"), "outside the gpt2 vocabulary"),
                          (("--data", self.text), "--out"),
                          (("--text", "a", "--tokenizer", "wordpiece"), "unknown tokenizer"),
                          (("--text", "a", "--gpt2-dir", self.dir), "does not hold encoder.json")]:
            r = run("tokenize", *args)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn(msg, r.stderr, args)
        r = run("tokenize", "--text", "a", env={"LOGATTN_GPT2_DIR": os.path.join(self.dir, "x")})
        self.assertEqual(r.returncode, 1)
        self.assertIn("LOGATTN_GPT2_DIR", r.stderr)

    def test_byte_model_refuses_gpt2(self):
        r = run("train", "--preset", "small", "--tokenizer", "gpt2", "--data", self.text,
                "--out", os.path.join(self.dir, "run"), "--steps", "1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("smaller than the gpt2 tokenizer's", r.stderr)

    def test_paper_preset_end_to_end(self):
        # Real text: the start of Debian's fortunes (installed by the set-up), else ours.
        text = self.text
        fortunes = "/usr/share/games/fortunes/fortunes"
        if os.path.exists(fortunes):
            text = os.path.join(self.dir, "fortunes.txt")
            with open(fortunes, "rb") as f, open(text, "wb") as g:
                g.write(f.read(30000))
        out = os.path.join(self.dir, "paper")
        r = run("train", "--preset", "paper", "--data", text, "--out", out, "--steps", "2",
                "--batch", "1", "--context", "64", "--eval-every", "2", "--eval-batches", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        model = os.path.join(out, "model.safetensors")
        _, meta = safetensors_io.load(model)
        self.assertEqual(meta["tokenizer"], "gpt2")
        self.assertEqual(json.loads(meta["config"])["vocab"], 50304)
        r = run("eval", "--model", model, "--data", text, "--context", "64", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        loss = json.loads(r.stdout)["loss"]
        self.assertTrue(0 < loss < 12, loss)
        r = run("generate", "--model", model, "--prompt", "All the world", "-n", "8")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("All the world"))
        self.assertGreater(len(r.stdout), len("All the world\n"))

    def test_reference_state_dict(self):
        # The reference's model in PyTorch, saved as a bare state_dict: configuration and
        # tokenizer come from --config and the vocabulary. It must load into the same places
        # as a logattn checkpoint of the same weights: the same loss and greedy text, bit for
        # bit. (That logattn's model computes what the PyTorch model does is checked stage by
        # stage, within each stage's error bound, in tests/python/test_model_torch.py.)
        torch.manual_seed(0)
        m = GenerativeLanguageModel(**PAPER).eval()
        sd = os.path.join(self.dir, "reference.safetensors")
        safetensors_io.save(sd, {k: v.numpy() for k, v in m.state_dict().items()})
        cfg = os.path.join(self.dir, "config.json")
        with open(cfg, "w") as f:
            json.dump({"vocab_sz": 50304, **{k: v for k, v in PAPER.items() if k != "vocab"}}, f)
        ckpt = os.path.join(self.dir, "logattn.safetensors")
        save_checkpoint(m, PAPER, ckpt, tokenizer="gpt2")
        # Loss over non-overlapping windows of 32 tokens.
        with open(self.text) as f:
            ids = self.ids(f.read())[:257]
        bin_path = os.path.join(self.dir, "ids.bin")
        np.asarray(ids, dtype="<u2").tofile(bin_path)
        losses = []
        for args in (["--model", sd, "--config", cfg], ["--model", ckpt]):
            r = run("eval", *args, "--tokens", bin_path, "--context", "32", "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            losses.append(json.loads(r.stdout)["loss"])
        self.assertEqual(losses[0], losses[1])
        self.assertLess(abs(losses[0] - np.log(50304)), 1.0)  # untrained: about uniform
        # Greedy continuation.
        texts = []
        for args in (["--model", sd, "--config", cfg], ["--model", ckpt]):
            r = run("generate", *args, "--prompt", "All the world's a stage", "-n", "6",
                    "--temperature", "0")
            self.assertEqual(r.returncode, 0, r.stderr)
            texts.append(r.stdout)
        self.assertEqual(texts[0], texts[1])
        self.assertTrue(texts[0].startswith("All the world's a stage"))


if __name__ == "__main__":
    unittest.main()
