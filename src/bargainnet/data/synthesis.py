"""Harmonization datasets from any photos: iHarmony4-style composites written to disk
(:func:`synthesize`, the ``bargainnet synth`` command), a stream of fresh composites for
training without files (:class:`CompositeStream`), and a tiny procedural dataset for tests
(:func:`make_tiny_dataset`).

A composite is a real photo whose object (mask) alone was changed by one perturbation family
(:mod:`bargainnet.data.perturb`: ``transfer``, ``retouch``, ``illumination``, ``mixing``,
``camera``, ``lighting``, ``haze``), from barely changed to clearly wrong; a share of the
samples (``identity_fraction``) is left unchanged (composite == real), so that a model learns to
leave harmonious objects alone. Each family, and ``identity``, becomes a sub-dataset folder.
Draws whose change is absurd (foreground MSE above ``max_fmse`` on [0, 255], or the object burnt
to black/white) are redrawn, and the rejection rates are reported; there is no lower bound by
default (``min_fmse`` = 0).

Masks come in four kinds (:data:`MASK_KINDS`): the photo's own ``object`` mask, ``segment``
(merged superpixels), ``shape`` (ellipse, rectangle, polygon, brush stroke) and ``silhouette``
(the alpha shape of a cut-out); :class:`MaskDrawer` mixes them.

Output layout (read by :class:`~bargainnet.data.iharmony4.IHarmony4Dataset`)::

    <out>/IHD_train.txt, IHD_test.txt
    <out>/<sub>/<sub>_train.txt, <sub>_test.txt          <sub> = a family or identity
    <out>/<sub>/composite_images/<stem>_<maskid>_<k>.jpg  JPEG quality >= 95, 4:4:4
    <out>/<sub>/masks/<stem>_<maskid>.png                 0/255
    <out>/<sub>/real_images/<stem>.jpg                    the photo's pixels, same JPEG settings
    <out>/summary.json     counts per family and mask kind, rejection rates, input MSE/fMSE/PSNR
    <out>/composites.jsonl one line per composite: family, mask kind, parameters, fMSE, tries
    <out>/preview.png      with preview > 0: rows of real | composite | mask
"""

from __future__ import annotations

import io
import json
import math
import os
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError, OutputError
from ..io import atomic_save_pil, atomic_write_bytes, make_folder
from . import perturb
from .perturb import FAMILIES, rejection_reason
from .sources import (
    Photo,
    geometric_mask,
    list_cutouts,
    list_photos,
    load_photo,
    object_mask,
    procedural_photos,
    shape_mask,
)

__all__ = [
    "FAMILIES",
    "IDENTITY",
    "MASK_KINDS",
    "DEFAULT_MASK_MIX",
    "MaskDrawer",
    "PRESETS",
    "synthesize",
    "make_tiny_dataset",
    "CompositeStream",
    "perturb_image",
    "draw_composite",
]

IDENTITY = "identity"
MASK_KINDS = ("object", "segment", "shape", "silhouette")
# For photos without an object mask (and for those with one, the rest of the time).
DEFAULT_MASK_MIX = {"segment": 0.4, "shape": 0.25, "silhouette": 0.35}

# The synthesizer as it was up to commit f9f7322 (three families at fixed strength, an fMSE
# floor, object masks only, reals copied): ``synthesize(..., **PRESETS["v1"])`` rebuilds a set
# made then byte for byte (composites.jsonl and summary.json aside), e.g. the Lalonde-Efros
# benchmark set ``synth --seed 0 --per-mask 2``.
PRESETS: dict[str, dict[str, Any]] = {
    "v1": {
        "families": ("transfer", "retouch", "illumination"),
        "identity_fraction": 0.0,
        "object_mask_prob": 1.0,
        "min_fmse": 100.0,
        "family_options": {"transfer": {"strength_range": (0.6, 1.0)}, "retouch": {"strength": 1.0},
                           "illumination": {"strength": 1.0}},
        "copy_reals": True,
    },
}

_SPLIT_ID = {"train": 1, "test": 2}
_FAMILY_FNS = {
    "retouch": perturb.retouch,
    "illumination": perturb.illumination,
    "mixing": perturb.mixing,
    "camera": perturb.camera,
    "lighting": perturb.lighting,
    "haze": perturb.haze,
}


# --------------------------------------------------------------------------------------------
# one composite


