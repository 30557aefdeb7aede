#!/usr/bin/env python3
"""The benchmark tables of the docs, made by their commands.

Each table sits in a page between `<!-- bench-table: NAME -->` and `<!-- /bench-table -->`,
headed by a line naming the CPU, the date, the commit and the exact commands that produced it.
This script runs a table's commands on this machine and rewrites its block, so re-measuring is
one command, never hand editing. tests/docs/test_docs.py checks that every block is one of
these tables and carries its heading.

Run:  /usr/bin/python3 bench/tables.py --list
      /usr/bin/python3 bench/tables.py sgemm attention generate-small [--build build]
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADING = re.compile(r"^Measured on (.+), (\d{4}-\d{2}-\d{2}), commit ([0-9a-f]{7,40}): (`.+`)$")


def fmt(x, digits=1):
    return f"{x:,.{digits}f}"


def setting_rows(results, key, first=""):
    """Rows of settings measured side by side (bench sgemm, bench train --compare): each
    setting, its kernel, its median and its share of the best; `first` opens each row."""
    best = max(r[key] for r in results)
    for r in results:
        setting = r["setting"] + (" (default)" if r["setting"] == "LOGATTN_GEMM=onednn" else "")
        yield (f"| {first}`{setting}` | {r['kernel']} | {fmt(r[key])} | "
               f"{100 * r[key] / best:.0f}% |")


def render_sgemm(outputs):
    (out,) = outputs
    return (["| setting | kernel | GFLOP/s (median) | of best |", "|---|---|---:|---:|"]
            + list(setting_rows(out["results"], "gflops")))


def render_attention(outputs):
    (out,) = outputs
    rows = ["| n | forward tokens/s | GFLOP/s | peak MiB | fwd+bwd tokens/s | peak MiB | "
            "step us/token | inputs+outputs MiB |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in out:
        f, b, s = r["forward"], r["forward_backward"], r["step"]
        rows.append(f"| {r['n']:,} | {fmt(f['tokens_per_s'], 0)} | {f['gflops']:.1f} | "
                    f"{f['peak_mib']:.1f} | {fmt(b['tokens_per_s'], 0)} | {b['peak_mib']:.1f} | "
                    f"{s['seconds'] * 1e6:.2f} | {f['io_mib']:.1f} |")
    return rows


def render_generate(outputs):
    log, twin = ({r["context"]: r for r in out} for out in outputs)
    rows = ["| context | log-attention ms/token | resident MiB | prompt tokens/s | "
            "softmax twin ms/token | resident MiB | prompt tokens/s |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sorted(set(log) | set(twin)):
        cells = []
        for side in (log, twin):
            r = side.get(n)
            cells += ([f"{r['ms_per_token']:.3f}", f"{r['rss_mib']:.1f}",
                       fmt(r["prompt_tokens_per_s"], 0)] if r else ["-", "-", "-"])
        rows.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return rows


def render_serve_prefix(outputs):
    rows = ["| preset | prompt tokens | reuse off | reuse on | faster | one kept prefix | "
            "float32 KV cache at that length |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in outputs:
        rows.append(f"| `{r['preset']}` | {r['prompt_tokens']:,} | {fmt(r['off_ms'])} ms | "
                    f"{fmt(r['on_ms'])} ms | {r['off_ms'] / r['on_ms']:.1f}x | "
                    f"{r['kept_prefix_bytes'] / 1e6:.3f} MB | {r['kv_cache_bytes'] / 1e6:.1f} MB |")
    return rows


def render_serve_store(outputs):
    rows = ["| preset | state | read a state: folder | Redis | write a turn: folder | Redis | "
            "turns/s: one server | three on one Redis | Redis read, one connection |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in outputs:
        f, d = r["folder"], r["redis"]
        one, three = r["turns_per_s_one_server"], r["turns_per_s_three_servers"]
        rows.append(f"| `{r['preset']}` | {r['state_bytes'] / 1e6:.3f} MB | "
                    f"{f['load_ms']:.2f} ms | {d['load_ms']:.2f} ms | {f['save_ms']:.2f} ms | "
                    f"{d['save_ms']:.2f} ms | {fmt(one)} | {fmt(three)} ({three / one:.2f}x) | "
                    f"{fmt(r['redis_read_mb_per_s'], 0)} MB/s |")
    return rows


def render_train_compare(outputs):
    rows = ["| preset, batch x context | setting | kernel | tokens/s (median) | of best |",
            "|---|---|---|---:|---:|"]
    for out, shape in zip(outputs, ("`small`, 16 x 128", "`small`, 8 x 256", "`paper`, 1 x 512")):
        rows += setting_rows(out["results"], "tokens_per_s", f"{shape} | ")
    return rows


def render_train_profile(outputs):
    (r,) = outputs
    step = r["seconds_per_step"]
    rows = [f"A step of {step:.3f} s, {fmt(r['tokens_per_s'], 0)} tokens/s, model FLOPs "
            f"utilisation {100 * r['mfu']:.1f}% (sgemm {r['sgemm_gflops']:.1f} GFLOP/s in the same "
            f"run):", "",
            "| operation | kernel | forward ms | backward ms | share |", "|---|---|---:|---:|---:|"]
    total = 0
    for op in r["profile"]:
        f, b = op["forward_s"], op["backward_s"]
        total += f + b
        rows.append(f"| {op['op']} | {op['kernel']} | {f * 1e3:.1f} | {b * 1e3:.1f} | "
                    f"{100 * (f + b) / step:.1f}% |")
    rows.append(f"| (not in an operation above) | | | {(step - total) * 1e3:.1f} | "
                f"{100 * (step - total) / step:.1f}% |")
    return rows


def render_compare_torch(outputs):
    (out,) = outputs
    rows = [f"PyTorch {out['torch_version']} on 2 threads; sgemm {out['sgemm']} at "
            f"{out['sgemm_gflops']:.1f} GFLOP/s; B = 1, H = {out['heads']}, d_key = {out['dk']}, "
            f"d_val = {out['dv']}:", "",
            "| n | pass | PyTorch tokens/s | PyTorch peak MiB | logattn log-values tokens/s | "
            "ratio | logattn peak MiB | logattn signed tokens/s | ratio | of sgemm |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in out["rows"]:
        t, lv, sv = r["torch"], r["log_values"], r["signed"]
        if "error" in t:
            rows.append(f"| {r['n']:,} | {r['pass']} | failed: {t['error']} | | | | | | | |")
            continue
        of = f"{100 * r['of_sgemm']:.1f}%" if r["of_sgemm"] is not None else "-"
        rows.append(f"| {r['n']:,} | {r['pass']} | {fmt(t['tokens_per_s'], 0)} | "
                    f"{t['peak_mib']:.0f} | {fmt(lv['tokens_per_s'], 0)} | "
                    f"{lv['tokens_per_s'] / t['tokens_per_s']:.0f}x | {lv['peak_mib']:.0f} | "
                    f"{fmt(sv['tokens_per_s'], 0)} | {sv['tokens_per_s'] / t['tokens_per_s']:.0f}x | "
                    f"{of} |")
    return rows


L = "{logattn}"
PY = "/usr/bin/python3"
TABLES = {
    "sgemm": dict(page="docs/benchmarks.md", render=render_sgemm,
                  cmds=[[L, "bench", "sgemm", "--rounds", "5", "--json"]]),
    "train-compare": dict(page="docs/benchmarks.md", render=render_train_compare,
                          cmds=[[L, "bench", "train", "--compare", "--json"],
                                [L, "bench", "train", "--compare", "--batch", "8", "--context",
                                 "256", "--json"],
                                [L, "bench", "train", "--compare", "--preset", "paper",
                                 "--batch", "1", "--context", "512", "--steps", "2", "--json"]]),
    "train-profile": dict(page="docs/benchmarks.md", render=render_train_profile,
                          cmds=[[L, "bench", "train", "--profile", "--json"]]),
    "compare-torch": dict(page="docs/benchmarks.md", render=render_compare_torch,
                          cmds=[[PY, "bench/compare_torch.py", "--json"]]),
    "attention": dict(page="docs/benchmarks.md", render=render_attention,
                      cmds=[[L, "bench", "attention", "--n", "1024,4096,16384,65536",
                             "--json"]]),
    "generate-small": dict(page="docs/generation.md", render=render_generate,
                           cmds=[[L, "bench", "generate", "--context", "16,256,4096,65536",
                                  "--tokens", "256", "--json"],
                                 [L, "bench", "generate", "--attention", "softmax", "--context",
                                  "16,256,4096,16384", "--tokens", "64", "--json"]]),
    "serve-prefix": dict(page="docs/serving.md", render=render_serve_prefix,
                         cmds=[[PY, "bench/serve_prefix.py", "--preset", "small", "--json"],
                               [PY, "bench/serve_prefix.py", "--preset", "paper", "--rounds",
                                "5", "--json"]]),
    "serve-store": dict(page="docs/serving.md", render=render_serve_store,
                        cmds=[[PY, "bench/serve_store.py", "--preset", "small", "--json"],
                              [PY, "bench/serve_store.py", "--preset", "paper", "--clients",
                               "4", "--turns", "3", "--json"]]),
}


def cpu():
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            info.setdefault(k.strip(), v.strip())
    flags = set(info.get("flags", "").split())
    isa = ", ".join(x for x in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if x in flags)
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model "
            f"{info.get('model', '?')}; {isa}), {os.cpu_count()} cores")


def shown(cmd):
    return " ".join("logattn" if c == L else c for c in cmd)


def measure(name, build):
    t = TABLES[name]
    exe = os.path.join(build, "logattn")
    outputs = []
    for cmd in t["cmds"]:
        argv = [exe if c == L else c for c in cmd]
        if argv[0] == PY:
            argv += ["--build", build]
        r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
        outputs.append(json.loads(r.stdout))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()
    heading = (f"Measured on {cpu()}, {datetime.date.today().isoformat()}, commit {commit}: "
               + "; ".join(f"`{shown(c)}`" for c in t["cmds"]))
    return [heading, ""] + t["render"](outputs)


def write(name, lines):
    path = os.path.join(ROOT, TABLES[name]["page"])
    with open(path) as f:
        text = f.read()
    begin, end = f"<!-- bench-table: {name} -->", "<!-- /bench-table -->"
    i = text.find(begin)
    if i < 0:
        sys.exit(f"{path} has no {begin} block")
    j = text.find(end, i)
    text = text[:i] + begin + "\n" + "\n".join(lines) + "\n" + text[j:]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="*", help="names (--list shows them)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    a = ap.parse_args()
    if a.list or not a.tables:
        for name, t in TABLES.items():
            print(f"{name:16} {t['page']:22} " + "; ".join(shown(c) for c in t["cmds"]))
        return
    for name in a.tables:
        if name not in TABLES:
            sys.exit(f"unknown table '{name}' (--list shows them)")
    for name in a.tables:
        lines = measure(name, os.path.abspath(a.build))
        write(name, lines)
        print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
