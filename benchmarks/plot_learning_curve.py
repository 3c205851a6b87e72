"""Learning curve of a ``bargainnet train`` run: CSV logs -> PNG plot + Markdown table.

Reads every ``RUN/logs/version_*/metrics.csv`` (one per launch; a resumed run adds a version and
later rows replace earlier ones of the same step), then plots

- left: the training loss terms (L1 and the two triplet losses, running mean) per optimiser step;
- right: validation MSE of the output against the input composites' MSE (the "0.6 x input" line
  is the issue's evidence threshold), under the run's metric protocol, and the composited output's
  MSE when logged; the top axis gives the training wall time in hours.

    python benchmarks/plot_learning_curve.py runs/cpu_small -o docs/figures/cpu_small_learning_curve.png \\
        --table docs/figures/cpu_small_learning_curve.md
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path


def read_logs(run: Path) -> dict[int, dict[str, float]]:
    """``{step: {column: value}}`` merged over the run's CSV logs (later launches win)."""
    files = sorted((run / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1]))
    if not files:
        raise SystemExit(f"no logs/version_*/metrics.csv under {run}")
    rows: dict[int, dict[str, float]] = {}
    for path in files:
        seen: dict[int, dict[str, float]] = {}
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if not row.get("step"):
                    continue
                step = int(float(row["step"])) + 1  # Lightning logs the 0-based step being run
                values = {k: float(v) for k, v in row.items() if v not in ("", None) and k not in ("step", "epoch")}
                seen.setdefault(step, {}).update(values)
        for step, values in seen.items():  # this launch's values replace earlier ones of the step
            rows[step] = {**rows.get(step, {}), **values}
    return dict(sorted(rows.items()))


def series(rows: dict[int, dict[str, float]], key: str) -> tuple[list[int], list[float]]:
    xs = [s for s, r in rows.items() if key in r]
    return xs, [rows[s][key] for s in xs]


def running_mean(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def table(rows: dict[int, dict[str, float]]) -> str:
    """Markdown table of the validation points."""
    has_comp = any("val/mse_composited" in r for r in rows.values())
    head = "| step | hours | val MSE | input MSE | ratio | val PSNR | val fMSE | input fMSE |"
    sep = "|---:|---:|---:|---:|---:|---:|---:|---:|"
    if has_comp:
        head += " composited MSE | ratio |"
        sep += "---:|---:|"
    lines = [head, sep]
    for step, r in rows.items():
        if "val/mse" not in r:
            continue
        line = (
            f"| {step} | {r.get('val/hours', float('nan')):.2f} | {r['val/mse']:.1f} | {r.get('val/input_mse', float('nan')):.1f} "
            f"| {r.get('val/mse_ratio', float('nan')):.3f} | {r.get('val/psnr', float('nan')):.2f} "
            f"| {r.get('val/fmse', float('nan')):.1f} | {r.get('val/input_fmse', float('nan')):.1f} |"
        )
        if has_comp:
            line += f" {r.get('val/mse_composited', float('nan')):.1f} | {r.get('val/mse_ratio_composited', float('nan')):.3f} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def plot(rows: dict[int, dict[str, float]], out: Path, title: str, smooth: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in (("train/l1", "L1"), ("train/triplet_background", "triplet T(ẑf, zb, z̃f)"),
                       ("train/triplet_foreground", "triplet T(zf, ẑf, z̃f)")):
        xs, ys = series(rows, key)
        if xs:
            ax1.plot(xs, running_mean(ys, smooth), label=label)
    ax1.set_yscale("log")
    ax1.set_xlabel("optimiser step")
    ax1.set_ylabel(f"training loss (running mean of {smooth} logged values)")
    ax1.legend()
    ax1.grid(alpha=0.3)

    xs, ys = series(rows, "val/mse")
    if xs:
        ax2.plot(xs, ys, "o-", label="output (run's protocol)")
        xi, yi = series(rows, "val/input_mse")
        ax2.plot(xi, yi, "k--", label="input composites")
        ax2.plot(xi, [0.6 * y for y in yi], ":", color="gray", label="0.6 x input")
        xc, yc = series(rows, "val/mse_composited")
        if xc:
            ax2.plot(xc, yc, "s-", label="output composited over the input background")
        ax2.set_yscale("log")
        hx, hy = series(rows, "val/hours")
        if len(hx) >= 2 and hy[-1] > hy[0]:
            top = ax2.secondary_xaxis(
                "top",
                functions=(lambda s, hx=hx, hy=hy: _interp(s, hx, hy), lambda h, hx=hx, hy=hy: _interp(h, hy, hx)),
            )
            top.set_xlabel("training wall time (hours)")
    ax2.set_xlabel("optimiser step")
    ax2.set_ylabel("validation MSE on [0, 255]")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, out)
    plt.close(fig)


def _interp(x, xp, fp):
    import numpy as np

    return np.interp(x, xp, fp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder of bargainnet train")
    parser.add_argument("-o", "--output", help="PNG to write (default: RUN/learning_curve.png)")
    parser.add_argument("--table", help="also write the validation table (Markdown) here")
    parser.add_argument("--title", help="figure title (default: the run folder's name)")
    parser.add_argument("--smooth", type=int, default=10, help="running-mean window over logged training values")
    args = parser.parse_args()
    run = Path(args.run)
    rows = read_logs(run)
    out = Path(args.output) if args.output else run / "learning_curve.png"
    plot(rows, out, args.title or run.name, args.smooth)
    text = table(rows)
    if args.table:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(text)
    print(text, end="")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
