#!/usr/bin/env python3
"""Conversations kept in Redis against the folder: `logattn serve --state-store` beside
`--conversations DIR`, on one machine.

1. Time to read a conversation's state from the store and to write a turn, each store's
   servers side by side, turn by turn in alternating order: each server keeps one state in
   memory (--conversations-memory-mb 1) and answers 8 conversations in turn, so every turn
   reads its state and writes the next (timed inside the server: /metrics'
   logattn_state_{load,save}_seconds_total).
2. Turns per second of three servers on one Redis against one server on the same Redis, with
   the same clients (each a conversation of short turns, sent round the servers), in
   alternating rounds. On one machine the three share its cores: this shows what sharing
   costs (every turn that changes server reads its state from Redis), not the gain of more
   machines. Every server runs with OMP_WAIT_POLICY=passive (several on one machine need it).

Redis runs here on a loopback port with its append-only file fsynced at every write (what
keeps every committed turn through a kill of Redis: docs/serving.md).

Run:  /usr/bin/python3 bench/serve_store.py --preset small   [--rounds 3] [--json]
      /usr/bin/python3 bench/serve_store.py --preset paper
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

from serve_prefix import metrics, post, random_checkpoint


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(exe, model, *store):
    # OpenMP's threads sleep when idle rather than spin: several servers share the cores
    # (docs/serving.md).
    p = subprocess.Popen([exe, "serve", "--model", model, "--port", "0", *store],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, OMP_WAIT_POLICY="passive"))
    return p, re.search(r"(http://\S+)", p.stdout.readline()).group(1)


def create(base):
    req = urllib.request.Request(base + "/v1/conversations", b"", method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["id"]


def turn(base, cid, tokens):
    post(base + "/v1/completions", {"prompt": " and so", "max_tokens": tokens,
                                    "temperature": 0, "conversation": cid})


def store_times(bases, rounds):
    """Per store: ms per state read and per turn written, from the servers' counters."""
    convs = {k: [create(b) for _ in range(8)] for k, b in bases.items()}
    for k, b in bases.items():  # first turns: the states exist
        for c in convs[k]:
            turn(b, c, 1)
    before = {k: metrics(b) for k, b in bases.items()}
    order = list(bases)
    for r in range(rounds):
        for i in range(8):
            for k in (order if (r + i) % 2 == 0 else order[::-1]):
                turn(bases[k], convs[k][i], 1)
    out = {}
    for k, b in bases.items():
        m = metrics(b)
        d = {n: m["logattn_state_" + n] - before[k]["logattn_state_" + n]
             for n in ("loads_total", "load_seconds_total", "saves_total", "save_seconds_total")}
        out[k] = {"loads": d["loads_total"], "saves": d["saves_total"],
                  "load_ms": 1e3 * d["load_seconds_total"] / max(1, d["loads_total"]),
                  "save_ms": 1e3 * d["save_seconds_total"] / max(1, d["saves_total"])}
    return out


def turns_per_second(bases, clients, turns, tokens):
    """Every client a conversation, its turns sent round bases; all clients at once."""
    convs = [create(bases[0]) for _ in range(clients)]
    for c in convs:
        turn(bases[0], c, tokens)

    def client(i):
        for t in range(turns):
            turn(bases[(i + t) % len(bases)], convs[i], tokens)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * turns / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--preset", default="small", choices=["small", "paper"])
    ap.add_argument("--model", help="a checkpoint instead of the preset's random weights")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--turns", type=int, default=6, help="per client and round")
    ap.add_argument("--tokens", type=int, default=8, help="answered per turn")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    exe = os.path.join(a.build, "logattn")
    redis_server = shutil.which("redis-server")
    if not redis_server:
        raise SystemExit("serve_store: needs redis-server (Debian's package redis-server)")
    tmp = tempfile.mkdtemp(prefix="logattn-store-")
    model = a.model or random_checkpoint(exe, a.preset, tmp)
    port = free_port()
    redis = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                              "--dir", tmp], stdout=subprocess.DEVNULL)
    procs = []
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}"
        few = ["--conversations-memory-mb", "1"]
        folder, fb = start_server(exe, model, "--conversations", os.path.join(tmp, "c"), *few)
        red, rb = start_server(exe, model, "--state-store", url, "--state-prefix", "t1:", *few)
        procs += [folder, red]
        times = store_times({"folder": fb, "redis": rb}, a.rounds)
        state_bytes = metrics(rb)["logattn_conversation_state_bytes"]
        for p in (folder, red):
            p.terminate()
            p.wait()
        procs.clear()
        servers = [start_server(exe, model, "--state-store", url, "--state-prefix", "t2:")
                   for _ in range(3)]
        procs += [p for p, _ in servers]
        bases = [b for _, b in servers]
        rates = {1: [], 3: []}
        for r in range(a.rounds):
            for n in ((1, 3) if r % 2 == 0 else (3, 1)):
                rates[n].append(turns_per_second(bases[:n], a.clients, a.turns, a.tokens))
        one, three = statistics.median(rates[1]), statistics.median(rates[3])
        # The store's rate on one connection, from the reads timed above.
        store_mb_s = state_bytes / 1e6 / (times["redis"]["load_ms"] / 1e3)
        result = {"preset": a.preset if not a.model else model, "state_bytes": state_bytes,
                  "folder": times["folder"], "redis": times["redis"],
                  "clients": a.clients, "tokens_per_turn": a.tokens, "rounds": a.rounds,
                  "turns_per_s_one_server": one, "turns_per_s_three_servers": three,
                  "redis_read_mb_per_s": store_mb_s,
                  # A turn that changes server reads its state and writes the next: the store
                  # moves 2 states per turn; N servers together reach at most this.
                  "turns_per_s_bound_by_store": store_mb_s * 1e6 / (2 * state_bytes)}
        if a.json:
            print(json.dumps(result))
            return
        print(f"logattn bench serve_store: {result['preset']}, state {state_bytes / 1e6:.3f} MB")
        for k in ("folder", "redis"):
            t = times[k]
            print(f"{k:6}: read a state {t['load_ms']:8.2f} ms ({t['loads']:.0f}), "
                  f"write a turn {t['save_ms']:8.2f} ms ({t['saves']:.0f})")
        print(f"turns/s, {a.clients} clients of {a.tokens}-token turns: one server {one:.1f}, "
              f"three servers on one Redis {three:.1f} ({three / one:.2f}x)")
        print(f"Redis read rate (one connection): {store_mb_s:.0f} MB/s -> at most "
              f"{result['turns_per_s_bound_by_store']:.0f} turns/s moving states, all servers")
    finally:
        for p in procs:
            p.kill()
        redis.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
