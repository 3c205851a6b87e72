"""Per-image harmonization metrics — MSE, PSNR, foreground MSE — under named protocols.

Papers in this field report MSE/PSNR/fMSE but compute them differently, so every number this
package reports names the protocol that produced it (docs/design.md §3):

``published``
    Exactly what the published BargainNet/DoveNet ``test.py`` does: the generator's *raw* output
    is scored (its background may drift); output and real image are converted to uint8 by
    *truncating* ``(x + 1) / 2 * 255``; MSE is the mean over all pixels and channels on [0, 255];
    PSNR uses ``data_range = output.max() - output.min()`` of that image (as
    ``skimage.metrics.peak_signal_noise_ratio(real, output, data_range=...)``); fMSE is the MSE of
    ``(output * m, real * m)`` times ``H * W / foreground area``, with ``m`` the binarised mask
    (resized nearest, as the data pipeline does for the 256×256 test resize).

``standard``
    The convention most later harmonization repositories use: the output is composited
    (``out * M + composite * (1 - M)``, so the background is the input's), values stay float on
    [0, 255] (clipped, no rounding), PSNR has a fixed peak of 255; MSE and fMSE as above.

Inputs are tensors or arrays in [-1, 1]: images ``(3, H, W)`` or ``(B, 3, H, W)``, masks
``(1, H, W)``/``(H, W)`` or ``(B, 1, H, W)`` with 1 = foreground. The plain functions
(:func:`mse`, :func:`psnr`, :func:`fmse`) take HWC or any-shaped arrays on [0, 255] and are tested
against ``skimage.metrics``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from .protocols import PROTOCOLS, Protocol, get_protocol

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "get_protocol",
    "to_uint8_truncate",
    "to_float255",
    "mse",
    "psnr",
    "fmse",
    "foreground_ratio",
    "image_metrics",
    "batch_metrics",
    "RATIO_BINS",
    "ratio_bin",
]


# --------------------------------------------------------------------------------------------
# conversions


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; torch stays out of this module's imports
        x = x.detach().to("cpu")
        if x.dtype.is_floating_point and x.dtype.itemsize < 4:  # bf16/fp16 have no numpy twin
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _chw_to_hwc(x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        return np.transpose(x, (1, 2, 0))
    if x.ndim == 4:
        return np.transpose(x, (0, 2, 3, 1))
    raise InputError(f"expected an image (3, H, W) or batch (B, 3, H, W), got shape {x.shape}")


def to_uint8_truncate(image: Any) -> np.ndarray:
    """``(x + 1) / 2 * 255`` truncated to uint8, as the published ``util.tensor2im``.

    ``image``: ``(3, H, W)`` or ``(B, 3, H, W)`` in [-1, 1] (tensor or array; float32 arithmetic
    as in the published code). Returns ``(H, W, 3)`` / ``(B, H, W, 3)`` uint8. Values are clipped
    to [0, 255] before the cast (a tanh output cannot leave it; the cast of out-of-range floats is
    undefined in numpy).
    """
    return _scale255(image, np.float32).astype(np.uint8)


def to_float255(image: Any) -> np.ndarray:
    """``(x + 1) / 2 * 255`` clipped to [0, 255], float64, channels last (``standard`` protocol)."""
    return _scale255(image, np.float64)


def _scale255(image: Any, dtype) -> np.ndarray:
    """``(x + 1) / 2 * 255`` clipped to [0, 255], computed in ``dtype``, channels last."""
    x = _chw_to_hwc(_numpy(image)).astype(dtype)
    return np.clip((x + 1.0) / 2.0 * 255.0, 0.0, 255.0)


# --------------------------------------------------------------------------------------------
# plain metrics on [0, 255] arrays


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over all elements, in float64 (as ``skimage.metrics.mean_squared_error``)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"mse: shapes differ: {a.shape} vs {b.shape}")
    return float(np.mean((a - b) ** 2))


def psnr(output: np.ndarray, target: np.ndarray, data_range: float) -> float:
    """``10 log10(data_range^2 / MSE)`` in dB (as ``skimage.metrics.peak_signal_noise_ratio``).

    Identical images give ``inf``; ``data_range`` 0 with a non-zero error gives ``-inf``.
    """
    err = mse(output, target)
    if err == 0.0:
        return math.inf
    if data_range == 0:
        return -math.inf
    return float(10.0 * np.log10(float(data_range) ** 2 / err))


def _mask2d(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    m = _numpy(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    elif m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.shape != shape:
        raise InputError(f"mask has shape {m.shape}, expected {shape} (the image's H, W)")
    return m > 0.5


def fmse(output: np.ndarray, target: np.ndarray, mask: Any) -> float:
    """Foreground MSE: ``MSE(output * m, target * m) * H * W / area(m)``.

    ``output``, ``target``: ``(H, W, C)`` on [0, 255]; ``mask``: ``(H, W)`` (or ``(1, H, W)``),
    binarised at 0.5. Equals the mean squared error per channel over foreground pixels. An empty
    mask gives ``nan`` (the published code divides by zero).
    """
    output = np.asarray(output, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if output.shape != target.shape or output.ndim != 3:
        raise InputError(f"fmse: expected two (H, W, C) arrays, got {output.shape}, {target.shape}")
    h, w = output.shape[:2]
    m = _mask2d(mask, (h, w))
    area = int(m.sum())
    if area == 0:
        return math.nan
    m3 = m[..., None].astype(np.float64)
    return mse(output * m3, target * m3) * h * w / area


def foreground_ratio(mask: Any) -> float:
    """Share of foreground pixels (mask > 0.5), in percent."""
    m = _numpy(mask)
    return float((m > 0.5).mean() * 100.0)


RATIO_BINS: tuple[tuple[str, float, float], ...] = (
    ("0-5%", 0.0, 5.0),
    ("5-15%", 5.0, 15.0),
    ("15-100%", 15.0, 100.0),
)


def ratio_bin(ratio_percent: float) -> str:
    """The foreground-ratio bin (supplement Table 1) of a ratio in percent: [0,5), [5,15), [15,100]."""
    for label, lo, hi in RATIO_BINS:
        if lo <= ratio_percent < hi or (hi == 100.0 and ratio_percent == 100.0):
            return label
    raise InputError(f"foreground ratio {ratio_percent} is outside [0, 100] %")


# --------------------------------------------------------------------------------------------
# protocol-level metrics


def image_metrics(
    output: Any,
    real: Any,
    mask: Any,
    protocol: str | Protocol = "published",
    composite: Any | None = None,
    fmse_mask: Any | None = None,
) -> dict[str, float]:
    """MSE, PSNR, fMSE and foreground ratio of one image under ``protocol``.

    ``output`` (the method's raw output), ``real`` and ``composite``: ``(3, H, W)`` in [-1, 1];
    ``mask``: ``(1, H, W)`` or ``(H, W)``, 1 = foreground (binarised at 0.5 for fMSE and
    compositing). ``composite`` is required by protocols that composite the output
    (``standard``). ``fmse_mask``: the mask for fMSE and the foreground ratio when it differs
    from ``mask`` (the published evaluation resizes it nearest while the model's input mask may
    be resized otherwise); default ``mask``. Returns ``{"mse", "psnr", "fmse", "fg_ratio"}``
    (fg_ratio in percent).
    """
    proto = get_protocol(protocol)
    out = _numpy(output)
    real_np = _numpy(real)
    if out.ndim != 3 or out.shape[0] != 3 or out.shape != real_np.shape:
        raise InputError(
            f"output and real must both be (3, H, W); got {out.shape} and {real_np.shape}"
        )
    h, w = out.shape[1:]
    m = _mask2d(mask, (h, w))
    if proto.composite_output:
        if composite is None:
            raise InputError(f"protocol {proto.name!r} needs the composite to composite the output")
        comp = _numpy(composite)
        if comp.shape != out.shape:
            raise InputError(f"composite has shape {comp.shape}, expected {out.shape}")
        m3 = m[None].astype(out.dtype)
        out = out * m3 + comp * (1 - m3)
    if proto.quantize:
        o, r = to_uint8_truncate(out), to_uint8_truncate(real_np)
    else:
        o, r = to_float255(out), to_float255(real_np)
    if proto.psnr_peak == "output_range":
        data_range = float(o.max()) - float(o.min())
    else:
        data_range = 255.0
    fm = m if fmse_mask is None else _mask2d(fmse_mask, (h, w))
    return {
        "mse": mse(o, r),
        "psnr": psnr(o, r, data_range),
        "fmse": fmse(o, r, fm),
        "fg_ratio": foreground_ratio(fm),
    }


def batch_metrics(
    output: Any,
    real: Any,
    mask: Any,
    protocol: str | Protocol = "published",
    composite: Any | None = None,
    fmse_mask: Any | None = None,
) -> list[dict[str, float]]:
    """:func:`image_metrics` for each image of a batch: ``(B, 3, H, W)``, masks ``(B, 1, H, W)``."""
    out, real_np, mask_np = _numpy(output), _numpy(real), _numpy(mask)
    if out.ndim != 4 or out.shape != real_np.shape or mask_np.shape[0] != out.shape[0]:
        raise InputError(
            f"batch_metrics expects output/real (B, 3, H, W) and mask (B, 1, H, W); got "
            f"{out.shape}, {real_np.shape}, {mask_np.shape}"
        )
    comp = None if composite is None else _numpy(composite)
    fm = None if fmse_mask is None else _numpy(fmse_mask)
    return [
        image_metrics(
            out[i], real_np[i], mask_np[i], protocol,
            None if comp is None else comp[i], None if fm is None else fm[i],
        )
        for i in range(out.shape[0])
    ]
