"""Classical colour transfer restricted to a region: the statistics of one masked region are moved
to those of another.

Three methods, used as classical harmonization baselines (transfer the background's statistics to
the foreground) and by the composite synthesizer (recolour a real object with another photo's
statistics, as iHarmony4's HCOCO/HFlickr were made):

- :func:`reinhard` — mean and standard deviation per channel in CIE Lab (Reinhard et al.,
  "Color Transfer between Images", IEEE CG&A 2001; Lab instead of lαβ, via scikit-image).
- :func:`histogram_match` — per-channel histogram matching in RGB (exact quantile mapping, as
  :func:`skimage.exposure.match_histograms`).
- :func:`covariance_transfer` — the linear Monge–Kantorovich map between the two RGB Gaussians
  (Pitié & Kokaram, "The linear Monge-Kantorovitch linear colour mapping for example-based colour
  transfer", CVMP 2007): mean and full 3×3 covariance.

Conventions shared by all three:

- ``image`` and ``reference`` are float arrays ``(H, W, 3)`` with values in ``[0, 1]`` (they may
  have different sizes); ``mask`` is ``(H, W)`` and ``reference_mask`` is the reference's
  ``(h, w)``, bool or float in ``[0, 1]`` (1 = region).
- Statistics are taken over the pixels whose mask is ``> 0.5``.
- The transferred value is applied with weight ``strength * mask`` (so soft mask edges blend);
  ``strength`` 0 returns the image unchanged, 1 applies the full transfer. Pixels whose mask is 0
  are returned bit-identical; the changed pixels are clipped to ``[0, 1]``.
- The result is a new array of the image's float dtype (computation is in float64).
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from ..errors import InputError

__all__ = ["reinhard", "histogram_match", "covariance_transfer", "METHODS", "apply_region"]

_EPS = 1e-6


def _check_image(name: str, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name} must have shape (H, W, 3), got {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"{name} must be a float array in [0, 1], got dtype {image.dtype}")
    if image.size and (not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0):
        raise InputError(
            f"{name} must hold finite values in [0, 1], got range "
            f"[{np.nanmin(image):.4g}, {np.nanmax(image):.4g}]"
        )
    return image


def _check_mask(name: str, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.shape != shape:
        raise InputError(f"{name} must have shape {shape} (the image's H, W), got {mask.shape}")
    mask = mask.astype(np.float64)
    if not np.isfinite(mask).all() or mask.min() < 0.0 or mask.max() > 1.0:
        raise InputError(f"{name} must hold values in [0, 1] (or be bool)")
    return mask


def _check_strength(strength: float) -> float:
    strength = float(strength)
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"strength must be in [0, 1], got {strength}")
    return strength


def apply_region(
    name: str,
    transfer: Callable[..., np.ndarray],
    image: np.ndarray,
    mask: np.ndarray,
    reference: np.ndarray,
    reference_mask: np.ndarray,
    strength: float = 1.0,
    **params,
) -> np.ndarray:
    """Validate the inputs, run ``transfer(src, stats_rows, ref, **params)`` and blend it into the region.

    ``src`` is float64 ``(N, 3)``: the pixels whose mask is > 0; ``stats_rows`` ``(N,)`` bool marks
    those with mask > 0.5 (the statistics set); ``ref`` ``(M, 3)`` the reference pixels with
    reference mask > 0.5. ``transfer`` returns the ``(N, 3)`` transferred values, which are blended
    with weight ``strength * mask`` and clipped to [0, 1]. Exposed so that other per-region colour
    maps share the validation and blending; see the module docstring for the conventions.
    """
    image = _check_image("image", image)
    reference = _check_image("reference", reference)
    m = _check_mask("mask", mask, image.shape[:2])
    rm = _check_mask("reference_mask", reference_mask, reference.shape[:2])
    strength = _check_strength(strength)
    if not (m > 0.5).any():
        raise InputError(f"{name}: mask is empty (no pixel > 0.5) for image of shape {image.shape}")
    if not (rm > 0.5).any():
        raise InputError(
            f"{name}: reference_mask is empty (no pixel > 0.5) for reference of shape "
            f"{reference.shape}"
        )
    out = image.copy()
    if strength == 0.0:
        return out
    touched = m > 0
    src = image[touched].astype(np.float64)  # (N, 3)
    stats_sel = m[touched] > 0.5
    ref = reference[rm > 0.5].astype(np.float64)  # (M, 3)
    new = transfer(src, stats_sel, ref, **params)
    w = (strength * m[touched])[:, None]
    blended = np.clip(src + w * (new - src), 0.0, 1.0)
    out[touched] = blended.astype(image.dtype)
    return out


# --------------------------------------------------------------------------------------------
# Reinhard: mean / std per channel in Lab


def _limit(gain: np.ndarray | float, max_gain: float | None):
    return gain if max_gain is None else np.clip(gain, 1.0 / max_gain, max_gain)


def _reinhard_map(src: np.ndarray, sel: np.ndarray, ref: np.ndarray, max_gain: float | None = None) -> np.ndarray:
    from skimage import color

    src_lab = color.rgb2lab(src)
    ref_lab = color.rgb2lab(ref)
    mu_s, sd_s = src_lab[sel].mean(0), src_lab[sel].std(0)
    mu_r, sd_r = ref_lab.mean(0), ref_lab.std(0)
    lab = (src_lab - mu_s) * _limit(sd_r / np.maximum(sd_s, _EPS), max_gain) + mu_r
    lab[:, 0] = np.clip(lab[:, 0], 0.0, 100.0)
    with warnings.catch_warnings():
        # Out-of-gamut Lab values are expected here; lab2rgb clips them (and says so).
        warnings.simplefilter("ignore", UserWarning)
        rgb = color.lab2rgb(lab)
    return np.clip(rgb, 0.0, 1.0)


def reinhard(
    image: np.ndarray,
    mask: np.ndarray,
    reference: np.ndarray,
    reference_mask: np.ndarray,
    strength: float = 1.0,
    max_gain: float | None = None,
) -> np.ndarray:
    """Reinhard colour transfer in CIE Lab (D65) inside ``mask``.

    ``image`` (H, W, 3) in [0, 1], ``mask`` (H, W); ``reference`` (h, w, 3), ``reference_mask``
    (h, w). Each Lab channel of the region is standardised with its own mean/std and rescaled to
    the reference region's mean/std: ``l' = (l - mu_s) * sd_r / sd_s + mu_r``. Returns a new
    (H, W, 3) array in [0, 1]; pixels with mask 0 are unchanged. Reference: Reinhard et al. 2001.
    ``max_gain`` (None = exact transfer) bounds the scale ``sd_r / sd_s`` to
    ``[1/max_gain, max_gain]``: a flat region matched to a varied one otherwise amplifies its noise.
    """
    return apply_region(
        "reinhard", _reinhard_map, image, mask, reference, reference_mask, strength, max_gain=max_gain
    )


# --------------------------------------------------------------------------------------------
# Histogram matching per RGB channel


def _match_channel(
    values: np.ndarray, stats_values: np.ndarray, ref: np.ndarray, max_gain: float | None = None
) -> np.ndarray:
    # Quantile mapping as skimage.exposure.match_histograms does it (empirical CDF of the source
    # region, interpolated into the reference region's quantiles); values outside the statistics
    # set (soft edge pixels) are placed on the same CDF by interpolation.
    s_vals, s_counts = np.unique(stats_values, return_counts=True)
    r_vals, r_counts = np.unique(ref, return_counts=True)
    s_q = np.cumsum(s_counts) / stats_values.size
    r_q = np.cumsum(r_counts) / ref.size
    mapped_levels = np.interp(s_q, r_q, r_vals)
    if max_gain is not None and len(s_vals) > 1:
        # Slope-limited version of the same monotone map, shifted to keep its mean.
        steps = np.minimum(np.diff(mapped_levels), max_gain * np.diff(s_vals))
        limited = mapped_levels[0] + np.concatenate([[0.0], np.cumsum(steps)])
        limited += np.sum(s_counts * (mapped_levels - limited)) / stats_values.size
        mapped_levels = limited
    return np.interp(values, s_vals, mapped_levels)


def _histogram_map(src: np.ndarray, sel: np.ndarray, ref: np.ndarray, max_gain: float | None = None) -> np.ndarray:
    return np.stack(
        [_match_channel(src[:, c], src[sel, c], ref[:, c], max_gain) for c in range(3)], axis=1
    )


def histogram_match(
    image: np.ndarray,
    mask: np.ndarray,
    reference: np.ndarray,
    reference_mask: np.ndarray,
    strength: float = 1.0,
    max_gain: float | None = None,
) -> np.ndarray:
    """Per-channel (RGB) histogram matching of the ``mask`` region to the reference region.

    Shapes/ranges as :func:`reinhard`. With a binary mask the region's values equal
    ``skimage.exposure.match_histograms(region, reference_region, channel_axis=-1)``.
    ``max_gain`` (None = exact) bounds the slope of each channel's map (then shifted to keep
    its mean), so that a flat region's noise is not stretched into colour speckle.
    """
    return apply_region(
        "histogram_match", _histogram_map, image, mask, reference, reference_mask, strength, max_gain=max_gain
    )


# --------------------------------------------------------------------------------------------
# Linear Monge-Kantorovich (covariance) transfer


def _sym_sqrt(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric square root and inverse square root of a PSD matrix (negative round-off
    eigenvalues set to 0; the inverse of a singular matrix is not used)."""
    w, v = np.linalg.eigh((c + c.T) / 2)
    w = np.maximum(w, 0.0)
    root = np.sqrt(w)
    inv = np.divide(1.0, root, out=np.zeros_like(root), where=root > 0)
    return (v * root) @ v.T, (v * inv) @ v.T


