"""Joint transforms for (composite, mask, real) triplets — the published augmentation and the test
resize — and the conversion to the package's tensor conventions.

A transform is a callable ``t(composite, mask, real, generator=None) -> (composite, mask, real)``
on PIL images (RGB, L, RGB of one size) that applies the *same* geometry to all three. Randomness
comes from ``generator`` (a ``torch.Generator``) or, when None, torch's global generator, which
PyTorch seeds per DataLoader worker.

Published facts (docs/design.md §2): training = ``RandomResizedCrop(256, scale=(0.5, 1))`` + horizontal
flip, identical on the three images; test = bilinear resize to 256×256. Masks are resized
bilinearly and thresholded at > 127 (binary {0, 1}).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import InputError

MASK_THRESHOLD = 127  # mask pixel is foreground when its 8-bit value is > 127


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        h = w = size
    else:
        h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise InputError(f"transform size must be positive, got {size}")
    return h, w


def _rand(generator) -> float:
    import torch

    return float(torch.rand((), generator=generator))


def random_resized_crop_params(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator=None,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random crop covering ``scale`` of the area with aspect ratio in
    ``ratio`` (log-uniform); 10 tries, then the largest centred crop within ``ratio`` — the
    algorithm of torchvision's ``RandomResizedCrop.get_params``."""
    import torch

    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(torch.empty(()).uniform_(scale[0], scale[1], generator=generator))
        aspect = math.exp(float(torch.empty(()).uniform_(log_ratio[0], log_ratio[1], generator=generator)))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _check_triplet(composite: Image.Image, mask: Image.Image, real: Image.Image) -> None:
    if not (composite.size == mask.size == real.size):
        raise InputError(
            f"composite, mask and real must have one size, got {composite.size}, {mask.size}, "
            f"{real.size} (W, H)"
        )


# The photo regrading of ``TrainTransform(grade=p)``: another camera's or editor's rendering of the
# whole photo, drawn uniformly within these bounds (white balance and exposure in linear light,
# then saturation; no tone curve, which is the held-out benchmark family's kind of edit).
GRADE_BOUNDS = {"temperature": 0.5, "tint": 0.3, "ev": 0.5, "log_saturation": 0.3}


def regrade(x: np.ndarray, temperature: float, tint: float, ev: float, saturation: float) -> np.ndarray:
    """A whole photo's colour rendering changed: :func:`~bargainnet.data.perturb.white_balance`
    (``temperature``, ``tint``), ``ev`` stops of exposure, then saturation × ``saturation``;
    ``x`` float (..., 3) in [0, 1], result clipped to [0, 1]."""
    from .perturb import exposure, white_balance
    from .perturb import saturation as saturate

    return np.clip(saturate(exposure(white_balance(x, temperature, tint), ev), saturation), 0.0, 1.0)


