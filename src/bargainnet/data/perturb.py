"""Perturbations that turn a real photo into an inharmonious composite by changing its object
only — the families of the synthesizer, the first three modelled on how iHarmony4 was made
(docs/design.md §4):

- ``transfer`` (like HCOCO / HFlickr): the object's colour statistics are moved to those of
  another photo's object or whole image, by Reinhard (Lab mean/std), per-channel histogram
  matching or covariance (linear Monge–Kantorovich) transfer, at a random strength;
- ``retouch`` (like HAdobe5k): a few photographic edits — exposure, white balance
  (temperature/tint), contrast, saturation, gamma, tone curve, hue;
- ``illumination`` (like Hday2night): a global light change — dusk, night, overcast,
  darkening, bright daylight;
- ``mixing``: a camera's colour rendering — a random near-identity 3×3 colour matrix in linear light;
- ``camera``: white balance and exposure of another capture, in linear light;
- ``lighting``: local light — a smooth spatial gain field over the object (a gradient or a
  spot, optionally tinted), in linear light;
- ``haze``: atmosphere and faded prints — a blend toward a haze colour in linear light, or lifted
  blacks and lowered contrast.

Every family takes a ``strength`` in [0, 1] (drawn uniformly when None): 0 returns the image
unchanged, 1 the strongest change of its range, so composites run from barely changed to
clearly wrong. Per-channel tone curves (a different gamma or curve for R, G and B) are
deliberately absent: that family is held out for evaluation.

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

FAMILIES = ("transfer", "retouch", "illumination", "mixing", "camera", "lighting", "haze")

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
    strength_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[np.ndarray, dict[str, Any]]:
    """Colour-statistics transfer from ``reference`` (float (h, w, 3) in [0, 1]) — its object
    (``reference_mask``) when given, else the whole image — to the object of ``image``.

    ``method`` one of ``reinhard``, ``histogram``, ``covariance`` (random when None); ``strength``
    uniform in ``strength_range`` (default [0, 1]) when None (0: unchanged). ``max_gain`` bounds how much the transfer may stretch the
    object's variations (see :mod:`bargainnet.evaluation.color_transfer`): without it a flat object matched
    to a colourful reference turns into colour speckle, which no real capture produces.
    """
    _validate(image, mask)
    method = method or str(rng.choice(sorted(color_transfer.METHODS)))
    if method not in color_transfer.METHODS:
        raise InputError(f"unknown transfer method {method!r}; known: {', '.join(color_transfer.METHODS)}")
    strength = float(rng.uniform(*strength_range)) if strength is None else _strength(rng, strength)
    if strength == 0:
        return image.copy(), {"method": method, "strength": 0.0}
    ref_mask = np.ones(reference.shape[:2]) if reference_mask is None else reference_mask
    out = color_transfer.METHODS[method](
        image, (np.asarray(mask) > 0.5), reference, ref_mask, strength, max_gain=max_gain
    )
    return out, {"method": method, "strength": round(strength, 4), "reference_region": "whole" if reference_mask is None else "object"}


RETOUCH_EDITS = ("exposure", "white_balance", "contrast", "saturation", "gamma", "tone_curve", "hue")


def _draw_edit(name: str, rng: np.random.Generator, s: float = 1.0) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    sign = s if rng.random() < 0.5 else -s
    if name == "exposure":
        ev = sign * rng.uniform(0.4, 1.5)
        return (lambda x: exposure(x, ev)), {"ev": ev}
    if name == "white_balance":
        t, n = sign * rng.uniform(0.3, 1.0), s * rng.uniform(-0.5, 0.5)
        return (lambda x: white_balance(x, t, n)), {"temperature": t, "tint": n}
    if name == "contrast":
        a = float(np.exp(sign * rng.uniform(0.2, 0.6)))
        return (lambda x: contrast(x, a)), {"amount": a}
    if name == "saturation":
        a = float(np.exp(sign * rng.uniform(0.3, 1.0)))
        return (lambda x: saturation(x, a)), {"amount": a}
    if name == "gamma":
        # the same exponent on R, G and B: a per-channel curve is the held-out `curves` family
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
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    edits: tuple[str, ...] | None = None,
    strength: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A photographic retouch of the object: 2–4 random edits from :data:`RETOUCH_EDITS` (or the
    named ``edits``) with random parameters, applied in sequence. ``strength`` scales every edit
    toward no change (exposure, temperature, tone amount and hue linearly; contrast, saturation
    and gamma in the log domain)."""
    _validate(image, mask)
    if edits is None:
        k = int(rng.integers(2, 5))
        edits = tuple(str(e) for e in rng.choice(RETOUCH_EDITS, size=k, replace=False))
    s = _strength(rng, strength)
    if s == 0:
        return image.copy(), {"strength": 0.0, "edits": {}}
    fns, params = [], {}
    for name in edits:
        fn, p = _draw_edit(name, rng, s)
        fns.append(fn)
        params[name] = {k: round(float(v), 4) for k, v in p.items()}

    def run(x: np.ndarray) -> np.ndarray:
        for fn in fns:
            x = np.clip(fn(x), 0.0, 1.0)
        return x

    return apply_to_region(image, mask, run), {"strength": round(s, 4), "edits": params}


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
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    kind: str | None = None,
    strength: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A global light change of the object: one of :data:`ILLUMINATIONS` (random when ``kind`` is
    None) with random parameters, blended with the original by ``strength``."""
    _validate(image, mask)
    kind = kind or str(rng.choice(ILLUMINATIONS, p=[0.25, 0.25, 0.2, 0.2, 0.1]))
    s = _strength(rng, strength)
    if s == 0:
        return image.copy(), {"kind": kind, "strength": 0.0}
    fn, p = _illumination_fn(kind, rng)
    params = {k: (round(float(v), 4) if np.isscalar(v) else [round(float(u), 4) for u in v]) for k, v in p.items()}
    blend = fn if s == 1 else (lambda x: x + s * (fn(x) - x))  # s = 1: exactly the light model
    return apply_to_region(image, mask, blend), {"kind": kind, "strength": round(s, 4), **params}


# --------------------------------------------------------------------------------------------
# camera and illumination changes in linear light


def _strength(rng: np.random.Generator, strength: float | None) -> float:
    if strength is None:
        return float(rng.uniform(0.0, 1.0))
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"strength must be in [0, 1], got {strength}")
    return float(strength)


def _rounded(p: dict) -> dict:
    return {k: (v if isinstance(v, str) else round(float(v), 4) if np.isscalar(v)
                else np.round(np.asarray(v, float), 4).tolist()) for k, v in p.items()}


def mixing(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, strength: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Channel mixing: the object's linear RGB multiplied by a random near-identity 3×3 matrix
    ``I + strength · N`` (N's entries uniform in ±0.3), scaled so that white keeps its
    luminance — another camera's colour rendering (sensor → RGB matrix)."""
    _validate(image, mask)
    s = _strength(rng, strength)
    if s == 0:
        return image.copy(), {"strength": 0.0}
    m = np.eye(3) + s * rng.uniform(-0.3, 0.3, (3, 3))
    m /= _LUMA @ m @ np.ones(3)
    return apply_to_region(image, mask, lambda x: linear_to_srgb(srgb_to_linear(x) @ m.T)), _rounded(
        {"strength": s, "matrix": m})


