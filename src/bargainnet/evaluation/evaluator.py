"""Batched evaluation of harmonization methods on an iHarmony4-layout dataset (paper Table 1 and
supplement Table 1), under a named protocol (:mod:`bargainnet.evaluation.metrics`).

A *method* maps a batch of composites (B, 3, H, W) in [-1, 1] and masks (B, 1, H, W) to its raw
output; the protocol decides what is scored (``published``: the raw output; ``standard``: the
output composited over the input background). Methods are the classical baselines of
:mod:`bargainnet.evaluation.baselines` (``composite`` = the input itself) and BargainNet weights files.

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

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..data.iharmony4 import SUBSETS as IHARMONY4_SUBSETS
from ..errors import InputError
from ..models.base import check_size
from .baselines import BASELINES, LABELS
from .metrics import RATIO_BINS, batch_metrics, get_protocol, ratio_bin

__all__ = [
    "Method",
    "EvaluationResult",
    "IHARMONY4_SUBSETS",
    "load_dataset",
    "baseline_method",
    "model_method",
    "resolve_methods",
    "evaluate",
    "summarize",
    "subsample_indices",
]

ALL = "All"
METRICS = ("mse", "psnr", "fmse")

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
    from ..data.iharmony4 import IHarmony4Dataset
    from ..data.transforms import test_transform

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
    """A classical baseline (:data:`bargainnet.evaluation.baselines.BASELINES`) as a :class:`Method`."""
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
    (:mod:`bargainnet.inference.resolution`, the same path as ``bargainnet harmonize``); that output is composited. ``mode="eval"`` (default) runs the model in eval mode; ``mode="train"``
    reproduces the published ``test.py`` (train mode: dropout on, BatchNorm with each image's own
    statistics, so images are run one at a time). Inference is under ``torch.no_grad``.
    """
    import torch

    if mode not in ("eval", "train"):
        raise InputError(f"model mode must be 'eval' or 'train', got {mode!r}")
    info: dict[str, Any] = {}
    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        from ..models.convert import load_weights

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
        try:
            check_size(model.config, working_size)
        except InputError as err:
            raise InputError(f"{key}: {err}") from None
        info["working_size"] = working_size
        multiple = 1
    return Method(key=key, label=key, kind="model", run=run, info=info, size_multiple=multiple, model=model)


def _lifted(network: Callable, composite, mask, size: int):
    """Run ``network`` at size×size and lift its colour change to the input's size (composited),
    through the same working-resolution path as the Harmonizer (:mod:`bargainnet.inference.resolution`)."""
    import torch

    from ..inference.resolution import back_to_full_resolution, to_working_size

    hwc = lambda t: ((t.float().cpu().permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)  # noqa: E731
    fulls = [hwc(c) for c in composite]
    masks = [m[0].cpu().numpy() >= 0.5 for m in mask]
    working = [to_working_size(f, m, size, require_both=False) for f, m in zip(fulls, masks)]
    low = torch.from_numpy(np.stack([w.composite for w in working])).permute(0, 3, 1, 2).float() * 2 - 1
    binary = torch.from_numpy(np.stack([w.mask for w in working]).astype(np.float32))[:, None]
    out_low = network(low.to(composite.device), binary.to(composite.device)).float()
    results = []
    for full, m, w, out in zip(fulls, masks, working, out_low):
        result = full.copy()
        if m.any():
            new, (r0, r1, c0, c1) = back_to_full_resolution(w, hwc(out), full, m)
            inside = m[r0:r1, c0:c1]
            result[r0:r1, c0:c1][inside] = new[inside]
        results.append(torch.from_numpy(result).permute(2, 0, 1) * 2 - 1)
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


def subsample_indices(n: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(n)`` (all when ``limit`` is None or >= n), so
    that a limited run still sees every sub-dataset of a list sorted by sub-dataset."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise InputError(f"limit must be >= 1, got {limit}")
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, limit)})
