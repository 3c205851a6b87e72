"""Perturbations that turn a real photo into an inharmonious composite by changing its object
only — the three families of the synthesizer, modelled on how iHarmony4 was made (DESIGN §2):

- ``transfer`` (like HCOCO / HFlickr): the object's colour statistics are moved to those of
  another photo's object or whole image, by Reinhard (Lab mean/std), per-channel histogram
  matching or covariance (linear Monge–Kantorovich) transfer, at a random strength;
- ``retouch`` (like HAdobe5k): a few photographic edits — exposure, white balance
  (temperature/tint), contrast, saturation, gamma, tone curve, hue;
- ``illumination`` (like Hday2night): a strong global light change — dusk, night, overcast,
  darkening, bright daylight.

Everything is a plain numpy function. Pixel operations (:func:`exposure`, :func:`white_balance`,
...) take float arrays ``(..., 3)`` in [0, 1] and return the same shape (values may leave [0, 1]
before the final clip). Family functions take ``image`` float ``(H, W, 3)`` in [0, 1], ``mask``
``(H, W)`` (bool or float, > 0.5 = object) and a ``numpy.random.Generator``, and return
``(composite, params)``: a new array in [0, 1] whose pixels outside the mask are bit-identical to
``image``, and a JSON-able dict describing the draw.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..evaluation import color_transfer

FAMILIES = ("transfer", "retouch", "illumination")

_LUMA = np.array([0.2126, 0.7152, 0.0722])


# --------------------------------------------------------------------------------------------
# pixel operations on (..., 3) float arrays


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB transfer function inverse (IEC 61966-2-1), x in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """sRGB transfer function (IEC 61966-2-1); input clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def exposure(x: np.ndarray, ev: float) -> np.ndarray:
    """Exposure change of ``ev`` stops: linear light multiplied by ``2**ev``."""
    return linear_to_srgb(srgb_to_linear(x) * 2.0**ev)


def channel_gains(x: np.ndarray, gains) -> np.ndarray:
    """Per-channel gains ``(r, g, b)`` applied in linear light (a colour cast)."""
    return linear_to_srgb(srgb_to_linear(x) * np.asarray(gains, dtype=np.float64))


def white_balance(x: np.ndarray, temperature: float, tint: float = 0.0) -> np.ndarray:
    """White-balance shift: ``temperature`` > 0 warmer (more red, less blue), < 0 cooler;
    ``tint`` > 0 more magenta (less green), < 0 greener; both about in [-1, 1]. Gains are
    normalised to keep the luminance of gray."""
    g = np.array([2.0 ** (0.5 * temperature), 2.0 ** (-0.5 * tint), 2.0 ** (-0.5 * temperature)])
    g /= g @ _LUMA
    return channel_gains(x, g)


def contrast(x: np.ndarray, amount: float, pivot: float = 0.5) -> np.ndarray:
    """Contrast scaled by ``amount`` (> 1 more, < 1 less) around ``pivot``."""
    return (x - pivot) * amount + pivot


def saturation(x: np.ndarray, amount: float) -> np.ndarray:
    """Saturation scaled by ``amount`` around the Rec. 709 luma (0 = gray, 1 = unchanged)."""
    luma = (x @ _LUMA)[..., None]
    return luma + amount * (x - luma)


def gamma(x: np.ndarray, g: float) -> np.ndarray:
    """``x ** g`` (g > 1 darkens the mid-tones)."""
    return np.clip(x, 0.0, 1.0) ** g


def tone_curve(x: np.ndarray, amount: float) -> np.ndarray:
    """A monotone S-curve (``amount`` in (0, 1]: more contrast in the mid-tones) or its inverse
    (``amount`` in [-1, 0)): ``x + amount * (smoothstep(x) - x)``."""
    x = np.clip(x, 0.0, 1.0)
    return x + amount * (x * x * (3 - 2 * x) - x)


def hue_rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    """Rotation of the colours about the gray axis by ``degrees`` (Rodrigues' formula)."""
    t = np.deg2rad(degrees)
    k = np.ones(3) / np.sqrt(3.0)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    r = np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * (kx @ kx)
    return x @ r.T


# --------------------------------------------------------------------------------------------
# applying a pixel map to a region