_MKL_REG = 1e-8  # added to both covariances (variance of 1e-4 in [0, 1] units, << one 8-bit level)


def mkl_matrix(cov_source: np.ndarray, cov_target: np.ndarray) -> np.ndarray:
    """The linear Monge–Kantorovich map ``A`` with ``A @ cov_source @ A.T == cov_target``.

    ``A = S^-1/2 (S^1/2 T S^1/2)^1/2 S^-1/2`` (symmetric positive semi-definite), with ``S``,
    ``T`` 3×3 covariances, each regularised by ``1e-8 * I`` so that a flat region stays finite.
    """
    eye = _MKL_REG * np.eye(3)
    s_half, s_inv_half = _sym_sqrt(cov_source + eye)
    mid, _ = _sym_sqrt(s_half @ (cov_target + eye) @ s_half)
    return s_inv_half @ mid @ s_inv_half


def _covariance_map(src: np.ndarray, sel: np.ndarray, ref: np.ndarray, max_gain: float | None = None) -> np.ndarray:
    stats = src[sel]
    mu_s, mu_r = stats.mean(0), ref.mean(0)
    cov_s = np.cov(stats, rowvar=False, bias=True) if len(stats) > 1 else np.zeros((3, 3))
    cov_r = np.cov(ref, rowvar=False, bias=True) if len(ref) > 1 else np.zeros((3, 3))
    a = mkl_matrix(cov_s, cov_r)
    if max_gain is not None:
        w, v = np.linalg.eigh(a)
        a = (v * _limit(w, max_gain)) @ v.T
    return (src - mu_s) @ a.T + mu_r


def covariance_transfer(
    image: np.ndarray,
    mask: np.ndarray,
    reference: np.ndarray,
    reference_mask: np.ndarray,
    strength: float = 1.0,
    max_gain: float | None = None,
) -> np.ndarray:
    """Linear Monge–Kantorovich colour transfer (mean + 3×3 RGB covariance) inside ``mask``.

    ``x' = A (x - mu_s) + mu_r`` with ``A`` from :func:`mkl_matrix`; shapes/ranges as
    :func:`reinhard`. ``max_gain`` (None = exact) clips the eigenvalues of the symmetric ``A`` to
    ``[1/max_gain, max_gain]``. Reference: Pitié & Kokaram, CVMP 2007.
    """
    return apply_region(
        "covariance_transfer", _covariance_map, image, mask, reference, reference_mask, strength, max_gain=max_gain
    )


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "reinhard": reinhard,
    "histogram": histogram_match,
    "covariance": covariance_transfer,
}
