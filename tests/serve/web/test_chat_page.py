"""The chat page `logattn serve` serves at /, in a real browser (headless Chromium from Debian,
driven by playwright-core from the npm registry): a person's message streamed back equals
the API's answer to the same request; regenerate gives it again; fork and edit work through
the conversation endpoints; a reload finds the conversation; a refused request and a server
that is gone are shown as messages; nothing goes to the browser's console but the refusal's
own network error.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
import urllib.request

LOGATTN = os.environ.get("LOGATTN_BIN", "build/logattn")
NODE_PATH = os.environ.get("NODE_PATH", "")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
HERE = os.path.dirname(os.path.abspath(__file__))


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


@unittest.skipUnless(os.path.exists(CHROMIUM), "chromium is not installed")
class ChatPage(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        text = os.path.join(self.dir, "text.txt")
        with open(text, "w") as f:
            f.write("".join(f"All the world's a stage, and all the men and women merely "
                            f"players {i}.\n" for i in range(300)))
        r = subprocess.run([LOGATTN, "train", "--preset", "tiny", "--data", text, "--out",
                            os.path.join(self.dir, "run"), "--steps", "60", "--batch", "4",
                            "--context", "32", "--lr", "3e-3", "--eval-every", "60",
                            "--eval-batches", "1"], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.model = os.path.join(self.dir, "run", "model.safetensors")
        self.server = subprocess.Popen(
            [LOGATTN, "serve", "--model", self.model, "--port", "0", "--conversations",
             os.path.join(self.dir, "convs"), "--max-prompt-tokens", "300"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = re.search(r"(http://\S+)", self.server.stdout.readline()).group(1)

    def tearDown(self):
        self.server.kill()
        self.server.wait()
        self.server.stdout.close()
        self.server.stderr.close()
        shutil.rmtree(self.dir)

    def test_a_person_talks_to_the_model(self):
        # What the API answers to the requests the page will send, each in a new conversation.
        def answer(text):
            conv = post(self.url + "/v1/conversations", {})["id"]
            out = post(self.url + "/v1/chat/completions",
                       {"conversation": conv, "messages": [{"role": "user", "content": text}],
                        "temperature": 0.7, "top_p": 1, "max_tokens": 40, "seed": 1})
            with urllib.request.urlopen(urllib.request.Request(
                    self.url + "/v1/conversations/" + conv, method="DELETE"), timeout=60):
                pass
            return out["choices"][0]["message"]["content"]
        want_first, want_edited = answer("ROMEO:"), answer("JULIET:")
        out_dir = os.environ.get("LOGATTN_SCREENSHOTS", self.dir)
        r = subprocess.run(["node", os.path.join(HERE, "chat_page.cjs"), self.url + "/",
                            str(self.server.pid), out_dir], capture_output=True, text=True,
                           timeout=300, env=dict(os.environ, NODE_PATH=NODE_PATH,
                                                 CHROMIUM=CHROMIUM))
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        seen = json.loads(r.stdout)
        self.assertTrue(seen["shift_enter_kept"])
        self.assertTrue(seen["first"])
        self.assertEqual(seen["first"], want_first)
        self.assertEqual(seen["regenerated"], seen["first"])
        self.assertEqual(seen["turns_after_regenerate"], 1)
        self.assertNotEqual(seen["fork"], seen["conversation"])
        self.assertEqual(seen["fork_messages"], [seen["first"]])
        self.assertEqual(seen["listed"], 2)
        self.assertEqual(seen["edit_input"], "ROMEO:")
        self.assertEqual(seen["edited"], want_edited)
        self.assertEqual(seen["after_reload"], seen["fork"])
        self.assertEqual(seen["reload_messages"], [seen["edited"]])
        self.assertEqual(seen["titles"], ["Romeo"])  # renamed, the other deleted
        self.assertRegex(seen["stats"], r"\d+ tokens, turn 1.*state: [\d.]+ KB at any length"
                                        r".*a KV cache of this model would hold")
        self.assertIn("400", seen["refusal"])
        self.assertIn("over this server's limit", seen["refusal"])
        self.assertTrue(seen["narrow"]["aside_above"] and seen["narrow"]["composer_visible"])
        self.assertIn("cannot be reached", seen["gone"])
        self.assertEqual(seen["errors_before_refusal"], [])
        for e in seen["console_errors"]:  # only the refused request's and the dead server's
            self.assertRegex(e, r"status of 400|ERR_CONNECTION_REFUSED|Failed to fetch", e)
        self.assertTrue(os.path.getsize(os.path.join(out_dir, "chat.png")) > 10000)


if __name__ == "__main__":
    unittest.main()
