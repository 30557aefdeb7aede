"""Three `logattn serve` processes on one Redis (`--state-store`), started here on a loopback
port with its append-only file on: a conversation whose turns go round the servers equals
one `generate` over its whole text, bit for bit, and forks and rewinds made on one server
are seen by the others; the same conversation sent to two servers at once commits one turn
(the other answers 409); a server killed mid-answer leaves the conversation at its last
committed turn; Redis killed and restarted keeps every committed state; Redis out of reach
gives 503 with a message, and the servers recover when it is back; damaged values are
refused with a message naming the conversation; the time to live and the key prefix."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from test_serve import CURL, Server, curl, run, train_serve_model

REDIS = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
PREFIX = "test:"
# An answer this long takes seconds on the tiny model: another server's turn of a few tokens
# commits well before it ends.
LONG = 600000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server of this test alone: loopback, append-only file fsynced at every write,
    so that a kill loses nothing it acknowledged."""
    def __init__(self, folder, port=None):
        self.folder, self.port = folder, port or free_port()
        self.start()

    def start(self):
        self.p = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if self.cli("PING") == "PONG":
                return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=30)

    def cli(self, *args):
        r = subprocess.run([REDIS_CLI, "-p", str(self.port), *args], capture_output=True,
                           text=True, timeout=30)
        return r.stdout.strip()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"


