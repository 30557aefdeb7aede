#!/usr/bin/env python3
"""A bounded load test of `logattn serve`: C concurrent clients send completion requests for
S seconds (each waits for its answer, then sends the next), on loopback; prints requests/s,
generated tokens/s, latency percentiles and every status seen: nothing may be lost (each
request answered, or refused with a status and a message).

Run:  /usr/bin/python3 bench/serve_load.py --model runs/shakespeare/model.safetensors \\
          [--clients 64] [--seconds 30] [--max-tokens 32] [--max-batch 16]
"""
import argparse
import collections
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-queue", type=int, default=64)
    a = ap.parse_args()
    server = subprocess.Popen([os.path.join(a.build, "logattn"), "serve", "--model", a.model,
                               "--port", "0", "--max-batch", str(a.max_batch), "--max-queue",
                               str(a.max_queue)], stdout=subprocess.PIPE, text=True)
    url = re.search(r"(http://\S+)", server.stdout.readline()).group(1) + "/v1/completions"
    latencies, statuses, errors, lost = [], collections.Counter(), [], []
    tokens = [0]
    lock = threading.Lock()
    end = time.time() + a.seconds

    def client(i):
        n = 0
        while time.time() < end:
            body = json.dumps({"prompt": f"ROMEO {i} {n}:", "max_tokens": a.max_tokens,
                               "temperature": 0.8, "seed": i * 100000 + n}).encode()
            t0 = time.time()
            try:
                with urllib.request.urlopen(urllib.request.Request(
                        url, body, {"Content-Type": "application/json"}), timeout=120) as r:
                    out = json.load(r)
                    status = r.status
            except urllib.error.HTTPError as e:
                status, out = e.code, json.load(e)
            except Exception as e:  # a lost request: no status at all
                status, out = "lost", {"error": {"message": repr(e)}}
                with lock:
                    lost.append(repr(e))
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(time.time() - t0)
                    tokens[0] += out["usage"]["completion_tokens"]
                elif "error" not in out or not out["error"].get("message"):
                    errors.append(out)
            n += 1

    t0 = time.time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    server.terminate()
    server.wait(timeout=30)
    lat = sorted(latencies)
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")
    print(f"{a.clients} clients for {a.seconds:.0f} s, max_tokens {a.max_tokens}, "
          f"--max-batch {a.max_batch} --max-queue {a.max_queue}: {wall:.1f} s")
    print(f"answered {statuses[200]} requests ({statuses[200] / wall:.1f}/s), "
          f"{tokens[0]} tokens ({tokens[0] / wall:.0f}/s)")
    print(f"latency p50 {pct(50):.3f} s, p90 {pct(90):.3f} s, p99 {pct(99):.3f} s, "
          f"max {lat[-1] if lat else float('nan'):.3f} s")
    print("statuses:", dict(statuses), "| without a message:", len(errors))
    for why, count in collections.Counter(lost).most_common(3):
        print(f"lost ({count}): {why}")


if __name__ == "__main__":
    main()
