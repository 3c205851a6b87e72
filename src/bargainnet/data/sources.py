"""Where composites come from: photos (a folder, in-memory arrays or procedurally generated) and
their object masks (given, made from image segments, or the alpha shapes of cut-outs).

All functions here are plain numpy/PIL functions: images are ``uint8 (H, W, 3)``, masks ``bool
(H, W)`` (True = object). Randomness always comes from an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError
from ..io import open_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")


@dataclass
class Photo:
    """One source photo: a file (``path``) or an in-memory array (``image``), with an optional
    object mask (``mask_path`` or ``mask``). ``stem`` names its files in the output layout and
    must not contain a path separator."""

    stem: str
    path: Path | None = None
    mask_path: Path | None = None
    image: np.ndarray | None = None
    mask: np.ndarray | None = None

    @property
    def is_jpeg_file(self) -> bool:
        return self.path is not None and self.path.suffix.lower() in (".jpg", ".jpeg")


def _files_by_stem(folder: Path, extensions: Sequence[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        p = Path(entry.path)
        if entry.is_file() and p.suffix.lower() in extensions and not p.name.startswith("."):
            found.setdefault(p.stem, p)
    return found


def list_photos(image_dir: str | os.PathLike, mask_dir: str | os.PathLike | None = None) -> list[Photo]:
    """The photos of ``image_dir`` (sorted by name) with the masks of ``mask_dir`` of the same stem.

    Raises :class:`InputError` when a folder is missing or empty, or when ``mask_dir`` is given and
    some photos have no mask (the count and the first few are named).
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(f"image folder not found: {image_dir}")
    images = _files_by_stem(image_dir, IMAGE_EXTENSIONS)
    if not images:
        raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {image_dir}")
    if mask_dir is None:
        return [Photo(stem=s, path=p) for s, p in images.items()]
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise InputError(f"mask folder not found: {mask_dir}")
    masks = _files_by_stem(mask_dir, MASK_EXTENSIONS)
    missing = [s for s in images if s not in masks]
    if missing:
        raise InputError(
            f"{len(missing)} of {len(images)} images in {image_dir} have no mask of the same stem "
            f"in {mask_dir}, e.g. {', '.join(missing[:5])}"
        )
    return [Photo(stem=s, path=p, mask_path=masks[s]) for s, p in images.items()]


def read_rgb(path: Path, max_side: int | None = None) -> np.ndarray:
    """Decode ``path`` as uint8 RGB; downscale so that its long side is at most ``max_side``
    (Lanczos) when given, large JPEGs first while decoding.

    Opened by :func:`bargainnet.io.open_image` (EXIF orientation applied, pixel limit,
    :class:`InputError` for a missing, unreadable or truncated file); colour conversion by
    Pillow's ``convert("RGB")``.
    """
    im = open_image(path, draft_long_side=max_side).convert("RGB")
    if max_side and max(im.size) > max_side:
        s = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
    return np.asarray(im)


def read_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a mask file as bool (gray level > 127; the alpha channel when the file has one).
    ``size`` (W, H) resizes it (nearest) to a downscaled photo. Opened as :func:`read_rgb`."""
    im = open_image(path)
    im = im.getchannel("A") if im.mode in ("RGBA", "LA", "PA") else im.convert("L")
    if size is not None and im.size != size:
        im = im.resize(size, Image.NEAREST)
    return np.asarray(im) > 127


def load_photo(photo: Photo, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(image uint8 (H, W, 3), mask bool (H, W) or None)`` of ``photo``."""
    if photo.image is not None:
        image = np.asarray(photo.image)
        if image.dtype != np.uint8:
            image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    else:
        image = read_rgb(photo.path, max_side)
    mask = None
    if photo.mask is not None:
        mask = np.asarray(photo.mask) > (127 if np.asarray(photo.mask).dtype == np.uint8 else 0.5)
    elif photo.mask_path is not None:
        mask = read_mask(photo.mask_path, (image.shape[1], image.shape[0]))
    if mask is not None and mask.shape != image.shape[:2]:
        raise InputError(
            f"mask of {photo.stem} has shape {mask.shape}, image has {image.shape[:2]}"
        )
    return image, mask


