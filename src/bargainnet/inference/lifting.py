"""Full-resolution colour lifting: apply the network's low-resolution colour change at any size.

BargainNet runs at a fixed size (256x256). Upsampling its output blurs a 4000x3000 photo to the
detail of a 256x256 thumbnail. Instead we fit, inside the foreground, a smooth per-pixel affine
colour transform ``out(x) = A(x) @ comp(x) + b(x)`` (A: 3x3, b: 3) that maps the low-resolution
composite to the low-resolution output, and apply it to the full-resolution composite: the colour
change is carried over, the full-resolution detail is kept.

The fit is a masked, regularised local linear regression in the style of the guided filter
(He, Sun & Tang, "Guided Image Filtering", TPAMI 2013, colour-guide form; and its fast variant,
He & Sun 2015, which fits coefficients at low resolution and upsamples them bilinearly):

* per window of radius ``radius`` (low-resolution pixels), weighted by the foreground coverage
  ``w``: means mu_I, mu_p, covariance Sigma = cov(I, I), C = cov(p, I);
* ``A = (C + lam * A_g) (Sigma + lam * Id)^-1``, ``b = mu_p - A mu_I``, with ``lam = eps / f`` where
  f is the window's foreground fraction: windows with little foreground lean on the global affine
  fit (A_g, b_g) of the whole foreground; windows without foreground take it outright;
* the coefficient maps are box-averaged once more (as in the guided filter), bilinearly upsampled
  to full resolution and applied there, in strips of rows to bound memory;
* with a wide window (radius >= 16) the windows sit on a grid of ``radius // 8``-pixel blocks
  instead of every pixel (:func:`fit_stride`): each block's moments are summed exactly, so no pixel
  is dropped, and the fit costs stride² less (at radius 16: 2 px blocks, under 0.5/255 apart from
  the dense fit on a photo, 2.6x faster).

Background pixels are never touched: the caller composites with the full-resolution mask (see
:func:`lift`), so background pixels stay bit-identical.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Default window radius in low-resolution pixels, and regularisation (images in [0, 1]).
#: Chosen with benchmarks/lifting_quality.py (docs/benchmarks.md).
DEFAULT_RADIUS = 4
DEFAULT_EPS = 1e-4
_ROWS_PER_STRIP = 128


def resize_float(image: np.ndarray, size: tuple[int, int], resample=Image.BILINEAR) -> np.ndarray:
    """Resize a float image with Pillow (antialiased when shrinking, as the published test code).

    Args:
        image: float (H, W) or (H, W, C).
        size: (width, height) of the result.
        resample: a Pillow filter (BILINEAR by default, BOX for area coverage).

    Returns:
        float32 array (h, w) or (h, w, C).
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        return np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize(size, resample), dtype=np.float32)
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c])).resize(size, resample), dtype=np.float32)
        for c in range(arr.shape[2])
    ]
    return np.stack(channels, axis=-1)


def _window_sizes(n: int, radius: int) -> np.ndarray:
    """How many of n positions the window [i-r, i+r], clipped to [0, n), holds at each i."""
    i = np.arange(n)
    return (np.minimum(i + radius + 1, n) - np.maximum(i - radius, 0)).astype(np.float64)


def _box_sum(x: np.ndarray, radius: int) -> np.ndarray:
    """Sum over the window [i-r, i+r] x [j-r, j+r] clipped to the image; x is (h, w, ...).
    SciPy's running mean with zeros outside the image, times the window's area."""
    from scipy.ndimage import uniform_filter1d

    size = 2 * radius + 1
    rows = uniform_filter1d(np.asarray(x, np.float64), size, axis=0, mode="constant", cval=0.0)
    return uniform_filter1d(rows, size, axis=1, mode="constant", cval=0.0) * float(size * size)


def _inverse_sym3(m: np.ndarray) -> np.ndarray:
    """Inverse of symmetric 3x3 matrices (..., 3, 3) by the adjugate: one vectorised pass, several
    times faster than a batched LAPACK solve for many small systems."""
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m11, m12, m22 = m[..., 1, 1], m[..., 1, 2], m[..., 2, 2]
    c00 = m11 * m22 - m12 * m12
    c01 = m02 * m12 - m01 * m22
    c02 = m01 * m12 - m02 * m11
    c11 = m00 * m22 - m02 * m02
    c12 = m01 * m02 - m00 * m12
    c22 = m00 * m11 - m01 * m01
    det = m00 * c00 + m01 * c01 + m02 * c02
    inv = np.stack([c00, c01, c02, c01, c11, c12, c02, c12, c22], axis=-1) / det[..., None]
    return inv.reshape(m.shape)


