"""`logattn serve` through clients nobody here wrote (curl, OpenAI's official npm client):
greedy answers equal `logattn generate`'s; a conversation in three turns equals one
generate over the whole text, also after the server is killed (SIGKILL) and restarted; a
retried request is answered; bad requests get 400 / 413 / 429 with a message; concurrent
requests are all answered."""
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import unittest

LOGATTN = os.environ.get("LOGATTN_BIN", "build/logattn")
NODE_PATH = os.environ.get("NODE_PATH", "build/npm/node_modules")
CURL = shutil.which("curl")

OPENAI_CLIENT = r"""
const OpenAI = require("openai").default || require("openai");
(async () => {
  const [baseURL, json] = process.argv.slice(-2);
  const client = new OpenAI({ baseURL, apiKey: "unused" });
  const body = JSON.parse(json);
  const r = await client.completions.create(body);
  let streamed = "";
  for await (const c of await client.completions.create({ ...body, stream: true }))
    for (const ch of c.choices) streamed += ch.text;
  const models = await client.models.list();
  console.log(JSON.stringify({ text: r.choices[0].text, finish: r.choices[0].finish_reason,
                               usage: r.usage, streamed, models: models.data.map((m) => m.id) }));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""

OPENAI_CHAT_CLIENT = r"""
const OpenAI = require("openai").default || require("openai");
(async () => {
  const [baseURL, json] = process.argv.slice(-2);
  const client = new OpenAI({ baseURL, apiKey: "unused" });
  const body = JSON.parse(json);
  const r = await client.chat.completions.create(body);
  let streamed = "", roles = [], usage = null, finish = null;
  const stream = await client.chat.completions.create(
    { ...body, stream: true, stream_options: { include_usage: true } });
  for await (const c of stream) {
    for (const ch of c.choices) {
      if (ch.delta.role) roles.push(ch.delta.role);
      if (ch.delta.content) streamed += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    if (c.usage) usage = c.usage;
  }
  console.log(JSON.stringify({ object: r.object, message: r.choices[0].message,
                               finish: r.choices[0].finish_reason, usage: r.usage, streamed,
                               roles, streamed_finish: finish, streamed_usage: usage }));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


def run(*args, timeout=120):
    return subprocess.run([LOGATTN, *args], capture_output=True, encoding="latin-1",
                          timeout=timeout)


def curl(url, body=None, method=None, data_file=None, timeout=120):
    """(status, parsed JSON or text) of one request through curl."""
    cmd = [CURL, "-s", "-w", "\n%{http_code}", url]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary",
                body if isinstance(body, str) else json.dumps(body)]
    if data_file:
        cmd += ["--data-binary", "@" + data_file]
    if method:
        cmd += ["-X", method]
    out = subprocess.run(cmd, capture_output=True, encoding="utf-8", timeout=timeout).stdout
    text, status = out.rsplit("\n", 1)
    try:
        return int(status), json.loads(text)
    except json.JSONDecodeError:
        return int(status), text


def train_tiny_model(folder, text, steps, batch=4, context=32, lr="3e-3"):
    """Trains the tiny preset on text (a list of lines) in folder; returns the checkpoint."""
    path = os.path.join(folder, "text.txt")
    with open(path, "w") as f:
        f.write("".join(text))
    r = run("train", "--preset", "tiny", "--data", path, "--out", os.path.join(folder, "run"),
            "--batch", str(batch), "--context", str(context), "--steps", str(steps),
            "--eval-every", str(steps), "--eval-batches", "1", "--lr", lr)
    assert r.returncode == 0, r.stderr
    return os.path.join(folder, "run", "model.safetensors")


def train_serve_model(folder):
    """The model of the server's tests: 60 steps, so that greedy answers vary."""
    return train_tiny_model(
        folder, [f"All the world's a stage, and all the men and women merely players {i}.\n"
                 for i in range(300)], steps=60)


class TinyModelCase(unittest.TestCase):
    """Tests over a tiny model (a few steps: the server's behaviour, not its answers), trained
    once per class into cls.dir."""
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        cls.model = train_tiny_model(cls.dir, [f"All the world's a stage {i}.\n"
                                               for i in range(200)], steps=4, batch=2, context=16)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)


class Server:
    def __init__(self, model, conversations, *extra, env=None):
        store = ["--conversations", conversations] if conversations else []
        self.p = subprocess.Popen([LOGATTN, "serve", "--model", model, "--port", "0", *store,
                                   *extra],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, **(env or {})))
        line = self.p.stdout.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if not m:
            self.p.kill()
            raise AssertionError("the server did not start: " + line + self.p.stderr.read())
        self.url = m.group(1)

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        rc = self.p.wait(timeout=30)
        self.p.stdout.close()
        self.p.stderr.close()
        return rc


