"""`logattn serve` against bad and careless clients, over loopback only: slow clients cannot
take it off the air, heads and bodies are bounded whatever their encoding, a port in use or
an address of another machine is refused, the conversations folder is never read through a
link nor echoed, every entry in it can be listed and deleted."""
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from test_serve import LOGATTN, Server, curl, TinyModelCase

CURL = shutil.which("curl")


def raw_request(url, data, timeout=30):
    """Sends bytes to the server and returns what it answers until it closes."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server has answered and closed before the whole request was sent
        out = b""
        while True:
            try:
                piece = s.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            out += piece
        return out


def status_of(answer):
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


@unittest.skipUnless(CURL, "curl is not installed")
class ServeLimits(TinyModelCase):
    def setUp(self):
        self.conv_dir = tempfile.mkdtemp(dir=self.dir)
        self.server = None

    def tearDown(self):
        if self.server and self.server.p.poll() is None:
            self.server.stop(signal.SIGKILL)

    def start(self, *extra):
        self.server = Server(self.model, self.conv_dir, *extra)
        return self.server.url

    def test_slow_clients_do_not_take_the_server_off_the_air(self):
        # 1,000 connections that each send a byte of their headers every 1.5 s (more than
        # a fixed pool of workers would have), while /health is asked every second.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 1200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        # The server raises its own limit to the hard one; both need a file per connection.
        count = min(1000, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100)
        url = self.start()
        host, port = url.split("//")[1].split(":")
        slow = []
        for _ in range(count):
            s = socket.create_connection((host, int(port)))
            s.sendall(b"GET /health HTTP/1.1\r\n")
            slow.append(s)
        stop = threading.Event()
        cut = [0]

        def trickle():
            while not stop.wait(1.5):
                for s in slow:
                    try:
                        s.send(b"X")
                    except OSError:
                        cut[0] += 1

        t = threading.Thread(target=trickle)
        t.start()
        try:
            worst = 0.0
            deadline = time.time() + 14
            while time.time() < deadline:
                t0 = time.time()
                status, out = curl(url + "/health", timeout=5)
                worst = max(worst, time.time() - t0)
                self.assertEqual((status, out), (200, {"status": "ok"}))
                time.sleep(1)
            self.assertLess(worst, 1.0)
            print(f"slow clients: /health answered within {worst:.3f} s at worst")
            # The headers' deadline (10 s) has cut every slow client off.
            for s in slow[:20]:
                s.settimeout(5)
                answer = b""
                try:
                    while piece := s.recv(4096):
                        answer += piece
                except (ConnectionResetError, socket.timeout):
                    pass
                self.assertEqual(status_of(answer), 408, answer)
                self.assertIn(b"headers did not arrive in time", answer)
        finally:
            stop.set()
            t.join()
            for s in slow:
                s.close()
        self.assertEqual(curl(url + "/health")[0], 200)

    def test_heads_and_bodies_are_bounded_whatever_their_encoding(self):
        url = self.start("--max-body-kb", "64")
        # Too many header lines, one line too long: 431, the connection closed.
        many = b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200))
        answer = raw_request(url, many + b"\r\n")
        self.assertEqual(status_of(answer), 431, answer)
        self.assertIn(b"headers exceed", answer)
        answer = raw_request(url, b"GET /health HTTP/1.1\r\nX: " + b"y" * 40000 + b"\r\n\r\n")
        self.assertEqual(status_of(answer), 431, answer)
        # An endless stream of header lines is cut off long before it ends.
        host, port = url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\n")
            sent = 0
            try:
                while sent < 50 << 20:
                    s.sendall(b"X-Long: " + b"z" * 4000 + b"\r\n")
                    sent += 4010
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.assertLess(sent, 50 << 20)
        # A chunked body over the limit: 413, in small chunks or one large one.
        body = json.dumps({"prompt": "a" * (200 << 10)}).encode()
        for piece in (1000, len(body)):
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + piece]), body[i:i + piece])
                              for i in range(0, len(body), piece))
            answer = raw_request(url, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
            self.assertEqual(status_of(answer), 413, answer[:300])
            self.assertIn(b"larger than this server accepts", answer)
        # Within the limit, chunked works; and a JSON body is JSON whatever the Content-Type
        # says (curl -d sends a form type): a 20 KB prompt is read.
        small = json.dumps({"prompt": "All", "max_tokens": 2}).encode()
        answer = raw_request(url, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close"
                             b"\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                             % (len(small), small))
        self.assertEqual(status_of(answer), 200, answer)
        form = subprocess.run([CURL, "-s", "-w", "\n%{http_code}", url + "/v1/completions", "-d",
                               json.dumps({"prompt": "a" * 20000, "max_tokens": 2})],
                              capture_output=True, text=True, timeout=60).stdout
        self.assertEqual(form.rsplit("\n", 1)[1], "200", form[:300])
        # A declared length over the limit, and a body that never comes.
        answer = raw_request(url, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 99999999999\r\n\r\n{")
        self.assertEqual(status_of(answer), 413, answer)
        self.assertEqual(curl(url + "/health")[0], 200)

    def test_a_stop_signal_right_after_start_stops_the_server(self):
        # SIGTERM as soon as the server says it listens, on one CPU (where the signal's thread
        # often runs before the server has started listening, and a stop was lost): it stops.
        cpu = sorted(os.sched_getaffinity(0))[0]
        for _ in range(10):
            p = subprocess.Popen([LOGATTN, "serve", "--model", self.model, "--port", "0"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
            self.assertIn("listening on", p.stdout.readline())
            p.send_signal(signal.SIGTERM)
            try:
                self.assertEqual(p.wait(timeout=20), 0)
            finally:
                p.kill()
                p.communicate()

    def test_a_port_in_use_and_a_foreign_address_are_refused(self):
        url = self.start()
        port = url.rsplit(":", 1)[1]
        r = subprocess.run([LOGATTN, "serve", "--model", self.model, "--port", port],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("the port is in use", r.stderr)
        # 192.0.2.1 is TEST-NET-1: never an address of this machine; nothing is sent to it.
        r = subprocess.run([LOGATTN, "serve", "--model", self.model, "--port", "0", "--host",
                            "192.0.2.1"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("cannot listen on 192.0.2.1:0: not an address of this machine", r.stderr)
        self.assertNotIn("terminate", r.stderr)

    def test_the_conversations_folder_is_never_read_through_nor_echoed(self):
        url = self.start()
        status, out = curl(url + "/v1/conversations", method="POST")
        real = out["id"]
        self.assertEqual(curl(url + "/v1/completions", {"prompt": "All the", "max_tokens": 3,
                                                        "conversation": real})[0], 200)
        tokens = curl(url + "/v1/conversations/" + real)[1]["tokens"]
        self.server.stop()
        secret = os.path.join(self.dir, "secret.txt")
        with open(secret, "w") as f:
            f.write("hunter2 " * 100)
        d = self.conv_dir
        os.symlink(secret, os.path.join(d, "link.safetensors"))
        with open(os.path.join(d, "garbage.safetensors"), "wb") as f:
            f.write(b"\xff" * 100)
        os.mkfifo(os.path.join(d, "fifo.safetensors"))
        os.mkdir(os.path.join(d, "folder.safetensors"))
        os.mkdir(os.path.join(d, "stale.safetensors.tmp.123"))  # a temporary of any kind
        # The same in the layout of conversation folders: a conversation that is a link to
        # a folder elsewhere (holding a real state), a turn that is a FIFO, a stale temporary
        # inside a conversation's folder.
        outside = os.path.join(self.dir, "outside")
        os.mkdir(outside)
        shutil.copy(os.path.join(d, real, "1.safetensors"), os.path.join(outside, "1.safetensors"))
        os.symlink(outside, os.path.join(d, "linkdir"))
        os.mkdir(os.path.join(d, "fifoturn"))
        os.mkfifo(os.path.join(d, "fifoturn", "1.safetensors"))
        with open(os.path.join(d, real, "2.safetensors.tmp.99"), "w") as f:
            f.write("half")
        url = self.start()
        self.assertFalse(os.path.exists(os.path.join(d, "stale.safetensors.tmp.123")))
        self.assertEqual(sorted(os.listdir(os.path.join(d, real))),
                         ["1.json", "1.safetensors"])  # the turn's state and text
        status, out = curl(url + "/v1/conversations")
        self.assertEqual(status, 200)
        bad_ones = ["link", "garbage", "fifo", "folder", "linkdir", "fifoturn"]
        self.assertEqual(sorted(c["id"] for c in out["data"]), sorted(bad_ones + [real]))
        status, out = curl(url + "/v1/conversations/" + real)
        self.assertEqual((status, out["tokens"]), (200, tokens), out)
        for bad in bad_ones:
            status, out = curl(url + "/v1/conversations/" + bad)
            self.assertEqual(status, 500, (bad, out))
            self.assertIn("damaged or not a regular file", out["error"]["message"])
            self.assertNotIn("hunter2", json.dumps(out))
            self.assertNotIn("header length", json.dumps(out))
            status, out = curl(url + "/v1/completions", {"prompt": "x", "max_tokens": 1,
                                                         "conversation": bad})
            self.assertNotIn("hunter2", json.dumps(out))
            status, out = curl(url + "/v1/conversations/" + bad, method="DELETE")
            self.assertEqual((status, out.get("deleted")), (200, True), (bad, out))
        self.assertEqual(sorted(os.listdir(d)), sorted([".lock", real]))
        with open(secret) as f:
            self.assertTrue(f.read().startswith("hunter2"))  # the link went, not its target
        self.assertEqual(os.listdir(outside), ["1.safetensors"])
        self.assertEqual(curl(url + "/health")[0], 200)


if __name__ == "__main__":
    unittest.main()
