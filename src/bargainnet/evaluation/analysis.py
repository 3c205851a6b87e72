"""Domain-code analysis (paper Table 2) and inharmony scores (paper §4.6).

For a triplet (composite Ĩ, real I, harmonized Î) with mask M the domain code extractor E gives

- ``b``  = z_b  = E(Ĩ, 1−M): the background,
- ``f``  = z_f  = E(I, M): the real foreground,
- ``f̂`` = ẑ_f = E(Î, M): the harmonized foreground,
- ``f̃`` = z̃_f = E(Ĩ, M): the composite foreground,

and the paper checks six requirements — each a pair of Euclidean distances — and all six at once:

1. d(b, f) < d(b, f̃)     the real foreground is closer to the background than the composite one
2. d(b, f̂) < d(b, f̃)    harmonization moves the foreground toward the background
3. d(f, f̂) < d(f, f̃)    the harmonized foreground is closer to the real one than the composite
4. d(f̂, f) < d(f̂, f̃)   the harmonized foreground is closer to the real than to the composite
5. d(f̂, b) < d(f̂, f̃)   the harmonized foreground is closer to the background than to the composite
6. d(f, b) < d(f, f̃)     the real foreground is closer to the background than to the composite

Paper (iHarmony4 test set): 90.28, 97.39, 91.87, 89.28, 96.26, 89.09 %, all six 81.36 %.

The *inharmony level* of a composite is d(z_b, z̃_f); BCMI's libcom maps it to a bounded harmony
score exp(−0.04212·d) (1 = harmonious). After harmonization the level is d(z_b, ẑ_f).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..models.bargainnet import HARMONY_SCORE_SCALE, harmony_score
from .evaluator import subsample_indices
from .report import json_safe

__all__ = [
    "REQUIREMENTS",
    "PAPER_TABLE2_TEST",
    "HARMONY_SCORE_SCALE",
    "harmony_score",
    "requirement_flags",
    "requirement_rates",
    "CodeAnalysis",
    "collect_codes",
    "spearman",
    "subsample_indices",
    "rank_by_inharmony",
    "table2_markdown",
    "analysis_markdown",
    "analysis_report",
]


# (label, (anchor, closer, farther)) — requirement: d(anchor, closer) < d(anchor, farther).
REQUIREMENTS: tuple[tuple[str, tuple[str, str, str]], ...] = (
    ("d(b,f) < d(b,f̃)", ("b", "f", "f~")),
    ("d(b,f̂) < d(b,f̃)", ("b", "f^", "f~")),
    ("d(f,f̂) < d(f,f̃)", ("f", "f^", "f~")),
    ("d(f̂,f) < d(f̂,f̃)", ("f^", "f", "f~")),
    ("d(f̂,b) < d(f̂,f̃)", ("f^", "b", "f~")),
    ("d(f,b) < d(f,f̃)", ("f", "b", "f~")),
)
# Paper Table 2, test set: the six requirements, then all six (percent of triplets).
PAPER_TABLE2_TEST: tuple[float, ...] = (90.28, 97.39, 91.87, 89.28, 96.26, 89.09, 81.36)


def _codes(z_b, z_f, z_f_harm, z_f_comp) -> dict[str, np.ndarray]:
    codes = {}
    for key, z in (("b", z_b), ("f", z_f), ("f^", z_f_harm), ("f~", z_f_comp)):
        if hasattr(z, "detach"):
            z = z.detach().float().cpu().numpy()
        z = np.asarray(z, dtype=np.float64)
        if z.ndim == 4 and z.shape[2:] == (1, 1):  # (B, L, 1, 1) published layout
            z = z[:, :, 0, 0]
        if z.ndim != 2:
            raise InputError(f"codes must have shape (N, L); code {key!r} has shape {z.shape}")
        codes[key] = z
    shapes = {z.shape for z in codes.values()}
    if len(shapes) != 1:
        raise InputError(f"the four codes must have one shape (N, L), got {sorted(shapes)}")
    return codes


def requirement_flags(z_b, z_f, z_f_harm, z_f_comp) -> np.ndarray:
    """(N, 6) bool: which of the six requirements each triplet meets (order of :data:`REQUIREMENTS`).

    Codes: (N, L) arrays or tensors — z_b, z_f (real foreground), ẑ_f (harmonized), z̃_f
    (composite). Distances are Euclidean over L. Ties count as not met (strict ``<``).
    """
    c = _codes(z_b, z_f, z_f_harm, z_f_comp)

    def d(a: str, b: str) -> np.ndarray:
        return np.linalg.norm(c[a] - c[b], axis=1)

    return np.stack([d(a, near) < d(a, far) for _, (a, near, far) in REQUIREMENTS], axis=1)


def requirement_rates(flags: np.ndarray) -> list[float]:
    """Percent of triplets meeting each requirement, then all six (7 numbers)."""
    flags = np.asarray(flags, dtype=bool)
    if flags.ndim != 2 or flags.shape[1] != len(REQUIREMENTS) or len(flags) == 0:
        raise InputError(f"expected flags of shape (N>0, {len(REQUIREMENTS)}), got {flags.shape}")
    return [float(v) for v in flags.mean(0) * 100] + [float(flags.all(1).mean() * 100)]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties), as ``scipy.stats.spearmanr``."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return math.nan
    return float(spearmanr(x[ok], y[ok]).statistic)


@dataclass
class CodeAnalysis:
    """Codes and per-triplet quantities of one split (arrays indexed like ``names``)."""

    split: str
    names: list[str]
    subsets: list[str]
    flags: np.ndarray  # (N, 6)
    inharmony_before: np.ndarray  # d(z_b, z̃_f), (N,)
    inharmony_after: np.ndarray  # d(z_b, ẑ_f), (N,)
    composite_fmse: np.ndarray  # fMSE of the composite against the real image (published protocol)
    codes: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    @property
    def rates(self) -> list[float]:
        return requirement_rates(self.flags)

    def score_fmse_spearman(self) -> float:
        """Spearman correlation between the composite's harmony score and its fMSE (expected < 0:
        less harmonious composites — lower score — are further from the real image)."""
        return spearman(harmony_score(self.inharmony_before), self.composite_fmse)

    def summary(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "n": len(self.names),
            "requirements": [label for label, _ in REQUIREMENTS] + ["all six"],
            "rates_percent": self.rates,
            "paper_test_percent": list(PAPER_TABLE2_TEST),
            "inharmony_distance_mean": {
                "composite": float(np.mean(self.inharmony_before)),
                "harmonized": float(np.mean(self.inharmony_after)),
            },
            "harmony_score_mean": {
                "composite": float(np.mean(harmony_score(self.inharmony_before))),
                "harmonized": float(np.mean(harmony_score(self.inharmony_after))),
            },
            "share_lower_after_percent": float(np.mean(self.inharmony_after < self.inharmony_before) * 100),
            "spearman_score_vs_composite_fmse": self.score_fmse_spearman(),
        }


def collect_codes(
    model,
    dataset,
    split: str = "test",
    batch_size: int = 8,
    device: str = "cpu",
    limit: int | None = None,
    progress: bool = True,
) -> CodeAnalysis:
    """Run ``model`` (eval mode, no grad) over ``dataset`` and gather the four codes per triplet.

    ``dataset`` items as :class:`bargainnet.data.iharmony4.IHarmony4Dataset`'s. The harmonized
    image is G's output for the composite guided by z_b = E(Ĩ, 1−M) (the background code of the
    composite; the published test took it from the real image, whose background is identical).
    """
    import torch
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    from .metrics import image_metrics

    subset = Subset(dataset, subsample_indices(len(dataset), limit))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=0)
    model = model.to(device).eval()
    keys = ("z_b", "z_f", "z_f_harm", "z_f_comp")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    names: list[str] = []
    subsets: list[str] = []
    fmse: list[float] = []
    for batch in tqdm(loader, desc=f"analyze ({split})", unit="batch", disable=not progress):
        comp, mask, real = (batch[k].float().to(device) for k in ("composite", "mask", "real"))
        with torch.no_grad():
            try:
                out = model.training_forward(comp, mask, real)
            except ValueError as err:
                raise InputError(str(err)) from None
        for k in keys:
            parts[k].append(out[k].float().cpu().numpy().astype(np.float64))
        names += list(batch["name"])
        subsets += list(batch["subset"])
        for i in range(comp.shape[0]):
            fmse.append(image_metrics(comp[i].cpu(), real[i].cpu(), mask[i].cpu(), "published")["fmse"])
    codes = {k: np.concatenate(v) for k, v in parts.items()}
    z_b, z_f, z_h, z_c = (codes[k] for k in keys)
    return CodeAnalysis(
        split=split,
        names=names,
        subsets=subsets,
        flags=requirement_flags(z_b, z_f, z_h, z_c),
        inharmony_before=np.linalg.norm(z_b - z_c, axis=1),
        inharmony_after=np.linalg.norm(z_b - z_h, axis=1),
        composite_fmse=np.asarray(fmse),
        codes=codes,
    )


def table2_markdown(analyses: Sequence[CodeAnalysis]) -> str:
    """The paper's Table 2 layout: rows = requirements and "all six"; one column per analysed
    split, then the paper's test-set numbers."""
    head = ["Requirement"] + [f"ours, {a.split} (n={len(a.names)})" for a in analyses] + ["paper, test"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    labels = [label for label, _ in REQUIREMENTS] + ["all six"]
    rates = [a.rates for a in analyses]
    for i, label in enumerate(labels):
        cells = [label] + [f"{r[i]:.2f}" for r in rates] + [f"{PAPER_TABLE2_TEST[i]:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rank_by_inharmony(rows: Sequence[dict[str, Any]], key: str = "distance") -> list[dict[str, Any]]:
    """Rows sorted from the most inharmonious (largest distance, lowest score) to the least, with
    a 1-based ``rank``; rows whose ``key`` is missing or not finite go last."""
    def sort_key(r):
        v = r.get(key)
        ok = isinstance(v, (int, float)) and math.isfinite(v)
        return (not ok, -v if ok else 0.0)

    ranked = sorted(rows, key=sort_key)
    return [{"rank": i + 1, **r} for i, r in enumerate(ranked)]


def analysis_markdown(analyses: Sequence[CodeAnalysis], weights: str = "", data_root: str = "") -> str:
    """The report: Table 2 beside the paper's, then the inharmony checks per split."""
    parts = [
        "# Domain-code analysis (paper Table 2)\n\n",
        f"Model `{weights}`, data `{data_root}`. Codes from the model in eval mode; z_b from the "
        "composite's background; harmonized = G's output guided by z_b. Percent of triplets whose "
        "codes meet each requirement (strict <, Euclidean distances).\n\n",
        table2_markdown(analyses),
        "\n## Inharmony level d(z_b, z̃_f) and harmony score exp(−0.04212·d)\n\n",
        "| split | images | mean d, composite | mean d, harmonized | lower after (%) | mean score, composite "
        "| mean score, harmonized | Spearman(score, composite fMSE) |\n",
        "|---|---:|---:|---:|---:|---:|---:|---:|\n",
    ]
    for a in analyses:
        s = a.summary()
        parts.append(
            f"| {a.split} | {s['n']} | {s['inharmony_distance_mean']['composite']:.3f} | "
            f"{s['inharmony_distance_mean']['harmonized']:.3f} | {s['share_lower_after_percent']:.1f} | "
            f"{s['harmony_score_mean']['composite']:.4f} | {s['harmony_score_mean']['harmonized']:.4f} | "
            f"{s['spearman_score_vs_composite_fmse']:.3f} |\n"
        )
    parts.append(
        "\nThe composite's fMSE is scored with the `published` protocol (uint8 truncation, binarised "
        "mask). A negative Spearman correlation means composites the score calls less harmonious are "
        "further from their real images.\n"
    )
    return "".join(parts)


def analysis_report(analyses: Sequence[CodeAnalysis], output_dir, weights: str = "", data_root: str = "", plot: bool = True) -> dict:
    """Write ``analysis.md``, ``analysis.json``, ``per_image.csv`` (per triplet: split, name,
    subset, the six flags, inharmony before/after, composite fMSE) and ``score_vs_fmse.png``."""
    import csv
    import io
    import json
    from pathlib import Path

    from ..io import atomic_write, atomic_write_text

    out = Path(output_dir)
    paths = {"markdown": out / "analysis.md", "json": out / "analysis.json", "csv": out / "per_image.csv"}
    atomic_write_text(paths["markdown"], analysis_markdown(analyses, weights, data_root))
    payload = {"weights": weights, "data_root": data_root, "splits": [a.summary() for a in analyses]}
    atomic_write_text(paths["json"], json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["split", "name", "subset"] + [f"req{i + 1}" for i in range(len(REQUIREMENTS))]
                    + ["all_six", "inharmony_before", "inharmony_after", "score_before", "score_after", "composite_fmse"])
    for a in analyses:
        for i, name in enumerate(a.names):
            f = a.flags[i]
            writer.writerow([a.split, name, a.subsets[i]] + [int(v) for v in f] + [int(f.all()),
                            f"{a.inharmony_before[i]:.6g}", f"{a.inharmony_after[i]:.6g}",
                            f"{harmony_score(float(a.inharmony_before[i])):.6g}",
                            f"{harmony_score(float(a.inharmony_after[i])):.6g}", f"{a.composite_fmse[i]:.6g}"])
    atomic_write_text(paths["csv"], buf.getvalue())
    if plot:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
        for a in analyses:
            ax.scatter(a.composite_fmse, harmony_score(a.inharmony_before), s=8, alpha=0.5,
                       label=f"{a.split} (Spearman {a.score_fmse_spearman():.2f})")
        ax.set_xscale("log")
        ax.set_xlabel("composite fMSE (published protocol)")
        ax.set_ylabel("harmony score exp(-0.04212 d)")
        ax.set_title("Harmony score of composites vs their foreground error")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths["plot"] = out / "score_vs_fmse.png"
        atomic_write(paths["plot"], lambda tmp: fig.savefig(tmp, format="png"))
        plt.close(fig)
    return paths
