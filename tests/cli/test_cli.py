"""The logattn command line: clear errors and non-zero exits on bad input, and a kill at any
moment of training leaves the last good checkpoint intact."""
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from logattn import safetensors_io

LOGATTN = os.environ.get("LOGATTN_BIN", "build/logattn")


def run(*args, timeout=120):
    return subprocess.run([LOGATTN, *args], capture_output=True, text=True, timeout=timeout)


class Cli(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.text = os.path.join(self.dir, "text.txt")
        with open(self.text, "w") as f:
            f.write("".join(f"All the world's a stage, and all the men and women merely players {i}.\n"
                            for i in range(300)))

    def tearDown(self):
        shutil.rmtree(self.dir)

    def test_unknown_option(self):
        r = run("train", "--bogus", "3")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--bogus", r.stderr)

    def test_missing_data(self):
        r = run("train", "--data", os.path.join(self.dir, "nope"), "--out", self.dir + "/run")
        self.assertEqual(r.returncode, 1)
        self.assertIn("logattn: error: data:", r.stderr)
        self.assertIn("does not exist", r.stderr)

    def test_bad_checkpoints(self):
        bad = os.path.join(self.dir, "bad.safetensors")
        with open(bad, "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
        r = run("eval", "--model", bad, "--data", self.text)
        self.assertEqual(r.returncode, 1)
        self.assertIn("safetensors: " + bad, r.stderr)
        r = run("eval", "--model", os.path.join(self.dir, "none.safetensors"), "--data", self.text)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot open", r.stderr)

    def test_kill_at_any_moment_then_resume_equals_the_uninterrupted_run(self):
        def args(out):
            return ["train", "--preset", "tiny", "--data", self.text, "--out", out, "--batch", "2",
                    "--context", "16", "--eval-every", "1", "--eval-batches", "1", "--steps", "150"]
        straight = os.path.join(self.dir, "straight")
        r = run(*args(straight))
        self.assertEqual(r.returncode, 0, r.stderr)

        out = os.path.join(self.dir, "killed")
        rng = random.Random(0)
        cmd = args(out)
        for _ in range(4):
            p = subprocess.Popen([LOGATTN, *cmd], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.2, 0.8))
            p.send_signal(signal.SIGKILL)
            p.wait()
            ck = os.path.join(out, "model.safetensors")
            if os.path.exists(ck):  # the last good checkpoint is intact
                r = run("eval", "--model", ck, "--data", self.text, "--json")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn('"loss"', r.stdout)
            if "--resume" not in cmd and os.path.exists(os.path.join(out, "resume.safetensors")):
                cmd = cmd + ["--resume"]
        self.assertIn("--resume", cmd)
        r = run(*cmd)
        self.assertEqual(r.returncode, 0, r.stderr)
        a, _ = safetensors_io.load(os.path.join(straight, "model.safetensors"))
        b, _ = safetensors_io.load(os.path.join(out, "model.safetensors"))
        self.assertEqual(sorted(a), sorted(b))
        for name in a:
            self.assertTrue((a[name] == b[name]).all(), name)
        self.assertEqual([f for f in os.listdir(out) if ".tmp." in f], [])


if __name__ == "__main__":
    unittest.main()
