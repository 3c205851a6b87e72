"""A per-image strength measured on the image's own background ("self-calibration").

The network's change on a composite is a guess whose right size it cannot know: the same change is
too little for one photo and too much for another. This module measures, for one image, how much of
the network's change is right *where the answer is known*: the network's colour change on the
foreground is summarised by a global affine colour map A (least squares over the foreground at the
working size); A⁻¹ is applied to a background patch of the foreground's own shape (the mask moved
to where it overlaps the object least), which makes a pseudo-composite whose real colours are the
photo's; the network harmonizes that patch, and the factor that best maps its change onto the
known correction (a least-squares projection over the patch's free pixels) is the strength for the
real foreground, scaled and clipped (:class:`~bargainnet.models.base.Calibration`). When no
placement leaves enough free background (a foreground covering most of the image) the fallback
strength is used.

It costs one more network call per image (all placements in one batch; several images' in one
call with :func:`measured_strengths`), at the working size or, with
the settings' ``size``, at a fraction of it. With ``null_ratio`` the same batch also holds each patch
left unperturbed: how much the network changes a patch that needs nothing is the yardstick for its
change on the real foreground, and a foreground changed not much more than that is most likely
harmonious already, so its strength is lowered in proportion.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..models.base import Calibration

#: the network on a batch: float (B, S, S, 3) composites in [0, 1] and bool (B, S, S) masks ->
#: float (B, S, S, 3) outputs in [0, 1]
Network = Callable[[np.ndarray, np.ndarray], np.ndarray]


def placements(mask: np.ndarray, count: int = 1, min_free: float = 0.5) -> list[np.ndarray]:
    """Up to ``count`` copies of ``mask`` shifted (cyclically, by multiples of a quarter of the
    image) to where they overlap the original least; only those whose pixels outside the original
    number at least ``min_free`` of its area."""
    h, w = mask.shape
    area = int(mask.sum())
    shifts = [(dy * h // 4, dx * w // 4) for dy in range(4) for dx in range(4) if dy or dx]
    moved = [np.roll(mask, s, axis=(0, 1)) for s in shifts]
    overlap = [int((m & mask).sum()) for m in moved]
    order = sorted(range(len(moved)), key=lambda i: (overlap[i], i))[:count]
    return [moved[i] for i in order if area - overlap[i] >= max(min_free * area, 1)]


def _with_ones(x: np.ndarray) -> np.ndarray:
    """Colours (N, 3) as float64 (N, 4) with a column of ones: what an affine colour map multiplies."""
    return np.concatenate([x, np.ones((len(x), 1))], axis=1, dtype=np.float64)


def colour_map(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The affine colour map (4, 3) with ``[source, 1] @ W ≈ target`` in the least-squares sense."""
    return np.linalg.lstsq(_with_ones(source), target.astype(np.float64), rcond=None)[0]


def inverse_map(w: np.ndarray) -> np.ndarray | None:
    """The inverse of an affine colour map (4, 3), or None when it is (nearly) singular."""
    a, b = w[:3], w[3]
    if abs(np.linalg.det(a)) < 1e-6:
        return None
    inv = np.linalg.inv(a)
    return np.concatenate([inv, (-b @ inv)[None]], axis=0)


def downsized(composite: np.ndarray, mask: np.ndarray, output: np.ndarray, size: int):
    """The three arrays box-averaged from S×S to ``size``×``size`` (S a whole multiple of it); the
    mask is the pixels at least half covered. Unchanged when ``size`` is 0 or S."""
    s = composite.shape[0]
    if not size or size == s:
        return composite, mask, output
    if s % size or composite.shape[1] != s:
        raise ValueError(f"the calibration size {size} must divide the working size {s}")
    f = s // size

    def shrink(x):
        total = sum(x[i::f, j::f].astype(np.float32) for i in range(f) for j in range(f))  # strided views: fast
        return total / np.float32(f * f)

    return shrink(composite), shrink(mask.astype(np.float32)) >= 0.5, shrink(output)


