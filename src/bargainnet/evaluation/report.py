"""Evaluation reports: the Table 1-style Markdown tables, the per-image CSV and the JSON summary
(:func:`write_report`), with the paper's own numbers for reference."""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from .evaluator import ALL, IHARMONY4_SUBSETS, EvaluationResult, Method, _subset_order
from .metrics import RATIO_BINS
from .plots import plot_fmse_vs_ratio

# Paper (ICME 2021) Table 1, iHarmony4 test set, published protocol: (MSE, PSNR) per sub-dataset,
# fMSE for all. The input composite's per-sub-dataset numbers are not restated in docs/design.md §1.
PAPER_TABLE1: dict[str, dict[str, Any]] = {
    "Input composite": {"All": (172.47, 31.63)},
    "BargainNet (paper)": {
        "HCOCO": (24.84, 37.03),
        "HAdobe5k": (39.94, 35.34),
        "HFlickr": (97.32, 31.34),
        "Hday2night": (50.98, 35.67),
        "All": (37.82, 35.88),
        "fmse": 405.23,
    },
}
# Supplement Table 1: BargainNet by foreground ratio, (MSE, fMSE).
PAPER_RATIO_TABLE: dict[str, tuple[float, float]] = {
    "0-5%": (10.55, 450.33),
    "5-15%": (32.13, 359.49),
    "15-100%": (109.23, 353.84),
    "All": (37.82, 405.23),
}



