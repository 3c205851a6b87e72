"""Harmonization datasets from any photos: iHarmony4-style composites written to disk
(:func:`synthesize`, the ``bargainnet synth`` command), a stream of fresh composites for
training without files (:class:`CompositeStream`), and a tiny procedural dataset for tests
(:func:`make_tiny_dataset`).

A composite is a real photo whose object (mask) alone was changed by one perturbation family
(:mod:`bargainnet.data.perturb`): ``transfer`` (like HCOCO/HFlickr), ``retouch`` (like HAdobe5k),
``illumination`` (like Hday2night). Each family becomes a sub-dataset folder. Draws whose change is
too small (foreground MSE below ``min_fmse`` on [0, 255]) or absurd (above ``max_fmse``, or the
object burnt to black/white) are redrawn, and the rejection rates are reported.

Output layout (read by :class:`~bargainnet.data.iharmony4.IHarmony4Dataset`)::

    <out>/IHD_train.txt, IHD_test.txt
    <out>/<family>/<family>_train.txt, <family>_test.txt
    <out>/<family>/composite_images/<stem>_<maskid>_<k>.jpg   JPEG quality >= 95, 4:4:4
    <out>/<family>/masks/<stem>_<maskid>.png                   0/255
    <out>/<family>/real_images/<stem>.jpg                      the source JPEG byte for byte
    <out>/summary.json     counts, rejection rates, input MSE/fMSE/PSNR per sub-dataset
    <out>/composites.jsonl one line per composite: family, parameters, fMSE, tries
    <out>/preview.png      with preview > 0: rows of real | composite | mask
"""

from __future__ import annotations

import io
import json
import math
import os
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError, OutputError
from ..io import atomic_copy, atomic_save_pil, atomic_write_bytes, make_folder
from . import perturb
from .perturb import FAMILIES, rejection_reason
from .sources import (
    Photo,
    list_cutouts,
    list_photos,
    load_photo,
    object_mask,
    procedural_photos,
    shape_mask,
)

__all__ = [
    "FAMILIES",
    "synthesize",
    "make_tiny_dataset",
    "CompositeStream",
    "perturb_image",
    "draw_composite",
]

_SPLIT_ID = {"train": 1, "test": 2}


# --------------------------------------------------------------------------------------------
# one composite


