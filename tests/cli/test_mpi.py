"""Data-parallel training under Open MPI's mpirun: N processes with --batch b are, bit for
bit, one process with --batch b --accum N (the same windows, the gradients summed in the
same order, the same update); the same job twice, and over TCP, gives the same bits; a
killed rank stops the job with the last checkpoint intact, and --resume continues as if
never stopped; bad set-ups (another process count on resume, different data on the ranks,
a rank that cannot read its data) are clear errors that end the job."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

LOGATTN = os.environ.get("LOGATTN_BIN", "build/logattn")
MPIRUN = os.environ.get("LOGATTN_MPIRUN") or shutil.which("mpirun")


def mpirun_args(np, tcp=False):
    # Shared memory without the single-copy (CMA) path, which containers often forbid.
    args = [MPIRUN, "-np", str(np), "--oversubscribe", "--bind-to", "none", "-x",
            "OMP_NUM_THREADS=1", "--mca", "btl_vader_single_copy_mechanism", "none"]
    if os.geteuid() == 0:
        args.append("--allow-run-as-root")
    if tcp:  # TCP over loopback, as between machines
        args += ["--mca", "btl", "tcp,self"]
    return args


def mpmd(rank0, rank1, wdirs=None):
    """One process of each command line in one job (mpirun's A : B), each in its own working
    folder when wdirs are given."""
    w0, w1 = (["-wdir", wdirs[0]], ["-wdir", wdirs[1]]) if wdirs else ([], [])
    return (mpirun_args(1) + w0 + rank0 + [":", "-np", "1", "-x", "OMP_NUM_THREADS=1"] + w1 +
            rank1)


def with_option(cmd, option, value=None):
    """cmd with option set to value (replacing the value it has), or the flag added."""
    cmd = list(cmd)
    if value is None:
        return cmd + [option]
    if option in cmd:
        cmd[cmd.index(option) + 1] = value
        return cmd
    return cmd + [option, value]


def run(cmd, timeout=300):
    return subprocess.run(cmd, capture_output=True, encoding="latin-1", timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def losses(out):
    import json
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f]


@unittest.skipUnless(MPIRUN, "mpirun is not installed")
class Mpi(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        text = os.path.join(self.dir, "text.txt")
        with open(text, "w") as f:
            f.write("".join(f"All the world's a stage, and all the men and women merely "
                            f"players {i}.\n" for i in range(400)))
        self.tokens = os.path.join(self.dir, "tok")
        r = run([LOGATTN, "tokenize", "--data", text, "--out", self.tokens, "--tokenizer", "bytes"])
        self.assertEqual(r.returncode, 0, r.stderr)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def train(self, out, *extra):
        return [LOGATTN, "train", "--preset", "tiny", "--tokenizer", "bytes",
                "--tokens", os.path.join(self.tokens, "train.bin"),
                "--val-tokens", os.path.join(self.tokens, "val.bin"), "--out", out,
                "--context", "16", "--eval-batches", "2", "--warmup", "2", *extra]

    def test_n_processes_equal_one_process_accumulating_n_micro_batches(self):
        for attention in ("log", "softmax"):
            two = os.path.join(self.dir, "two-" + attention)
            one = os.path.join(self.dir, "one-" + attention)
            common = ("--attention", attention, "--steps", "20", "--eval-every", "10")
            r = run(mpirun_args(2) + self.train(two, "--batch", "2", *common))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("processes=2 global-batch=4", r.stdout)
            self.assertIn("data parallel: 2 processes (Open MPI", r.stdout)
            r = run(self.train(one, "--batch", "2", "--accum", "2", *common))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(losses(two), losses(one), attention)
            self.assertEqual(len(losses(two)), 20)
            self.assertEqual(read(os.path.join(two, "model.safetensors")),
                             read(os.path.join(one, "model.safetensors")), attention)
            # Rank 0 alone wrote the folder.
            self.assertEqual(sorted(os.listdir(two)), sorted(os.listdir(one)))

    def test_overlapped_reduction_gives_the_bits_of_the_reduction_after_the_backward(self):
        # Each layer's sum starts while the backward goes on; the sums are the same.
        for accum in ("1", "2"):
            outs = []
            for overlap in (True, False):
                out = os.path.join(self.dir, f"overlap-{overlap}-{accum}")
                r = run(mpirun_args(2) + self.train(out, "--batch", "2", "--accum", accum,
                                                    "--steps", "10", "--eval-every", "5",
                                                    *(["--overlap-reduce"] if overlap else [])))
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(f"overlap-reduce={str(overlap).lower()}", r.stdout)
                outs.append((losses(out), read(os.path.join(out, "model.safetensors"))))
            self.assertEqual(outs[0], outs[1], accum)

    def test_the_same_job_twice_and_over_tcp_gives_the_same_bits(self):
        outs = []
        for name, tcp in (("a", False), ("b", False), ("tcp", True)):
            out = os.path.join(self.dir, name)
            r = run(mpirun_args(2, tcp) + self.train(out, "--batch", "2", "--steps", "10",
                                                     "--eval-every", "5"))
            self.assertEqual(r.returncode, 0, r.stderr)
            outs.append(read(os.path.join(out, "model.safetensors")))
        self.assertEqual(outs[0], outs[1])
        self.assertEqual(outs[0], outs[2])

    def test_a_killed_rank_stops_the_job_and_resume_continues_exactly(self):
        args = ("--batch", "2", "--steps", "400", "--eval-every", "1")
        straight = os.path.join(self.dir, "straight")
        r = run(mpirun_args(2) + self.train(straight, *args))
        self.assertEqual(r.returncode, 0, r.stderr)
        out = os.path.join(self.dir, "killed")
        p = subprocess.Popen(mpirun_args(2) + self.train(out, *args), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, encoding="latin-1")
        # Rank 1 is the mpirun child whose environment says so; kill it once training runs.
        victim = None
        deadline = time.time() + 60
        while victim is None and time.time() < deadline:
            time.sleep(0.2)
            for pid in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                      text=True).stdout.split():
                try:
                    env = read(f"/proc/{pid}/environ").split(b"\0")
                except OSError:
                    continue
                if b"OMPI_COMM_WORLD_RANK=1" in env and os.path.exists(
                        os.path.join(out, "resume.safetensors")):
                    victim = int(pid)
        self.assertIsNotNone(victim, "rank 1 not found, or no step written")
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        _, err = p.communicate(timeout=120)
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(err, r"rank 1 .*exited on signal 9")
        r = run([LOGATTN, "eval", "--model", os.path.join(out, "model.safetensors"),
                 "--tokens", os.path.join(self.tokens, "val.bin"), "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)  # the last checkpoint is intact
        done = len(losses(out))
        self.assertLess(done, 400)
        r = run(mpirun_args(2) + self.train(out, *args, "--resume"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(read(os.path.join(out, "model.safetensors")),
                         read(os.path.join(straight, "model.safetensors")))
        self.assertEqual(losses(out), losses(straight))
        # Resuming with another number of processes would change the global batch.
        r = run(self.train(out, *args[:2], "--steps", "500", "--eval-every", "1", "--resume"))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("was trained by 2 process(es) and this is 1", r.stderr)
        self.assertIn("mpirun -np 2", r.stderr)

    def test_bad_setups_are_clear_errors_that_end_the_job(self):
        # The same command line in two working folders: train.bin there holds the same ids
        # in reverse order on rank 1, and is missing on rank 1.
        a, b, c = (os.path.join(self.dir, x) for x in ("a", "b", "c"))
        for d in (a, b, c):
            os.mkdir(d)
        ids = read(os.path.join(self.tokens, "train.bin"))
        with open(os.path.join(a, "train.bin"), "wb") as f:
            f.write(ids)
        with open(os.path.join(b, "train.bin"), "wb") as f:
            f.write(b"".join(ids[i:i + 2] for i in range(len(ids) - 2, -1, -2)))
        out = os.path.join(self.dir, "bad")
        cmd = [x if not x.endswith("train.bin") else "train.bin"
               for x in self.train(out, "--batch", "2", "--steps", "5")]
        cmd[0] = os.path.abspath(LOGATTN)
        r = run(mpmd(cmd, cmd, wdirs=(a, b)), timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("training tokens differ between processes", r.stderr)
        r = run(mpmd(cmd, cmd, wdirs=(a, c)), timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("logattn: error (rank 1 of 2)", r.stderr)
        self.assertIn("train.bin", r.stderr)
        # Not started by mpirun, bench allreduce says how to run it.
        r = run([LOGATTN, "bench", "allreduce"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("run it under mpirun", r.stderr)

    def differing(self, rank0, rank1, timeout=60):
        """Runs one job of two command lines; returns its result after checking that it ended
        at once with the options' message on both processes."""
        t0 = time.time()
        r = run(mpmd(rank0, rank1), timeout=timeout)
        self.assertEqual(r.returncode, 1, r.stderr[-2000:])
        self.assertLess(time.time() - t0, timeout)
        for rank in (0, 1):
            self.assertIn(f"logattn: error (rank {rank} of 2): ", r.stderr)
        self.assertIn("the processes of this job differ", r.stderr)
        return r

    def test_processes_started_with_different_options_stop_at_once_naming_the_option(self):
        out = os.path.join(self.dir, "mixed")
        base = self.train(out, "--batch", "4", "--steps", "4", "--eval-every", "2")
        # Each of these hung, crashed inside MPI or mixed settings silently.
        for option, one, other in [("--steps", "8", "4"), ("--preset", "small", "tiny"),
                                   ("--eval-every", "3", "2"), ("--batch", "3", "4"),
                                   ("--context", "8", "16"), ("--accum", "2", "1"),
                                   ("--attention", "softmax", "log"), ("--clip", "0", "1")]:
            r = self.differing(with_option(base, option, one), with_option(base, option, other))
            self.assertIn(f"{option} is '{one}' on rank 0 but '{other}' on rank 1", r.stderr)
        r = self.differing(base + ["--overlap-reduce"], base)
        self.assertIn("--overlap-reduce is 'true' on rank 0 but 'false' on rank 1", r.stderr)
        # The model as built from files: the same option, different files.
        configs = []
        for d_emb in (32, 64):
            path = os.path.join(self.dir, f"config{d_emb}.json")
            with open(path, "w") as f:
                f.write('{"vocab": 256, "d_emb": %d, "n_heads": 2, "n_layers": 1, "d_key": 8, '
                        '"d_val": 8, "context": 16}' % d_emb)
            configs.append(path)
        a, b = (os.path.join(self.dir, x) for x in ("wa", "wb"))
        for d, path in ((a, configs[0]), (b, configs[1])):
            os.mkdir(d)
            shutil.copy(path, os.path.join(d, "model.json"))
        cmd = [os.path.abspath(LOGATTN)] + base[1:] + ["--model-config", "model.json"]
        r = run(mpmd(cmd, cmd, wdirs=(a, b)), timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr[-2000:])
        self.assertIn("the model's d_emb is '32' on rank 0 but '64' on rank 1", r.stderr)

    def test_every_option_of_train_is_compared_across_processes(self):
        # Every option `train --help` lists (the option table), given another value on rank 1:
        # an option added later cannot be forgotten.
        help_text = run([LOGATTN, "train", "--help"]).stdout
        options = re.findall(r"^  (--[a-z0-9-]+)(?: (INT|UINT|FLOAT|TEXT))?", help_text, re.M)
        self.assertGreater(len(options), 20)
        out = os.path.join(self.dir, "every")
        base = self.train(out, "--batch", "2", "--steps", "2")
        values = {"INT": ("7", "9"), "UINT": ("7", "9"), "FLOAT": ("0.5", "0.25"),
                  "TEXT": ("x1", "x2")}
        for option, kind in options:
            if option == "--help":
                continue
            if kind:
                one, other = values[kind]
                rank0, rank1 = with_option(base, option, one), with_option(base, option, other)
            else:  # a flag
                rank0, rank1 = with_option(base, option), base
                one, other = "true", "false"
            r = self.differing(rank0, rank1)
            self.assertIn(f"{option} is '{one}' on rank 0 but '{other}' on rank 1", r.stderr)


if __name__ == "__main__":
    unittest.main()