# --------------------------------------------------------------------------------------------
# masks for photos that have none


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(np.argmax(sizes)))


def _grow_region(seg: np.ndarray, small: np.ndarray, rng: np.random.Generator, ratio) -> np.ndarray:
    """Merge adjacent segments of ``seg`` from a random start into one region of about ``ratio``."""
    n = int(seg.max()) + 1
    sh, sw = seg.shape
    area = np.bincount(seg.ravel(), minlength=n).astype(np.float64)
    colour = np.stack([np.bincount(seg.ravel(), small[..., c].ravel(), n) for c in range(3)], 1)
    colour /= np.maximum(area, 1)[:, None]
    # Segment adjacency from horizontally / vertically neighbouring pixels.
    pairs = np.concatenate(
        [
            np.stack([seg[:, :-1].ravel(), seg[:, 1:].ravel()], 1),
            np.stack([seg[:-1, :].ravel(), seg[1:, :].ravel()], 1),
        ]
    )
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    adjacency = [set() for _ in range(n)]
    for a, b in np.unique(np.sort(pairs, 1), axis=0):
        adjacency[a].add(b)
        adjacency[b].add(a)
    total = float(sh * sw)
    target = rng.uniform(*ratio) * total
    # Start in a segment smaller than the target, away from the border more often than not.
    weights = np.where(area <= target, 1.0, 1e-6)
    border = np.unique(np.concatenate([seg[0], seg[-1], seg[:, 0], seg[:, -1]]))
    weights[border] *= 0.25
    start = int(rng.choice(n, p=weights / weights.sum()))
    region = {start}
    covered = area[start]
    mean = colour[start].copy()
    while covered < target:
        frontier = set().union(*(adjacency[r] for r in region)) - region
        if not frontier:
            break
        cand = np.fromiter(frontier, dtype=int)
        dist = np.linalg.norm(colour[cand] - mean, axis=1) + rng.uniform(0, 20, len(cand))
        pick = int(cand[np.argmin(dist)])
        if covered + area[pick] > ratio[1] * total and covered >= ratio[0] * total:
            break
        region.add(pick)
        mean = (mean * covered + colour[pick] * area[pick]) / (covered + area[pick])
        covered += area[pick]
    return np.isin(seg, list(region))


def object_mask(
    image: np.ndarray,
    rng: np.random.Generator,
    ratio: tuple[float, float] = (0.05, 0.6),
    method: str = "felzenszwalb",
    work_side: int = 192,
) -> np.ndarray:
    """An object-like mask for a photo without one: image segments merged into one connected
    region covering roughly ``ratio`` of the image.

    ``image`` uint8 (H, W, 3). The image is segmented at ``work_side`` px on its long side
    (scikit-image ``felzenszwalb`` or ``slic``); starting from a random segment, the adjacent
    segment with the closest mean colour is added until the region reaches a target area drawn
    uniformly from ``ratio``; holes are filled. When the segments cannot make such a region (a
    flat image gives one huge segment) SLIC superpixels are tried, then a random ellipse. Returns
    bool (H, W), connected, with at least one foreground and one background pixel.
    """
    from scipy import ndimage
    from skimage import segmentation

    if method not in ("felzenszwalb", "slic"):
        raise InputError(f"unknown mask method {method!r}; known: felzenszwalb, slic")
    h, w = image.shape[:2]
    s = min(1.0, work_side / max(h, w))
    small = np.asarray(
        Image.fromarray(image).resize((max(8, round(w * s)), max(8, round(h * s))), Image.BILINEAR)
    )
    methods = ["felzenszwalb", "slic"] if method == "felzenszwalb" else ["slic"]
    for m in methods:
        if m == "felzenszwalb":
            seg = segmentation.felzenszwalb(small, scale=float(rng.uniform(50, 300)), sigma=0.8, min_size=20)
        else:
            seg = segmentation.slic(small, n_segments=int(rng.integers(40, 120)), compactness=10, start_label=0)
        small_mask = ndimage.binary_fill_holes(_grow_region(seg, small, rng, ratio))
        mask = np.asarray(Image.fromarray(small_mask.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR)) > 127
        mask = _largest_component(mask)
        if 0.5 * ratio[0] <= mask.mean() <= min(0.95, 1.25 * ratio[1]):
            return mask
    return ellipse_mask((h, w), rng, ratio)