class TrainTransform:
    """The published training augmentation: a random resized crop (same box for the three
    images) resized to ``size`` (bilinear, antialiased), then a horizontal flip with probability
    ``flip``. A crop whose mask is empty is redrawn (up to ``redraws`` times, then the smallest allowed
    crop centred on the object is used). ``size``: int or ``(H, W)``; ``scale``: area fraction range; ``ratio``: aspect
    range (torchvision's default 3/4–4/3).

    ``grade`` (not published; default 0) is the probability that the whole photo — composite and
    real alike, so the background stays identical and a harmonious sample stays harmonious — is
    rendered differently (:func:`regrade` with parameters drawn within :data:`GRADE_BOUNDS`): the
    same scenes under more colour renderings than the photo collection has."""

    def __init__(
        self,
        size: int | Sequence[int] = 256,
        scale: tuple[float, float] = (0.5, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: float = 0.5,
        redraws: int = 10,
        grade: float = 0.0,
    ):
        self.size = _size_hw(size)
        if not (0 < scale[0] <= scale[1] <= 1):
            raise InputError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0 <= grade <= 1:
            raise InputError(f"grade must be a probability in [0, 1], got {grade}")
        self.scale, self.ratio, self.flip, self.redraws, self.grade = tuple(scale), tuple(ratio), flip, redraws, grade

    def __repr__(self) -> str:
        graded = f", grade={self.grade}" if self.grade else ""
        return f"TrainTransform(size={self.size}, scale={self.scale}, ratio={self.ratio}, flip={self.flip}{graded})"

    def _fallback_box(self, mask: Image.Image) -> tuple[int, int, int, int]:
        # The smallest allowed square-ish crop centred on the object (clamped to the image), so
        # that a small object keeps as many pixels as possible.
        width, height = mask.size
        bbox = mask.point(lambda v: 255 if v > MASK_THRESHOLD else 0).getbbox()
        if bbox is None:
            return (0, 0, width, height)
        side_w = min(width, max(bbox[2] - bbox[0], round(math.sqrt(self.scale[0] * width * height))))
        side_h = min(height, max(bbox[3] - bbox[1], round(math.sqrt(self.scale[0] * width * height))))
        cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
        left = int(min(max(0, round(cx - side_w / 2)), width - side_w))
        top = int(min(max(0, round(cy - side_h / 2)), height - side_h))
        return (left, top, left + side_w, top + side_h)

    def __call__(self, composite, mask, real, generator=None):
        _check_triplet(composite, mask, real)
        h, w = self.size
        width, height = composite.size
        box = (0, 0, width, height)
        m = None
        for _ in range(self.redraws + 1):
            top, left, ch, cw = random_resized_crop_params(width, height, self.scale, self.ratio, generator)
            cand = (left, top, left + cw, top + ch)
            m = mask.resize((w, h), Image.BILINEAR, box=cand)
            if np.asarray(m).max() > MASK_THRESHOLD:
                box = cand
                break
        else:
            box = self._fallback_box(mask)
            m = mask.resize((w, h), Image.BILINEAR, box=box)
        c = composite.resize((w, h), Image.BILINEAR, box=box)
        r = real.resize((w, h), Image.BILINEAR, box=box)
        if self.flip and _rand(generator) < self.flip:
            c, m, r = (x.transpose(Image.FLIP_LEFT_RIGHT) for x in (c, m, r))
        if self.grade and _rand(generator) < self.grade:
            b = GRADE_BOUNDS
            params = {k: (2 * _rand(generator) - 1) * b[k] for k in ("temperature", "tint", "ev")}
            params["saturation"] = math.exp((2 * _rand(generator) - 1) * b["log_saturation"])
            c, r = (
                Image.fromarray(np.round(regrade(np.asarray(x, np.float64) / 255.0, **params) * 255.0).astype(np.uint8))
                for x in (c, r)
            )
        return c, m, r


class TestTransform:
    """The published test transform: bilinear resize of the three images to ``size`` (int or
    ``(H, W)``); the mask is thresholded afterwards (> 127)."""

    def __init__(self, size: int | Sequence[int] = 256):
        self.size = _size_hw(size)

    def __repr__(self) -> str:
        return f"TestTransform(size={self.size})"

    def __call__(self, composite, mask, real, generator=None):
        _check_triplet(composite, mask, real)
        h, w = self.size
        if composite.size == (w, h):
            return composite, mask, real
        return tuple(x.resize((w, h), Image.BILINEAR) for x in (composite, mask, real))


def train_transform(size: int | Sequence[int] = 256, scale: tuple[float, float] = (0.5, 1.0), **kwargs) -> TrainTransform:
    """The published training augmentation (see :class:`TrainTransform`)."""
    return TrainTransform(size, scale, **kwargs)


def test_transform(size: int | Sequence[int] = 256) -> TestTransform:
    """The published test resize (see :class:`TestTransform`)."""
    return TestTransform(size)


test_transform.__test__ = False  # not a pytest test when imported into a test module
TestTransform.__test__ = False


def to_tensors(composite, mask, real):
    """PIL/uint8 triplet -> ``(composite (3, H, W) [-1, 1], mask (1, H, W) {0, 1}, real (3, H, W)
    [-1, 1])`` float32 tensors; the mask is thresholded at > 127."""
    import torch

    def img(x):
        a = np.asarray(x, dtype=np.uint8)
        return torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0)

    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    fg = m if m.dtype == bool else m > MASK_THRESHOLD
    mt = torch.from_numpy(fg.astype(np.float32)[None])
    return img(composite), mt, img(real)
