"""A training cache for iHarmony4-layout roots: each triplet stored once, downscaled.

Decoding HAdobe5k's ~6000 px JPEGs and PNG masks every epoch dominates training time, although the
training augmentation ends at 256 px. ``bargainnet data cache ROOT`` (:func:`build_cache`) writes
a copy of the listed triplets whose short side is at most ``short_side`` (default 512: a crop of
half the area at aspect 3/4 still has >= 256 px on both sides) into ``<root>/bargainnet_cache/``
in the same layout, plus ``index.json``. Composites and reals are JPEG (quality 95, no chroma
subsampling), masks PNG; triplets already small enough are copied byte for byte. The index also
records each item's original size and mask coverage, so opening a cached root needs no decoding
to check it.

:class:`~bargainnet.data.iharmony4.IHarmony4Dataset` reads an item from the cache when the index
lists it and from the root otherwise (``cache="auto"``). By default only the train split is
cached: evaluation should resize the original images, as the published protocol does.

Format (``index.json``, version 1)::

    {"format": "bargainnet-cache", "version": 1, "short_side": 512, "quality": 95,
     "items": {"<name>": [orig_W, orig_H, mask_fraction], ...}}
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import InputError, OutputError
from ..io import atomic_copy, atomic_save_pil, make_folder
from .cache_index import CACHE_DIRNAME, INDEX, CacheIndex


def _target_size(w: int, h: int, short_side: int) -> tuple[int, int]:
    s = short_side / min(w, h)
    if s >= 1:
        return w, h
    return max(1, round(w * s)), max(1, round(h * s))


def _open_scaled(path: Path, size: tuple[int, int], mode: str) -> Image.Image:
    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft(mode, size)  # DCT-domain downscale to >= size: most of the speed-up
        im = im.convert(mode)
        if im.size != size:
            im = im.resize(size, Image.LANCZOS if mode == "RGB" else Image.BILINEAR, reducing_gap=3.0)
        return im


def cache_triplet(root: Path, out: Path, triplet, short_side: int, quality: int, reals_done: set) -> list:
    """Write one triplet into the cache; returns its index entry ``[orig_W, orig_H, mask_fraction]``."""
    cp, mp, rp = triplet.paths(root)
    with Image.open(cp) as c, Image.open(mp) as m, Image.open(rp) as r:
        sizes = (c.size, m.size, r.size)
    if len(set(sizes)) != 1:
        raise InputError(f"item {triplet.name}: composite/mask/real sizes differ: {sizes}")
    w, h = sizes[0]
    size = _target_size(w, h, short_side)
    with Image.open(mp) as m:
        mask_full = np.asarray(m.convert("L"))
    frac = float((mask_full > 127).mean())
    oc, om, orr = triplet.paths(out)
    if size == (w, h):
        atomic_copy(cp, oc)
        atomic_copy(mp, om)
        if triplet.real not in reals_done:
            atomic_copy(rp, orr)
    else:
        jpeg = dict(format="JPEG", quality=quality, subsampling=0)
        atomic_save_pil(_open_scaled(cp, size, "RGB"), oc, **jpeg)
        mask_small = Image.fromarray(mask_full).resize(size, Image.BILINEAR, reducing_gap=3.0)
        atomic_save_pil(mask_small, om, format="PNG")
        if triplet.real not in reals_done:
            atomic_save_pil(_open_scaled(rp, size, "RGB"), orr, **jpeg)
    reals_done.add(triplet.real)
    return [w, h, round(frac, 6)]


def build_cache(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    short_side: int = 512,
    splits: Sequence[str] = ("train",),
    subsets: Sequence[str] | None = None,
    quality: int = 95,
    workers: int = 1,
    skip_bad: bool = False,
    progress: bool = True,
) -> dict:
    """Build (or extend) the cache of ``root``; returns a summary dict.

    ``out`` defaults to ``<root>/bargainnet_cache``. Items already in an index of the same
    ``short_side``/``quality`` are kept; a different setting rebuilds. Bad items (missing files,
    size mismatch, empty mask) raise :class:`InputError` unless ``skip_bad``. ``workers`` threads
    decode in parallel (Pillow releases the GIL while decoding).
    """
    from tqdm import tqdm

    from .iharmony4 import check_triplets, describe_problems, list_entries, triplet_from_name

    root = Path(root)
    out = Path(out) if out is not None else root / CACHE_DIRNAME
    if short_side < 64:
        raise InputError(f"short_side must be at least 64 px, got {short_side}")
    if out.resolve() == root.resolve():
        raise OutputError(f"the cache folder must differ from the dataset root {root}")
    make_folder(out, "cache folder", hint=" (choose another with --out)")
    index = None
    if (out / INDEX).is_file():
        index = CacheIndex.read(out)
        if index.short_side != short_side or index.quality != quality:
            index = None
    if index is None:
        index = CacheIndex(out, short_side, quality, {})
    triplets = []
    for split in splits:
        for name in list_entries(root, split, subsets):
            triplets.append(triplet_from_name(name))
    seen = set()
    triplets = [t for t in triplets if not (t.name in seen or seen.add(t.name))]
    todo = [t for t in triplets if t.name not in index.items]
    problems = check_triplets(root, todo, level="files")
    bad = {n for items in problems.values() for n, _ in items}
    if bad and not skip_bad:
        raise InputError(describe_problems(problems, str(root)))
    todo = [t for t in todo if t.name not in bad]
    skipped: list[tuple[str, str]] = [(n, "missing") for n in sorted(bad)]
    # One real per worker at a time would race on shared reals: group items by real image.
    groups: dict[str, list] = {}
    for t in todo:
        groups.setdefault(t.real, []).append(t)

    def run_group(group):
        done, errors = [], []
        local: set = set()
        for t in group:
            try:
                done.append((t.name, cache_triplet(root, out, t, short_side, quality, local)))
            except InputError as err:
                errors.append((t.name, str(err)))
        return done, errors

    bar = tqdm(total=len(todo), desc="caching", unit="item", disable=not progress)
    added = 0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for done, errors in pool.map(run_group, groups.values()):
            for name, entry in done:
                if entry[2] <= 0:
                    errors.append((name, f"item {name}: empty mask (no pixel > 127)"))
                    continue
                index.items[name] = entry
                added += 1
            for name, err in errors:
                if not skip_bad:
                    index.write()
                    raise InputError(err)
                skipped.append((name, err))
            bar.update(len(done) + len([e for e in errors if e[0] not in dict(done)]))
            if added and added % 2000 < len(done):
                index.write()  # progress survives an interruption
    bar.close()
    index.write()
    return {
        "cache": str(out),
        "short_side": short_side,
        "items": len(index.items),
        "added": added,
        "skipped": skipped,
    }