def perturb_image(
    family: str,
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    reference: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One random draw of ``family`` on ``image`` (float (H, W, 3) in [0, 1]) inside ``mask``.

    ``reference`` ``(image, mask or None)`` is required by ``transfer``: the photo whose
    statistics are moved onto the object. Returns ``(composite, params)``.
    """
    if family == "transfer":
        if reference is None:
            raise InputError("the transfer family needs a reference photo")
        ref, ref_mask = reference
        if ref_mask is not None and rng.random() < 0.5:
            return perturb.transfer(image, mask, rng, ref, ref_mask)
        return perturb.transfer(image, mask, rng, ref, None)
    if family == "retouch":
        return perturb.retouch(image, mask, rng)
    if family == "illumination":
        return perturb.illumination(image, mask, rng)
    raise InputError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


def draw_composite(
    family: str,
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    reference_fn: Callable[[], tuple[np.ndarray, np.ndarray | None]] | None = None,
    min_fmse: float = 100.0,
    max_fmse: float = 8000.0,
    max_tries: int = 10,
) -> tuple[np.ndarray | None, dict[str, Any], Counter]:
    """Draw ``family`` perturbations until one is acceptable (:func:`perturb.rejection_reason`),
    at most ``max_tries`` times. ``reference_fn()`` gives a new reference for each transfer draw.

    Returns ``(composite or None, params of the last draw, Counter of rejection reasons)``; the
    composite is None when every draw was rejected. ``params`` holds ``fmse`` and ``tries``.
    """
    reasons: Counter = Counter()
    params: dict[str, Any] = {}
    for attempt in range(1, max_tries + 1):
        reference = reference_fn() if (family == "transfer" and reference_fn is not None) else None
        comp, params = perturb_image(family, image, mask, rng, reference)
        # Judge the composite as it will be stored: 8 bits.
        comp8 = np.round(comp * 255.0) / 255.0
        reason = rejection_reason(comp8, image, mask, min_fmse, max_fmse)
        params = {**params, "fmse": round(perturb.foreground_mse(comp8, image, mask), 2), "tries": attempt}
        if reason is None:
            return comp, params, reasons
        reasons[reason] += 1
    return None, params, reasons


# --------------------------------------------------------------------------------------------
# writing a dataset


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
        rows[sub] = {
            "n": len(ms),
            "mse": round(float(np.mean([m["mse"] for m in ms])), 2),
            "fmse": round(float(np.mean([m["fmse"] for m in ms])), 2),
            "psnr": round(float(np.mean([m["psnr"] for m in ms if math.isfinite(m["psnr"])])), 2),
        }
    return rows


def preview_grid(
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, str]], cell: int = 128
) -> Image.Image:
    """A grid image: one row per ``(real, composite, mask, label)`` (uint8 (H, W, 3), uint8
    (H, W, 3), bool (H, W), text), columns real | composite | mask, each cell ``cell`` px high."""
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
    grid = Image.new("RGB", (width, len(cells) * (cell + gap) - gap), (255, 255, 255))
    y = 0
    for r in cells:
        x = 0
        for im in r:
            grid.paste(im, (x, y))
            x += im.width + gap
        y += cell + gap
    return grid


def synthesize(
    out_root: str | os.PathLike,
    images: str | os.PathLike | Sequence[Photo],
    masks: str | os.PathLike | None = None,
    *,
    cutouts: str | os.PathLike | None = None,
    families: Sequence[str] = FAMILIES,
    per_mask: int = 1,
    masks_per_image: int = 1,
    test_fraction: float = 0.15,
    n_test_photos: int | None = None,
    seed: int = 0,
    quality: int = 95,
    max_side: int | None = None,
    mask_ratio: tuple[float, float] = (0.05, 0.6),
    min_fmse: float = 100.0,
    max_fmse: float = 8000.0,
    max_tries: int = 10,
    keep_rejected: bool = False,
    preview: int = 0,
    metrics: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write an iHarmony4-layout dataset of synthetic composites to ``out_root``; returns the
    summary (also written to ``summary.json``).

    Sources: ``images`` a folder (or a list of :class:`Photo`); ``masks`` a folder of masks with
    the same stems (the photos' objects). Without masks, each photo gets ``masks_per_image``
    object-like masks: the alpha shapes of the RGBA cut-outs in ``cutouts`` when given, else
    merged image segments (:func:`~bargainnet.data.sources.object_mask`), covering ``mask_ratio``
    of the image. Each (photo, mask) gives ``per_mask`` composites; families are assigned in turn
    so the sub-datasets stay balanced. ``test_fraction`` (or ``n_test_photos``) of the photos are
    held out for the test split: train and test never share a source photo, and transfer
    references are drawn from the same split. ``max_side`` downscales larger photos (else reals
    that are JPEG files are copied byte for byte). ``seed`` makes the output deterministic.

    Acceptance: see :func:`draw_composite`; with ``keep_rejected`` the last draw is kept when all
    ``max_tries`` are rejected (else the composite is dropped and counted as failed).
    """
    from tqdm import tqdm

    out = Path(out_root)
    if quality < 95 or quality > 100:
        raise InputError(f"JPEG quality must be in [95, 100], got {quality}")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise InputError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    if per_mask < 1 or masks_per_image < 1:
        raise InputError("per_mask and masks_per_image must be >= 1")
    if not (0 < mask_ratio[0] < mask_ratio[1] < 1):
        raise InputError(f"mask_ratio must satisfy 0 < min < max < 1, got {mask_ratio}")
    inputs: list[Path] = []
    if isinstance(images, (str, os.PathLike)):
        photos = list_photos(images, masks)
        inputs += [Path(images)] + ([Path(masks)] if masks is not None else [])
    else:
        photos = list(images)
        if masks is not None:
            raise InputError("masks must be None when images is a list of Photo (set Photo.mask)")
    if cutouts is not None:
        inputs.append(Path(cutouts))
    if len(photos) < 2:
        raise InputError(f"need at least 2 photos (train and test), got {len(photos)}")
    stems = [p.stem for p in photos]
    if len(set(stems)) != len(stems):
        raise InputError("photo stems must be unique")
    _check_out(out, inputs, overwrite)
    alphas = list_cutouts(cutouts) if cutouts is not None else None
    train_idx, test_idx = _split_photos(len(photos), test_fraction, n_test_photos, seed)

    def photo_masks(i: int, image: np.ndarray, given: np.ndarray | None) -> list[np.ndarray]:
        if given is not None:
            return [given]
        out_masks = []
        for j in range(masks_per_image):
            r = np.random.default_rng([seed, 3, i, j])
            if alphas is not None:
                out_masks.append(shape_mask(alphas[int(r.integers(len(alphas)))], image.shape[:2], r, mask_ratio))
            else:
                out_masks.append(object_mask(image, r, mask_ratio))
        return out_masks

    ref_cache: "OrderedDict[int, tuple[np.ndarray, np.ndarray | None]]" = OrderedDict()

    def reference(i: int) -> tuple[np.ndarray, np.ndarray | None]:
        if i in ref_cache:
            ref_cache.move_to_end(i)
            return ref_cache[i]
        img, m = load_photo(photos[i], max_side=256)
        if m is not None and not m.any():
            m = None
        value = (img.astype(np.float64) / 255.0, m)
        ref_cache[i] = value
        if len(ref_cache) > 256:
            ref_cache.popitem(last=False)
        return value

    lists: dict[str, dict[str, list[str]]] = {s: {f: [] for f in families} for s in ("train", "test")}
    draws: Counter = Counter()
    rejected: dict[str, Counter] = {f: Counter() for f in families}
    failed: Counter = Counter()
    kept_rejected: Counter = Counter()
    skipped_photos: list[tuple[str, str]] = []
    log_lines: list[str] = []
    preview_pool: dict[str, list[tuple[str, str, str]]] = {f: [] for f in families}
    written_reals: set[tuple[str, str]] = set()
    written_masks: set[tuple[str, str]] = set()
    counter = 0
    bar = tqdm(total=len(photos), desc="synthesizing", unit="photo", disable=not progress)
    for split, indices in (("train", train_idx), ("test", test_idx)):
        pool = indices
        for i in indices:
            photo = photos[i]
            bar.update(1)
            image_u8, given = load_photo(photo, max_side)
            if given is not None and (not given.any() or given.all()):
                skipped_photos.append((photo.stem, "mask empty" if not given.any() else "mask covers the whole image"))
                continue
            image = image_u8.astype(np.float64) / 255.0
            copy_real = _can_copy(photo, max_side)
            for j, mask in enumerate(photo_masks(i, image_u8, given), start=1):
                k_in = Counter()
                for k in range(per_mask):
                    family = families[counter % len(families)]
                    counter += 1
                    rng = np.random.default_rng([seed, _SPLIT_ID[split], i, j, k])
                    others = [p for p in pool if p != i] or [i]

                    def ref_fn():
                        return reference(others[int(rng.integers(len(others)))])

                    comp, params, reasons = draw_composite(
                        family, image, mask, rng, ref_fn, min_fmse, max_fmse, max_tries
                    )
                    draws[family] += params.get("tries", max_tries)
                    rejected[family].update(reasons)
                    if comp is None:
                        if not keep_rejected:
                            failed[family] += 1
                            continue
                        kept_rejected[family] += 1
                        comp, params, _ = draw_composite(
                            family, image, mask, np.random.default_rng([seed, 9, _SPLIT_ID[split], i, j, k]),
                            ref_fn, -1.0, float("inf"), 1,
                        )
                    k_in[family] += 1
                    sub = out / family
                    name = f"{photo.stem}_{j}_{k_in[family]}"
                    rel = f"{family}/composite_images/{name}.jpg"
                    atomic_write_bytes(sub / "composite_images" / f"{name}.jpg", _jpeg_bytes(_to_u8(comp), quality))
                    if (family, f"{photo.stem}_{j}") not in written_masks:
                        atomic_save_pil(
                            Image.fromarray(mask.astype(np.uint8) * 255), sub / "masks" / f"{photo.stem}_{j}.png", format="PNG"
                        )
                        written_masks.add((family, f"{photo.stem}_{j}"))
                    if (family, photo.stem) not in written_reals:
                        real_path = sub / "real_images" / f"{photo.stem}.jpg"
                        if copy_real:
                            atomic_copy(photo.path, real_path)
                        else:
                            atomic_write_bytes(real_path, _jpeg_bytes(image_u8, quality))
                        written_reals.add((family, photo.stem))
                    lists[split][family].append(rel)
                    log_lines.append(json.dumps({"name": rel, "split": split, "source": photo.stem, **params}, default=float))
                    if split == "test":
                        preview_pool[family].append((rel, photo.stem, family))
    bar.close()

    for split in ("train", "test"):
        all_names = []
        for family in families:
            names = lists[split][family]
            if names or (out / family).is_dir():
                text = "".join(n.split("/")[-1] + "\n" for n in names)
                atomic_write_bytes(out / family / f"{family}_{split}.txt", text.encode())
            all_names += names
        atomic_write_bytes(out / f"IHD_{split}.txt", "".join(n + "\n" for n in all_names).encode())
    atomic_write_bytes(out / "composites.jsonl", "".join(line + "\n" for line in log_lines).encode())

    counts = {s: {f: len(lists[s][f]) for f in families} for s in ("train", "test")}
    for s in counts:
        counts[s]["all"] = sum(counts[s].values())
    rejection = {}
    for f in families:
        r = sum(rejected[f].values())
        rejection[f] = {
            "draws": int(draws[f]),
            "rejected": int(r),
            "rate": round(r / draws[f], 4) if draws[f] else 0.0,
            "reasons": dict(sorted(rejected[f].items())),
            "failed": int(failed[f]),
            "kept_after_rejection": int(kept_rejected[f]),
        }
    summary: dict[str, Any] = {
        "generator": "bargainnet synth",
        "seed": seed,
        "settings": {
            "families": list(families),
            "per_mask": per_mask,
            "masks_per_image": masks_per_image,
            "mask_source": "given" if masks is not None or any(p.mask is not None or p.mask_path for p in photos)
            else ("cutouts" if cutouts is not None else "segments"),
            "quality": quality,
            "max_side": max_side,
            "mask_ratio": list(mask_ratio),
            "min_fmse": min_fmse,
            "max_fmse": max_fmse,
            "max_tries": max_tries,
        },
        "photos": {"train": len(train_idx), "test": len(test_idx), "skipped": skipped_photos},
        "counts": counts,
        "rejection": rejection,
    }
    empty_splits = [s for s in ("train", "test") if counts[s]["all"] == 0 and (test_idx if s == "test" else train_idx)]
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
        rows = []
        order = [f for f in families if preview_pool[f]] or []
        if not order:  # no test composites: use train ones
            for rel in lists["train"][families[0]][:preview]:
                preview_pool[families[0]].append((rel, "", families[0]))
            order = [families[0]]
        used: set[str] = set()  # one row per source photo while unused photos remain
        remaining = {f: list(preview_pool[f]) for f in order}
        picks: list[tuple[str, str]] = []
        while len(picks) < preview and any(remaining.values()):
            for f in order:
                if len(picks) >= preview or not remaining[f]:
                    continue
                fresh = [e for e in remaining[f] if e[1] not in used]
                entry = fresh[0] if fresh else remaining[f][0]
                remaining[f].remove(entry)
                used.add(entry[1])
                picks.append((entry[0], f))
        for rel, f in picks:
            sub, _, fname = rel.split("/")
            real_stem, mask_id, _ = fname.rsplit(".", 1)[0].rsplit("_", 2)
            with Image.open(out / rel) as c, Image.open(out / sub / "real_images" / f"{real_stem}.jpg") as r, \
                    Image.open(out / sub / "masks" / f"{real_stem}_{mask_id}.png") as m:
                rows.append((np.asarray(r.convert("RGB")), np.asarray(c.convert("RGB")), np.asarray(m.convert("L")) > 127, f))
        if rows:
            atomic_save_pil(preview_grid(rows), out / "preview.png", format="PNG")
    if empty_splits:
        raise InputError(
            f"no composite was accepted for split(s) {', '.join(empty_splits)} "
            f"(rejection: {json.dumps(rejection)}); loosen min_fmse/max_fmse or raise max_tries"
        )
    return summary


def _can_copy(photo: Photo, max_side: int | None) -> bool:
    """Whether the source JPEG can serve as the real image byte for byte: not downscaled, and no
    EXIF rotation (readers decode the stored pixels without applying it)."""
    if photo.image is not None or not photo.is_jpeg_file:
        return False
    with Image.open(photo.path) as im:
        if max_side is not None and max(im.size) > max_side:
            return False
        return im.getexif().get(0x0112, 1) == 1


def make_tiny_dataset(
    root: str | os.PathLike,
    n_train: int = 8,
    n_test: int = 4,
    size: int = 64,
    seed: int = 0,
    families: Sequence[str] = FAMILIES,
    preview: int = 0,
) -> Path:
    """A tiny iHarmony4-layout dataset of procedural photos (no external files) in ``root``:
    ``n_train`` train and ``n_test`` test composites of ``size``×``size`` px, one per photo, the
    families in turn (sub-datasets ``transfer``, ``retouch``, ``illumination``). Deterministic in
    ``seed``; takes well under a second at the defaults. Returns ``Path(root)``."""
    photos = procedural_photos(n_train + n_test, size, seed)
    synthesize(
        root,
        photos,
        families=families,
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
    """An endless (or ``length``-long) stream of fresh composites for training without files.

    Each sample: a random photo from ``image_dir`` (a folder, or a list of :class:`Photo`) with
    its mask from ``mask_dir`` (else the alpha shape of a cut-out from ``cutouts``, else merged
    segments, drawn anew each time), the training augmentation (random resized crop to ``size``,
    ``scale``, flip; set ``augment=False`` for a plain resize), then one family's perturbation of
    the object at the output size, with the synthesizer's acceptance rule. Yields the same dict
    as :class:`~bargainnet.data.iharmony4.IHarmony4Dataset` (``subset`` = family name, ``name`` =
    ``<stem>_<family>_<n>``).

    Seeding: worker ``w`` of ``W`` DataLoader workers on rank ``r`` draws from
    ``numpy.random.default_rng([seed, epoch, r, w])``; call :meth:`set_epoch` each epoch for new
    draws. ``length`` (samples per epoch over all ranks and workers) makes ``len()`` defined.
    """

    def __init__(
        self,
        image_dir: str | os.PathLike | Sequence[Photo],
        mask_dir: str | os.PathLike | None = None,
        size: int = 256,
        seed: int = 0,
        families: Sequence[str] = FAMILIES,
        *,
        cutouts: str | os.PathLike | None = None,
        length: int | None = None,
        augment: bool = True,
        scale: tuple[float, float] = (0.5, 1.0),
        max_side: int | None = 1024,
        mask_ratio: tuple[float, float] = (0.05, 0.6),
        min_fmse: float = 100.0,
        max_fmse: float = 8000.0,
        max_tries: int = 10,
    ):
        super().__init__()
        from .transforms import TestTransform, TrainTransform

        if isinstance(image_dir, (str, os.PathLike)):
            self.photos = list_photos(image_dir, mask_dir)
        else:
            self.photos = list(image_dir)
        if not self.photos:
            raise InputError("CompositeStream needs at least one photo")
        unknown = [f for f in families if f not in FAMILIES]
        if unknown or not families:
            raise InputError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
        self.families = tuple(families)
        self.size, self.seed, self.length = size, seed, length
        self.transform = TrainTransform(size, scale) if augment else TestTransform(size)
        self.alphas = list_cutouts(cutouts) if cutouts is not None else None
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

    def _photo(self, i: int, rng: np.random.Generator, max_side: int | None):
        image, mask = load_photo(self.photos[i], max_side)
        if mask is None or not mask.any():
            if self.alphas is not None:
                mask = shape_mask(self.alphas[int(rng.integers(len(self.alphas)))], image.shape[:2], rng, self.mask_ratio)
            else:
                mask = object_mask(image, rng, self.mask_ratio)
        return image, mask

    def sample(self, rng: np.random.Generator, family: str | None = None) -> dict:
        """One sample drawn with ``rng`` (see the class docstring); ``family`` random when None."""
        import torch

        from .transforms import to_tensors

        family = family or self.families[int(rng.integers(len(self.families)))]
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        for _ in range(self.max_tries):
            i = int(rng.integers(len(self.photos)))
            image, mask = self._photo(i, rng, self.max_side)
            m_img = Image.fromarray(mask.astype(np.uint8) * 255)
            real_pil = Image.fromarray(image)
            real_t, m_t, _ = self.transform(real_pil, m_img, real_pil, generator=g)
            real = np.asarray(real_t)
            m = np.asarray(m_t) > 127
            if not m.any() or m.all():
                continue

            def ref_fn():
                j = int(rng.integers(len(self.photos)))
                ref, ref_mask = load_photo(self.photos[j], 256)
                return ref.astype(np.float64) / 255.0, (ref_mask if ref_mask is not None and ref_mask.any() else None)

            comp, params, _ = draw_composite(
                family, real.astype(np.float64) / 255.0, m, rng, ref_fn, self.min_fmse, self.max_fmse, self.max_tries
            )
            if comp is None:
                continue
            c, mt, r = to_tensors(_to_u8(comp), m, real)
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