@unittest.skipUnless(CURL, "curl is not installed")
class Serve(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        cls.model = train_serve_model(cls.dir)
        cls.text = os.path.join(cls.dir, "text.txt")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def setUp(self):
        self.conv_dir = tempfile.mkdtemp(dir=self.dir)
        self.server = Server(self.model, self.conv_dir)

    def tearDown(self):
        if self.server.p.poll() is None:
            self.server.stop(signal.SIGKILL)

    def generate(self, prompt, n):
        r = run("generate", "--model", self.model, "--prompt", prompt, "-n", str(n),
                "--temperature", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout[len(prompt):-1]

    def complete(self, **body):
        status, out = curl(self.server.url + "/v1/completions", body)
        self.assertEqual(status, 200, out)
        return out

    def test_greedy_answers_equal_generate_through_curl_and_openai_client(self):
        want = self.generate("All the", 40)
        out = self.complete(prompt="All the", max_tokens=40, temperature=0)
        self.assertEqual(out["choices"][0]["text"], want)
        self.assertEqual(out["choices"][0]["finish_reason"], "length")
        self.assertEqual(out["usage"], {"prompt_tokens": 7, "completion_tokens": 40,
                                        "total_tokens": 47})
        # Server-sent events through curl: the pieces make the same text, then [DONE].
        events = subprocess.run([CURL, "-s", "-N", self.server.url + "/v1/completions", "-d",
                                 json.dumps({"prompt": "All the", "max_tokens": 40,
                                             "temperature": 0, "stream": True})],
                                capture_output=True, encoding="utf-8", timeout=60).stdout
        datas = [line[6:] for line in events.split("\n") if line.startswith("data: ")]
        self.assertEqual(datas[-1], "[DONE]")
        chunks = [json.loads(d) for d in datas[:-1]]
        self.assertEqual("".join(c["choices"][0]["text"] for c in chunks if c["choices"]), want)
        # OpenAI's official client, both ways.
        r = subprocess.run(["node", "-e", OPENAI_CLIENT, self.server.url + "/v1",
                            json.dumps({"model": "model", "prompt": "All the", "max_tokens": 40,
                                        "temperature": 0})],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, NODE_PATH=NODE_PATH))
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual(got["text"], want)
        self.assertEqual(got["streamed"], want)
        self.assertEqual(got["finish"], "length")
        self.assertEqual(got["models"], ["model"])
        # A prompt of several pieces (read one piece per step) as `generate` reads it.
        long = "All the world's a stage, and all the men and women merely players. " * 20
        out = self.complete(prompt=long, max_tokens=20, temperature=0)
        self.assertEqual(out["choices"][0]["text"], self.generate(long, 20))
        self.assertEqual(out["usage"]["prompt_tokens"], len(long))
        # A stop string ends the text before it.
        stop = want[10:13]
        out = self.complete(prompt="All the", max_tokens=40, temperature=0, stop=[stop])
        self.assertEqual(out["choices"][0]["text"], want[:want.index(stop)])
        self.assertEqual(out["choices"][0]["finish_reason"], "stop")

    def test_chat_completions_through_curl_and_openai_client(self):
        messages = [{"role": "system", "content": "Players."},
                    {"role": "user", "content": "All the"}]
        # The default template's text, completed: the chat answer is that completion's.
        rendered = "Players.\n\nUser: All the\nAssistant:"
        want = self.complete(prompt=rendered, max_tokens=30, temperature=0,
                             stop=["\nUser:"])["choices"][0]
        url = self.server.url + "/v1/chat/completions"
        status, out = curl(url, {"messages": messages, "max_tokens": 30, "temperature": 0})
        self.assertEqual(status, 200, out)
        self.assertEqual(out["object"], "chat.completion")
        self.assertEqual(out["choices"][0]["message"],
                         {"role": "assistant", "content": want["text"]})
        self.assertEqual(out["choices"][0]["finish_reason"], want["finish_reason"])
        self.assertEqual(out["usage"]["prompt_tokens"], len(rendered))  # bytes: one token each
        # Content as a list of text parts, max_completion_tokens, n.
        parts = [{"role": "system", "content": [{"type": "text", "text": "Play"},
                                                {"type": "text", "text": "ers."}]},
                 {"role": "user", "content": "All the"}]
        status, out = curl(url, {"messages": parts, "max_completion_tokens": 30,
                                 "temperature": 0, "n": 2})
        self.assertEqual(status, 200, out)
        self.assertEqual([c["message"]["content"] for c in out["choices"]], [want["text"]] * 2)
        # OpenAI's client: chat.completions.create, plain and streamed with usage.
        r = subprocess.run(["node", "-e", OPENAI_CHAT_CLIENT, self.server.url + "/v1",
                            json.dumps({"model": "model", "messages": messages,
                                        "max_tokens": 30, "temperature": 0})],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, NODE_PATH=NODE_PATH))
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual(got["object"], "chat.completion")
        self.assertEqual(got["message"]["content"], want["text"])
        self.assertEqual(got["streamed"], want["text"])
        self.assertEqual(got["roles"], ["assistant"])
        self.assertEqual(got["streamed_finish"], want["finish_reason"])
        self.assertEqual(got["streamed_usage"], got["usage"])
        # Refusals name what is wrong.
        for body, message in [
                ({"messages": []}, "'messages' must be a non-empty list"),
                ({"messages": "hi"}, "'messages' must be a non-empty list"),
                ({"messages": [{"role": "tool", "content": "x"}]}, "role 'tool'"),
                ({"messages": [{"role": "user"}]}, "'content'"),
                ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
                 "only text parts"),
                ({"prompt": "x"}, "'messages' is required"),
                ({"messages": messages, "top_logprobs": 2}, "'top_logprobs' needs 'logprobs': true"),
                ({"messages": messages, "logprobs": "yes"}, "'logprobs' must be true or false"),
                ({"messages": messages, "tools": [{"type": "function"}]}, "'tools' is not supported")]:
            status, out = curl(url, body)
            self.assertEqual(status, 400, body)
            self.assertIn(message, out["error"]["message"], body)

    def test_logprobs_of_the_sampled_tokens(self):
        url = self.server.url
        body = {"prompt": "All the", "max_tokens": 12, "temperature": 0, "logprobs": 3}
        out = self.complete(**body)
        choice = out["choices"][0]
        lp = choice["logprobs"]
        self.assertEqual("".join(lp["tokens"]), choice["text"])
        self.assertEqual(len(lp["token_logprobs"]), 12)
        for token, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
            self.assertEqual(len(top), 3)
            self.assertEqual(max(top.values()), value)  # greedy: the most likely token
            self.assertEqual(top[token], value)
            self.assertLessEqual(value, 0)
            self.assertLessEqual(sum(math.exp(x) for x in top.values()), 1 + 1e-6)
        self.assertEqual(lp["text_offset"],
                         [sum(len(t) for t in lp["tokens"][:i]) for i in range(12)])
        # Streamed: the same entries, chunk by chunk.
        events = subprocess.run([CURL, "-s", "-N", url + "/v1/completions", "-d",
                                 json.dumps({**body, "stream": True})],
                                capture_output=True, encoding="utf-8", timeout=60).stdout
        chunks = [json.loads(line[6:]) for line in events.split("\n")
                  if line.startswith("data: {")]
        streamed = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for c in chunks:
            for ch in c["choices"]:
                for k in streamed:
                    streamed[k] += ch["logprobs"][k]
        self.assertEqual(streamed, lp)
        # Chat's shape, with top_logprobs.
        status, chat = curl(url + "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "All the"}],
                             "max_tokens": 8, "temperature": 0, "logprobs": True,
                             "top_logprobs": 2})
        self.assertEqual(status, 200, chat)
        content = chat["choices"][0]["logprobs"]["content"]
        self.assertEqual(len(content), chat["usage"]["completion_tokens"])
        self.assertTrue("".join(e["token"] for e in content).startswith(
            chat["choices"][0]["message"]["content"]))
        for e in content:
            self.assertEqual(e["bytes"], list(e["token"].encode()))
            self.assertEqual(len(e["top_logprobs"]), 2)
            self.assertEqual(e["top_logprobs"][0]["logprob"], e["logprob"])
        # Sampled, alone and beside others: the same log-probabilities, bit for bit.
        sampled = {"prompt": "All the", "max_tokens": 30, "temperature": 0.9, "seed": 3,
                   "logprobs": 2}
        alone = self.complete(**sampled)["choices"][0]["logprobs"]
        together = [None] * 4

        def ask(i):
            together[i] = curl(url + "/v1/completions",
                               {**sampled, "seed": 3 if i == 0 else 10 + i})[1]
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(together[0]["choices"][0]["logprobs"], alone)

    def test_answers_do_not_depend_on_the_batch(self):
        # Each request alone, then all at once (joining the batch at different steps): the
        # same text, greedy and sampled, bit for bit.
        bodies = [{"prompt": "All the world"[:3 + i], "max_tokens": 60 + 10 * i,
                   "temperature": 0.9 if i % 2 else 0, "seed": i} for i in range(8)]
        url = self.server.url + "/v1/completions"
        alone = [curl(url, b)[1]["choices"][0]["text"] for b in bodies]
        together = [None] * len(bodies)

        def ask(i):
            together[i] = curl(url, bodies[i])[1]["choices"][0]["text"]
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(together, alone)
        status, metrics = curl(self.server.url + "/metrics")
        steps = float(re.search(r"^logattn_steps_total (\S+)", metrics, re.M).group(1))
        generated = float(re.search(r"^logattn_completion_tokens_total (\S+)", metrics,
                                    re.M).group(1))
        self.assertLess(steps, generated)  # sequences did share steps

    def test_prefix_reuse_gives_the_answers_of_a_server_without_it(self):
        # Prompts sharing a long system prompt (several pieces of the read), the same prompt
        # again, one differing in its last character, chat requests with one system message:
        # the bits of a server that reads every prompt whole, and /metrics counts the reuse.
        off = Server(self.model, tempfile.mkdtemp(dir=self.dir), "--prefix-cache-mb", "0")
        try:
            system = "All the world's a stage, and all the men and women merely players. " * 12
            bodies = [{"prompt": system + q, "max_tokens": 12, "temperature": t, "seed": 3,
                       "logprobs": 3}
                      for q in ("They have", "They have", "They havE", "And one man")
                      for t in (0, 0.9)]
            for base in (self.server.url, off.url):
                metrics = curl(base + "/metrics")[1]
                self.assertIn("logattn_prefix_cache_bytes 0", metrics)
            for b in bodies:
                on_out = self.complete(**b)["choices"][0]
                off_out = curl(off.url + "/v1/completions", b)[1]["choices"][0]
                self.assertEqual((on_out["text"], on_out["logprobs"]),
                                 (off_out["text"], off_out["logprobs"]))
            chat = {"messages": [{"role": "system", "content": system},
                                 {"role": "user", "content": "Who plays?"}],
                    "max_tokens": 8, "temperature": 0, "logprobs": True, "top_logprobs": 2}
            for _ in range(3):
                on_out = curl(self.server.url + "/v1/chat/completions", chat)[1]
                off_out = curl(off.url + "/v1/chat/completions", chat)[1]
                self.assertEqual(on_out["choices"], off_out["choices"])

            def counters(base):
                text = curl(base + "/metrics")[1]
                return {k: float(v) for k, v in
                        re.findall(r"^logattn_(\w+) (\S+)$", text, re.M)}
            on, no = counters(self.server.url), counters(off.url)
            self.assertEqual(on["prefix_lookups_total"], len(bodies) + 3)
            self.assertGreaterEqual(on["prefix_hits_total"], len(bodies) - 2 + 2)
            self.assertGreater(on["prompt_tokens_reused_total"], 0.8 * len(system) * len(bodies))
            self.assertEqual(on["prompt_tokens_read_total"] + on["prompt_tokens_reused_total"],
                             on["prompt_tokens_total"])
            self.assertGreater(on["prefix_cache_bytes"], 0)
            self.assertEqual(no["prefix_lookups_total"], 0)
            self.assertEqual(no["prompt_tokens_read_total"], no["prompt_tokens_total"])
        finally:
            off.stop()
        r = run("serve", "--model", self.model, "--prefix-cache-mb", "-1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--prefix-cache-mb must be in [0, 2^20]", r.stderr)

    def test_the_chat_template_comes_from_the_checkpoint_or_the_command_line(self):
        template = {"system": "[S]{content}", "user": "[U]{content}",
                    "assistant": "[A]{content}", "generation_prompt": "[A]", "stop": ["[U]"]}
        path = os.path.join(self.dir, "template.json")
        with open(path, "w") as f:
            json.dump(template, f)
        messages = [{"role": "system", "content": "Players."},
                    {"role": "user", "content": "All the"}]

        def check(server):
            want = curl(server.url + "/v1/completions",
                        {"prompt": "[S]Players.[U]All the[A]", "max_tokens": 20,
                         "temperature": 0, "stop": ["[U]"]})[1]["choices"][0]["text"]
            status, out = curl(server.url + "/v1/chat/completions",
                               {"messages": messages, "max_tokens": 20, "temperature": 0})
            self.assertEqual(status, 200, out)
            self.assertEqual(out["choices"][0]["message"]["content"], want)
        # serve --chat-template overrides the checkpoint's.
        self.server.stop()
        self.server = Server(self.model, self.conv_dir, "--chat-template", path)
        check(self.server)
        self.server.stop()
        # train --chat-template records it in the checkpoint (quantize keeps it).
        out = os.path.join(self.dir, "templated")
        r = run("train", "--preset", "tiny", "--init", self.model, "--data", self.text,
                "--out", out, "--steps", "1", "--batch", "2", "--context", "16",
                "--eval-batches", "1", "--chat-template", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "model.safetensors"), "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        metadata = header["__metadata__"]
        self.assertEqual(json.loads(metadata["chat_template"]), template)
        self.server = Server(os.path.join(out, "model.safetensors"), self.conv_dir)
        check(self.server)
        # A bad template is refused before anything runs, naming the file and the problem.
        bad = os.path.join(self.dir, "bad.json")
        with open(bad, "w") as f:
            json.dump({"user": "no placeholder"}, f)
        for args in (("serve", "--model", self.model, "--port", "0"),
                     ("train", "--preset", "tiny", "--data", self.text, "--out",
                      os.path.join(self.dir, "bad-run"), "--steps", "1")):
            r = run(*args, "--chat-template", bad)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(bad, r.stderr)
            self.assertIn("\"user\" must hold {content} once", r.stderr)

    def test_a_conversation_equals_one_generate_and_survives_a_kill(self):
        status, conv = curl(self.server.url + "/v1/conversations", "")
        self.assertEqual(status, 200, conv)
        cid = conv["id"]
        text = ""
        answers = []
        for turn, prompt in enumerate(("All the", " world", " and")):
            if turn == 2:  # killed outright between turns, then restarted on the same folder
                self.server.stop(signal.SIGKILL)
                self.server = Server(self.model, self.conv_dir)
            out = self.complete(prompt=prompt, max_tokens=12, temperature=0, conversation=cid)
            text += prompt
            self.assertEqual(out["choices"][0]["text"], self.generate(text, 12), turn)
            text += out["choices"][0]["text"]
            answers.append(out)
        status, info = curl(self.server.url + "/v1/conversations/" + cid)
        self.assertEqual(status, 200)
        self.assertEqual(info["tokens"], len(text))  # bytes: one token each
        # A retry (the same request again) is answered: it continues the conversation.
        again = self.complete(prompt=" and", max_tokens=12, temperature=0, conversation=cid)
        self.assertEqual(again["choices"][0]["text"], self.generate(text + " and", 12))
        status, _ = curl(self.server.url + "/v1/conversations/" + cid, method="DELETE")
        self.assertEqual(status, 200)
        status, out = curl(self.server.url + "/v1/conversations/" + cid)
        self.assertEqual(status, 404)
        self.assertEqual(os.listdir(self.conv_dir), [".lock"])  # the server's folder lock alone

    def turn(self, cid, prompt, server=None):
        """The answer of one greedy turn of conversation cid."""
        status, out = curl((server or self.server).url + "/v1/completions",
                           {"prompt": prompt, "max_tokens": 8, "temperature": 0,
                            "conversation": cid, "logprobs": 1})
        self.assertEqual(status, 200, out)
        return out["choices"][0]["text"], out["choices"][0]["logprobs"]["token_logprobs"]

    def conversation(self, cid, server=None):
        status, out = curl((server or self.server).url + "/v1/conversations/" + cid)
        self.assertEqual(status, 200, out)
        return out

    def test_turns_fork_and_rewind(self):
        url = self.server.url + "/v1/conversations"
        cid = curl(url, "")[1]["id"]
        prompts = ["All the", " world", " and"]
        answers, tokens = [], []
        for p in prompts:
            answers.append(self.turn(cid, p))
            tokens.append(self.conversation(cid)["tokens"])
        info = self.conversation(cid)
        self.assertEqual(info["turn"], 3)
        self.assertEqual(info["turns"], [{"turn": t + 1, "tokens": tokens[t]} for t in range(3)])
        # Regenerate the last message: rewind to turn 2 and ask again: the same bits.
        status, out = curl(url + "/" + cid + "/rewind", {"turn": 2})
        self.assertEqual((status, out["turn"], out["tokens"]), (200, 2, tokens[1]), out)
        self.assertEqual(self.turn(cid, prompts[2]), answers[2])
        # Edit it: rewind and send another.
        curl(url + "/" + cid + "/rewind", {"turn": 2})
        edited = self.turn(cid, " or")
        self.assertEqual(self.conversation(cid)["turn"], 3)
        # Fork at turn 1: the fork's next turn is what the conversation's second was.
        status, fork = curl(url + "/" + cid + "/fork", {"turn": 1})
        self.assertEqual((status, fork["turn"], fork["tokens"]), (200, 1, tokens[0]), fork)
        self.assertNotEqual(fork["id"], cid)
        self.assertEqual(self.turn(fork["id"], prompts[1]), answers[1])
        # Fork the latest turn (no body): both go on alike, independently.
        status, twin = curl(url + "/" + cid + "/fork", method="POST")
        self.assertEqual((status, twin["turn"]), (200, 3), twin)
        self.assertEqual(self.turn(twin["id"], " so"), self.turn(cid, " so"))
        self.assertEqual(self.conversation(twin["id"])["turn"], 4)
        turns = self.conversation(cid)["turns"]
        # Rewind to 0: no text; a turn must then bring a prompt.
        status, out = curl(url + "/" + fork["id"] + "/rewind", {"turn": 0})
        self.assertEqual((status, out["turn"], out["tokens"], out["turns"]), (200, 0, 0, []))
        status, out = curl(self.server.url + "/v1/completions",
                           {"conversation": fork["id"], "max_tokens": 2})
        self.assertEqual(status, 400)
        self.assertIn("holds no text yet", out["error"]["message"])
        # Refusals: a turn it never had, a body without a turn, a bad turn, unknown ids.
        for body, code, words in (({"turn": 9}, 400, "no kept turn 9"),
                                  ("", 400, "'turn' is required"),
                                  ({"turn": -1}, 400, "at least 0"),
                                  ({"turn": "2"}, 400, "at least 0"),
                                  ("{", 400, "not valid JSON")):
            status, out = curl(url + "/" + cid + "/rewind", body)
            self.assertEqual(status, code, out)
            self.assertIn(words, out["error"]["message"])
        for path in ("/nope/rewind", "/nope/fork", "/a.b/fork"):
            status, out = curl(url + path, {"turn": 1})
            self.assertEqual(status, 404, (path, out))
        # Across a kill and restart: the same turns, and a rewind reaches them.
        self.server.stop(signal.SIGKILL)
        self.server = Server(self.model, self.conv_dir)
        self.assertEqual(self.conversation(cid)["turns"], turns)
        curl(self.server.url + "/v1/conversations/" + cid + "/rewind", {"turn": 2})
        self.assertEqual(self.turn(cid, " or"), edited)
        # Only the last --keep-turns states are kept.
        self.server.stop()
        self.server = Server(self.model, self.conv_dir, "--keep-turns", "2")
        url = self.server.url + "/v1/conversations"
        short = curl(url, "")[1]["id"]
        for p in prompts:
            self.turn(short, p)
        self.assertEqual([t["turn"] for t in self.conversation(short)["turns"]], [2, 3])
        # The states of the last two turns; every turn's text.
        self.assertEqual(sorted(os.listdir(os.path.join(self.conv_dir, short))),
                         ["1.json", "2.json", "2.safetensors", "3.json", "3.safetensors"])
        for op in ("rewind", "fork"):
            status, out = curl(url + "/" + short + "/" + op, {"turn": 1})
            self.assertEqual(status, 400, out)
            self.assertIn("no kept turn 1", out["error"]["message"])
        # A folder of logattn 0.2 (a state beside its id, an empty marker) is moved into
        # conversation folders: the state becomes turn 1.
        self.server.stop()
        shutil.copy(os.path.join(self.conv_dir, short, "2.safetensors"),
                    os.path.join(self.conv_dir, "old-one.safetensors"))
        open(os.path.join(self.conv_dir, "old-two.empty"), "w").close()
        self.server = Server(self.model, self.conv_dir)
        info = self.conversation("old-one")
        self.assertEqual((info["turn"], info["tokens"]), (1, tokens[1]))
        self.assertEqual(self.turn("old-one", prompts[2]), answers[2])
        self.assertEqual(self.conversation("old-two")["turn"], 0)
        self.assertEqual(os.listdir(os.path.join(self.conv_dir, "old-two")), [])

    def test_a_kill_at_any_moment_leaves_each_conversation_at_a_turn_it_had(self):
        # Killed (SIGKILL) right after a turn's file is renamed in, between the removals of
        # a rewind, and in the middle of a fork's copy: after a restart each conversation is
        # at a turn it had, and goes on from it with the bits it had there.
        url = self.server.url + "/v1/conversations"
        cid = curl(url, "")[1]["id"]
        prompts = ["All the", " world", " and", " so"]
        answers, tokens = [], []
        for p in prompts[:3]:
            answers.append(self.turn(cid, p))
            tokens.append(self.conversation(cid)["tokens"])
        self.server.stop()

        def killed_at(point, request):
            if self.server.p.poll() is None:
                self.server.stop()
            self.server = Server(self.model, self.conv_dir, env={"LOGATTN_KILL_AT": point})
            try:
                request(self.server.url + "/v1/conversations")
            except Exception:
                pass
            self.assertEqual(self.server.p.wait(timeout=30), -signal.SIGKILL, point)
            self.server.p.stdout.close()
            self.server.p.stderr.close()
            self.server = Server(self.model, self.conv_dir)
            return self.conversation(cid)

        # A turn counts once its file is renamed in (the fourth, here).
        info = killed_at("conversation-commit:4",
                         lambda u: curl(u.replace("/v1/conversations", "/v1/completions"),
                                        {"prompt": prompts[3], "max_tokens": 8,
                                         "temperature": 0, "conversation": cid}))
        self.assertEqual(info["turn"], 4)
        tokens.append(info["tokens"])
        # A rewind from 4 to 1 killed after removing turn 4: at turn 3, which goes on as it
        # did.
        info = killed_at("conversation-rewind:4",
                         lambda u: curl(u + "/" + cid + "/rewind", {"turn": 1}))
        self.assertEqual((info["turn"], info["tokens"]), (3, tokens[2]))
        self.assertEqual(self.turn(cid, prompts[3]), self.turn_after(cid, 3, prompts[3]))
        # A fork killed after copying its first turn: no new conversation, no leftovers.
        before = sorted(os.listdir(self.conv_dir))
        ids = sorted(c["id"] for c in curl(self.server.url + "/v1/conversations")[1]["data"])
        killed_at("conversation-fork:1", lambda u: curl(u + "/" + cid + "/fork", ""))
        self.assertEqual(sorted(os.listdir(self.conv_dir)), before)
        listed = curl(self.server.url + "/v1/conversations")[1]["data"]
        self.assertEqual(sorted(c["id"] for c in listed), ids)

    def turn_after(self, cid, turn, prompt):
        """The answer to prompt in a fork of cid at turn (cid itself untouched)."""
        status, fork = curl(self.server.url + "/v1/conversations/" + cid + "/fork",
                            {"turn": turn})
        self.assertEqual(status, 200, fork)
        return self.turn(fork["id"], prompt)

    def test_echo_scores_a_text_as_eval_does(self):
        # Scoring through the server (what evaluation harnesses send): echo with logprobs and
        # max_tokens 0 gives each token's log-probability given the text before it, the bits
        # `logattn eval --per-token` gives (a text longer than a piece of the read).
        text = "All the world's a stage, and all the men and women merely players. " * 10
        ids = list(text.encode())
        path = os.path.join(self.dir, "score.bin")
        with open(path, "wb") as f:
            f.write(struct.pack("<%dH" % len(ids), *ids))
        r = run("eval", "--model", self.model, "--tokens", path, "--per-token")
        self.assertEqual(r.returncode, 0, r.stderr)
        want = json.loads(r.stdout)
        self.assertEqual(want["tokens"], ids)
        self.assertIsNone(want["token_logprobs"][0])
        scored = [-x for x in want["token_logprobs"][1:]]
        self.assertAlmostEqual(want["loss"], sum(scored) / len(scored), places=9)
        out = self.complete(prompt=text, max_tokens=0, echo=True, logprobs=2)
        choice = out["choices"][0]
        self.assertEqual(choice["text"], text)
        lp = choice["logprobs"]
        self.assertEqual(lp["token_logprobs"], want["token_logprobs"])
        self.assertEqual(lp["tokens"], [chr(b) for b in ids])
        self.assertEqual(lp["text_offset"], list(range(len(ids))))
        self.assertIsNone(lp["top_logprobs"][0])
        self.assertTrue(all(len(t) == 2 for t in lp["top_logprobs"][1:]))
        self.assertEqual(out["usage"], {"prompt_tokens": len(ids), "completion_tokens": 0,
                                        "total_tokens": len(ids)})
        # With tokens to generate: the prompt, then what the request without echo answers,
        # streamed too.
        plain = self.complete(prompt="All the", max_tokens=12, temperature=0, logprobs=1)
        echoed = self.complete(prompt="All the", max_tokens=12, temperature=0, logprobs=1,
                               echo=True)
        got, want_c = echoed["choices"][0], plain["choices"][0]
        self.assertEqual(got["text"], "All the" + want_c["text"])
        self.assertEqual(got["logprobs"]["token_logprobs"][7:],
                         want_c["logprobs"]["token_logprobs"])
        self.assertEqual(got["logprobs"]["text_offset"][7:],
                         [7 + o for o in want_c["logprobs"]["text_offset"]])
        events = subprocess.run([CURL, "-s", "-N", self.server.url + "/v1/completions", "-d",
                                 json.dumps({"prompt": "All the", "max_tokens": 12,
                                             "temperature": 0, "echo": True, "stream": True})],
                                capture_output=True, encoding="utf-8", timeout=60).stdout
        chunks = [json.loads(line[6:]) for line in events.split("\n")
                  if line.startswith("data: {")]
        self.assertEqual(chunks[0]["choices"][0]["text"], "All the")
        self.assertEqual("".join(c["choices"][0]["text"] for c in chunks if c["choices"]),
                         got["text"])

    def test_bad_requests_get_a_status_and_a_message(self):
        url = self.server.url + "/v1/completions"
        big = os.path.join(self.dir, "big.json")
        with open(big, "w") as f:
            f.write('{"prompt": "' + "a" * (2 << 20) + '"}')
        cases = [
            ("{bad", 400, "not valid JSON"),
            ({"prompt": 5}, 400, "'prompt' must be a string"),
            ({"prompt": "x", "max_tokens": 0}, 400, "0 only with echo"),
            ({"prompt": "x", "max_tokens": -1}, 400, "'max_tokens' must be in [0, 4096]"),
            ({"prompt": "x", "max_tokens": "many"}, 400, "'max_tokens' must be an integer"),
            ({"prompt": "x", "temperature": "hot"}, 400, "'temperature' must be a number"),
            ({"prompt": "x", "conversation": "nope"}, 400, "unknown conversation 'nope'"),
            ({"prompt": "x", "conversation": "../etc"}, 400, "'conversation' must be an id"),
            ({"prompt": "x", "logprobs": 6}, 400, "'logprobs' must be in [0, 5]"),
            ({"prompt": "x", "echo": "yes"}, 400, "'echo' must be true or false"),
            ({"max_tokens": 3}, 400, "'prompt' is required"),
            ({"prompt": "x", "n": 2, "stream": "yes"}, 400, "'stream' must be true or false"),
        ]
        for body, status, message in cases:
            got, out = curl(url, body)
            self.assertEqual(got, status, body)
            self.assertIn(message, out["error"]["message"], body)
        got, out = curl(url, data_file=big)
        self.assertEqual(got, 413)
        self.assertIn("larger than this server accepts", out["error"]["message"])
        got, out = curl(self.server.url + "/v1/nothing")
        self.assertEqual(got, 404)
        # Unknown fields are ignored (clients send more than this server uses).
        self.assertEqual(len(self.complete(prompt="x", max_tokens=2, user="u",
                                           presence_penalty=0)["choices"]), 1)
        self.assertEqual(curl(self.server.url + "/health")[1], {"status": "ok"})

    def test_limits_answer_429_and_413_and_the_prompt_limit(self):
        self.server.stop(signal.SIGKILL)
        self.server = Server(self.model, self.conv_dir, "--max-batch", "1", "--max-queue", "0",
                             "--max-prompt-tokens", "20", "--max-tokens", "100000")
        status, out = curl(self.server.url + "/v1/completions", {"prompt": "x" * 21})
        self.assertEqual(status, 400)
        self.assertIn("over this server's limit of 20", out["error"]["message"])
        # One long request holds the one place; the next finds the queue full.
        first = subprocess.Popen([CURL, "-s", self.server.url + "/v1/completions", "-d",
                                  json.dumps({"prompt": "All", "max_tokens": 100000})],
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        status, out = curl(self.server.url + "/v1/completions", {"prompt": "x", "max_tokens": 1})
        self.assertEqual(status, 429, out)
        self.assertIn("queue is full", out["error"]["message"])
        self.assertEqual(json.loads(first.communicate(timeout=300)[0])["usage"]
                         ["completion_tokens"], 100000)
        status, metrics = curl(self.server.url + "/metrics")
        self.assertIn("logattn_requests_refused_total 1", metrics)

    def test_one_server_per_conversations_folder(self):
        r = subprocess.run([LOGATTN, "serve", "--model", self.model, "--port", "0",
                            "--conversations", self.conv_dir], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("another process (pid", r.stderr)
        self.assertIn(self.conv_dir, r.stderr)

    def test_concurrent_requests_are_all_answered_and_vanished_clients_do_not_stall(self):
        results = [None] * 16
        def one(i):
            results[i] = curl(self.server.url + "/v1/completions",
                              {"prompt": f"All the {i}", "max_tokens": 30, "seed": i})
        # Clients that go away mid-stream.
        gone = [subprocess.Popen([CURL, "-s", "-N", "--max-time", "0.3", self.server.url +
                                  "/v1/completions", "-d", json.dumps(
                                      {"prompt": "x", "max_tokens": 4096, "stream": True})],
                                 stdout=subprocess.DEVNULL) for _ in range(4)]
        threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for g in gone:
            g.wait(timeout=30)
        for status, out in results:
            self.assertEqual(status, 200, out)
            self.assertEqual(out["usage"]["completion_tokens"], 30)
        status, metrics = curl(self.server.url + "/metrics")
        self.assertIn("logattn_completion_tokens_total", metrics)
        self.assertEqual(self.server.stop(), 0)  # SIGTERM: a clean stop


if __name__ == "__main__":
    unittest.main()
