"""Data-parallel training under Open MPI's mpirun: N processes with --batch b are, bit for
bit, one process with --batch b --accum N (the same windows, the gradients summed in the
same order, the same update); the same job twice, and over TCP, gives the same bits; a
killed rank stops the job with the last checkpoint intact, and --resume continues as if
never stopped; bad set-ups (another process count on resume, different data on the ranks,
a rank that cannot read its data) are clear errors that end the job."""
import os
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


def mpmd(rank0, rank1):
    """One process of each command line in one job (mpirun's A : B)."""
    return mpirun_args(1) + rank0 + [":", "-np", "1", "-x", "OMP_NUM_THREADS=1"] + rank1


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
        other = os.path.join(self.dir, "other.bin")
        ids = read(os.path.join(self.tokens, "train.bin"))
        with open(other, "wb") as f:  # the same ids in reverse order
            f.write(b"".join(ids[i:i + 2] for i in range(len(ids) - 2, -1, -2)))
        out = os.path.join(self.dir, "bad")
        rank0 = self.train(out, "--batch", "2", "--steps", "5")
        # Each rank its own command line (MPMD): rank 1 reads other tokens.
        rank1 = [other if a.endswith("train.bin") else a for a in rank0]
        r = run(mpmd(rank0, rank1), timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("training tokens differ between processes", r.stderr)
        missing = os.path.join(self.dir, "missing.bin")
        rank1 = [missing if a.endswith("train.bin") else a for a in rank0]
        r = run(mpmd(rank0, rank1), timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("logattn: error (rank 1 of 2)", r.stderr)
        self.assertIn(missing, r.stderr)
        # Not started by mpirun, bench allreduce says how to run it.
        r = run([LOGATTN, "bench", "allreduce"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("run it under mpirun", r.stderr)


if __name__ == "__main__":
    unittest.main()
