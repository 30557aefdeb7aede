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


def render_compare_training(outputs):
    r = outputs[0]
    m = r["median"]
    ref = m["PyTorch"]["tokens_per_s"]
    rows = [f"`{r['preset']}` ({r['parameters']:,} parameters), batch {r['batch']} x context "
            f"{r['context']}, median of {r['rounds']} alternating rounds:", "",
            "| | s/step | tokens/s | peak MiB | tokens/s vs PyTorch |", "|---|---:|---:|---:|---:|"]
    names = {"logattn": "logattn", "PyTorch + op": "PyTorch 1.13 + logattn's operator",
             "PyTorch": "PyTorch 1.13"}
    for k, name in names.items():
        x = m[k]
        rows.append(f"| {name} | {x['seconds_per_step']:.3f} | {fmt(x['tokens_per_s'], 0)} | "
                    f"{fmt(x['peak_mib'], 0)} | {x['tokens_per_s'] / ref:.1f}x |")
    return rows


def render_compare_generation(outputs):
    r = outputs[0]
    return [f"`small`, a {r['prompt_tokens']}-token prompt, {r['tokens']} greedy tokens, median "
            f"of {r['rounds']} alternating rounds:", "",
            "| | ms/token |", "|---|---:|",
            f"| logattn (both cores) | {r['logattn_ms']:.3f} |",
            f"| PyTorch, 1 thread | {r['torch_1_thread_ms']:.3f} |",
            f"| PyTorch, 2 threads | {r['torch_2_threads_ms']:.3f} |",
            f"| logattn / PyTorch's faster ({r['best_threads']} thread(s)) | "
            f"**{r['ratio']:.1f}x** (rounds {r['ratio_min']:.1f}x-{r['ratio_max']:.1f}x) |",
            f"| greedy tokens the same | {r['greedy_tokens_agree']} of {r['tokens']} |"]


# The weight types measured side by side: (preset, type), in the order of their commands.
GENERATE_TYPES = [(p, t) for p in ("small", "paper") for t in ("f32", "bf16", "q8_0")]
GENERATE_PROFILES = [("paper", "q8_0", 1), ("paper", "f32", 1), ("paper", "q8_0", 32)]
# Batched decoding: (type, sequences stepping together).
GENERATE_BATCHES = [(t, b) for t in ("f32", "bf16", "q8_0") for b in (1, 32)]