def _validate(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"image must be float (H, W, 3) in [0, 1], got {image.dtype} {image.shape}")
    m = np.asarray(mask)
    if m.shape != image.shape[:2]:
        raise InputError(f"mask must have shape {image.shape[:2]}, got {m.shape}")
    region = m > 0.5
    if not region.any():
        raise InputError(f"mask is empty for image of shape {image.shape}")
    return image, region


def apply_to_region(image: np.ndarray, mask: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``image`` with ``fn`` applied to the pixels whose mask is > 0.5, clipped to [0, 1];
    other pixels are bit-identical. ``fn`` maps float64 ``(N, 3)`` to ``(N, 3)``."""
    image, region = _validate(image, mask)
    out = image.copy()
    out[region] = np.clip(fn(image[region].astype(np.float64)), 0.0, 1.0).astype(image.dtype)
    return out


# --------------------------------------------------------------------------------------------
# families


def transfer(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    reference: np.ndarray,
    reference_mask: np.ndarray | None = None,
    method: str | None = None,
    strength: float | None = None,
    max_gain: float | None = 3.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Colour-statistics transfer from ``reference`` (float (h, w, 3) in [0, 1]) — its object
    (``reference_mask``) when given, else the whole image — to the object of ``image``.

    ``method`` one of ``reinhard``, ``histogram``, ``covariance`` (random when None); ``strength``
    uniform in [0.6, 1] when None. ``max_gain`` bounds how much the transfer may stretch the
    object's variations (see :mod:`bargainnet.color_transfer`): without it a flat object matched
    to a colourful reference turns into colour speckle, which no real capture produces.
    """
    _validate(image, mask)
    method = method or str(rng.choice(sorted(color_transfer.METHODS)))
    if method not in color_transfer.METHODS:
        raise InputError(f"unknown transfer method {method!r}; known: {', '.join(color_transfer.METHODS)}")
    strength = float(rng.uniform(0.6, 1.0) if strength is None else strength)
    ref_mask = np.ones(reference.shape[:2]) if reference_mask is None else reference_mask
    out = color_transfer.METHODS[method](
        image, (np.asarray(mask) > 0.5), reference, ref_mask, strength, max_gain=max_gain
    )
    return out, {"method": method, "strength": round(strength, 4), "reference_region": "whole" if reference_mask is None else "object"}


RETOUCH_EDITS = ("exposure", "white_balance", "contrast", "saturation", "gamma", "tone_curve", "hue")


def _draw_edit(name: str, rng: np.random.Generator) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if name == "exposure":
        ev = sign * rng.uniform(0.4, 1.5)
        return (lambda x: exposure(x, ev)), {"ev": ev}
    if name == "white_balance":
        t, n = sign * rng.uniform(0.3, 1.0), rng.uniform(-0.5, 0.5)
        return (lambda x: white_balance(x, t, n)), {"temperature": t, "tint": n}
    if name == "contrast":
        a = float(np.exp(sign * rng.uniform(0.2, 0.6)))
        return (lambda x: contrast(x, a)), {"amount": a}
    if name == "saturation":
        a = float(np.exp(sign * rng.uniform(0.3, 1.0)))
        return (lambda x: saturation(x, a)), {"amount": a}
    if name == "gamma":
        g = float(np.exp(sign * rng.uniform(0.2, 0.6)))
        return (lambda x: gamma(x, g)), {"gamma": g}
    if name == "tone_curve":
        a = sign * rng.uniform(0.4, 1.0)
        return (lambda x: tone_curve(x, a)), {"amount": a}
    if name == "hue":
        d = sign * rng.uniform(10, 40)
        return (lambda x: hue_rotate(x, d)), {"degrees": d}
    raise InputError(f"unknown retouch edit {name!r}; known: {', '.join(RETOUCH_EDITS)}")


def retouch(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, edits: tuple[str, ...] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """A photographic retouch of the object: 2–4 random edits from :data:`RETOUCH_EDITS` (or the
    named ``edits``) with random parameters, applied in sequence."""
    _validate(image, mask)
    if edits is None:
        k = int(rng.integers(2, 5))
        edits = tuple(str(e) for e in rng.choice(RETOUCH_EDITS, size=k, replace=False))
    fns, params = [], {}
    for name in edits:
        fn, p = _draw_edit(name, rng)
        fns.append(fn)
        params[name] = {k: round(float(v), 4) for k, v in p.items()}

    def run(x: np.ndarray) -> np.ndarray:
        for fn in fns:
            x = np.clip(fn(x), 0.0, 1.0)
        return x

    return apply_to_region(image, mask, run), {"edits": params}


ILLUMINATIONS = ("dusk", "night", "overcast", "darken", "daylight")


def _illumination_fn(kind: str, rng: np.random.Generator) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    if kind == "dusk":
        ev = -rng.uniform(0.2, 1.0)
        g = (1.0, rng.uniform(0.7, 0.85), rng.uniform(0.4, 0.6))
        c = rng.uniform(0.8, 0.95)
        return (lambda x: contrast(channel_gains(exposure(x, ev), g), c, 0.3)), {"ev": ev, "gains": g, "contrast": c}
    if kind == "night":
        ev = -rng.uniform(0.8, 2.0)
        g = (rng.uniform(0.55, 0.75), rng.uniform(0.75, 0.9), 1.0)
        s = rng.uniform(0.3, 0.6)
        return (lambda x: saturation(channel_gains(exposure(x, ev), g), s)), {"ev": ev, "gains": g, "saturation": s}
    if kind == "overcast":
        s = rng.uniform(0.35, 0.7)
        c = rng.uniform(0.6, 0.85)
        ev = -rng.uniform(0.2, 0.8)
        g = (rng.uniform(0.85, 0.95), rng.uniform(0.92, 1.0), 1.0)
        return (lambda x: channel_gains(contrast(saturation(exposure(x, ev), s), c, 0.45), g)), {
            "ev": ev, "saturation": s, "contrast": c, "gains": g}
    if kind == "darken":
        ev = -rng.uniform(0.6, 1.6)
        g = tuple(rng.uniform(0.85, 1.0, 3))
        return (lambda x: channel_gains(exposure(x, ev), g)), {"ev": ev, "gains": g}
    if kind == "daylight":
        ev = rng.uniform(0.6, 1.5)
        g = (1.0, rng.uniform(0.9, 0.97), rng.uniform(0.75, 0.9))
        s = rng.uniform(1.05, 1.3)
        return (lambda x: saturation(channel_gains(exposure(x, ev), g), s)), {"ev": ev, "gains": g, "saturation": s}
    raise InputError(f"unknown illumination {kind!r}; known: {', '.join(ILLUMINATIONS)}")


def illumination(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, kind: str | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """A strong global light change of the object: one of :data:`ILLUMINATIONS` (random when
    ``kind`` is None) with random parameters."""
    _validate(image, mask)
    kind = kind or str(rng.choice(ILLUMINATIONS, p=[0.25, 0.25, 0.2, 0.2, 0.1]))
    fn, p = _illumination_fn(kind, rng)
    params = {k: (round(float(v), 4) if np.isscalar(v) else [round(float(u), 4) for u in v]) for k, v in p.items()}
    return apply_to_region(image, mask, fn), {"kind": kind, **params}


# --------------------------------------------------------------------------------------------
# acceptance


def foreground_mse(composite: np.ndarray, real: np.ndarray, mask: np.ndarray) -> float:
    """MSE on the [0, 255] scale over the object's pixels and channels (the per-image fMSE)."""
    region = np.asarray(mask) > 0.5
    d = (np.asarray(composite, np.float64)[region] - np.asarray(real, np.float64)[region]) * 255.0
    return float(np.mean(d * d))


def rejection_reason(
    composite: np.ndarray,
    real: np.ndarray,
    mask: np.ndarray,
    min_fmse: float = 100.0,
    max_fmse: float = 8000.0,
    max_clipped: float = 0.4,
) -> str | None:
    """Why a composite should be redrawn, or None when it is acceptable.

    ``too_small``: foreground MSE (on [0, 255]) below ``min_fmse`` — no visible inharmony;
    ``too_large``: above ``max_fmse``; ``clipped``: the share of object pixels with all three
    channels at 0 or at 1 grew by more than ``max_clipped`` (the object burnt to white or black).
    """
    f = foreground_mse(composite, real, mask)
    if f < min_fmse:
        return "too_small"
    if f > max_fmse:
        return "too_large"
    region = np.asarray(mask) > 0.5

    def clipped(x):
        x = np.asarray(x)[region]
        return float(np.mean((x <= 1 / 255).all(1) | (x >= 254 / 255).all(1)))

    if clipped(composite) - clipped(real) > max_clipped:
        return "clipped"
    return None