def global_affine(guide: np.ndarray, target: np.ndarray, weight: np.ndarray, eps: float = 1e-6):
    """Weighted least-squares affine colour map ``target ~ A @ guide + b`` over the whole image.

    Regularised toward the identity (ridge ``eps``), so a flat-coloured foreground gives a
    colour shift rather than an ill-posed matrix.

    Args:
        guide, target: float (h, w, 3) in [0, 1]; weight: float (h, w) >= 0, not all zero.

    Returns:
        A (3, 3) and b (3,), float64.
    """
    h, w = weight.shape
    sums = _block_moments(guide.astype(np.float64), target.astype(np.float64), weight.astype(np.float64), 1)
    return _global_fit(sums.reshape(h * w, -1).sum(axis=0), eps)


def _global_fit(total: np.ndarray, eps: float = 1e-6):
    """:func:`global_affine` from the sums of :func:`_block_moments` over the whole image."""
    if total[0] <= 0:
        raise ValueError("global_affine: the weight is zero everywhere")
    return _affine_from_sums(total / total[0], np.asarray(eps), np.eye(3))


_UPPER = ([0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2])  # the upper triangle of a symmetric 3x3


def _block_moments(g: np.ndarray, t: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Each stride x stride block's weighted sums (h/stride, w/stride, 22): of w, w g (3), w t (3),
    w g g^T (its upper triangle, 6) and w t g^T (9), for images g, t (h, w, 3) and weights w (h, w)."""
    h, wd = w.shape
    hb, wb, n = h // stride, wd // stride, stride * stride
    x = np.concatenate([np.ones((h, wd, 1)), g, t], axis=-1)  # (h, w, 7): 1, g, t
    x = x.reshape(hb, stride, wb, stride, 7).transpose(0, 2, 1, 3, 4).reshape(hb, wb, n, 7)
    wx = x[..., :4] * w.reshape(hb, stride, wb, stride).transpose(0, 2, 1, 3).reshape(hb, wb, n, 1)
    if n == 1:  # one pixel per block: its products
        m = wx[..., 0, :, None] * x[..., 0, None, :]
    else:  # (hb, wb, 4, 7): rows w·(1, g), columns (1, g, t), summed over the block's pixels
        m = np.matmul(wx.swapaxes(-1, -2), x)
    rows, cols = (np.asarray(i) + 1 for i in _UPPER)
    return np.concatenate([m[..., 0, :], m[..., rows, cols], m[..., 1:4, 4:7].swapaxes(-1, -2).reshape(hb, wb, 9)], axis=-1)


def _affine_from_sums(means: np.ndarray, lam: np.ndarray, prior_a: np.ndarray):
    """A = (C + lam A0)(S + lam I)^-1 and b = mu_t - A mu_g (S = cov(g, g), C = cov(t, g), A0 =
    ``prior_a``) from :func:`_block_moments`'s sums divided by the weight (..., 22); lam (...)."""
    mean_g, mean_t = means[..., 1:4], means[..., 4:7]
    outer_gg = np.empty(means.shape[:-1] + (3, 3))
    outer_gg[..., _UPPER[0], _UPPER[1]] = means[..., 7:13]
    outer_gg[..., _UPPER[1], _UPPER[0]] = means[..., 7:13]
    outer_tg = means[..., 13:22].reshape(means.shape[:-1] + (3, 3))
    cov_gg = outer_gg - mean_g[..., :, None] * mean_g[..., None, :]
    cov_tg = outer_tg - mean_t[..., :, None] * mean_g[..., None, :]
    lhs = cov_gg + lam[..., None, None] * np.eye(3)  # symmetric positive definite
    a = (cov_tg + lam[..., None, None] * prior_a) @ _inverse_sym3(lhs)  # A = (C + lam A0)(S + lam I)^-1
    return a, mean_t - np.einsum("...ij,...j->...i", a, mean_g)


def fit_stride(height: int, width: int, radius: int) -> int:
    """How many pixels apart the windows of :func:`fit_local_affine` are: ``radius // 8`` (at
    least 1), lowered until it divides both sides — every window then spans at least 17 blocks
    across, so the coarser grid changes the fit very little while its cost falls with stride²."""
    stride = max(1, radius // 8)
    while stride > 1 and (height % stride or width % stride):
        stride -= 1
    return stride


def fit_local_affine(
    guide: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    *,
    radius: int = DEFAULT_RADIUS,
    eps: float = DEFAULT_EPS,
    stride: int | None = None,
) -> np.ndarray:
    """Fit the per-pixel affine colour map ``target ~ A(x) @ guide(x) + b(x)`` (see module doc).

    Args:
        guide: low-resolution composite, float (h, w, 3) in [0, 1].
        target: low-resolution network output, float (h, w, 3) in [0, 1].
        weight: foreground weight, float (h, w) in [0, 1] (e.g. the area coverage of the mask).
        radius: window radius in low-resolution pixels (>= 1).
        eps: regularisation toward the global fit, in squared [0, 1] colour units.
        stride: fit one window per ``stride`` x ``stride`` block of pixels (a divisor of h and w;
            default :func:`fit_stride`). Every pixel still counts: its moments are summed into
            its block, and the windows (``radius // stride`` blocks around each block) are unions
            of blocks — the fast guided filter's subsampling (He & Sun 2015) without dropping
            pixels. 1 = a window around every pixel.

    Returns:
        Coefficients float32 (h / stride, w / stride, 3, 4): ``[..., :3]`` is A, ``[..., 3]`` is b,
        at the centres of the blocks (:func:`apply_affine` interpolates them).
    """
    if guide.shape != target.shape or guide.ndim != 3 or guide.shape[2] != 3:
        raise ValueError(f"guide and target must both be (h, w, 3), got {guide.shape} and {target.shape}")
    if weight.shape != guide.shape[:2]:
        raise ValueError(f"weight must be (h, w) = {guide.shape[:2]}, got {weight.shape}")
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    h, wd = weight.shape
    stride = fit_stride(h, wd, radius) if stride is None else int(stride)
    if stride < 1 or h % stride or wd % stride or stride > radius:
        raise ValueError(f"stride must divide {h} and {wd} and lie in [1, radius={radius}], got {stride}")
    w = np.clip(weight.astype(np.float64), 0.0, 1.0)
    # from here on every array is on the grid of blocks: (hb, wb), windows of radius rb blocks
    hb, wb, rb = h // stride, wd // stride, radius // stride
    stats = _block_moments(guide.astype(np.float64), target.astype(np.float64), w, stride)
    a_glob, b_glob = _global_fit(stats.sum(axis=(0, 1)))
    blocks = _window_sizes(hb, rb)[:, None] * _window_sizes(wb, rb)[None, :]
    sums = _box_sum(stats, rb)
    sw = sums[..., 0]
    frac = sw / (blocks * stride * stride)
    lam = eps / np.maximum(frac, 1e-6)
    a, b = _affine_from_sums(sums / np.maximum(sw, 1e-12)[..., None], lam, a_glob)
    empty = sw <= 1e-9
    a[empty] = a_glob
    b[empty] = b_glob
    coeffs = np.concatenate([a, b[..., None]], axis=-1)  # (hb, wb, 3, 4)
    # Second box pass, as the guided filter averages the coefficients of all windows over a pixel.
    coeffs = _box_sum(coeffs, rb) / blocks[..., None, None]
    return coeffs.astype(np.float32)


def _interp_weights(n_out: int, n_in: int):
    """Bilinear source indices/weights with half-pixel centres (Pillow/align_corners=False)."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (pos - i0).astype(np.float32)
    return i0, i1, frac


def apply_affine(
    coeffs: np.ndarray,
    image: np.ndarray,
    *,
    rows_per_strip: int = _ROWS_PER_STRIP,
    full_shape: tuple[int, int] | None = None,
    offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Upsample the coefficient maps bilinearly to the image's size and apply them.

    Args:
        coeffs: float (h, w, 3, 4) from :func:`fit_local_affine`.
        image: float (H, W, 3) in [0, 1], the full-resolution guide (composite), or a crop of it
            whose top-left corner is at ``offset`` = (row, column) of an image of ``full_shape``.

    Returns:
        float32 of ``image``'s shape, clipped to [0, 1].

    The coefficients are interpolated along x on the low-resolution rows in use; each output row
    then gets ``T0(x) + wy · (T1(x) − T0(x))`` (T0, T1: its two low-resolution rows' transforms)
    from fused multiply-adds — bilinear interpolation is linear, so this is the same transform.
    When enlarging, whole blocks of rows share T0 and T1 (no per-pixel copy of the 12
    coefficients); otherwise each strip gathers its rows' coefficients. Memory: at most
    ``rows_per_strip`` rows at a time.
    """
    import torch

    height, width = image.shape[:2]
    full_h, full_w = full_shape or (height, width)
    oy, ox = offset
    h, w = coeffs.shape[:2]
    planes = coeffs.reshape(h, w, 12).astype(np.float32, copy=False)
    y0, y1, fy = (a[oy : oy + height] for a in _interp_weights(full_h, h))
    x0, x1, fx = (a[ox : ox + width] for a in _interp_weights(full_w, w))
    rows = np.unique(np.concatenate([y0, y1]))  # the low-resolution rows in use
    used = planes[rows]  # (k, w, 12)
    along_x = used[:, x0] * (1 - fx[None, :, None]) + used[:, x1] * fx[None, :, None]  # (k, W, 12)
    along_x = torch.from_numpy(np.ascontiguousarray(along_x.transpose(0, 2, 1)))  # (k, 12, W)
    i0, i1 = np.searchsorted(rows, y0), np.searchsorted(rows, y1)  # y0, y1 as positions in ``rows``
    pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)  # (3, H, W) view
    weight_y = torch.from_numpy(np.ascontiguousarray(fy, dtype=np.float32))
    out = np.empty((height, width, 3), dtype=np.float32)
    result = torch.from_numpy(out)
    if height >= 8 * len(rows):  # enlarging: blocks of rows share their two coefficient rows
        cuts = (i0[1:] != i0[:-1]) | (i1[1:] != i1[:-1]) | (np.arange(1, height) % rows_per_strip == 0)
        starts = np.flatnonzero(np.r_[True, cuts])
    else:  # about one low-resolution row per output row: strips, each row's coefficients gathered
        starts = np.arange(0, height, rows_per_strip)
    i0, i1 = torch.from_numpy(i0), torch.from_numpy(i1)
    with torch.inference_mode():
        for start, stop in zip(starts, np.r_[starts[1:], height]):
            n = stop - start
            if i0[start] == i0[stop - 1] and i1[start] == i1[stop - 1]:  # (12, W), broadcast over the rows
                top = along_x[i0[start]].unsqueeze(1)
                change = along_x[i1[start]].unsqueeze(1) - top
            else:  # (12, n, W)
                top = along_x[i0[start:stop]].transpose(0, 1)
                change = along_x[i1[start:stop]].transpose(0, 1) - top
            pix = pixels[:, start:stop].contiguous()  # (3, n, W)
            wy = weight_y[start:stop, None]
            for i in range(3):
                acc = top[4 * i + 3].expand(n, width).clone()
                delta = change[4 * i + 3].expand(n, width).clone()
                for j in range(3):
                    acc.addcmul_(pix[j], top[4 * i + j])
                    delta.addcmul_(pix[j], change[4 * i + j])
                acc.addcmul_(delta, wy)
                result[start:stop, :, i] = acc.clamp_(0.0, 1.0)
    return out


def bounding_box(region: np.ndarray) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1), end-exclusive, of the True pixels of ``region``; None if none."""
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    if len(rows) == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def lift(
    composite_low: np.ndarray,
    output_low: np.ndarray,
    weight_low: np.ndarray,
    guide_full: np.ndarray,
    *,
    radius: int = DEFAULT_RADIUS,
    eps: float = DEFAULT_EPS,
    region: np.ndarray | None = None,
) -> np.ndarray:
    """Carry the low-resolution colour change over to a full-resolution image.

    Args:
        composite_low: the network's input composite, float (h, w, 3) in [0, 1].
        output_low: the network's harmonized output at the same size, float (h, w, 3) in [0, 1].
        weight_low: foreground weight (h, w) in [0, 1] (area coverage of the full-res mask).
        guide_full: the full-resolution image to recolour (the composite, or in paste mode the
            cut-out layer), float (H, W, 3) in [0, 1].
        region: optional bool (H, W): the transform is computed only inside this region's
            bounding box (the rest is a copy of ``guide_full``), which saves most of the time
            when the foreground is small.

    Returns:
        float32 (H, W, 3) in [0, 1]: ``guide_full`` with the fitted transform applied (everywhere,
        or inside ``region``'s bounding box). Composite it with the full-resolution mask
        (:func:`composite_foreground`) so the background stays bit-identical.
    """
    coeffs = fit_local_affine(composite_low, output_low, weight_low, radius=radius, eps=eps)
    if region is None:
        return apply_affine(coeffs, guide_full)
    out = np.array(guide_full, dtype=np.float32, copy=True)
    box = bounding_box(region)
    if box is None:
        return out
    r0, r1, c0, c1 = box
    out[r0:r1, c0:c1] = apply_affine(
        coeffs, guide_full[r0:r1, c0:c1], full_shape=guide_full.shape[:2], offset=(r0, c0)
    )
    return out


def upsample(output_low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The plain alternative to lifting: bilinear upsampling of the low-res output to (W, H)."""
    return np.clip(resize_float(output_low, size, Image.BILINEAR), 0.0, 1.0)


def composite_foreground(foreground: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``where(mask, foreground, background)`` for a bool mask, or alpha blending for a float one.

    With a bool mask the background pixels are copied unchanged (bit-identical, any dtype).
    """
    if mask.dtype == np.bool_:
        return np.where(mask[..., None], foreground.astype(background.dtype, copy=False), background)
    m = mask.astype(np.float32)[..., None]
    return foreground * m + background * (1 - m)