def ellipse_mask(shape: tuple[int, int], rng: np.random.Generator, ratio=(0.05, 0.6)) -> np.ndarray:
    """A random ellipse covering about ``ratio`` of an ``(H, W)`` image, fully inside it."""
    from skimage.draw import ellipse

    h, w = shape
    area = rng.uniform(*ratio) * h * w
    aspect = np.exp(rng.uniform(-0.6, 0.6))
    ry = min(h / 2 - 1, np.sqrt(area / np.pi * aspect))
    rx = min(w / 2 - 1, area / (np.pi * max(ry, 1)))
    ry, rx = max(ry, 1.5), max(rx, 1.5)
    cy = rng.uniform(ry, h - ry) if h > 2 * ry else h / 2
    cx = rng.uniform(rx, w - rx) if w > 2 * rx else w / 2
    mask = np.zeros((h, w), bool)
    rr, cc = ellipse(cy, cx, ry, rx, shape=(h, w))
    mask[rr, cc] = True
    mask[0, 0] = False if mask.all() else mask[0, 0]
    return mask


def rectangle_mask(shape: tuple[int, int], rng: np.random.Generator, ratio=(0.05, 0.6)) -> np.ndarray:
    """A random rectangle (rotated by up to ±30°) covering about ``ratio`` of an ``(H, W)``
    image; its corners may leave the image."""
    from skimage.draw import polygon

    h, w = shape
    area = rng.uniform(*ratio) * h * w
    aspect = np.exp(rng.uniform(-0.8, 0.8))
    hh, hw = np.sqrt(area * aspect) / 2, np.sqrt(area / aspect) / 2
    t = np.deg2rad(rng.uniform(-30, 30)) if rng.random() < 0.5 else 0.0
    cy, cx = rng.uniform(min(hh, h / 2), max(h - hh, h / 2)), rng.uniform(min(hw, w / 2), max(w - hw, w / 2))
    corners = np.array([[-hh, -hw], [-hh, hw], [hh, hw], [hh, -hw]])
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    pts = corners @ rot.T + [cy, cx]
    return _filled(polygon(pts[:, 0], pts[:, 1], shape=(h, w)), shape, rng, ratio)


def polygon_mask(shape: tuple[int, int], rng: np.random.Generator, ratio=(0.05, 0.6)) -> np.ndarray:
    """A random star-shaped polygon (5–12 vertices at jittered radii) covering about ``ratio``."""
    from skimage.draw import polygon

    h, w = shape
    k = int(rng.integers(5, 13))
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = rng.uniform(0.5, 1.0, k)
    # polygon area of unit-scale radii, to scale it to the target area
    unit = 0.5 * abs(np.sum(rad * np.roll(rad, -1) * np.sin(np.roll(ang, -1) - ang)))
    scale = np.sqrt(rng.uniform(*ratio) * h * w / max(unit, 1e-3))
    aspect = np.exp(rng.uniform(-0.4, 0.4))
    ry, rx = scale * np.sqrt(aspect), scale / np.sqrt(aspect)
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    return _filled(polygon(cy + ry * rad * np.sin(ang), cx + rx * rad * np.cos(ang), shape=(h, w)), shape, rng, ratio)