def perturb_image(
    family: str,
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    reference: tuple[np.ndarray, np.ndarray | None] | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One random draw of ``family`` on ``image`` (float (H, W, 3) in [0, 1]) inside ``mask``.

    ``reference`` ``(image, mask or None)`` is required by ``transfer``: the photo whose
    statistics are moved onto the object. ``options``: keyword arguments for the family's
    function (e.g. ``{"strength": 1.0}``). ``identity`` returns a copy of ``image``. Returns
    ``(composite, params)``.
    """
    options = dict(options or {})
    if family == IDENTITY:
        return np.array(image, copy=True), {}
    if family == "transfer":
        if reference is None:
            raise InputError("the transfer family needs a reference photo")
        ref, ref_mask = reference
        if ref_mask is not None and rng.random() < 0.5:
            return perturb.transfer(image, mask, rng, ref, ref_mask, **options)
        return perturb.transfer(image, mask, rng, ref, None, **options)
    if family in _FAMILY_FNS:
        return _FAMILY_FNS[family](image, mask, rng, **options)
    raise InputError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


def draw_composite(
    family: str,
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    reference_fn: Callable[[], tuple[np.ndarray, np.ndarray | None]] | None = None,
    min_fmse: float = 0.0,
    max_fmse: float = 8000.0,
    max_tries: int = 10,
    options: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray | None, dict[str, Any], Counter]:
    """Draw ``family`` perturbations until one is acceptable (:func:`perturb.rejection_reason`),
    at most ``max_tries`` times. ``reference_fn()`` gives a new reference for each transfer draw;
    ``options`` go to the family's function (:func:`perturb_image`).
    ``identity`` is always accepted (it is the real image).

    Returns ``(composite or None, params of the last draw, Counter of rejection reasons)``; the
    composite is None when every draw was rejected. ``params`` holds ``fmse`` and ``tries``.
    """
    if family == IDENTITY:
        return np.array(image, copy=True), {"fmse": 0.0, "tries": 1}, Counter()
    reasons: Counter = Counter()
    params: dict[str, Any] = {}
    for attempt in range(1, max_tries + 1):
        reference = reference_fn() if (family == "transfer" and reference_fn is not None) else None
        comp, params = perturb_image(family, image, mask, rng, reference, options)
        # Judge the composite as it will be stored: 8 bits.
        comp8 = np.round(comp * 255.0) / 255.0
        reason = rejection_reason(comp8, image, mask, min_fmse, max_fmse)
        params = {**params, "fmse": round(perturb.foreground_mse(comp8, image, mask), 2), "tries": attempt}
        if reason is None:
            return comp, params, reasons
        reasons[reason] += 1
    return None, params, reasons


# --------------------------------------------------------------------------------------------
# masks


class MaskDrawer:
    """Draws a mask of one of :data:`MASK_KINDS` for a photo.

    A photo with its own object mask uses it with probability ``object_prob``; otherwise (and
    for photos without one) the kind is drawn from ``mix`` (probabilities of ``segment``,
    ``shape``, ``silhouette``; normalised; ``silhouette`` needs cut-out ``alphas`` and is
    dropped without them). Generated masks cover about ``ratio`` of the image.
    """

    def __init__(
        self,
        alphas: Sequence[np.ndarray] | None = None,
        mix: Mapping[str, float] | None = None,
        object_prob: float = 0.5,
        ratio: tuple[float, float] = (0.05, 0.6),
    ):
        mix = dict(DEFAULT_MASK_MIX if mix is None else mix)
        unknown = [k for k in mix if k not in MASK_KINDS or k == "object"]
        if unknown or any(v < 0 for v in mix.values()):
            raise InputError(f"mask mix: unknown kinds {unknown} or negative weights; kinds: segment, shape, silhouette")
        if not alphas:
            mix.pop("silhouette", None)
        total = sum(mix.values())
        if total <= 0:
            raise InputError(f"mask mix has no usable kind: {mix} (silhouette needs cut-outs)")
        if not 0 <= object_prob <= 1:
            raise InputError(f"object mask probability must be in [0, 1], got {object_prob}")
        self.kinds = list(mix)
        self.p = np.array([mix[k] / total for k in self.kinds])
        self.alphas, self.object_prob, self.ratio = alphas, object_prob, ratio

    def draw(
        self, image: np.ndarray, given: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, str, str]:
        """``(mask bool (H, W), kind, detail)`` for ``image`` uint8 (H, W, 3) whose own object
        mask is ``given`` (bool (H, W) or None); ``detail`` names the shape or is empty."""
        if given is not None and given.any() and not given.all() and rng.random() < self.object_prob:
            return given, "object", ""
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.p))]
        shape = image.shape[:2]
        if kind == "segment":
            return object_mask(image, rng, self.ratio), kind, ""
        if kind == "shape":
            mask, detail = geometric_mask(shape, rng, self.ratio)
            return mask, kind, detail
        return shape_mask(self.alphas[int(rng.integers(len(self.alphas)))], shape, rng, self.ratio), kind, ""


def _load(photo: Photo, short_side: int | None, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``load_photo`` with the image shrunk so that its short side is at most ``short_side`` and
    its long side at most ``max_side``."""
    if short_side is not None:
        if photo.path is not None:
            with Image.open(photo.path) as im:
                w, h = im.size
        else:
            h, w = np.asarray(photo.image).shape[:2]
        if min(w, h) > short_side:
            by_short = max(1, round(max(w, h) * short_side / min(w, h)))
            max_side = by_short if max_side is None else min(max_side, by_short)
    return load_photo(photo, max_side)


def photos_from_folders(
    images: str | os.PathLike | Sequence[Photo] | None,
    masks: str | os.PathLike | None = None,
    photo_dirs: Sequence[str | os.PathLike] = (),
) -> tuple[list[list[Photo]], list[Path]]:
    """The photo sources: ``images`` (a folder, with ``masks`` of the same stems, or a list of
    :class:`Photo`) first, then each folder of ``photo_dirs`` (photos without masks; stems
    prefixed ``<folder name>__`` so they stay unique). Returns ``(sources, input folders)``."""
    sources: list[list[Photo]] = []
    inputs: list[Path] = []
    if isinstance(images, (str, os.PathLike)):
        sources.append(list_photos(images, masks))
        inputs += [Path(images)] + ([Path(masks)] if masks is not None else [])
    elif images is not None:
        if masks is not None:
            raise InputError("masks must be None when images is a list of Photo (set Photo.mask)")
        sources.append(list(images))
    elif masks is not None:
        raise InputError("masks given without images")
    for d in photo_dirs:
        d = Path(d)
        sources.append([Photo(stem=f"{d.name}__{p.stem}", path=p.path) for p in list_photos(d)])
        inputs.append(d)
    if not sources:
        raise InputError("no photos: give images and/or photo folders")
    return sources, inputs
def _jpeg_bytes(image_u8: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image_u8).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _check_out(out: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    out_r = out.resolve()
    for p in inputs:
        p_r = p.resolve()
        if out_r == p_r or p_r in out_r.parents or out_r in p_r.parents:
            raise OutputError(f"output folder {out} would overlap the input folder {p}")
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"output folder {out} is not empty (pass overwrite=True / --overwrite)")
    make_folder(out)


def _split_photos(n: int, test_fraction: float, n_test: int | None, seed: int) -> tuple[list[int], list[int]]:
    if n_test is None:
        n_test = int(round(n * test_fraction))
        if test_fraction > 0:
            n_test = max(1, n_test)
    if not 0 <= n_test < n:
        raise InputError(f"cannot hold out {n_test} test photos from {n} photos (need at least one train photo)")
    perm = np.random.default_rng([seed, 0]).permutation(n)
    return sorted(int(i) for i in perm[n_test:]), sorted(int(i) for i in perm[:n_test])


def _input_metrics(out: Path, split: str, size: int = 256) -> dict[str, dict[str, float]]:
    """Mean MSE/fMSE/PSNR of the written input composites vs reals, published protocol."""
    from ..evaluation.metrics import image_metrics
    from .iharmony4 import IHarmony4Dataset
    from .transforms import test_transform

    ds = IHarmony4Dataset(out, split, transform=test_transform(size), check="files", cache=None)
    per: dict[str, list[dict[str, float]]] = {}
    for i in range(len(ds)):
        item = ds[i]
        m = image_metrics(item["composite"], item["real"], item["mask"], "published")
        per.setdefault(item["subset"], []).append(m)
    rows: dict[str, dict[str, float]] = {}
    everything = [m for ms in per.values() for m in ms]
    for sub, ms in [*sorted(per.items()), ("all", everything)]:
        # unchanged (identity) composites have an infinite PSNR: left out of the mean, None when all are
        finite = [m["psnr"] for m in ms if math.isfinite(m["psnr"])]
        rows[sub] = {
            "n": len(ms),
            "mse": round(float(np.mean([m["mse"] for m in ms])), 2),
            "fmse": round(float(np.mean([m["fmse"] for m in ms])), 2),
            "psnr": round(float(np.mean(finite)), 2) if finite else None,
        }
    return rows


def preview_grid(
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, str]], cell: int = 128, per_column: int = 8
) -> Image.Image:
    """A grid image: one row per ``(real, composite, mask, label)`` (uint8 (H, W, 3), uint8
    (H, W, 3), bool (H, W), text), columns real | composite | mask, each cell ``cell`` px high;
    after ``per_column`` rows the next rows start a new column of triplets to the right."""
    cells = []
    for real, comp, mask, label in rows:
        h, w = mask.shape
        cw = max(1, round(cell * w / h))
        ims = [
            Image.fromarray(real).resize((cw, cell), Image.BILINEAR),
            Image.fromarray(comp).resize((cw, cell), Image.BILINEAR),
            Image.fromarray((mask * 255).astype(np.uint8)).convert("RGB").resize((cw, cell), Image.NEAREST),
        ]
        draw = ImageDraw.Draw(ims[1])
        right = draw.textbbox((3, 1), label)[2]
        draw.rectangle((0, 0, right + 3, 13), fill=(0, 0, 0))
        draw.text((3, 1), label, fill=(255, 255, 255))
        cells.append(ims)
    gap = 4
    width = max(sum(im.width for im in r) + gap * 2 for r in cells)
    n_cols = math.ceil(len(cells) / per_column)
    n_rows = min(len(cells), per_column)
    grid = Image.new("RGB", (n_cols * (width + 3 * gap) - 3 * gap, n_rows * (cell + gap) - gap), (255, 255, 255))
    for k, r in enumerate(cells):
        x, y = (k // per_column) * (width + 3 * gap), (k % per_column) * (cell + gap)
        for im in r:
            grid.paste(im, (x, y))
            x += im.width + gap
    return grid


# --------------------------------------------------------------------------------------------
# synthesize(), step by step


@dataclass
class _Plan:
    """Which photo goes to which split: ``photos`` (all sources, concatenated), ``source_of``
    (source index per photo), ``splits`` (split -> photo indices), ``reserved`` (indices used
    nowhere), ``masks_per_image`` (per photo)."""

    photos: list[Photo]
    source_of: list[int]
    splits: dict[str, list[int]]
    reserved: list[int]
    masks_per_image: list[int]


def _plan_splits(
    sources: list[list[Photo]],
    masks_per_image: Sequence[int],
    test_fraction: float,
    n_test_photos: int | None,
    seed: int,
    reserve_test: bool,
    val_fraction: float,
) -> _Plan:
    """Split every source on its own, as a single-source run with the same seed would (so the
    first source's test photos are those of ``synth --seed S`` on it alone). With
    ``reserve_test`` the first source's test photos are used nowhere (a benchmark evaluates on
    them) and its test split is ``val_fraction`` of its train photos instead."""
    photos, source_of, mpi = [], [], []
    splits: dict[str, list[int]] = {"train": [], "test": []}
    reserved: list[int] = []
    for s, src in enumerate(sources):
        base = len(photos)
        photos += src
        source_of += [s] * len(src)
        mpi += [masks_per_image[s]] * len(src)
        if len(src) < 2:  # too small to split: training only
            splits["train"] += [base + i for i in range(len(src))]
            continue
        train, test = _split_photos(len(src), test_fraction, n_test_photos if s == 0 else None, seed)
        if s == 0 and reserve_test:
            reserved += [base + i for i in test]
            n_val = max(1, int(round(len(train) * val_fraction)))
            if n_val >= len(train):
                raise InputError(f"cannot hold out {n_val} validation photos from {len(train)} train photos")
            perm = np.random.default_rng([seed, 5]).permutation(train)
            test, train = sorted(int(i) for i in perm[:n_val]), sorted(int(i) for i in perm[n_val:])
        splits["train"] += [base + i for i in train]
        splits["test"] += [base + i for i in test]
    stems = [p.stem for p in photos]
    if len(set(stems)) != len(stems):
        raise InputError("photo stems must be unique")
    return _Plan(photos, source_of, splits, reserved, mpi)


class _References:
    """Transfer references: photos of one split at 256 px on the long side, the last 256 cached."""

    def __init__(self, photos: Sequence[Photo]):
        self.photos, self.cache = photos, OrderedDict()

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        if i in self.cache:
            self.cache.move_to_end(i)
            return self.cache[i]
        img, m = load_photo(self.photos[i], max_side=256)
        value = (img.astype(np.float64) / 255.0, m if m is not None and m.any() else None)
        self.cache[i] = value
        if len(self.cache) > 256:
            self.cache.popitem(last=False)
        return value


@dataclass
class _Stats:
    """What happened: draws and rejections per family, failures, mask kinds per split."""

    families: Sequence[str]
    draws: Counter = field(default_factory=Counter)
    rejected: dict = field(default_factory=dict)
    failed: Counter = field(default_factory=Counter)
    kept_rejected: Counter = field(default_factory=Counter)
    mask_kinds: dict = field(default_factory=lambda: {"train": Counter(), "test": Counter()})
    shapes: Counter = field(default_factory=Counter)
    skipped_photos: list = field(default_factory=list)

    def __post_init__(self):
        self.rejected = {f: Counter() for f in self.families}

    def rejection(self) -> dict[str, dict]:
        out = {}
        for f in self.families:
            r = sum(self.rejected[f].values())
            out[f] = {
                "draws": int(self.draws[f]),
                "rejected": int(r),
                "rate": round(r / self.draws[f], 4) if self.draws[f] else 0.0,
                "reasons": dict(sorted(self.rejected[f].items())),
                "failed": int(self.failed[f]),
                "kept_after_rejection": int(self.kept_rejected[f]),
            }
        return out


class _Writer:
    """Writes composites, masks and reals in the iHarmony4 layout, each mask and real once per
    sub-dataset, and keeps the list files and the log."""

    def __init__(self, out: Path, subsets: Sequence[str], quality: int):
        self.out, self.subsets, self.quality = out, list(subsets), quality
        self.lists = {s: {f: [] for f in subsets} for s in ("train", "test")}
        self.log: list[str] = []
        self.written: set[tuple[str, str]] = set()

    def add(self, split: str, sub: str, stem: str, j: int, k: int, comp: np.ndarray | None,
            real_jpeg: bytes, mask: np.ndarray, params: dict) -> str:
        """Write one composite (``comp`` float in [0, 1]; None = the real itself, byte for byte)."""
        name = f"{stem}_{j}_{k}"
        rel = f"{sub}/composite_images/{name}.jpg"
        d = self.out / sub
        data = real_jpeg if comp is None else _jpeg_bytes(_to_u8(comp), self.quality)
        atomic_write_bytes(d / "composite_images" / f"{name}.jpg", data)
        if (sub, f"{stem}_{j}") not in self.written:
            atomic_save_pil(Image.fromarray(mask.astype(np.uint8) * 255), d / "masks" / f"{stem}_{j}.png", format="PNG")
            self.written.add((sub, f"{stem}_{j}"))
        if (sub, stem) not in self.written:
            atomic_write_bytes(d / "real_images" / f"{stem}.jpg", real_jpeg)
            self.written.add((sub, stem))
        self.lists[split][sub].append(rel)
        self.log.append(json.dumps({"name": rel, "split": split, "source": stem, **params}, default=float))
        return rel

    def finish(self) -> dict[str, dict[str, int]]:
        """Write the list files and ``composites.jsonl``; return the counts per split and subset."""
        for split in ("train", "test"):
            names_all = []
            for sub in self.subsets:
                names = self.lists[split][sub]
                if names or (self.out / sub).is_dir():
                    text = "".join(n.split("/")[-1] + "\n" for n in names)
                    atomic_write_bytes(self.out / sub / f"{sub}_{split}.txt", text.encode())
                names_all += names
            atomic_write_bytes(self.out / f"IHD_{split}.txt", "".join(n + "\n" for n in names_all).encode())
        atomic_write_bytes(self.out / "composites.jsonl", "".join(line + "\n" for line in self.log).encode())
        counts = {s: {f: len(self.lists[s][f]) for f in self.subsets} for s in ("train", "test")}
        for s in counts:
            counts[s]["all"] = sum(counts[s].values())
        return counts


def _synthesize_photo(
    split: str, i: int, plan: _Plan, cfg: dict, masker: MaskDrawer, refs: _References,
    writer: _Writer, stats: _Stats, turn: list[int],
) -> None:
    """All composites of photo ``i``: ``masks_per_image`` masks, ``per_mask`` composites each;
    each composite is ``identity`` with probability ``identity_fraction``, else the next family
    in turn (``turn[0]`` counts across photos so the families stay balanced)."""
    photo = plan.photos[i]
    image_u8, given = _load(photo, cfg["short_side"], cfg["max_side"])
    if given is not None and (not given.any() or given.all()):
        stats.skipped_photos.append((photo.stem, "mask empty" if not given.any() else "mask covers the whole image"))
        return
    image = image_u8.astype(np.float64) / 255.0
    # The real is re-encoded with the composites' JPEG settings, so that both share one
    # compression history and an identity composite can be the real's very bytes.
    if cfg["copy_reals"] and _can_copy(photo, cfg["short_side"], cfg["max_side"]):
        real_jpeg = photo.path.read_bytes()
    else:
        real_jpeg = _jpeg_bytes(image_u8, cfg["quality"])
    pool = [p for p in plan.splits[split] if p != i] or [i]
    families, sid, seed = cfg["families"], _SPLIT_ID[split], cfg["seed"]
    n_masks = plan.masks_per_image[i] if split == "train" or cfg["test_masks_per_image"] is None \
        else cfg["test_masks_per_image"]
    for j in range(1, n_masks + 1):
        mask, kind, detail = masker.draw(image_u8, given, np.random.default_rng([seed, 3, i, j]))
        k_in: Counter = Counter()
        for k in range(cfg["per_mask"]):
            rng = np.random.default_rng([seed, sid, i, j, k])
            if np.random.default_rng([seed, 7, sid, i, j, k]).random() < cfg["identity_fraction"]:
                family = IDENTITY
            else:
                family = families[turn[0] % len(families)]
                turn[0] += 1

            def ref_fn():
                return refs(pool[int(rng.integers(len(pool)))])

            comp, params, reasons = draw_composite(family, image, mask, rng, ref_fn, cfg["min_fmse"], cfg["max_fmse"],
                                                   cfg["max_tries"], cfg["family_options"].get(family))
            stats.draws[family] += params.get("tries", cfg["max_tries"])
            if family != IDENTITY:
                stats.rejected[family].update(reasons)
            if comp is None:
                if not cfg["keep_rejected"]:
                    stats.failed[family] += 1
                    continue
                stats.kept_rejected[family] += 1
                comp, params, _ = draw_composite(
                    family, image, mask, np.random.default_rng([seed, 9, sid, i, j, k]), ref_fn, -1.0, float("inf"), 1,
                    cfg["family_options"].get(family))
            k_in[family] += 1
            stats.mask_kinds[split][kind] += 1
            if detail:
                stats.shapes[detail] += 1
            writer.add(split, family, photo.stem, j, k_in[family], None if family == IDENTITY else comp, real_jpeg,
                       mask, {"family": family, "mask_kind": kind, **({"shape": detail} if detail else {}), **params})


def _can_copy(photo: Photo, short_side: int | None, max_side: int | None) -> bool:
    """Whether the source JPEG can serve as the real image byte for byte: not downscaled, and no
    EXIF rotation (readers decode the stored pixels without applying it)."""
    if photo.image is not None or not photo.is_jpeg_file:
        return False
    with Image.open(photo.path) as im:
        if (max_side is not None and max(im.size) > max_side) or (short_side is not None and min(im.size) > short_side):
            return False
        return im.getexif().get(0x0112, 1) == 1


def _write_preview(out: Path, writer: _Writer, n: int) -> None:
    """``preview.png``: ``n`` rows of real | composite | mask, test composites (train when there
    are none), the sub-datasets in turn, one source photo per row while unused ones remain."""
    split = "test" if any(writer.lists["test"].values()) else "train"
    remaining = {f: list(v) for f, v in writer.lists[split].items() if v}
    used: set[str] = set()
    picks: list[tuple[str, str]] = []
    while len(picks) < n and any(remaining.values()):
        for f, entries in remaining.items():
            if len(picks) >= n or not entries:
                continue
            fresh = [e for e in entries if e.split("/")[-1].rsplit("_", 2)[0] not in used]
            rel = fresh[0] if fresh else entries[0]
            entries.remove(rel)
            used.add(rel.split("/")[-1].rsplit("_", 2)[0])
            picks.append((rel, f))
    rows = []
    for rel, f in picks:
        sub, _, fname = rel.split("/")
        real_stem, mask_id, _ = fname.rsplit(".", 1)[0].rsplit("_", 2)
        with Image.open(out / rel) as c, Image.open(out / sub / "real_images" / f"{real_stem}.jpg") as r, \
                Image.open(out / sub / "masks" / f"{real_stem}_{mask_id}.png") as m:
            rows.append((np.asarray(r.convert("RGB")), np.asarray(c.convert("RGB")), np.asarray(m.convert("L")) > 127, f))
    if rows:
        atomic_save_pil(preview_grid(rows), out / "preview.png", format="PNG")


def synthesize(
    out_root: str | os.PathLike,
    images: str | os.PathLike | Sequence[Photo] | None,
    masks: str | os.PathLike | None = None,
    *,
    photo_dirs: Sequence[str | os.PathLike] = (),
    cutouts: str | os.PathLike | None = None,
    cutout_half: str | None = None,
    families: Sequence[str] = FAMILIES,
    identity_fraction: float = 0.15,
    mask_mix: Mapping[str, float] | None = None,
    object_mask_prob: float = 0.5,
    per_mask: int = 1,
    masks_per_image: int = 1,
    photo_masks_per_image: int | None = None,
    test_masks_per_image: int | None = None,
    test_fraction: float = 0.15,
    n_test_photos: int | None = None,
    reserve_test: bool = False,
    val_fraction: float = 0.05,
    seed: int = 0,
    quality: int = 95,
    short_side: int | None = None,
    max_side: int | None = None,
    mask_ratio: tuple[float, float] = (0.05, 0.6),
    min_fmse: float = 0.0,
    max_fmse: float = 8000.0,
    max_tries: int = 10,
    family_options: Mapping[str, Mapping[str, Any]] | None = None,
    copy_reals: bool = False,
    keep_rejected: bool = False,
    preview: int = 0,
    metrics: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write an iHarmony4-layout dataset of synthetic composites to ``out_root``; returns the
    summary (also written to ``summary.json``).

    Sources: ``images`` a folder (or a list of :class:`Photo`) with ``masks`` a folder of object
    masks of the same stems; ``photo_dirs`` more folders of photos without masks; ``cutouts`` a
    folder of RGBA cut-outs whose alpha shapes serve as ``silhouette`` masks (``cutout_half``
    ``"even"``/``"odd"`` keeps one hash half, see :func:`~bargainnet.data.sources.hash_half`).
    Each photo gets ``masks_per_image`` masks (``photo_masks_per_image`` for the photos of
    ``photo_dirs``; ``test_masks_per_image`` for every test photo when given) drawn by
    :class:`MaskDrawer` (``mask_mix``, ``object_mask_prob``,
    ``mask_ratio``), and each mask ``per_mask`` composites: ``identity`` with probability
    ``identity_fraction``, else the ``families`` in turn so the sub-datasets stay balanced.

    Splits: each source's photos are split on their own (``test_fraction``, or
    ``n_test_photos`` for the first source), so train and test never share a photo and transfer
    references come from the same split; ``reserve_test`` leaves the first source's test photos
    out entirely and validates on ``val_fraction`` of its train photos (see
    :func:`_plan_splits`). ``short_side`` and ``max_side`` shrink larger photos (short or long
    side in px). Reals and
    composites are JPEG ``quality`` (4:4:4); ``seed`` makes the output byte-for-byte
    deterministic.

    Acceptance: see :func:`draw_composite`; with ``keep_rejected`` the last draw is kept when all
    ``max_tries`` are rejected (else the composite is dropped and counted as failed).
    ``family_options`` (family -> keyword arguments of its function, e.g. a fixed ``strength``)
    and ``copy_reals`` (source JPEGs that need no downscaling are copied byte for byte as reals)
    serve :data:`PRESETS`.
    """
    from tqdm import tqdm

    # 1. settings
    out = Path(out_root)
    if quality < 95 or quality > 100:
        raise InputError(f"JPEG quality must be in [95, 100], got {quality}")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise InputError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    if per_mask < 1 or masks_per_image < 1 or any(
            v is not None and v < 1 for v in (photo_masks_per_image, test_masks_per_image)):
        raise InputError("per_mask and masks per image must be >= 1")
    if not (0 < mask_ratio[0] < mask_ratio[1] < 1):
        raise InputError(f"mask_ratio must satisfy 0 < min < max < 1, got {mask_ratio}")
    if not 0 <= identity_fraction < 1:
        raise InputError(f"identity_fraction must be in [0, 1), got {identity_fraction}")
    cfg = {"families": tuple(families), "seed": seed, "per_mask": per_mask, "identity_fraction": identity_fraction,
           "quality": quality, "short_side": short_side, "max_side": max_side, "min_fmse": min_fmse, "max_fmse": max_fmse,
           "max_tries": max_tries, "keep_rejected": keep_rejected, "test_masks_per_image": test_masks_per_image,
           "family_options": {k: dict(v) for k, v in (family_options or {}).items()}, "copy_reals": copy_reals}

    # 2. sources, output folder, splits, masks
    sources, inputs = photos_from_folders(images, masks, photo_dirs)
    if cutouts is not None:
        inputs.append(Path(cutouts))
    if sum(len(s) for s in sources) < 2:
        raise InputError(f"need at least 2 photos (train and test), got {sum(len(s) for s in sources)}")
    extra_mpi = masks_per_image if photo_masks_per_image is None else photo_masks_per_image
    mpi = [masks_per_image if (s == 0 and images is not None) else extra_mpi for s in range(len(sources))]
    plan = _plan_splits(sources, mpi, test_fraction, n_test_photos, seed, reserve_test, val_fraction)
    _check_out(out, inputs, overwrite)
    alphas = list_cutouts(cutouts, half=cutout_half) if cutouts is not None else None
    masker = MaskDrawer(alphas, mask_mix, object_mask_prob, mask_ratio)

    # 3. composites, photo by photo
    subsets = [*families, IDENTITY] if identity_fraction > 0 else list(families)
    writer = _Writer(out, subsets, quality)
    stats = _Stats(subsets)
    turn = [0]
    bar = tqdm(total=len(plan.splits["train"]) + len(plan.splits["test"]), desc="synthesizing", unit="photo",
               disable=not progress)
    for split in ("train", "test"):
        refs = _References(plan.photos)
        for i in plan.splits[split]:
            _synthesize_photo(split, i, plan, cfg, masker, refs, writer, stats, turn)
            bar.update(1)
    bar.close()
    counts = writer.finish()

    # 4. summary, metrics, preview
    summary: dict[str, Any] = {
        "generator": "bargainnet synth",
        "seed": seed,
        "settings": {
            "families": list(families), "identity_fraction": identity_fraction, "per_mask": per_mask,
            "masks_per_image": masks_per_image, "photo_masks_per_image": extra_mpi,
            "test_masks_per_image": test_masks_per_image,
            "mask_mix": dict(zip(masker.kinds, np.round(masker.p, 4).tolist())), "object_mask_prob": object_mask_prob,
            "cutout_half": cutout_half, "cutouts": len(alphas) if alphas is not None else 0,
            "quality": quality, "short_side": short_side, "max_side": max_side, "mask_ratio": list(mask_ratio),
            "min_fmse": min_fmse, "max_fmse": max_fmse, "max_tries": max_tries,
            "reserve_test": reserve_test, "val_fraction": val_fraction if reserve_test else None,
            "family_options": cfg["family_options"], "copy_reals": copy_reals,
        },
        "photos": {
            "train": len(plan.splits["train"]), "test": len(plan.splits["test"]), "reserved": len(plan.reserved),
            "per_source": [len(s) for s in sources], "skipped": stats.skipped_photos,
        },
        "counts": counts,
        "mask_kinds": {s: dict(sorted(c.items())) for s, c in stats.mask_kinds.items()},
        "shapes": dict(sorted(stats.shapes.items())),
        "rejection": stats.rejection(),
    }
    empty = [s for s in ("train", "test") if counts[s]["all"] == 0 and plan.splits[s]]
    if metrics:
        summary["metrics"] = {
            "protocol": "published: 256x256 bilinear resize, uint8 by truncation, MSE over all pixels on [0,255], "
            "fMSE = MSE * HW / foreground area, PSNR data range = composite max - min; input composite vs real",
        }
        for s in ("train", "test"):
            if counts[s]["all"]:
                summary["metrics"][s] = _input_metrics(out, s)
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    if preview > 0:
        _write_preview(out, writer, preview)
    if empty:
        raise InputError(
            f"no composite was accepted for split(s) {', '.join(empty)} "
            f"(rejection: {json.dumps(summary['rejection'])}); loosen min_fmse/max_fmse or raise max_tries"
        )
    return summary


TINY_FAMILIES = ("transfer", "retouch", "illumination")


def make_tiny_dataset(
    root: str | os.PathLike,
    n_train: int = 8,
    n_test: int = 4,
    size: int = 64,
    seed: int = 0,
    families: Sequence[str] = TINY_FAMILIES,
    preview: int = 0,
    identity_fraction: float = 0.0,
) -> Path:
    """A tiny iHarmony4-layout dataset of procedural photos (no external files) in ``root``:
    ``n_train`` train and ``n_test`` test composites of ``size``×``size`` px, one per photo, the
    families in turn (by default the first three, sub-datasets ``transfer``, ``retouch``,
    ``illumination``, no identity samples and a floor on the change, so that tests of other
    parts see visibly changed composites in few, balanced sub-datasets). Deterministic in
    ``seed``; takes well under a second at the defaults. Returns ``Path(root)``."""
    photos = procedural_photos(n_train + n_test, size, seed)
    synthesize(
        root,
        photos,
        families=families,
        identity_fraction=identity_fraction,
        object_mask_prob=1.0,
        n_test_photos=n_test,
        seed=seed,
        min_fmse=50.0,
        max_tries=6,
        keep_rejected=True,
        preview=preview,
        progress=False,
        metrics=False,
        overwrite=True,
    )
    return Path(root)




# --------------------------------------------------------------------------------------------
# on-the-fly stream


try:  # torch is a dependency; keep the module importable without it for numpy-only use
    from torch.utils.data import IterableDataset as _IterableDataset
except ImportError:  # pragma: no cover
    _IterableDataset = object  # type: ignore[misc,assignment]


class CompositeStream(_IterableDataset):
    """An endless (or ``length``-long) stream of fresh composites for training without files,
    drawn from the same distribution as :func:`synthesize`.

    Each sample: a random photo — from ``image_dir`` (a folder, or a list of :class:`Photo`) with
    its object masks from ``mask_dir``, or from the folders ``photo_dirs`` (photos without masks;
    ``photo_dirs_share`` is the probability of drawing from them, default: in proportion to the
    photo counts) — a mask drawn by :class:`MaskDrawer` (``mask_mix``, ``object_mask_prob``;
    silhouettes from the cut-outs of ``cutouts``, ``cutout_half`` as in :func:`synthesize`), the
    training augmentation (random resized crop to ``size``, ``scale``, flip, with probability
    ``grade`` a new colour rendering of the photo — :class:`~.transforms.TrainTransform`; ``augment=False``
    for a plain resize), then with probability ``identity_fraction`` no change (subset
    ``identity``), else one random family's perturbation of the object at the output size with
    the synthesizer's acceptance rule. Yields the same dict as
    :class:`~bargainnet.data.iharmony4.IHarmony4Dataset` (``subset`` = family name, ``name`` =
    ``<stem>_<family>_<n>``).

    ``holdout``: use only the photos that :func:`synthesize` with the same ``test_fraction``,
    ``reserve_test``, ``val_fraction`` and seed (``split_seed``) puts in its train split — no
    test photo of any source, and with ``reserve_test`` none of the first source's benchmark
    test photos nor its validation photos (see :func:`_plan_splits`).

    Seeding: worker ``w`` of ``W`` DataLoader workers on rank ``r`` draws from
    ``numpy.random.default_rng([seed, epoch, r, w])``; call :meth:`set_epoch` each epoch for new
    draws. ``length`` (samples per epoch over all ranks and workers) makes ``len()`` defined.
    """

    def __init__(
        self,
        image_dir: str | os.PathLike | Sequence[Photo] | None,
        mask_dir: str | os.PathLike | None = None,
        size: int = 256,
        seed: int = 0,
        families: Sequence[str] = FAMILIES,
        *,
        photo_dirs: Sequence[str | os.PathLike] = (),
        photo_dirs_share: float | None = None,
        cutouts: str | os.PathLike | None = None,
        cutout_half: str | None = None,
        identity_fraction: float = 0.15,
        mask_mix: Mapping[str, float] | None = None,
        object_mask_prob: float = 0.5,
        holdout: bool = False,
        reserve_test: bool = False,
        val_fraction: float = 0.05,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        length: int | None = None,
        augment: bool = True,
        scale: tuple[float, float] = (0.5, 1.0),
        grade: float = 0.0,
        max_side: int | None = 1024,
        mask_ratio: tuple[float, float] = (0.05, 0.6),
        min_fmse: float = 0.0,
        max_fmse: float = 8000.0,
        max_tries: int = 10,
    ):
        super().__init__()
        from .transforms import TestTransform, TrainTransform

        sources, _ = photos_from_folders(image_dir, mask_dir, photo_dirs)
        if holdout:
            plan = _plan_splits(sources, [1] * len(sources), test_fraction, None, split_seed,
                                reserve_test and image_dir is not None, val_fraction)
            kept = set(plan.splits["train"])
            offsets = np.cumsum([0] + [len(src) for src in sources])
            sources = [[p for i, p in enumerate(src) if offsets[s] + i in kept] for s, src in enumerate(sources)]
        first = sources[0] if image_dir is not None else []
        extra = [p for s in (sources[1:] if image_dir is not None else sources) for p in s]
        self.photos = first + extra
        if not self.photos:
            raise InputError("CompositeStream needs at least one photo")
        self.n_first = len(first)
        if photo_dirs_share is None or not first or not extra:
            self.extra_share = len(extra) / len(self.photos)
        elif 0 <= photo_dirs_share <= 1:
            self.extra_share = float(photo_dirs_share)
        else:
            raise InputError(f"photo_dirs_share must be in [0, 1], got {photo_dirs_share}")
        unknown = [f for f in families if f not in FAMILIES]
        if unknown or not families:
            raise InputError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
        if not 0 <= identity_fraction < 1:
            raise InputError(f"identity_fraction must be in [0, 1), got {identity_fraction}")
        self.families = tuple(families)
        self.size, self.seed, self.length = size, seed, length
        self.transform = TrainTransform(size, scale, grade=grade) if augment else TestTransform(size)
        alphas = list_cutouts(cutouts, half=cutout_half) if cutouts is not None else None
        self.masker = MaskDrawer(alphas, mask_mix, object_mask_prob, mask_ratio)
        self.identity_fraction = identity_fraction
        self.max_side, self.mask_ratio = max_side, mask_ratio
        self.min_fmse, self.max_fmse, self.max_tries = min_fmse, max_fmse, max_tries
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("an endless CompositeStream has no len(); pass length=")
        return self.length

    def _shard(self) -> tuple[int, int, int, int]:
        import torch
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return rank, world, worker, workers

    def _pick(self, rng: np.random.Generator) -> int:
        n_extra = len(self.photos) - self.n_first
        if n_extra and (not self.n_first or rng.random() < self.extra_share):
            return self.n_first + int(rng.integers(n_extra))
        return int(rng.integers(self.n_first))

    def sample(self, rng: np.random.Generator, family: str | None = None) -> dict:
        """One sample drawn with ``rng`` (see the class docstring); ``family`` random when None
        (``identity`` with probability ``identity_fraction``)."""
        import torch

        from .transforms import to_tensors

        if family is None:
            identity = rng.random() < self.identity_fraction
            family = IDENTITY if identity else self.families[int(rng.integers(len(self.families)))]
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        for _ in range(self.max_tries):
            i = self._pick(rng)
            image, given = load_photo(self.photos[i], self.max_side)
            mask, _, _ = self.masker.draw(image, given, rng)
            m_img = Image.fromarray(mask.astype(np.uint8) * 255)
            real_pil = Image.fromarray(image)
            real_t, m_t, _ = self.transform(real_pil, m_img, real_pil, generator=g)
            real = np.asarray(real_t)
            m = np.asarray(m_t) > 127
            if not m.any() or m.all():
                continue

            def ref_fn():
                j = self._pick(rng)
                ref, ref_mask = load_photo(self.photos[j], 256)
                return ref.astype(np.float64) / 255.0, (ref_mask if ref_mask is not None and ref_mask.any() else None)

            comp, params, _ = draw_composite(
                family, real.astype(np.float64) / 255.0, m, rng, ref_fn, self.min_fmse, self.max_fmse, self.max_tries
            )
            if comp is None:
                continue
            c, mt, r = to_tensors(real if family == IDENTITY else _to_u8(comp), m, real)
            return {"composite": c, "mask": mt, "real": r, "name": self.photos[i].stem, "subset": family}
        raise InputError(
            f"CompositeStream: no acceptable {family} composite in {self.max_tries} photos; "
            "check the masks or loosen min_fmse/max_fmse"
        )

    def __iter__(self):
        rank, world, worker, workers = self._shard()
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker])
        shards = world * workers
        shard = rank * workers + worker
        if self.length is None:
            n = None
        else:
            n = self.length // shards + (1 if shard < self.length % shards else 0)
        count = 0
        while n is None or count < n:
            item = self.sample(rng)
            item["name"] = f"{item['name']}_{item['subset']}_{shard}.{count}"
            count += 1
            yield item
