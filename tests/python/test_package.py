"""`pip install .` (PEP 517, setuptools driving the CMake build) into a fresh virtual
environment that sees Debian's torch and numpy (--system-site-packages), offline
(--no-build-isolation --no-index); then logattn imports from outside the source tree and
its operator runs."""
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class PipInstall(unittest.TestCase):
    def test_install_into_a_fresh_environment_and_import_elsewhere(self):
        with tempfile.TemporaryDirectory() as d:
            venv = os.path.join(d, "venv")
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                           check=True)
            python = os.path.join(venv, "bin", "python")
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            r = subprocess.run([python, "-m", "pip", "install", "--no-build-isolation",
                                "--no-index", "--quiet", ROOT], capture_output=True, text=True,
                               env=env, timeout=1500)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            script = (
                "import logattn, logattn.torch, torch\n"
                "print(logattn.__file__)\n"
                "q = torch.randn(1, 2, 5, 4)\n"
                "y = logattn.torch.attention(q, q, q, log_values=True)\n"
                "print(tuple(y.shape), torch.ops.logattn.attention.default.name())\n")
            r = subprocess.run([python, "-c", script], capture_output=True, text=True, env=env,
                               cwd=d, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr)
            where, shape = r.stdout.splitlines()[:2]
            self.assertTrue(where.startswith(os.path.join(venv, "lib")), where)
            self.assertEqual(shape, "(1, 2, 5, 4) logattn::attention")


if __name__ == "__main__":
    unittest.main()
