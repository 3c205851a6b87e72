"""Evaluation plots: fMSE against foreground ratio, harmony score against composite fMSE."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import RATIO_BINS, ratio_bin

if TYPE_CHECKING:
    from .evaluator import EvaluationResult


def plot_fmse_vs_ratio(result: EvaluationResult, summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    edges = [lo for _, lo, _ in RATIO_BINS] + [100.0]
    for i, method in enumerate(result.methods):
        rows = [r for r in result.records if r["method"] == method.key and np.isfinite(r["fmse"])]
        x = np.array([r["fg_ratio"] for r in rows])
        y = np.array([r["fmse"] for r in rows])
        c = colors[i % len(colors)]
        ax.scatter(x, np.maximum(y, 1e-2), s=8, alpha=0.35, color=c)
        # each bin's mean fMSE, drawn at the mean foreground ratio of its images
        pts = [(x[[ratio_bin(v) == label for v in x]].mean(), summary[method.key]["ratio_bins"][label]["fmse"])
               for label, _, _ in RATIO_BINS if any(ratio_bin(v) == label for v in x)]
        if pts:
            ax.plot(*zip(*pts), "-o", color=c, label=f"{method.label} (bin means)")
    for e in edges[1:-1]:
        ax.axvline(e, color="0.7", lw=0.8, ls="--")
    ratios = [r["fg_ratio"] for r in result.records if r["fg_ratio"] > 0]
    ax.set_xscale("log")
    ax.set_xlim(max(0.05, min(ratios, default=1.0) / 1.5), 100)
    ax.set_yscale("log")
    ax.set_xlabel("foreground ratio (%)")
    ax.set_ylabel("fMSE (per image)")
    ax.set_title(f"fMSE vs foreground ratio — protocol '{result.protocol}', split '{result.split}'")
    ax.legend(fontsize=7)
    fig.tight_layout()
    from ..io import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