@unittest.skipUnless(CURL and REDIS and REDIS_CLI, "curl or redis-server is not installed")
class ServeOnRedis(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        cls.model = train_serve_model(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def setUp(self):
        self.redis_dir = tempfile.mkdtemp(dir=self.dir)
        self.redis = Redis(self.redis_dir)
        self.servers = [self.serve() for _ in range(3)]

    def tearDown(self):
        for s in self.servers:
            if s.p.poll() is None:
                s.stop(signal.SIGKILL)
        self.redis.kill()

    def serve(self, *extra, prefix=PREFIX):
        return Server(self.model, None, "--state-store", self.redis.url, "--state-prefix", prefix,
                      "--max-tokens", str(LONG), *extra)

    def generate(self, prompt, n):
        r = run("generate", "--model", self.model, "--prompt", prompt, "-n", str(n),
                "--temperature", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout[len(prompt):-1]

    def create(self, server=0):
        status, conv = curl(self.servers[server].url + "/v1/conversations", "")
        self.assertEqual(status, 200, conv)
        return conv["id"]

    def turn(self, cid, prompt, server, n=8):
        status, out = curl(self.servers[server].url + "/v1/completions",
                           {"prompt": prompt, "max_tokens": n, "temperature": 0,
                            "conversation": cid})
        self.assertEqual(status, 200, out)
        return out["choices"][0]["text"]

    def info(self, cid, server=0):
        status, out = curl(self.servers[server].url + "/v1/conversations/" + cid)
        self.assertEqual(status, 200, out)
        return out

    def test_turns_on_every_server_equal_one_generate(self):
        cid = self.create()
        text = ""
        prompts = ["All the", " world", " and", " all", " the"]
        answers = []
        for i, prompt in enumerate(prompts):
            answer = self.turn(cid, prompt, server=i % 3)
            text += prompt
            self.assertEqual(answer, self.generate(text, 8), i)
            text += answer
            answers.append(answer)
        for server in range(3):
            info = self.info(cid, server)
            self.assertEqual((info["turn"], info["tokens"]), (5, len(text)))  # a byte a token
        status, msgs = curl(self.servers[2].url + "/v1/conversations/" + cid + "/messages")
        self.assertEqual([(m["user"], m["assistant"]) for m in msgs["data"]],
                         list(zip(prompts, answers)))
        # A fork made on one server, continued on another: its next turn is the original's.
        status, fork = curl(self.servers[1].url + "/v1/conversations/" + cid + "/fork",
                            {"turn": 2})
        self.assertEqual((status, fork["turn"]), (200, 2), fork)
        self.assertEqual(self.turn(fork["id"], prompts[2], server=2), answers[2])
        # A rewind on one server; the regenerated turn on another has the same bits.
        status, out = curl(self.servers[0].url + "/v1/conversations/" + cid + "/rewind",
                           {"turn": 3})
        self.assertEqual((status, out["turn"]), (200, 3), out)
        self.assertEqual(self.turn(cid, prompts[3], server=1), answers[3])
        # A title set on one is seen by all; the list of every server holds both.
        status, _ = curl(self.servers[2].url + "/v1/conversations/" + cid, {"title": "t"},
                         method="PATCH")
        self.assertEqual(status, 200)
        self.assertEqual(self.info(cid, 0)["title"], "t")
        for s in self.servers:
            ids = {c["id"] for c in curl(s.url + "/v1/conversations")[1]["data"]}
            self.assertEqual(ids, {cid, fork["id"]})
        # Deleted on one: gone from all, and from Redis.
        status, _ = curl(self.servers[1].url + "/v1/conversations/" + fork["id"],
                         method="DELETE")
        self.assertEqual(status, 200)
        status, _ = curl(self.servers[0].url + "/v1/conversations/" + fork["id"])
        self.assertEqual(status, 404)
        self.assertEqual(self.redis.cli("EXISTS", PREFIX + "conversation:" + fork["id"]), "0")

    def start_long_answer(self, cid, server):
        """A streamed answer of many tokens, its first event read: the server has taken the
        conversation and is answering. Returns the open curl process."""
        p = subprocess.Popen(
            [CURL, "-sN", self.servers[server].url + "/v1/completions",
             "-H", "Content-Type: application/json", "--data-binary",
             json.dumps({"prompt": " and", "max_tokens": LONG, "temperature": 0,
                         "conversation": cid, "stream": True})],
            stdout=subprocess.PIPE, text=True)
        self.assertTrue(p.stdout.readline().startswith("data: "))
        return p

    def test_the_same_conversation_on_two_servers_at_once_commits_one_turn(self):
        cid = self.create()
        self.turn(cid, "All the", server=0)
        long = self.start_long_answer(cid, server=0)
        # While server 0 answers, server 1 answers the same conversation and commits first.
        short = self.turn(cid, " world", server=1)
        # The client of server 0 goes: its answer ends there, and is not committed.
        long.kill()
        long.wait(timeout=60)
        long.stdout.close()
        deadline = time.time() + 60
        while "logattn_requests_failed_total 1.0" not in curl(self.servers[0].url + "/metrics")[1]:
            self.assertLess(time.time(), deadline)
            time.sleep(0.01)
        info = self.info(cid, 2)
        self.assertEqual(info["turn"], 2)
        status, msgs = curl(self.servers[2].url + "/v1/conversations/" + cid + "/messages")
        self.assertEqual(msgs["data"][1]["assistant"], short)
        # Server 0 goes on from the committed turn.
        self.assertEqual(self.turn(cid, " and", server=0),
                         self.generate("All the" + msgs["data"][0]["assistant"] + " world" +
                                       short + " and", 8))

    def test_a_conflict_is_answered_409(self):
        cid = self.create()
        self.turn(cid, "All the", server=0)
        result = {}

        def slow():
            result["out"] = curl(self.servers[0].url + "/v1/completions",
                                 {"prompt": " and", "max_tokens": LONG, "temperature": 0,
                                  "conversation": cid})
        t = threading.Thread(target=slow)
        t.start()
        # Wait until server 0 is answering (its batch holds a sequence), then commit first.
        deadline = time.time() + 60
        while time.time() < deadline:
            metrics = curl(self.servers[0].url + "/metrics")[1]
            if "logattn_active_sequences 1.0" in metrics:
                break
            time.sleep(0.01)
        self.turn(cid, " world", server=1)
        t.join(timeout=120)
        status, out = result["out"]
        self.assertEqual(status, 409, out)
        self.assertIn("send the turn again", out["error"]["message"])
        self.assertEqual(self.info(cid)["turn"], 2)

    def test_a_server_killed_mid_answer_leaves_the_last_committed_turn(self):
        cid = self.create()
        text = "All the"
        text += self.turn(cid, "All the", server=0)
        long = self.start_long_answer(cid, server=0)
        self.servers[0].stop(signal.SIGKILL)
        long.kill()  # its client (which may be blocked on its own output)
        long.wait(timeout=60)
        long.stdout.close()
        self.assertEqual(self.info(cid, 1)["turn"], 1)
        answer = self.turn(cid, " world", server=1)
        self.assertEqual(answer, self.generate(text + " world", 8))

    def test_redis_killed_and_restarted_keeps_every_committed_state(self):
        cid = self.create()
        text = ""
        for i, prompt in enumerate(["All the", " world"]):
            text += prompt + self.turn(cid, prompt, server=i)
        self.redis.kill()
        # Out of reach: 503 with a message, for turns and for the conversation endpoints.
        status, out = curl(self.servers[2].url + "/v1/completions",
                           {"prompt": " and", "max_tokens": 4, "conversation": cid})
        self.assertEqual(status, 503, out)
        self.assertIn("unreachable", out["error"]["message"])
        for path, method in (("/v1/conversations", None), ("/v1/conversations/" + cid, None),
                             ("/v1/conversations", "POST")):
            status, out = curl(self.servers[0].url + path, "" if method else None, method=method)
            self.assertEqual(status, 503, (path, out))
        self.assertEqual(curl(self.servers[0].url + "/health")[0], 200)  # the server lives on
        self.redis.start()
        # Back: every server reconnects; the conversation goes on from its last turn.
        for server in range(3):
            self.assertEqual(self.info(cid, server)["turn"], 2)
        answer = self.turn(cid, " and", server=2)
        self.assertEqual(answer, self.generate(text + " and", 8))

    def test_damaged_values_are_refused_naming_the_conversation(self):
        key = PREFIX + "conversation:"
        for field, value, where in (("state:1", "garbage", "turn"),
                                    ("turns", "1:x", "info"),
                                    ("version", "-3", "info"),
                                    ("turns", "2:5 1:9", "info")):
            cid = self.create()
            self.turn(cid, "All the", server=0)
            self.redis.cli("HSET", key + cid, field, value)
            if where == "turn":
                status, out = curl(self.servers[1].url + "/v1/completions",
                                   {"prompt": " x", "max_tokens": 2, "conversation": cid})
            else:
                status, out = curl(self.servers[1].url + "/v1/conversations/" + cid)
            self.assertEqual(status, 500, (field, out))
            self.assertIn(f"conversation '{cid}'", out["error"]["message"])
            self.assertIn("damaged", out["error"]["message"])
            # It can still be deleted.
            self.assertEqual(curl(self.servers[2].url + "/v1/conversations/" + cid,
                                  method="DELETE")[0], 200)

    def test_time_to_live_and_prefix(self):
        self.servers.append(self.serve("--state-ttl", "1000", prefix="other:"))
        cid = self.create(server=3)
        self.turn(cid, "All the", server=3)
        ttl = int(self.redis.cli("TTL", "other:conversation:" + cid))
        self.assertTrue(0 < ttl <= 1000, ttl)
        self.assertEqual(self.redis.cli("TTL", PREFIX + "conversation:" + self.create()), "-1")
        # Another prefix is another store.
        self.assertEqual(curl(self.servers[0].url + "/v1/conversations/" + cid)[0], 404)
        # An expired conversation is gone, and leaves the list.
        self.redis.cli("EXPIRE", "other:conversation:" + cid, "0")
        self.assertEqual(curl(self.servers[3].url + "/v1/conversations/" + cid)[0], 404)
        self.assertEqual(curl(self.servers[3].url + "/v1/conversations")[1]["data"], [])

    def test_bad_settings_exit_1_naming_the_option(self):
        for args, words in ((["--state-store", "http://x:1"], "redis://"),
                            (["--state-store", "redis://127.0.0.1:99999"], "--state-store"),
                            (["--state-store", "redis://127.0.0.1:99999"], "port"),
                            (["--state-store", "redis://127.0.0.1:1/x"], "--state-store"),
                            (["--state-store", "redis://127.0.0.1:1/x"], "database"),
                            (["--state-store", "redis://127.0.0.1:1/"], "database"),
                            (["--state-store", self.redis.url, "--conversations", self.dir],
                             "not both"),
                            (["--state-store", self.redis.url, "--state-ttl", "-1"],
                             "--state-ttl"),
                            (["--state-store", self.redis.url, "--state-prefix", "a b"],
                             "--state-prefix")):
            r = run("serve", "--model", self.model, "--port", "0", *args, timeout=60)
            self.assertEqual(r.returncode, 1, (args, r.stderr))
            self.assertIn(words, r.stderr, args)


if __name__ == "__main__":
    unittest.main()
