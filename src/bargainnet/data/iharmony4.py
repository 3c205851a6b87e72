"""The iHarmony4 layout: list files, name parsing, checks, and a torch Dataset.

Layout (docs/design.md §4)::

    <root>/IHD_train.txt, IHD_test.txt        lines like  HAdobe5k/composite_images/a0001_1_1.jpg
    <root>/<Sub>/<Sub>_train.txt, _test.txt   the same per sub-dataset (bare file names accepted)
    <root>/<Sub>/composite_images/<real>_<maskid>_<k>.jpg
    <root>/<Sub>/masks/<real>_<maskid>.png
    <root>/<Sub>/real_images/<real>.jpg

``IHD_<split>.txt`` is used when present, else the per-sub-dataset lists. Sub-datasets are the
first path component of a list entry: iHarmony4's HCOCO, HAdobe5k, HFlickr, Hday2night, or any
other name (the synthesizer writes ``transfer``, ``retouch``, ``illumination``).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch.utils.data
from PIL import Image

from ..errors import InputError
from .transforms import MASK_THRESHOLD, to_tensors

SUBSETS = ("HCOCO", "HAdobe5k", "HFlickr", "Hday2night")
SPLITS = ("train", "test")
COMPOSITE_DIR, MASK_DIR, REAL_DIR = "composite_images", "masks", "real_images"
# Roots with more uncached items than this are checked without decoding every mask (see check=).
FULL_CHECK_LIMIT = 20_000


def parse_composite_name(filename: str) -> tuple[str, str, str]:
    """``(real_stem, mask_id, k)`` of a composite file name ``<real>_<maskid>_<k>.<ext>``.

    The real stem may itself contain underscores or dashes (``image_100005_1_1.jpg`` →
    ``image_100005``; ``d21901-20130410-181833_1_9.jpg`` → ``d21901-20130410-181833``).
    """
    base = os.path.basename(filename)
    stem, _ = os.path.splitext(base)
    parts = stem.rsplit("_", 2)
    if len(parts) != 3 or not all(parts):
        raise InputError(f"composite name {filename!r} is not <real>_<maskid>_<k>.<ext>")
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class Triplet:
    """One list entry: ``name`` (relative composite path, as in the list file), ``subset`` and the
    relative paths of the composite, mask and real image."""

    name: str
    subset: str
    composite: str
    mask: str
    real: str

    def paths(self, root: Path) -> tuple[Path, Path, Path]:
        return root / self.composite, root / self.mask, root / self.real


def triplet_from_name(name: str) -> Triplet:
    """The :class:`Triplet` of a list entry ``<Sub>/composite_images/<real>_<maskid>_<k>.jpg``."""
    parts = name.replace("\\", "/").split("/")
    if len(parts) != 3 or parts[1] != COMPOSITE_DIR:
        raise InputError(f"list entry {name!r} is not <Sub>/{COMPOSITE_DIR}/<file>")
    sub, _, filename = parts
    real, mask_id, _k = parse_composite_name(filename)
    return Triplet(
        name=name,
        subset=sub,
        composite=f"{sub}/{COMPOSITE_DIR}/{filename}",
        mask=f"{sub}/{MASK_DIR}/{real}_{mask_id}.png",
        real=f"{sub}/{REAL_DIR}/{real}.jpg",
    )


def _read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def list_entries(root: str | os.PathLike, split: str = "train", subsets: Sequence[str] | None = None) -> list[str]:
    """The composite names of ``split`` under ``root``, filtered to ``subsets`` (all when None).

    Raises :class:`InputError` when no list file exists, a line is malformed, or a requested
    sub-dataset has no entries.
    """
    root = Path(root)
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    if not root.is_dir():
        raise InputError(f"dataset root not found: {root}")
    main = root / f"IHD_{split}.txt"
    names: list[str] = []
    if main.is_file():
        names = [n.replace("\\", "/") for n in _read_lines(main)]
    else:
        found = sorted(
            d.name for d in root.iterdir() if d.is_dir() and (d / f"{d.name}_{split}.txt").is_file()
        )
        if not found:
            raise InputError(
                f"no list file for split {split!r} in {root}: expected {main.name} or "
                f"<Sub>/<Sub>_{split}.txt (e.g. HCOCO/HCOCO_{split}.txt)"
            )
        for sub in found:
            if subsets is not None and sub not in subsets:
                continue
            for line in _read_lines(root / sub / f"{sub}_{split}.txt"):
                line = line.replace("\\", "/")
                names.append(line if "/" in line else f"{sub}/{COMPOSITE_DIR}/{line}")
    present = sorted({n.split("/")[0] for n in names})
    if subsets is not None:
        unknown = [s for s in subsets if s not in present]
        if unknown:
            raise InputError(
                f"sub-dataset(s) {', '.join(unknown)} have no {split} entries in {root}; "
                f"present: {', '.join(present) or 'none'}"
            )
        names = [n for n in names if n.split("/")[0] in subsets]
    if not names:
        raise InputError(f"the {split} list of {root} is empty")
    return names


# --------------------------------------------------------------------------------------------
# checks


def _header_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError):
        return None


def _mask_empty(path: Path) -> bool | None:
    try:
        with Image.open(path) as im:
            lo, hi = im.convert("L").getextrema()
            return hi <= MASK_THRESHOLD
    except (OSError, ValueError):
        return None


def check_triplets(
    root: Path,
    triplets: Sequence[Triplet],
    level: str = "full",
    known: dict[str, tuple[int, int, float]] | None = None,
    threads: int = 4,
) -> dict[str, list[tuple[str, str]]]:
    """Problems of ``triplets`` under ``root``: ``{"missing": [...], "unreadable": [...],
    "size_mismatch": [...], "empty_mask": [...]}``, each a list of ``(name, detail)``.

    ``level``: ``"files"`` existence only; ``"sizes"`` also compares the image headers;
    ``"full"`` also decodes each mask to find empty ones (no pixel > 127). ``known`` maps names to
    ``(W, H, mask_fraction)`` already verified (from a cache index): those are not read again.
    """
    problems: dict[str, list[tuple[str, str]]] = {
        "missing": [], "unreadable": [], "size_mismatch": [], "empty_mask": []
    }
    listing: dict[Path, set[str]] = {}

    def exists(rel: str) -> bool:
        p = root / rel
        folder = p.parent
        if folder not in listing:
            listing[folder] = set(os.listdir(folder)) if folder.is_dir() else set()
        return p.name in listing[folder]

    todo = []
    for t in triplets:
        missing = [r for r in (t.composite, t.mask, t.real) if not exists(r)]
        if missing:
            problems["missing"].append((t.name, ", ".join(missing)))
        elif known is not None and t.name in known:
            if known[t.name][2] <= 0:
                problems["empty_mask"].append((t.name, t.mask))
        else:
            todo.append(t)
    if level == "files" or not todo:
        return problems

    def inspect(t: Triplet):
        sizes = [_header_size(p) for p in t.paths(root)]
        empty = _mask_empty(root / t.mask) if level == "full" else False
        return t, sizes, empty

    with ThreadPoolExecutor(max(1, threads)) as pool:
        for t, sizes, empty in pool.map(inspect, todo):
            if None in sizes or empty is None:
                bad = [r for r, s in zip((t.composite, t.mask, t.real), sizes) if s is None]
                problems["unreadable"].append((t.name, ", ".join(bad) or t.mask))
            elif len(set(sizes)) > 1:
                detail = ", ".join(f"{k} {w}x{h}" for k, (w, h) in zip(("composite", "mask", "real"), sizes))
                problems["size_mismatch"].append((t.name, detail))
            elif empty:
                problems["empty_mask"].append((t.name, t.mask))
    return problems


_PROBLEM_TEXT = {
    "malformed": "list lines are not <Sub>/composite_images/<real>_<maskid>_<k>.<ext>",
    "missing": "list entries point to missing files",
    "unreadable": "items have files that cannot be read as images",
    "size_mismatch": "items have composite/mask/real of different sizes",
    "empty_mask": "items have an empty mask (no pixel > 127)",
}


def describe_problems(problems: dict[str, list[tuple[str, str]]], where: str, first: int = 3) -> str:
    """A readable multi-line summary: per kind, the count and the first few items."""
    lines = []
    for kind, items in problems.items():
        if items:
            eg = "; ".join(f"{n} ({d})" for n, d in items[:first])
            lines.append(f"{len(items)} {_PROBLEM_TEXT[kind]} in {where}, e.g. {eg}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the dataset


class IHarmony4Dataset(torch.utils.data.Dataset):
    """iHarmony4-layout dataset (torch ``Dataset``): item ``i`` is a dict

    - ``composite``: float32 ``(3, H, W)`` in [-1, 1]
    - ``mask``: float32 ``(1, H, W)`` in {0, 1} (mask pixel > 127)
    - ``real``: float32 ``(3, H, W)`` in [-1, 1]
    - ``name``: the composite's relative path (``HCOCO/composite_images/c1_1_1.jpg``)
    - ``subset``: the sub-dataset (``HCOCO``)

    Arguments: ``root`` the dataset folder; ``split`` ``"train"`` or ``"test"``; ``subsets`` the
    sub-datasets to keep (all when None); ``transform`` a joint transform (see
    :mod:`bargainnet.data.transforms`; None = native size); ``skip_bad``: problems found when
    opening are skipped and reported in :attr:`skipped` (with a warning) instead of raising
    :class:`InputError`; ``check``: ``"auto"`` (full for cached items and for roots up to
    ``FULL_CHECK_LIMIT`` uncached items, else headers only — an empty mask then surfaces when
    loaded), ``"full"``, ``"sizes"``, ``"files"``; ``cache``: ``"auto"`` uses
    ``<root>/bargainnet_cache`` when it exists, a path uses that cache, None/False never.
    Cached items are read from the downscaled copy (see :mod:`bargainnet.data.cache`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        subsets: Sequence[str] | None = None,
        transform: Callable | None = None,
        skip_bad: bool = False,
        check: str = "auto",
        cache: str | os.PathLike | None | bool = "auto",
        threads: int = 4,
    ):
        from .cache_index import find_cache

        self.root = Path(root)
        self.split = split
        self.transform = transform
        if check not in ("auto", "full", "sizes", "files"):
            raise InputError(f"check must be auto, full, sizes or files, got {check!r}")
        names = list_entries(self.root, split, subsets)
        triplets, malformed = [], []
        for n in names:
            try:
                triplets.append(triplet_from_name(n))
            except InputError as err:
                malformed.append((n, str(err)))
        self.cache = find_cache(self.root, cache)
        known = self.cache.known() if self.cache is not None else None
        level = check
        if check == "auto":
            uncached = sum(1 for t in triplets if not known or t.name not in known)
            level = "full" if uncached <= FULL_CHECK_LIMIT else "sizes"
        problems = {"malformed": malformed, **check_triplets(self.root, triplets, level, known, threads)}
        where = f"{self.root} ({split})"
        if any(problems.values()):
            text = describe_problems(problems, where)
            if not skip_bad:
                raise InputError(text + "\n(pass skip_bad=True / --skip-bad to skip these items)")
            warnings.warn(f"skipping bad items:\n{text}", stacklevel=2)
        bad = {n for items in problems.values() for n, _ in items}
        self.skipped: list[tuple[str, str]] = [(n, kind) for kind, items in problems.items() for n, _ in items]
        self.items: list[Triplet] = [t for t in triplets if t.name not in bad]
        if not self.items:
            raise InputError(f"no usable items in {where}")
        self.subsets: list[str] = sorted({t.subset for t in self.items})
        size = getattr(transform, "size", None)
        if self.cache is not None and size is not None and min(size) > self.cache.short_side:
            warnings.warn(
                f"the cache at {self.cache.path} stores short side {self.cache.short_side} px, less "
                f"than the transform's output {size}: rebuild it with a larger --short-side",
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        cache = f", cache={self.cache.path}" if self.cache is not None else ""
        return f"IHarmony4Dataset({str(self.root)!r}, split={self.split!r}, n={len(self)}, subsets={self.subsets}{cache})"

    def source_paths(self, index: int) -> tuple[Path, Path, Path]:
        """The (composite, mask, real) files item ``index`` is read from (cache or root)."""
        t = self.items[index]
        if self.cache is not None and self.cache.has(t.name):
            return t.paths(self.cache.path)
        return t.paths(self.root)

    def load(self, index: int) -> tuple[Image.Image, Image.Image, Image.Image]:
        """The decoded PIL triplet (RGB, L, RGB) of item ``index``, before the transform."""
        t = self.items[index]
        cp, mp, rp = self.source_paths(index)
        try:
            with Image.open(cp) as c, Image.open(mp) as m, Image.open(rp) as r:
                composite, mask, real = c.convert("RGB"), m.convert("L"), r.convert("RGB")
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read item {t.name} from {cp.parent.parent}: {err}") from None
        if not (composite.size == mask.size == real.size):
            raise InputError(
                f"item {t.name}: composite {composite.size}, mask {mask.size} and real {real.size} "
                "differ in size (W, H)"
            )
        return composite, mask, real

    def __getitem__(self, index: int) -> dict:
        t = self.items[index]
        composite, mask, real = self.load(index)
        if self.transform is not None:
            composite, mask, real = self.transform(composite, mask, real)
        c, m, r = to_tensors(composite, mask, real)
        return {"composite": c, "mask": m, "real": r, "name": t.name, "subset": t.subset}

    def subset_indices(self) -> dict[str, list[int]]:
        """Item indices per sub-dataset."""
        out: dict[str, list[int]] = {}
        for i, t in enumerate(self.items):
            out.setdefault(t.subset, []).append(i)
        return out