def brush_mask(shape: tuple[int, int], rng: np.random.Generator, ratio=(0.05, 0.6)) -> np.ndarray:
    """A brush stroke: a thick line through 3–6 random points (round joints and ends) whose width
    makes it cover about ``ratio`` of the image (capped at a third of the short side)."""
    h, w = shape
    k = int(rng.integers(3, 7))
    pts = np.stack([rng.uniform(0.1, 0.9, k) * w, rng.uniform(0.1, 0.9, k) * h], 1)
    length = float(np.sum(np.linalg.norm(np.diff(pts, axis=0), axis=1))) + 1.0
    width = int(np.clip(rng.uniform(*ratio) * h * w / length, 2, max(2, min(h, w) / 3)))
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    xy = [tuple(p) for p in pts]
    draw.line(xy, fill=255, width=width, joint="curve")
    for x, y in (xy[0], xy[-1]):
        draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    mask = np.asarray(im) > 127
    return mask if mask.any() and not mask.all() else ellipse_mask(shape, rng, ratio)


def _filled(rr_cc, shape, rng, ratio) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rr_cc] = True
    if not mask.any() or mask.all():
        return ellipse_mask(shape, rng, ratio)
    return mask


GEOMETRIC_SHAPES = ("ellipse", "rectangle", "polygon", "brush")


def geometric_mask(
    shape: tuple[int, int], rng: np.random.Generator, ratio=(0.05, 0.6), kind: str | None = None
) -> tuple[np.ndarray, str]:
    """A geometric mask of an ``(H, W)`` image: one of :data:`GEOMETRIC_SHAPES` (random when
    ``kind`` is None) covering about ``ratio`` of it. Returns ``(mask bool (H, W), kind)``;
    the mask is never empty nor full."""
    kind = kind or str(rng.choice(GEOMETRIC_SHAPES))
    fn = {"ellipse": ellipse_mask, "rectangle": rectangle_mask, "polygon": polygon_mask, "brush": brush_mask}.get(kind)
    if fn is None:
        raise InputError(f"unknown shape {kind!r}; known: {', '.join(GEOMETRIC_SHAPES)}")
    mask = fn(shape, rng, ratio)
    if mask.all():
        mask[0, 0] = False
    return mask, kind


