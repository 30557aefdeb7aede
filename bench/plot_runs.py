#!/usr/bin/env python3
"""Validation loss of several training runs on one chart (SVG), from their log.jsonl files.

    /usr/bin/python3 bench/plot_runs.py OUT.svg LABEL=RUN_DIR [LABEL=RUN_DIR ...]
"""
import json
import os
import sys

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def series(run):
    pts = []
    with open(os.path.join(run, "log.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "val_loss" in j:
                pts.append((j["step"], j["val_loss"]))
    return pts


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, runs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
    data = [(label, series(d)) for label, d in runs]
    xs = [x for _, s in data for x, _ in s]
    ys = [y for _, s in data for _, y in s]
    x0, x1, y0, y1 = 0, max(xs), min(ys) * 0.98, max(ys) * 1.02
    W, H, L, B = 640, 360, 60, 40
    px = lambda x: L + (x - x0) / (x1 - x0) * (W - L - 20)
    py = lambda y: H - B - (y - y0) / (y1 - y0) * (H - B - 20)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - 20}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="20" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">step</text>',
           f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" '
           f'text-anchor="middle">validation loss (nats/token)</text>']
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        svg.append(f'<text x="{L - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
        svg.append(f'<line x1="{L}" y1="{py(y):.1f}" x2="{W - 20}" y2="{py(y):.1f}" '
                   f'stroke="#ddd"/>')
        x = x0 + (x1 - x0) * i / 4
        svg.append(f'<text x="{px(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x:.0f}</text>')
    for k, (label, s) in enumerate(data):
        c = COLORS[k % len(COLORS)]
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s)
        svg.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        svg.append(f'<text x="{W - 30}" y="{40 + 18 * k}" text-anchor="end" fill="{c}">'
                   f'{label}: {s[-1][1]:.4f}</text>')
    svg.append("</svg>")
    tmp = f"{out}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write("\n".join(svg) + "\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
