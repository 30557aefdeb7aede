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
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

from serve_prefix import random_checkpoint


def load(url, clients, seconds, max_tokens):
    """clients threads, each sending its next request when answered, for seconds."""
    latencies, statuses, errors, lost = [], collections.Counter(), [], []
    tokens = [0]
    lock = threading.Lock()
    end = time.time() + seconds

    def client(i):
        n = 0
        while time.time() < end:
            body = json.dumps({"prompt": f"ROMEO {i} {n}:", "max_tokens": max_tokens,
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
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    lat = sorted(latencies)
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")
    return {"clients": clients, "seconds": wall, "answered": statuses[200],
            "requests_per_s": statuses[200] / wall, "tokens_per_s": tokens[0] / wall,
            "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": lat[-1] if lat else None,
            "statuses": {str(k): v for k, v in statuses.items()},
            "without_message": len(errors), "lost": dict(collections.Counter(lost))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", help="a checkpoint (default: --preset's, random weights)")
    ap.add_argument("--preset", default="small", choices=["small", "paper"])
    ap.add_argument("--clients", default="64", help="client counts, comma-separated")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-queue", type=int, default=64)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    exe = os.path.join(a.build, "logattn")
    tmp = tempfile.mkdtemp(prefix="logattn-load-")
    model = a.model or random_checkpoint(exe, a.preset, tmp)
    server = subprocess.Popen([exe, "serve", "--model", model, "--port", "0", "--max-batch",
                               str(a.max_batch), "--max-queue", str(a.max_queue)],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"(http://\S+)", server.stdout.readline()).group(1) + "/v1/completions"
        results = [load(url, int(c), a.seconds, a.max_tokens) for c in a.clients.split(",")]
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps({"model": a.model or a.preset, "max_tokens": a.max_tokens,
                          "max_batch": a.max_batch, "max_queue": a.max_queue, "runs": results}))
        return
    for r in results:
        print(f"{r['clients']} clients for {a.seconds:.0f} s, max_tokens {a.max_tokens}, "
              f"--max-batch {a.max_batch} --max-queue {a.max_queue}: {r['seconds']:.1f} s")
        print(f"answered {r['answered']} requests ({r['requests_per_s']:.1f}/s), "
              f"{r['tokens_per_s']:.0f} tokens/s")
        print(f"latency p50 {r['p50']:.3f} s, p90 {r['p90']:.3f} s, p99 {r['p99']:.3f} s, "
              f"max {r['max'] or float('nan'):.3f} s")
        print("statuses:", r["statuses"], "| without a message:", r["without_message"])
        for why, count in r["lost"].items():
            print(f"lost ({count}): {why}")


if __name__ == "__main__":
    main()