def shape_mask(
    alpha: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, ratio=(0.05, 0.6)
) -> np.ndarray:
    """The alpha shape of a cut-out (``alpha`` (h, w), > 127 = object) scaled to cover about
    ``ratio`` of an ``(H, W)`` image and placed at a random position inside it."""
    obj = np.asarray(alpha) > 127
    ys, xs = np.nonzero(obj)
    if len(ys) == 0:
        raise InputError("cut-out alpha is empty")
    obj = obj[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = shape
    fill = obj.mean()
    target = rng.uniform(*ratio) * h * w
    s = np.sqrt(target / (fill * obj.size))
    s = min(s, (h - 1) / obj.shape[0], (w - 1) / obj.shape[1])
    oh, ow = max(2, round(obj.shape[0] * s)), max(2, round(obj.shape[1] * s))
    scaled = np.asarray(Image.fromarray(obj.astype(np.uint8) * 255).resize((ow, oh), Image.BILINEAR)) > 127
    y0, x0 = int(rng.integers(0, h - oh + 1)), int(rng.integers(0, w - ow + 1))
    mask = np.zeros((h, w), bool)
    mask[y0 : y0 + oh, x0 : x0 + ow] = scaled
    if not mask.any():
        return ellipse_mask(shape, rng, ratio)
    return mask


def hash_half(relpath: str) -> str:
    """``"even"`` or ``"odd"``: the half a cut-out belongs to by the CRC-32 of its path relative
    to the cut-out folder (``/``-separated). For Debian's Tux Paint stamps the even half is for
    training and the odd half is reserved for evaluation."""
    return "even" if zlib.crc32(relpath.replace(os.sep, "/").encode()) % 2 == 0 else "odd"


def list_cutouts(
    folder: str | os.PathLike, limit: int | None = None, half: str | None = None, max_side: int | None = 256
) -> list[np.ndarray]:
    """The alpha channels (uint8 (h, w)) of the RGBA cut-outs (PNG/WebP) under ``folder``.

    ``half`` (``"even"``/``"odd"``) keeps only the cut-outs of that :func:`hash_half` of their
    path relative to ``folder``. ``max_side`` shrinks larger alphas (they only serve as shapes).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"cut-out folder not found: {folder}")
    if half not in (None, "even", "odd"):
        raise InputError(f"half must be 'even', 'odd' or None, got {half!r}")
    alphas = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in (".png", ".webp"):
            continue
        if half is not None and hash_half(p.relative_to(folder).as_posix()) != half:
            continue
        with Image.open(p) as im:
            if im.mode not in ("RGBA", "LA", "PA") and "transparency" not in im.info:
                continue
            im = im.convert("RGBA").getchannel("A")
            if max_side and max(im.size) > max_side:
                im.thumbnail((max_side, max_side), Image.BILINEAR)
            a = np.asarray(im)
        if (a > 127).mean() > 0.02 and (a <= 127).any():
            alphas.append(a)
        if limit and len(alphas) >= limit:
            break
    if not alphas:
        raise InputError(f"no cut-outs with an alpha channel (PNG/WebP) under {folder}")
    return alphas


# --------------------------------------------------------------------------------------------
# procedural photos (no external files; for tests and tiny examples)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    coarse = rng.random((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.BICUBIC))


def procedural_photo(rng: np.random.Generator, size: int | tuple[int, int] = 64) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic "photo" with one object: ``(image uint8 (H, W, 3), mask bool (H, W))``.

    A two-colour vertical gradient (sky/ground-like) with smooth noise texture, a distractor
    shape, and the object: an ellipse or polygon of its own colour and shading covering 8–45 % of
    the image. Generated in about a millisecond at 64 px; used for tests and demos that must not
    depend on external photos.
    """
    from skimage.draw import polygon

    h, w = (size, size) if isinstance(size, int) else size
    top, bottom = rng.uniform(0.1, 0.95, 3), rng.uniform(0.05, 0.9, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = top * (1 - t) + bottom * t + np.zeros((1, w, 1), np.float32)
    img = img + 0.12 * (_smooth_noise(rng, h, w, 6)[..., None] - 0.5)
    # a distractor blob (part of the background)
    d = ellipse_mask((h, w), rng, (0.03, 0.12))
    img[d] = img[d] * 0.5 + 0.5 * rng.uniform(0, 1, 3)
    # the object
    if rng.random() < 0.5:
        mask = ellipse_mask((h, w), rng, (0.08, 0.45))
    else:
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        k = int(rng.integers(3, 7))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(0.2, 0.42, k) * min(h, w)
        rr, cc = polygon(cy + rad * np.sin(ang), cx + rad * np.cos(ang), shape=(h, w))
        mask = np.zeros((h, w), bool)
        mask[rr, cc] = True
        if mask.sum() < 0.03 * h * w:
            mask = ellipse_mask((h, w), rng, (0.08, 0.45))
    base = rng.uniform(0.1, 0.9, 3)
    shade = 0.75 + 0.5 * _smooth_noise(rng, h, w, 4)[..., None]
    obj = base * shade + 0.08 * (_smooth_noise(rng, h, w, 12)[..., None] - 0.5)
    img[mask] = obj[mask]
    image = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    return image, mask


def procedural_photos(n: int, size: int | tuple[int, int] = 64, seed: int = 0, prefix: str = "p") -> list[Photo]:
    """``n`` in-memory :class:`Photo` objects made by :func:`procedural_photo` (stems
    ``p0000``, ``p0001``, ...), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    photos = []
    for i in range(n):
        image, mask = procedural_photo(rng, size)
        photos.append(Photo(stem=f"{prefix}{i:04d}", image=image, mask=mask))
    return photos
