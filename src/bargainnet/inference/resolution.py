"""The working-resolution path: to the model's working size, and the colour change back to full
resolution. One implementation for the :class:`~bargainnet.inference.harmonizer.Harmonizer`,
evaluation's ``--model-size`` and (through the same working size) the ONNX export.

To the working size S×S (:func:`to_working_size`): the composite is resized as the published test
code does (Pillow bilinear with antialiasing; on the 8-bit pixels when the input has them); the
mask's area coverage at S×S (Pillow box filter) is binarised at 0.5 for the network. When no
low-resolution pixel reaches 0.5 — a tiny object — every pixel it touches counts; when every
pixel does — a tiny background — only fully covered pixels count.

Back to full resolution (:func:`back_to_full_resolution`): a model that predicts a colour
transform (the colour-transform family) has its transform applied to the full-resolution pixels
(``method="transform"``, exact at any size); otherwise the network's colour change is carried
over by a local affine colour transform fitted inside the foreground
(:mod:`bargainnet.inference.lifting`; ``method="upsample"``: the output upsampled instead),
computed only inside the bounding box of the region that changes. Callers write the returned
pixels into that region only, so every other pixel stays bit-identical to the input.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import InputError
from ..io import ImageData, to_float
from . import lifting

METHODS = ("auto", "transform", "lift", "upsample")  # auto: transform when the model predicts one, else lift
ROWS_PER_CHUNK = 256  # full-resolution transforms run in bands of rows to bound memory


@dataclass
class Working:
    """One image at the working size S×S."""

    composite: np.ndarray  # float32 (S, S, 3) in [0, 1]
    weight: np.ndarray  # float32 (S, S) in [0, 1]: the foreground's area coverage
    mask: np.ndarray  # bool (S, S): what the network treats as foreground


@functools.lru_cache(maxsize=64)
def _box_ranges(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """[start, stop) of the source pixels that Pillow's BOX filter averages, per output pixel, when
    shrinking ``n_in`` pixels to ``n_out`` (its coefficients are 1 on a run of pixels, else 0).
    Cached (the same sizes recur in a batch): the arrays are read-only."""
    scale = n_in / n_out
    support = 0.5 * scale
    centre = (np.arange(n_out) + 0.5) * scale
    lo = np.maximum((centre - support + 0.5).astype(np.int64), 0)  # C's (int) truncation, as Pillow
    hi = np.minimum((centre + support + 0.5).astype(np.int64), n_in)
    # box(x) = 1 for -0.5 < x <= 0.5, at x = (i - centre + 0.5) / scale
    first = np.array([next(i for i in range(a, b) if -0.5 < (i - c + 0.5) / scale <= 0.5) for a, b, c in zip(lo, hi, centre)])
    last = np.array([next(i for i in range(b - 1, a - 1, -1) if -0.5 < (i - c + 0.5) / scale <= 0.5) for a, b, c in zip(lo, hi, centre)])
    stop = last + 1
    first.flags.writeable = stop.flags.writeable = False
    return first, stop


def _range_sums(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, axis: int) -> np.ndarray:
    """int sums of ``x`` over [lo[i], hi[i]) along ``axis``."""
    if lo[0] == 0 and hi[-1] == x.shape[axis] and np.array_equal(lo[1:], hi[:-1]):  # a partition
        return np.add.reduceat(x, lo, axis=axis, dtype=np.int32)
    shape = list(x.shape)
    shape[axis] += 1
    cum = np.zeros(shape, np.int32)
    np.cumsum(x, axis=axis, dtype=np.int32, out=cum[1:] if axis == 0 else cum[:, 1:])
    return np.take(cum, hi, axis=axis) - np.take(cum, lo, axis=axis)


def mask_coverage(mask: np.ndarray, size: int) -> np.ndarray:
    """float32 (size, size) in [0, 1]: the share of each cell that ``mask`` (bool (H, W)) covers,
    as Pillow's BOX resize of the 0/1 mask computes it (the same cells; counted exactly here, from
    integer sums, instead of from a 4-byte-per-pixel float copy of the mask)."""
    h, w = mask.shape
    if h == w == size:  # every cell is one pixel
        return mask.astype(np.float32)
    if h < size or w < size:  # enlarging: Pillow itself (the mask is small)
        return np.clip(lifting.resize_float(mask.astype(np.float32), (size, size), Image.BOX), 0.0, 1.0)
    (r_lo, r_hi), (c_lo, c_hi) = _box_ranges(h, size), _box_ranges(w, size)
    band = _range_sums(mask.view(np.uint8), c_lo, c_hi, axis=1)  # (H, size): along rows first (fast)
    counts = _range_sums(band, r_lo, r_hi, axis=0)  # (size, size)
    return (counts / np.outer(r_hi - r_lo, c_hi - c_lo)).astype(np.float32)


def resize_image(rgb: np.ndarray | None, size: int, *, rgb8: np.ndarray | Image.Image | None = None) -> np.ndarray:
    """float32 (size, size, 3) in [0, 1]: Pillow bilinear with antialiasing on the 8-bit pixels
    ``rgb8`` (an array, or the same as an RGB Pillow image) when given, else on the float pixels ``rgb``."""
    if rgb8 is not None:
        source = rgb8 if isinstance(rgb8, Image.Image) else Image.fromarray(rgb8)
        return np.asarray(source.resize((size, size), Image.BILINEAR), np.float32) / 255
    return np.clip(lifting.resize_float(rgb, (size, size)), 0.0, 1.0)


def resize_changed(before: np.ndarray, image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    """``resize_image(image, S)`` for an 8-bit RGB ``image`` that differs only inside ``box`` =
    (r0, r1, c0, c1) from the image whose resize is ``before`` (float32 (S, S, 3)): only the cells
    that the bilinear filter reaches from the box are resized again (Pillow's resize of a region
    gives exactly those cells of the whole resize), so a small change in a large photo costs little."""
    r0, r1, c0, c1 = box
    size = before.shape[0]

    def cells(lo: int, hi: int, n: int) -> tuple[int, int, float]:
        scale = n / size
        support = max(scale, 1.0) + 1.0  # the filter's reach in source pixels, and a margin
        return max(0, int((lo - support) // scale)), min(size, int(-(-(hi + support) // scale))), scale

    i0, i1, sy = cells(r0, r1, image.height)
    j0, j1, sx = cells(c0, c1, image.width)
    out = before.copy()
    part = image.resize((j1 - j0, i1 - i0), Image.BILINEAR, box=(j0 * sx, i0 * sy, j1 * sx, i1 * sy))
    out[i0:i1, j0:j1] = np.asarray(part, np.float32) / 255
    return out


def to_working_size(
    rgb: np.ndarray | None,
    mask: np.ndarray,
    size: int,
    *,
    rgb8: np.ndarray | Image.Image | None = None,
    name: str = "image",
    require_both: bool = True,
) -> Working:
    """Resize a composite and its mask to size×size (see the module docstring).

    Args:
        rgb: float (H, W, 3) in [0, 1]; ``rgb8``: the same as uint8 when the input had 8 bits
            (then it is what gets resized, as the published test transform does, and ``rgb`` may
            be None).
        mask: bool (H, W), 1 = foreground.
        require_both: raise :class:`InputError` when the mask leaves no foreground or no
            background at the working size (the Harmonizer); False keeps the mask as it is.
    """
    s = int(size)
    composite = resize_image(rgb, s, rgb8=rgb8)
    weight = mask_coverage(mask, s)
    binary = weight >= 0.5
    if not binary.any():  # a tiny object: every pixel it touches
        binary = weight > 1e-6
    if binary.all():  # a tiny background: keep the pixels it touches as background
        binary = weight > 1 - 1e-4
    if require_both and (not binary.any() or binary.all()):
        raise InputError(f"{name}: the mask leaves no foreground or no background at the working size {s}x{s}")
    return Working(composite, weight, binary)


def fit_weight(working: Working, target: str = "foreground") -> np.ndarray:
    """Where the colour transform is fitted, (S, S) in [0, 1]: the coverage of the part the
    network changed (the foreground, or with ``target="background"`` the background)."""
    if target == "foreground":
        return np.where(working.mask, working.weight, 0.0)
    return np.where(working.mask, 0.0, 1.0 - working.weight)


def back_to_full_resolution(
    working: Working,
    output: np.ndarray,
    guide: np.ndarray | ImageData,
    region: np.ndarray,
    *,
    target: str = "foreground",
    method: str = "lift",
    radius: int = lifting.DEFAULT_RADIUS,
    eps: float = lifting.DEFAULT_EPS,
    guide_is_composite: bool = True,
    transform: Callable[[np.ndarray, tuple[float, float, float, float]], np.ndarray] | None = None,
    strength: float = 1.0,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The network's colour change at full resolution, inside ``region``'s bounding box.

    Args:
        working: the network's input (:func:`to_working_size`).
        output: the network's output at the working size, float (S, S, 3) in [0, 1].
        guide: the full-resolution image to recolour, uint8 or float (H, W, 3) in [0, 1], or an
            :class:`~bargainnet.io.ImageData` (only the box's pixels are read); the composite, or in
            paste mode the cut-out layer: then ``guide_is_composite=False``.
        region: bool (H, W), not empty: the pixels the caller will replace.
        target: "foreground" or "background" (which part the network changed).
        method: "auto" ("transform" when ``transform`` is given, else "lift"), "transform", "lift"
            (local affine colour transform) or "upsample".
        transform: the model's own colour transform (see :func:`transform_applier`).
        strength: how much of the change to apply: the result is ``guide + strength * (change)``,
            clipped to [0, 1]; 1 (default) = the change itself, 0 = the guide, above 1 amplified.

    Returns:
        float32 (r1-r0, c1-c0, 3) in [0, 1] and the box (r0, r1, c0, c1); write its pixels where
        ``region`` is True.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    box = lifting.bounding_box(region)
    if box is None:
        raise InputError("the region to harmonize is empty")
    if method == "auto":
        method = "transform" if transform is not None else "lift"
    new = _changed(working, output, guide, region, box, target=target, method=method, radius=radius, eps=eps,
                   guide_is_composite=guide_is_composite, transform=transform)
    if strength != 1:
        before = to_float(_crop(guide, box))
        new = np.clip(before + np.float32(strength) * (new - before), 0.0, 1.0, dtype=np.float32)
    return new, box


def _changed(working, output, guide, region, box, *, target, method, radius, eps, guide_is_composite, transform):
    """The box's pixels after the full change (:func:`back_to_full_resolution` at strength 1)."""
    r0, r1, c0, c1 = box
    if method == "transform":
        if transform is None:
            raise InputError("method 'transform' needs a model that predicts a colour transform; use lift")
        return apply_in_bands(transform, _crop(guide, box), box, region.shape)
    size = working.composite.shape[:2]
    if region.shape == size and guide_is_composite:
        return output[r0:r1, c0:c1]  # already at full resolution: the network output itself
    if method == "lift":
        coeffs = lifting.fit_local_affine(
            working.composite, output, fit_weight(working, target), radius=radius, eps=eps
        )
        return lifting.apply_affine(coeffs, to_float(_crop(guide, box)), full_shape=region.shape, offset=(r0, c0))
    height, width = region.shape
    return lifting.upsample(output, (width, height))[r0:r1, c0:c1]


