"""The learning demo's runs side by side: pooled success curves as an SVG, and each run's gain.

    python benchmarks/learning_curves.py [RUN.json ...] [--svg docs/learning-curves.svg] [--bucket 30]

Each `trajstream demo --learn` run saves its attempts (time, serving version, success) to
HOME/learn/<model line>.json; with no files named, every run there is read. For each run it prints the
first version's pooled success, the last 3 minutes', the gain with its 95% interval (the figures the
demo's RESULT lines carry), and draws the pooled success per ``--bucket`` seconds: real arms solid,
control arms (rewards shuffled) dashed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trajstream.settings import Settings
from trajstream.trainer.learn_demo import LAST_S, Curve, load_curve

WIDTH, HEIGHT, PAD = 760, 360, 48
COLOURS = {
    "none": ["#1f77b4", "#2ca02c", "#9467bd", "#17becf"],
    "shuffled": ["#d62728", "#ff7f0e", "#8c564b", "#e377c2"],
}


def svg(runs: list[tuple[str, Curve, str, float]], bucket: float) -> str:
    span = max(duration for *_, duration in runs)

    def x(t: float) -> float:
        return PAD + (WIDTH - 2 * PAD) * t / span

    def y(rate: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * rate / 100

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>']  # fmt: skip
    for rate in range(0, 101, 20):
        parts.append(f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(rate):.1f}" y2="{y(rate):.1f}" stroke="#ddd"/>'
                     f'<text x="{PAD - 6}" y="{y(rate) + 4:.1f}" text-anchor="end">{rate}%</text>')  # fmt: skip
    for minute in range(int(span // 60) + 1):
        parts.append(f'<text x="{x(minute * 60):.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle">{minute} min</text>')
    parts.append(f'<rect x="{x(span - LAST_S):.1f}" y="{PAD}" width="{x(span) - x(span - LAST_S):.1f}" '
                 f'height="{HEIGHT - 2 * PAD}" fill="#f4f4f4"/>')  # fmt: skip
    used = {"none": 0, "shuffled": 0}
    for i, (name, curve, control, duration) in enumerate(runs):
        colour = COLOURS[control][used[control] % 4]
        used[control] += 1
        points = [(start + bucket / 2, pool.rate) for start, pool in curve.buckets(bucket)
                  if pool.n >= 20 and start + bucket <= duration + 1]  # fmt: skip
        path = " ".join(f"{x(t):.1f},{y(r):.1f}" for t, r in points)
        dash = ' stroke-dasharray="5,3"' if control == "shuffled" else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"{dash}/>')
        label = f"{'control' if control == 'shuffled' else 'real'}: {name}"
        parts.append(f'<text x="{WIDTH - PAD + 4 - 200}" y="{PAD + 14 * i + 4}" fill="{colour}">{label}</text>')
    parts.append(f'<text x="{PAD}" y="{PAD - 14}" font-size="13">Pooled success rate per {bucket:g} s '
                 f"(shaded: the last {LAST_S / 60:g} minutes, the gain's after side)</text></svg>")  # fmt: skip
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="saved runs (default: every HOME/learn/learn-*.json)")
    parser.add_argument("--svg", type=Path, default=None, help="write the curves here")
    parser.add_argument("--bucket", type=float, default=30.0, help="seconds pooled per point")
    args = parser.parse_args()
    files = args.runs or sorted((Settings().home / "learn").glob("learn-*.json"))
    if not files:
        sys.exit(f"no saved runs in {Settings().home / 'learn'}: run `trajstream demo --learn` first")
    runs = []
    print(f"{'run':<24} {'arm':<8} {'minutes':>7} {'v1':>14} {'last 3 min':>14} {'gain':>7} {'95% interval':>16}")
    for path in files:
        curve, control, duration = load_curve(path)
        gain = curve.gain("v1", duration)
        runs.append((path.stem, curve, control, duration))
        arm = "control" if control == "shuffled" else "real"
        first, last = f"{gain.first.rate:>6.1f}% ({gain.first.n:>4})", f"{gain.last.rate:>6.1f}% ({gain.last.n:>4})"
        interval = f"{gain.low:>+7.1f} to {gain.high:+.1f}"
        print(f"{path.stem:<24} {arm:<8} {duration / 60:>7.1f} {first} {last} {gain.points:>+7.1f} {interval}")
        print("    pooled per bucket: " + "  ".join(f"{int(s)}s {p.rate:.0f}%" for s, p in curve.buckets(args.bucket)
                                                 if p.n >= 20))  # fmt: skip
    if args.svg:
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(svg(runs, args.bucket))
        print(f"curves drawn in {args.svg}")


if __name__ == "__main__":
    main()
