"""A bounded soak of `logattn serve` over loopback (about a minute): mixed requests from
several clients at once (completions, streams the client cuts, conversation turns, metrics),
a kill -9 and restart in the middle. Every request is answered or refused with a status
(connection errors only while the server is down), every conversation ends at a turn it was
sent (one whole turn or none of the one in flight at the kill), and the server's resident
memory is flat across the last stretch of load."""
import json
import os
import random
import signal
import socket
import threading
import time
import unittest
import urllib.error
import urllib.request

from test_serve import Server, TinyModelCase

SECONDS = float(os.environ.get("LOGATTN_SOAK_SECONDS", "50"))
MAX_TOKENS = 8


def resident_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def request(url, path, body=None, method=None, timeout=60):
    """(status, parsed JSON body, or text for /metrics); raises OSError when the server cannot
    be reached."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            return r.status, body.decode() if path == "/metrics" else json.loads(body)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Soak(TinyModelCase):
    def test_mixed_load_with_a_kill_and_restart(self):
        conv_dir = os.path.join(self.dir, "conversations")
        os.mkdir(conv_dir)
        extra = ("--max-batch", "4", "--max-queue", "4")
        server = Server(self.model, conv_dir, *extra)
        state = {"url": server.url, "down": False, "epoch": 0}
        lock = threading.Lock()
        convs = {}
        for _ in range(6):
            status, out = request(server.url, "/v1/conversations", {}, method="POST")
            self.assertEqual(status, 200, out)
            # acknowledged tokens, and those of the first turn whose answer was lost
            convs[out["id"]] = {"tokens": 0, "lost": 0, "lock": threading.Lock()}
        counts = {"ok": 0, "refused": 0, "down": 0, "cut": 0}
        failures = []
        stop = threading.Event()

        def count(key):
            with lock:
                counts[key] += 1

        def one(rng):
            url, epoch = state["url"], state["epoch"]
            action = rng.random()
            try:
                if action < 0.3:
                    status, out = request(url, "/v1/completions",
                                          {"prompt": "All the", "max_tokens": MAX_TOKENS,
                                           "temperature": rng.choice([0, 0.8]),
                                           "seed": rng.randrange(1000)})
                elif action < 0.45:
                    # A stream the client cuts after its first bytes.
                    host, port = url.split("//")[1].split(":")
                    body = json.dumps({"prompt": "All", "max_tokens": 64, "stream": True})
                    with socket.create_connection((host, int(port)), timeout=30) as s:
                        s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                   "application/json\r\nContent-Length: %d\r\n\r\n%s"
                                   % (len(body), body)).encode())
                        if not s.recv(64):
                            raise ConnectionResetError("closed without an answer")
                    count("cut")
                    return
                elif action < 0.85:
                    cid = rng.choice(sorted(convs))
                    c = convs[cid]
                    with c["lock"]:  # one turn at a time per conversation
                        prompt = "turn %d " % rng.randrange(100)
                        turn = len(prompt.encode()) + MAX_TOKENS
                        try:
                            status, out = request(url, "/v1/completions",
                                                  {"prompt": prompt, "max_tokens": MAX_TOKENS,
                                                   "temperature": 0, "conversation": cid})
                        except OSError:
                            # The turn in flight at the kill (the first lost) may be committed.
                            c["lost"] = c["lost"] or turn
                            raise
                        if status == 200:
                            if out["usage"]["total_tokens"] != turn:
                                failures.append(f"turn of {turn} tokens: {out['usage']}")
                            c["tokens"] += turn
                else:
                    status, out = request(url, "/metrics" if action < 0.93 else "/health")
            except OSError as e:
                # Only while the server is down (or for a request sent before it went down).
                if state["down"] or state["epoch"] != epoch:
                    count("down")
                else:
                    failures.append(repr(e))
                return
            except json.JSONDecodeError as e:
                failures.append(repr(e))
                return
            if status == 200:
                count("ok")
            elif status == 429:
                count("refused")
            else:
                failures.append(f"{status} {out}")

        def client(seed):
            rng = random.Random(seed)
            while not stop.is_set():
                one(rng)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        try:
            time.sleep(SECONDS * 0.3)
            # kill -9 mid-load; turns in flight may be committed or not.
            state["down"] = True
            server.p.send_signal(signal.SIGKILL)
            server.p.wait()
            time.sleep(0.5)
            server = Server(self.model, conv_dir, *extra)
            # A turn whose answer the kill took: the conversation holds it whole or not at all.
            time.sleep(1)
            locks = [c["lock"] for c in convs.values()]
            for held in locks:
                held.acquire()
            try:
                for cid, c in convs.items():
                    status, out = request(server.url, "/v1/conversations/" + cid)
                    self.assertEqual(status, 200, out)
                    self.assertIn(out["tokens"], (c["tokens"], c["tokens"] + c["lost"]), cid)
                    c["tokens"], c["lost"] = out["tokens"], 0
                state["url"], state["epoch"] = server.url, 1
            finally:
                for held in locks:
                    held.release()
            state["down"] = False
            time.sleep(SECONDS * 0.2)  # warm: every path has run since the restart
            warm = resident_kib(server.p.pid)
            time.sleep(SECONDS * 0.5)
            end = resident_kib(server.p.pid)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=120)
        self.assertEqual(failures, [])
        self.assertGreater(counts["ok"], 50, counts)
        self.assertGreater(counts["cut"], 5, counts)
        # Every conversation at the turn its acknowledged answers say.
        for cid, c in convs.items():
            status, out = request(server.url, "/v1/conversations/" + cid)
            self.assertEqual((status, out["tokens"]), (200, c["tokens"]), cid)
        # Resident memory flat over the last half of the load (allocator noise: 8 MiB).
        self.assertLess(end - warm, 8 * 1024, (warm, end))
        status, _ = request(server.url, "/health")
        self.assertEqual(status, 200)
        self.assertEqual(server.stop(), 0)
        print(f"soak: {counts}, resident {warm} -> {end} KiB")


if __name__ == "__main__":
    unittest.main()
