"""Batched evaluation of harmonization methods on an iHarmony4-layout dataset (paper Table 1 and
supplement Table 1), under a named protocol (:mod:`bargainnet.metrics`).

A *method* maps a batch of composites (B, 3, H, W) in [-1, 1] and masks (B, 1, H, W) to its raw
output; the protocol decides what is scored (``published``: the raw output; ``standard``: the
output composited over the input background). Methods are the classical baselines of
:mod:`bargainnet.baselines` (``composite`` = the input itself) and BargainNet weights files.

Results are accumulated per image, then averaged per sub-dataset with an "All" row (a mean over
images, as the published code does, not over sub-datasets) and per foreground-ratio bin
(0–5 %, 5–15 %, 15–100 %, all). :func:`write_report` writes the per-image CSV, a JSON summary, a
Markdown report whose every table names the protocol, and a plot of fMSE against foreground ratio.

Python::

    from bargainnet.evaluation import load_dataset, resolve_methods, evaluate, write_report
    data = load_dataset("iHarmony4", "test")
    methods = resolve_methods(["composite", "reinhard", "model.safetensors"], device="cpu")
    result = evaluate(data, methods, protocol="published", batch_size=8)
    write_report(result, "outputs/eval")
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .baselines import BASELINES, LABELS
from .errors import InputError, OutputError
from .metrics import RATIO_BINS, batch_metrics, get_protocol, ratio_bin

__all__ = [
    "Method",
    "EvaluationResult",
    "IHARMONY4_SUBSETS",
    "PAPER_TABLE1",
    "PAPER_RATIO_TABLE",
    "load_dataset",
    "baseline_method",
    "model_method",
    "resolve_methods",
    "evaluate",
    "summarize",
    "write_report",
]

IHARMONY4_SUBSETS = ("HCOCO", "HAdobe5k", "HFlickr", "Hday2night")
ALL = "All"
METRICS = ("mse", "psnr", "fmse")

# Paper (ICME 2021) Table 1, iHarmony4 test set, published protocol: (MSE, PSNR) per sub-dataset,
# fMSE for all. The input composite's per-sub-dataset numbers are not restated in DESIGN §1.
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


@dataclass
class Method:
    """A method to evaluate: ``run(composite, mask) -> raw output``, all (B, ., H, W) CPU tensors."""

    key: str  # identifier in the per-image CSV and JSON
    label: str  # row name in tables
    kind: str  # "baseline" or "model"
    run: Callable[[Any, Any], Any]
    info: dict[str, Any] = field(default_factory=dict)
    size_multiple: int = 1
    model: Any = field(default=None, repr=False)  # the nn.Module of a "model" method


@dataclass
class EvaluationResult:
    """Per-image records and what produced them; :func:`summarize` turns them into tables."""

    protocol: str
    methods: list[Method]
    records: list[dict[str, Any]]
    split: str = "test"
    data_root: str = ""
    size: int = 256

    def summary(self) -> dict[str, Any]:
        return summarize(self.records, [m.key for m in self.methods])


# --------------------------------------------------------------------------------------------
# data and methods


def load_dataset(root: str | os.PathLike, split: str = "test", subsets: Sequence[str] | None = None, size: int = 256):
    """The iHarmony4-layout dataset at ``root`` resized for testing (``test_transform(size)``).

    Raises :class:`InputError` when ``root`` is missing or has no image lists for ``split``.
    """
    from .data.iharmony4 import IHarmony4Dataset
    from .data.transforms import test_transform

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data root not found (or not a folder): {root}")
    try:
        dataset = IHarmony4Dataset(root, split, subsets=subsets, transform=test_transform(size))
    except InputError:
        raise
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"cannot read the {split} split of the dataset at {root}: {err}") from None
    if len(dataset) == 0:
        raise InputError(f"the {split} split of {root} lists no images" + (f" in {list(subsets)}" if subsets else ""))
    return dataset


def baseline_method(name: str) -> Method:
    """A classical baseline (:data:`bargainnet.baselines.BASELINES`) as a :class:`Method`."""
    from .baselines import harmonize_batch

    if name not in BASELINES:
        raise InputError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return Method(key=name, label=LABELS[name], kind="baseline", run=lambda c, m: harmonize_batch(name, c, m))


def model_method(
    model_or_path: Any, device: str = "cpu", mode: str = "eval", label: str | None = None, working_size: int | None = None
) -> Method:
    """A BargainNet (or a weights file loaded with :func:`bargainnet.models.convert.load_weights`).

    The generator's raw output G(Ĩ, M, z_b) is returned (the protocol decides whether it is
    composited). With ``working_size`` S different from the evaluation size, the model runs on
    the S×S resized composite and its colour change is lifted to the evaluation size
    (:mod:`bargainnet.lifting`, as ``bargainnet harmonize`` does); that output is composited. ``mode="eval"`` (default) runs the model in eval mode; ``mode="train"``
    reproduces the published ``test.py`` (train mode: dropout on, BatchNorm with each image's own
    statistics, so images are run one at a time). Inference is under ``torch.no_grad``.
    """
    import torch

    if mode not in ("eval", "train"):
        raise InputError(f"model mode must be 'eval' or 'train', got {mode!r}")
    info: dict[str, Any] = {}
    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        from .models.convert import load_weights

        try:
            model = load_weights(path, device=device)
        except InputError:
            raise
        except Exception as err:  # a foreign or damaged file: say which and why
            raise InputError(
                f"cannot load weights {path}: {err.__class__.__name__}: {err} (expected a BargainNet "
                ".safetensors file written by save_weights or 'bargainnet convert')"
            ) from None
        key = label or path.stem
        info["weights"] = str(path)
    else:
        model = model_or_path.to(device)
        key = label or "model"
    if working_size is None:
        working_size = model.config.image_size  # the resolution it was trained at, when known
    info["config"] = model.config.to_dict()
    info["mode"] = mode
    model.train(mode == "train")

    def network(c, m):
        try:
            if mode == "train":
                return torch.cat([model(c[i : i + 1], m[i : i + 1]) for i in range(c.shape[0])])
            return model(c, m)
        except ValueError as err:
            raise InputError(f"{key}: {err}") from None

    def run(composite, mask):
        with torch.no_grad():
            c, m = composite.to(device), mask.to(device)
            if working_size is None or working_size == c.shape[-1] == c.shape[-2]:
                return network(c, m).float().cpu()
            return _lifted(network, c, m, working_size)

    multiple = model.config.size_multiple
    if working_size is not None:
        if working_size % multiple or working_size < 64:
            raise InputError(f"{key}: working size {working_size} must be a multiple of {multiple} and at least 64")
        info["working_size"] = working_size
        multiple = 1
    return Method(key=key, label=key, kind="model", run=run, info=info, size_multiple=multiple, model=model)


def _lifted(network: Callable, composite, mask, size: int):
    """Run ``network`` at size×size and lift its colour change to the input's size (composited)."""
    import torch
    import torch.nn.functional as F

    from .lifting import lift

    low = F.interpolate(composite, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    weight = F.interpolate(mask, size=(size, size), mode="area")
    binary = (weight >= 0.5).to(low.dtype)  # what the network treats as foreground
    out_low = network(low, binary).float()
    weight = weight * binary  # fit only where the network harmonized (as Harmonizer does)
    hwc = lambda t: ((t.float().cpu().permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)  # noqa: E731
    results = []
    for i in range(composite.shape[0]):
        full = hwc(composite[i])
        lifted = lift(hwc(low[i]), hwc(out_low[i]), weight[i, 0].cpu().numpy(), full)
        m = mask[i, 0].cpu().numpy()[..., None]
        results.append(torch.from_numpy(lifted * m + full * (1 - m)).permute(2, 0, 1) * 2 - 1)
    return torch.stack(results).float()


def resolve_methods(
    specs: Sequence[str], device: str = "cpu", mode: str = "eval", working_size: int | None = None
) -> list[Method]:
    """Methods from names: a baseline (``composite``, ``reinhard``, ``histogram``, ``covariance``)
    or the path of a weights file (run at ``working_size``, see :func:`model_method`). Duplicate
    keys get a numeric suffix."""
    methods: list[Method] = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        if spec in BASELINES:
            method = baseline_method(spec)
        elif Path(spec).is_file():
            method = model_method(spec, device=device, mode=mode, working_size=working_size)
        elif spec.endswith((".safetensors", ".pth", ".pt", ".ckpt")) or os.sep in spec:
            raise InputError(f"weights file not found: {spec}")
        else:
            raise InputError(
                f"unknown method {spec!r}; use one of {', '.join(BASELINES)} or the path of a "
                ".safetensors weights file"
            )
        keys = {m.key for m in methods}
        if method.key in keys:
            n = 2
            while f"{method.key}-{n}" in keys:
                n += 1
            method.key = method.label = f"{method.key}-{n}"
        methods.append(method)
    if not methods:
        raise InputError("no methods to evaluate")
    return methods


# --------------------------------------------------------------------------------------------
# evaluation


class NearestMasks:
    """Adds ``fmse_mask`` to each item of an :class:`~bargainnet.data.iharmony4.IHarmony4Dataset`:
    the item's mask file binarised (> 127) and resized *nearest* to the item's size — the mask the
    published evaluation uses for fMSE (its PIL mode-"1" mask is always resized nearest), while
    the model's input mask comes from the dataset's own transform."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        import torch
        from PIL import Image

        item = dict(self.dataset[index])
        mask_path = self.dataset.source_paths(index)[1]
        try:
            with Image.open(mask_path) as m:
                binary = m.convert("L").point(lambda v: 255 if v > 127 else 0)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read mask {mask_path}: {err}") from None
        h, w = item["mask"].shape[-2:]
        if binary.size != (w, h):
            binary = binary.resize((w, h), Image.NEAREST)
        item["fmse_mask"] = torch.from_numpy((np.asarray(binary) > 127).astype(np.float32))[None]
        return item


def evaluate(
    dataset,
    methods: Sequence[Method],
    protocol: str = "published",
    batch_size: int = 8,
    progress: bool = True,
    limit: int | None = None,
    num_workers: int = 0,
) -> EvaluationResult:
    """Run every method on every item of ``dataset`` and score it under ``protocol``.

    ``dataset`` yields dicts with ``composite``/``real`` (3, H, W) in [-1, 1], ``mask``
    (1, H, W) in {0, 1}, ``name`` and ``subset`` (as :class:`bargainnet.data.iharmony4.IHarmony4Dataset`).
    ``limit`` evaluates ``limit`` items spread evenly over the dataset. Under ``published`` the
    mask given to the methods and used for fMSE is the nearest-resized mask file
    (:class:`NearestMasks`, as the published test's PIL mode-"1" mask) when the dataset can say
    where its files are. Returns per-image records with keys
    method, name, subset, fg_ratio (percent), mse, psnr, fmse.
    """
    import torch
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    from .analysis import subsample_indices

    proto = get_protocol(protocol)
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    base = dataset
    if proto.name == "published" and hasattr(dataset, "source_paths"):
        dataset = NearestMasks(dataset)
    if limit is not None:
        dataset = Subset(dataset, subsample_indices(len(dataset), limit))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    records: list[dict[str, Any]] = []
    size = 0
    for batch in tqdm(loader, desc=f"evaluate ({proto.name})", unit="batch", disable=not progress):
        composite, mask, real = batch["composite"].float(), batch["mask"].float(), batch["real"].float()
        size = composite.shape[-1]
        for method in methods:
            h, w = composite.shape[-2:]
            if h % method.size_multiple or w % method.size_multiple:
                raise InputError(
                    f"{method.key}: images are {h}x{w} but this model needs multiples of "
                    f"{method.size_multiple}; evaluate at --size {max(256, method.size_multiple)}"
                )
            # The published test feeds its nearest-resized mode-"1" mask to the model as well.
            out = method.run(composite, batch.get("fmse_mask", mask))
            if not isinstance(out, torch.Tensor) or out.shape != composite.shape:
                raise InputError(f"{method.key}: output shape {getattr(out, 'shape', None)} != {tuple(composite.shape)}")
            scores = batch_metrics(out, real, mask, proto, composite=composite, fmse_mask=batch.get("fmse_mask"))
            for i, s in enumerate(scores):
                records.append(
                    {
                        "method": method.key,
                        "name": batch["name"][i],
                        "subset": batch["subset"][i],
                        "fg_ratio": s["fg_ratio"],
                        "mse": s["mse"],
                        "psnr": s["psnr"],
                        "fmse": s["fmse"],
                    }
                )
    root = getattr(base, "root", "")
    split = getattr(base, "split", "test")
    return EvaluationResult(proto.name, list(methods), records, split=str(split), data_root=str(root), size=size)


def _mean_block(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means of mse/psnr/fmse over rows. Non-finite values are left out of their mean and
    counted: PSNR +inf (output identical to the real image), PSNR -inf (``published`` protocol,
    a constant output: data range 0), fMSE NaN (empty mask)."""
    block: dict[str, Any] = {"n": len(rows)}
    for key in METRICS:
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        finite = np.isfinite(vals)
        block[key] = float(vals[finite].mean()) if finite.any() else math.nan
        if key == "psnr":
            if (vals == np.inf).any():
                block["psnr_pos_inf"] = int((vals == np.inf).sum())
            if (vals == -np.inf).any():
                block["psnr_neg_inf"] = int((vals == -np.inf).sum())
        elif (~finite).any():
            block[f"{key}_nan"] = int((~finite).sum())
    return block


def _subset_order(subsets: set[str]) -> list[str]:
    known = [s for s in IHARMONY4_SUBSETS if s in subsets]
    return known + sorted(subsets - set(known))


def summarize(records: Sequence[dict[str, Any]], method_keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Per method: means per sub-dataset plus "All" (over images), and per foreground-ratio bin
    plus "All". Returns ``{method: {"subsets": {name: block}, "ratio_bins": {bin: block}}}`` where
    a block is ``{"n", "mse", "psnr", "fmse"}``."""
    if method_keys is None:
        method_keys = list(dict.fromkeys(r["method"] for r in records))
    out: dict[str, Any] = {}
    for key in method_keys:
        rows = [r for r in records if r["method"] == key]
        subsets = _subset_order({r["subset"] for r in rows})
        by_subset = {s: _mean_block([r for r in rows if r["subset"] == s]) for s in subsets}
        by_subset[ALL] = _mean_block(rows)
        bins = {label: _mean_block([r for r in rows if ratio_bin(r["fg_ratio"]) == label]) for label, _, _ in RATIO_BINS}
        bins[ALL] = by_subset[ALL]
        out[key] = {"subsets": by_subset, "ratio_bins": bins}
    return out


# --------------------------------------------------------------------------------------------
# reports


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


def _plot(result: EvaluationResult, summary: dict[str, Any], path: Path) -> None:
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
    from .io import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _json_safe(x: Any) -> Any:
    """NaN and infinities become null (JSON has no such numbers); tuples become lists."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_report(result: EvaluationResult, output_dir: str | os.PathLike, plot: bool = True) -> dict[str, Path]:
    """Write ``per_image.csv``, ``results.json``, ``results.md`` and ``fmse_vs_ratio.png``.

    Every file is written atomically; returns their paths.
    """
    from .io import atomic_write_text
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
    atomic_write_text(paths["json"], json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], markdown_report(result, summary))
    if plot:
        paths["plot"] = out / "fmse_vs_ratio.png"
        _plot(result, summary, paths["plot"])
    return paths