def _fmt(x: float, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def comparison_table(result: EvaluationResult, summary: dict[str, Any] | None = None) -> str:
    """Markdown table whose rows read like the paper's Table 1: one row per method; per
    sub-dataset MSE↓ / PSNR↑, then All MSE↓ / PSNR↑ / fMSE↓."""
    summary = summary or result.summary()
    subsets = _subset_order({s for v in summary.values() for s in v["subsets"] if s != ALL})
    head = ["Method"] + [f"{s} {m}" for s in subsets for m in ("MSE↓", "PSNR↑")] + ["All MSE↓", "All PSNR↑", "All fMSE↓"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for method in result.methods:
        s = summary[method.key]["subsets"]
        cells = [method.label]
        for sub in subsets:
            b = s.get(sub)
            cells += [_fmt(b["mse"]), _fmt(b["psnr"])] if b else ["", ""]
        cells += [_fmt(s[ALL]["mse"]), _fmt(s[ALL]["psnr"]), _fmt(s[ALL]["fmse"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ratio_table(result: EvaluationResult, summary: dict[str, Any] | None = None) -> str:
    """Markdown table like the supplement's Table 1: MSE↓ and fMSE↓ by foreground ratio."""
    summary = summary or result.summary()
    bins = [label for label, _, _ in RATIO_BINS] + [ALL]
    head = ["Method"] + [f"{b} {m}" for b in bins for m in ("MSE↓", "fMSE↓")]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    counts = summary[result.methods[0].key]["ratio_bins"]
    lines.append("| " + " | ".join(["*images*"] + [c for b in bins for c in (f"*{counts[b]['n']}*", "")]) + " |")
    for method in result.methods:
        r = summary[method.key]["ratio_bins"]
        cells = [method.label] + [c for b in bins for c in (_fmt(r[b]["mse"]), _fmt(r[b]["fmse"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paper_tables() -> str:
    """The paper's own numbers (iHarmony4 test set, published protocol), for reference."""
    subs = list(IHARMONY4_SUBSETS) + [ALL]
    head = ["Method"] + [f"{s} {m}" for s in subs for m in ("MSE↓", "PSNR↑")] + ["All fMSE↓"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name, row in PAPER_TABLE1.items():
        cells = [name]
        for s in subs:
            cells += [_fmt(row[s][0]), _fmt(row[s][1])] if s in row else ["—", "—"]
        cells.append(_fmt(row.get("fmse", math.nan)))
        lines.append("| " + " | ".join(cells) + " |")
    bins = [label for label, _, _ in RATIO_BINS] + [ALL]
    lines += ["", "| Method | " + " | ".join(f"{b} MSE↓ | {b} fMSE↓" for b in bins) + " |",
              "|---" + "|---:" * (2 * len(bins)) + "|",
              "| BargainNet (paper) | " + " | ".join(f"{_fmt(PAPER_RATIO_TABLE[b][0])} | {_fmt(PAPER_RATIO_TABLE[b][1])}" for b in bins) + " |"]
    return "\n".join(lines) + "\n"


def per_method_table(result: EvaluationResult, method: Method, summary: dict[str, Any]) -> str:
    """Table 1 for one method: rows = sub-datasets and All; columns n, MSE, PSNR, fMSE."""
    s = summary[method.key]["subsets"]
    lines = ["| Sub-dataset | images | MSE↓ | PSNR↑ | fMSE↓ |", "|---|---:|---:|---:|---:|"]
    for name, b in s.items():
        label = f"**{name}**" if name == ALL else name
        lines.append(f"| {label} | {b['n']} | {_fmt(b['mse'])} | {_fmt(b['psnr'])} | {_fmt(b['fmse'])} |")
    return "\n".join(lines) + "\n"


def markdown_report(result: EvaluationResult, summary: dict[str, Any] | None = None) -> str:
    from .metrics import PROTOCOLS

    summary = summary or result.summary()
    proto = PROTOCOLS[result.protocol]
    n_images = summary[result.methods[0].key]["subsets"][ALL]["n"]
    parts = [
        f"# Evaluation — protocol `{proto.name}`\n\n",
        f"Data: `{result.data_root}`, split `{result.split}`, {n_images} images at {result.size}×{result.size}.  \n",
        f"Protocol `{proto.name}`: {proto.description}. Means are over images (the All row pools all images).\n\n",
        f"## Comparison (protocol `{proto.name}`)\n\n",
        comparison_table(result, summary),
        f"\n## By foreground ratio (protocol `{proto.name}`)\n\n",
        ratio_table(result, summary),
    ]
    notes = []
    for method in result.methods:
        all_block = summary[method.key]["subsets"][ALL]
        if all_block.get("psnr_pos_inf"):
            notes.append(f"{method.label}: {all_block['psnr_pos_inf']} image(s) identical to the real one (PSNR = +∞) left out of the PSNR mean.")
        if all_block.get("psnr_neg_inf"):
            notes.append(f"{method.label}: {all_block['psnr_neg_inf']} image(s) with a constant output (PSNR data range 0, PSNR = −∞) left out of the PSNR mean.")
        if all_block.get("fmse_nan"):
            notes.append(f"{method.label}: {all_block['fmse_nan']} image(s) with an empty mask left out of the fMSE mean.")
        if all_block.get("mse_nan"):
            notes.append(f"{method.label}: {all_block['mse_nan']} image(s) with a non-finite MSE left out.")
    if notes:
        parts.append("\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    for method in result.methods:
        extra = ""
        if method.kind == "model":
            extra = f" (weights `{method.info.get('weights', '-')}`, {method.info.get('mode', 'eval')} mode)"
        parts += [f"\n## {method.label}{extra} — protocol `{proto.name}`\n\n", per_method_table(result, method, summary)]
    parts += [
        "\n## The paper's numbers (iHarmony4 test set, published protocol; for reference)\n\n",
        "Comparable with the tables above only when the data is iHarmony4's test split scored "
        "with the `published` protocol.\n\n",
        paper_tables(),
    ]
    return "".join(parts)


def json_safe(x: Any) -> Any:
    """NaN and infinities become null (JSON has no such numbers); tuples become lists; numpy
    scalars become Python numbers."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def write_report(result: EvaluationResult, output_dir: str | os.PathLike, plot: bool = True) -> dict[str, Path]:
    """Write ``per_image.csv``, ``results.json``, ``results.md`` and ``fmse_vs_ratio.png``.

    Every file is written atomically; returns their paths.
    """
    from ..io import atomic_write_text
    from .metrics import PROTOCOLS

    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {out} is a file")
    summary = result.summary()
    paths = {
        "csv": out / "per_image.csv",
        "json": out / "results.json",
        "markdown": out / "results.md",
    }
    buf = _io.StringIO()
    fields = ["method", "name", "subset", "fg_ratio", "mse", "psnr", "fmse"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in result.records:
        writer.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in fields})
    payload = {
        "protocol": result.protocol,
        "protocol_description": PROTOCOLS[result.protocol].description,
        "data_root": result.data_root,
        "split": result.split,
        "size": result.size,
        "methods": [{"key": m.key, "label": m.label, "kind": m.kind, **m.info} for m in result.methods],
        "results": summary,
        "paper": {"table1": {k: {s: v for s, v in row.items()} for k, row in PAPER_TABLE1.items()}, "ratio": PAPER_RATIO_TABLE},
    }

    atomic_write_text(paths["csv"], buf.getvalue())
    atomic_write_text(paths["json"], json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], markdown_report(result, summary))
    if plot:
        paths["plot"] = out / "fmse_vs_ratio.png"
        plot_fmse_vs_ratio(result, summary, paths["plot"])
    return paths