class _Measurement:
    """One image's calibration: the pseudo-composites it asks the network to harmonize (``batch``)
    and, from the network's outputs for them, its strength (:meth:`strength`)."""

    def __init__(self, composite: np.ndarray, mask: np.ndarray, output: np.ndarray, settings: Calibration):
        self.settings = settings
        self.composite, self.mask, self.output = downsized(composite, mask, output, settings.size)
        self.moved = placements(self.mask, settings.placements) if self.mask.any() else []
        self.null = settings.null_ratio > 0
        self.inverse = inverse_map(colour_map(self.composite[self.mask], self.output[self.mask])) if self.moved else None
        if self.inverse is None and not self.null:
            self.moved = []  # nothing to measure: the fallback
        self.pseudo = np.repeat(self.composite[None], len(self.moved), axis=0)
        if self.inverse is not None:
            for p, m in zip(self.pseudo, self.moved):
                p[m] = np.clip(_with_ones(self.composite[m]) @ self.inverse, 0.0, 1.0)

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The composites (N, s, s, 3) and masks (N, s, s) to harmonize; N = 0 when nothing can be measured."""
        if not self.moved:
            return self.pseudo, np.zeros((0, *self.mask.shape), bool)
        copies = 2 if self.null else 1
        images = np.concatenate([self.pseudo, self.composite[None].repeat(len(self.moved), axis=0)]) if self.null else self.pseudo
        return images, np.stack(self.moved * copies)

    def strength(self, result: np.ndarray) -> float:
        """The strength from the network's outputs for :meth:`batch`."""
        settings, composite, mask = self.settings, self.composite, self.mask
        strength = float(settings.fallback)
        if not self.moved:
            return strength
        if self.inverse is not None:
            num = den = 0.0
            for p, r, m in zip(self.pseudo, result, self.moved):
                free = m & ~mask
                change = (r[free] - p[free]).astype(np.float64)
                needed = (composite[free] - p[free]).astype(np.float64)
                num += float((change * needed).sum())
                den += float((change * change).sum())
            if den > 1e-9:
                strength = float(np.clip(settings.scale * num / den, settings.min_strength, settings.max_strength))
        if self.null:  # the foreground's change against the network's change on the unperturbed patches
            frees = [m & ~mask for m in self.moved]
            patch = np.concatenate([(r[f] - composite[f]).ravel() for r, f in zip(result[len(self.moved):], frees)])
            foreground = (self.output[mask] - composite[mask]).ravel()
            rho = _rms(foreground) / max(_rms(patch), 1e-6)
            strength *= min(1.0, rho / settings.null_ratio)
        return strength


def measured_strengths(
    images: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    network: Network,
    settings: Calibration = Calibration(),
) -> list[float]:
    """The strengths of several images, their pseudo-composites harmonized in one network call.

    Args:
        images: (composite, mask, output) per image at the working size: float (S, S, 3) in
            [0, 1], bool (S, S) foreground, the network's output for them (S may differ between
            images only when the settings' ``size`` brings them to one size).
        network: runs the network on pseudo-composites (see :data:`Network`).
        settings: the strength is ``clip(scale * k, min_strength, max_strength)`` for the factor k pooled
            over up to ``placements`` patches (measured at ``size``); ``fallback`` when nothing can
            be measured; times ``min(1, rho / null_ratio)`` when ``null_ratio`` > 0 (see
            :class:`~bargainnet.models.base.Calibration`).
    """
    measurements = [_Measurement(c, m, o, settings) for c, m, o in images]
    batches = [m.batch() for m in measurements]
    sizes = [len(masks) for _, masks in batches]
    results = np.zeros((0,))
    if any(sizes):
        results = network(np.concatenate([b[0] for b in batches if len(b[1])]),
                          np.concatenate([b[1] for b in batches if len(b[1])]))
    starts = np.cumsum([0] + sizes)
    return [m.strength(results[a:b]) for m, a, b in zip(measurements, starts[:-1], starts[1:])]


def measured_strength(
    composite: np.ndarray,
    mask: np.ndarray,
    output: np.ndarray,
    network: Network,
    settings: Calibration = Calibration(),
) -> float:
    """The strength for one image at the working size (see :func:`measured_strengths` and the
    module's docstring): composite float (S, S, 3) in [0, 1], mask bool (S, S), output the
    network's output for them."""
    return measured_strengths([(composite, mask, output)], network, settings)[0]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