def _crop(guide: np.ndarray | ImageData, box: tuple[int, int, int, int]) -> np.ndarray:
    r0, r1, c0, c1 = box
    return guide.crop(box) if isinstance(guide, ImageData) else guide[r0:r1, c0:c1]


def apply_in_bands(
    transform: Callable[[np.ndarray, tuple[float, float, float, float]], np.ndarray],
    pixels: np.ndarray,
    box: tuple[int, int, int, int],
    full_shape: tuple[int, int],
) -> np.ndarray:
    """``transform`` applied to ``pixels``, the box (r0, r1, c0, c1) of an image of ``full_shape``
    (uint8, or float in [0, 1]; (r1 - r0, c1 - c0, 3)), in bands of :data:`ROWS_PER_CHUNK` rows;
    each band's window is its place in the full image, as fractions."""
    r0, r1, c0, c1 = box
    height, width = full_shape
    out = np.empty((r1 - r0, c1 - c0, 3), np.float32)
    for top in range(r0, r1, ROWS_PER_CHUNK):
        bottom = min(top + ROWS_PER_CHUNK, r1)
        window = (top / height, c0 / width, (bottom - top) / height, (c1 - c0) / width)
        out[top - r0 : bottom - r0] = transform(pixels[top - r0 : bottom - r0], window)
    return out


def transform_applier(model, params: dict) -> Callable[[np.ndarray, tuple[float, float, float, float]], np.ndarray]:
    """A numpy function (h, w, 3) uint8 or float in [0, 1], window -> float (h, w, 3) that applies
    one image's predicted transform ``params`` (each value (1, ...), on the CPU) with
    ``model.apply_transform``."""
    import torch

    def apply(pixels: np.ndarray, window: tuple[float, float, float, float]) -> np.ndarray:
        dtype = np.uint8 if pixels.dtype == np.uint8 else np.float32
        x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=dtype)).permute(2, 0, 1)[None]
        with torch.inference_mode():
            y = model.apply_transform(x, params, window)
        return y[0].permute(1, 2, 0).numpy()

    return apply