def render_generate_types(outputs):
    rows = ["| preset | weights | ms/token | tokens/s vs f32 | resident MiB | MB read per token | "
            "GB/s | of the measured bandwidth | prompt tokens/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    f32 = {}
    for (preset, wtype), out in zip(GENERATE_TYPES, outputs):
        r = out[0]
        f32.setdefault(preset, r["ms_per_token"])
        share = r["weight_gb_per_s"] / r["memory_gb_per_s"]
        rows.append(f"| `{preset}` | {wtype} | {r['ms_per_token']:.3f} | "
                    f"{f32[preset] / r['ms_per_token']:.1f}x | {r['rss_mib']:.1f} | "
                    f"{r['weight_mb']:.1f} | {r['weight_gb_per_s']:.1f} | {100 * share:.0f}% | "
                    f"{fmt(r['prompt_tokens_per_s'], 0)} |")
    return rows


def render_generate_profile(outputs):
    rows = []
    for (preset, wtype, batch), out in zip(GENERATE_PROFILES, outputs):
        r = out[0]
        step, bw = r["profiled_ms_per_token"], r["memory_gb_per_s"]
        what = "per token" if batch == 1 else f"per step of {batch} sequences"
        rows += [f"`{preset}`, {wtype}, after {r['context']:,} tokens: {step:.3f} ms {what} "
                 f"profiled, memory {bw:.1f} GB/s:", "",
                 "| operation | ms/token | share | MB read | GB/s | of the bandwidth |",
                 "|---|---:|---:|---:|---:|---:|"]
        total = 0
        for op in r["profile"]:
            ms, mb = op["ms"], op["weight_mb"]
            total += ms
            rate = (f"{mb:.1f} | {mb / ms:.1f} | {100 * mb / ms / bw:.0f}%" if mb >= 0.01
                    else "| |")
            rows.append(f"| {op['op']} | {ms:.3f} | {100 * ms / step:.1f}% | {rate} |")
        rows += [f"| (not in an operation above) | {step - total:.3f} | "
                 f"{100 * (step - total) / step:.1f}% | | | |", ""]
    return rows[:-1]


def render_generate_batch(outputs):
    rows = ["| weights | sequences | ms per step | tokens/s | vs one sequence |",
            "|---|---:|---:|---:|---:|"]
    one = {}
    for (wtype, batch), out in zip(GENERATE_BATCHES, outputs):
        r = out[0]
        one.setdefault(wtype, r["tokens_per_s"])
        rows.append(f"| {wtype} | {batch} | {r['ms_per_token']:.2f} | {fmt(r['tokens_per_s'])} | "
                    f"{r['tokens_per_s'] / one[wtype]:.1f}x |")
    return rows


def render_quantization_quality(outputs):
    rows = ["| model | weights | file MB | nats/token | vs float32 | greedy text, 256 tokens |",
            "|---|---|---:|---:|---:|---|"]
    for out in outputs:
        train = " ".join(out["train"])
        first = f"`{out['recipe']}`: `logattn train {train}`"
        if out["eval_tokens"]:
            first += f" (first {out['eval_tokens']:,} validation tokens)"
        f32 = out["rows"][0]["loss"]
        for i, r in enumerate(out["rows"]):
            vs = f"{100 * (r['loss'] - f32) / f32:+.3f}%" if i else ""
            text = ("" if not i else "identical" if r["same_text"] else
                    f"first {r['same_chars']} of {r['chars']} characters")
            rows.append(f"| {first if i == 0 else ''} | {r['type']} | {r['file_mb']:.1f} | "
                        f"{r['loss']:.6f} | {vs} | {text} |")
    return rows


def render_allreduce(outputs):
    rows = ["| | seconds | bus bandwidth |", "|---|---:|---:|"]
    for name, r in zip(("shared memory", "TCP (loopback)"), outputs):
        rows.append(f"| {name}: {r['bytes'] / 1e6:.1f} MB between {r['processes']} processes | "
                    f"{r['seconds']:.3f} | {r['busbw_gb_s']:.2f} GB/s |")
    return rows


def render_train_overlap(outputs):
    rows = ["| | step, overlapped | of which reduction not hidden | step, after the backward | "
            "of which reduction |", "|---|---:|---:|---:|---:|"]
    for i, name in enumerate(("shared memory", "TCP loopback")):
        over, after = outputs[2 * i], outputs[2 * i + 1]
        rows.append(f"| {name} | {over['seconds_per_step']:.2f} s | "
                    f"{over['reduce_seconds_per_step']:.2f} s | {after['seconds_per_step']:.2f} s | "
                    f"{after['reduce_seconds_per_step']:.2f} s |")
    return rows


def render_serve_load(outputs):
    r = outputs[0]
    rows = ["| clients | requests/s | tokens/s | latency p50 / p90 / p99 / max | statuses |",
            "|---:|---:|---:|---|---|"]
    for x in r["runs"]:
        statuses = ", ".join(f"{v:,} x {k}" for k, v in sorted(x["statuses"].items()))
        rows.append(f"| {x['clients']} | {x['requests_per_s']:.1f} | {fmt(x['tokens_per_s'], 0)} | "
                    f"{x['p50']:.3f} / {x['p90']:.3f} / {x['p99']:.3f} / {x['max']:.3f} s | "
                    f"{statuses} |")
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
# Two processes on one machine, one thread each; TCP over loopback stands for a network.
MPIRUN = ["mpirun", "-np", "2", "--bind-to", "none", "-x", "OMP_NUM_THREADS=1"]
TCP = ["--mca", "btl", "tcp,self"]
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
    "compare-training": dict(page="docs/benchmarks.md", render=render_compare_training,
                             cmds=[[PY, "bench/compare_training.py", "--steps", "2", "--rounds",
                                    "3", "--json"]]),
    "compare-generation": dict(page="docs/generation.md", render=render_compare_generation,
                               cmds=[[PY, "bench/compare_generation.py", "--json"]]),
    "generate-types": dict(page="docs/quantization.md", render=render_generate_types,
                           cmds=[[L, "bench", "generate", "--preset", p, "--type", t,
                                  "--context", "1024", "--tokens", "64", "--json"]
                                 for p, t in GENERATE_TYPES]),
    "generate-profile": dict(page="docs/generation.md", render=render_generate_profile,
                             cmds=[[L, "bench", "generate", "--preset", p, "--type", t,
                                    "--context", "1024", "--tokens", "64", "--batch", str(b),
                                    "--profile", "--json"]
                                   for p, t, b in GENERATE_PROFILES]),
    "generate-batch": dict(page="docs/generation.md", render=render_generate_batch,
                           cmds=[[L, "bench", "generate", "--preset", "paper", "--type", t,
                                  "--context", "1024", "--tokens", "64", "--batch", str(b),
                                  "--json"] for t, b in GENERATE_BATCHES]),
    "quantization-quality": dict(page="docs/quantization.md",
                                 render=render_quantization_quality,
                                 cmds=[[PY, "bench/quantization_quality.py", "--recipe", r, "--json"]
                                       for r in ("small", "paper")]),
    "allreduce": dict(page="docs/training.md", render=render_allreduce,
                      cmds=[MPIRUN + net + [L, "bench", "allreduce", "--rounds", "5", "--json"]
                            for net in ([], TCP)]),
    "train-overlap": dict(page="docs/training.md", render=render_train_overlap,
                          cmds=[MPIRUN + net + [L, "bench", "train", "--preset", "paper", "--batch",
                                                "1", "--context", "512", "--steps", "2", *over,
                                                "--json"]
                                for net in ([], TCP) for over in (["--overlap-reduce"], [])]),
    "serve-load": dict(page="docs/serving.md", render=render_serve_load,
                       cmds=[[PY, "bench/serve_load.py", "--clients", "1,4,16,32,64",
                              "--seconds", "10", "--max-batch", "64", "--json"]]),
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
        # The Python scripts import the built module (logattn.torch_model).
        # mpirun refuses root unless told (containers run as root).
        env = dict(os.environ, PYTHONPATH=os.path.join(build, "python"),
                   OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True, env=env)
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