def camera(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, strength: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Another capture's white balance and exposure, in linear light: exposure
    ``strength · U(±2)`` EV, temperature ``strength · U(±1.2)``, tint ``strength · U(±0.8)``
    (see :func:`white_balance`)."""
    _validate(image, mask)
    s = _strength(rng, strength)
    if s == 0:
        return image.copy(), {"strength": 0.0}
    ev, t, n = s * rng.uniform(-2, 2), s * rng.uniform(-1.2, 1.2), s * rng.uniform(-0.8, 0.8)
    g = np.array([2.0 ** (0.5 * t), 2.0 ** (-0.5 * n), 2.0 ** (-0.5 * t)])
    g = g / (g @ _LUMA) * 2.0**ev
    return apply_to_region(image, mask, lambda x: channel_gains(x, g)), _rounded(
        {"strength": s, "ev": ev, "temperature": t, "tint": n})


def lighting(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, strength: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Local light on the object: linear RGB times a smooth gain field ``2**ev(y, x)`` laid over
    the object's bounding box — a linear gradient in a random direction or a soft spot (a light
    the background does not share) — with a range of ``strength · U(0.5, 2.5)`` EV, optionally
    warm or cool (the gain of R and B follows the field by up to ±25 %)."""
    image, region = _validate(image, mask)
    s = _strength(rng, strength)
    kind = "gradient" if rng.random() < 0.6 else "spot"
    if s == 0:
        return image.copy(), {"strength": 0.0, "kind": kind}
    ys, xs = np.nonzero(region)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    ry, rx = max(1.0, (ys.max() - ys.min()) / 2), max(1.0, (xs.max() - xs.min()) / 2)
    v, u = (ys - cy) / ry, (xs - cx) / rx  # object coordinates in about [-1, 1]
    span = s * rng.uniform(0.5, 2.5)
    if kind == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        field = 0.5 * (np.cos(theta) * u + np.sin(theta) * v)  # in [-0.5, 0.5] over the box
        offset = rng.uniform(-0.5, 0.5)
        ev = span * (field + 0.5 * offset)
        extra = {"angle_deg": np.rad2deg(theta), "offset": offset}
    else:
        sy, sx = rng.uniform(-0.7, 0.7, 2)
        width = rng.uniform(0.4, 1.2)
        bright = 1.0 if rng.random() < 0.6 else -1.0
        field = np.exp(-((u - sx) ** 2 + (v - sy) ** 2) / (2 * width**2))
        ev = bright * span * (field - 0.5)
        extra = {"centre": [sx, sy], "width": width, "sign": bright}
    tint = s * rng.uniform(-0.25, 0.25) if rng.random() < 0.5 else 0.0
    gains = 2.0 ** (ev[:, None] * np.array([1.0 + tint, 1.0, 1.0 - tint]))
    out = image.copy()
    x = image[region].astype(np.float64)
    out[region] = np.clip(linear_to_srgb(srgb_to_linear(x) * gains), 0.0, 1.0).astype(image.dtype)
    return out, _rounded({"strength": s, "kind": kind, "range_ev": span, "tint": tint, **extra})


def haze(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, strength: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Haze or fade of the object. ``haze``: linear RGB blended toward an airlight colour (a
    light gray, bluish or warm) by ``strength · U(0.2, 0.7)``; ``fade``: blacks lifted by
    ``strength · U(0.05, 0.3)`` and whites lowered by up to half that (lower contrast, the same
    on every channel), with a slight desaturation."""
    _validate(image, mask)
    s = _strength(rng, strength)
    kind = "haze" if rng.random() < 0.5 else "fade"
    if s == 0:
        return image.copy(), {"strength": 0.0, "kind": kind}
    if kind == "haze":
        colour = rng.uniform(0.55, 0.95) + rng.uniform(-0.08, 0.08, 3)
        colour = np.clip(colour, 0.0, 1.0)
        a = s * rng.uniform(0.2, 0.7)
        lin_c = srgb_to_linear(colour)
        fn = lambda x: linear_to_srgb((1 - a) * srgb_to_linear(x) + a * lin_c)  # noqa: E731
        p = {"strength": s, "kind": kind, "amount": a, "colour": colour}
    else:
        lift = s * rng.uniform(0.05, 0.3)
        top = 1.0 - rng.uniform(0.0, 0.5) * lift
        sat = 1.0 - s * rng.uniform(0.0, 0.3)
        fn = lambda x: saturation(lift + (top - lift) * x, sat)  # noqa: E731
        p = {"strength": s, "kind": kind, "lift": lift, "white": top, "saturation": sat}
    return apply_to_region(image, mask, fn), _rounded(p)


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
    min_fmse: float = 0.0,
    max_fmse: float = 8000.0,
    max_clipped: float = 0.4,
) -> str | None:
    """Why a composite should be redrawn, or None when it is acceptable.

    ``too_small``: foreground MSE (on [0, 255]) below ``min_fmse`` (0 by default: mild changes are
    wanted, so that a model also learns to leave nearly harmonious objects alone);
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
