"""Colour lifting (bargainnet.inference.lifting) against float64 references and Pillow's resampling."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from bargainnet.inference import lifting


def _brute_box_sum(x, r):
    h, w = x.shape[:2]
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(h):
        for j in range(w):
            out[i, j] = x[max(i - r, 0) : i + r + 1, max(j - r, 0) : j + r + 1].sum(axis=(0, 1))
    return out


def test_box_sum_matches_brute_force():
    x = np.random.default_rng(0).random((9, 7, 2))
    for r in (1, 2, 5):
        np.testing.assert_allclose(lifting._box_sum(x, r), _brute_box_sum(x, r), atol=1e-12)


def test_global_affine_matches_lstsq():
    rng = np.random.default_rng(1)
    g = rng.random((16, 16, 3))
    t = rng.random((16, 16, 3))
    w = (rng.random((16, 16)) > 0.3).astype(float)
    a, b = lifting.global_affine(g, t, w, eps=0.0)
    sel = w.reshape(-1) > 0
    design = np.hstack([g.reshape(-1, 3)[sel], np.ones((sel.sum(), 1))])
    ref, *_ = np.linalg.lstsq(design, t.reshape(-1, 3)[sel], rcond=None)
    np.testing.assert_allclose(a, ref[:3].T, atol=1e-10)
    np.testing.assert_allclose(b, ref[3], atol=1e-10)


def _brute_local_affine(g, t, w, r, eps, s=1):
    """fit_local_affine from its definition, block by block in float64: a ridge fit per clipped
    window of (2 r/s + 1)^2 blocks of s x s pixels around each block (toward the global fit, lam =
    eps / the window's foreground share), then each block's coefficients averaged over the windows
    that contain it. s = 1: a window around every pixel."""
    h, wd = w.shape
    hb, wb, rb = h // s, wd // s, r // s
    a_glob, b_glob = lifting.global_affine(g, t, w)
    first = np.zeros((hb, wb, 3, 4))
    for i in range(hb):
        for j in range(wb):
            rows = slice(max(i - rb, 0) * s, min(i + rb + 1, hb) * s)
            cols = slice(max(j - rb, 0) * s, min(j + rb + 1, wb) * s)
            ww, gg, tt = w[rows, cols].reshape(-1), g[rows, cols].reshape(-1, 3), t[rows, cols].reshape(-1, 3)
            if ww.sum() <= 1e-9:
                first[i, j, :, :3], first[i, j, :, 3] = a_glob, b_glob
                continue
            mg, mt = ww @ gg / ww.sum(), ww @ tt / ww.sum()
            cov_gg = ((gg - mg) * ww[:, None]).T @ (gg - mg) / ww.sum()
            cov_tg = ((tt - mt) * ww[:, None]).T @ (gg - mg) / ww.sum()
            lam = eps / max(ww.sum() / ww.size, 1e-6)
            a = (cov_tg + lam * a_glob) @ np.linalg.inv(cov_gg + lam * np.eye(3))
            first[i, j, :, :3], first[i, j, :, 3] = a, mt - a @ mg
    return _brute_box_sum(first, rb) / _brute_box_sum(np.ones((hb, wb, 1, 1)), rb)


def test_fit_local_affine_matches_its_definition():
    rng = np.random.default_rng(7)
    g = rng.random((9, 11, 3))
    g[:, :4, 1] = g[:, :4, 0]  # a degenerate (rank-deficient) colour region
    t = np.clip(g @ rng.random((3, 3)) * 0.7 + 0.1 + 0.03 * rng.standard_normal(g.shape), 0, 1)
    w = (rng.random((9, 11)) > 0.4).astype(float)
    w[:, 8:] = 0  # windows with no foreground take the global fit
    for r, eps in ((1, 1e-4), (2, 1e-2), (20, 1e-4)):
        got = lifting.fit_local_affine(g, t, w, radius=r, eps=eps)
        np.testing.assert_allclose(got, _brute_local_affine(g, t, w, r, eps), atol=2e-5)


def test_strided_fit_matches_its_definition_and_the_dense_fit():
    rng = np.random.default_rng(11)
    g = rng.random((12, 24, 3))
    t = np.clip(g @ rng.random((3, 3)) * 0.6 + 0.2 + 0.02 * rng.standard_normal(g.shape), 0, 1)
    w = (rng.random((12, 24)) > 0.3).astype(float)
    w[:, 16:] = 0  # blocks without foreground take the global fit
    for r, s in ((4, 2), (6, 3), (8, 4)):
        got = lifting.fit_local_affine(g, t, w, radius=r, stride=s)
        assert got.shape == (12 // s, 24 // s, 3, 4)
        np.testing.assert_allclose(got, _brute_local_affine(g, t, w, r, 1e-4, s), atol=2e-5)
    # on a photo with a smooth colour change, the default stride at radius 16 (2) gives what the
    # dense fit gives to well under one 8-bit level
    photo = np.asarray(Image.fromarray(skdata.astronaut()).resize((128, 128)), np.float32) / 255
    yy, xx = np.mgrid[:128, :128]
    mask = (((yy - 70) / 32) ** 2 + ((xx - 57) / 26) ** 2 < 1).astype(np.float32)
    shift = 0.05 + 0.04 * np.sin(xx / 9)[..., None] * (yy / 128)[..., None]
    target = np.clip(photo @ np.array([[0.9, 0.05, 0], [0.02, 0.95, 0.03], [0, 0.1, 0.8]]).T + shift, 0, 1)
    assert lifting.fit_stride(128, 128, 16) == 2 and lifting.fit_stride(128, 128, 4) == 1
    assert lifting.fit_stride(127, 128, 16) == 1 and lifting.fit_stride(96, 96, 32) == 4
    full = np.asarray(Image.fromarray(skdata.astronaut()).resize((512, 512)), np.float32) / 255
    dense = lifting.apply_affine(lifting.fit_local_affine(photo, target, mask, radius=16, stride=1), full)
    strided = lifting.apply_affine(lifting.fit_local_affine(photo, target, mask, radius=16), full)
    inside = np.asarray(Image.fromarray(mask).resize((512, 512), Image.NEAREST)) > 0.5
    assert np.abs(dense - strided)[inside].max() < 0.5 / 255
    for bad in (3, 0, 32):
        with pytest.raises(ValueError, match="stride"):
            lifting.fit_local_affine(photo, target, mask, radius=16, stride=bad)


def test_inverse_of_symmetric_3x3_matrices():
    m = np.random.default_rng(2).random((5, 4, 3, 3))
    m = m @ np.swapaxes(m, -1, -2) + 0.1 * np.eye(3)
    np.testing.assert_allclose(lifting._inverse_sym3(m), np.linalg.inv(m), rtol=1e-9, atol=1e-9)


def _affine(rng):
    return np.eye(3) * 0.8 + rng.normal(0, 0.05, (3, 3)), rng.uniform(0.05, 0.15, 3)


def test_exact_global_affine_is_reproduced_at_full_resolution():
    rng = np.random.default_rng(2)
    a, b = _affine(rng)
    full = rng.uniform(0.1, 0.9, (200, 300, 3))
    low = lifting.resize_float(full, (64, 64))
    target = low @ a.T + b
    weight = np.zeros((64, 64))
    weight[10:50, 5:60] = 1
    lifted = lifting.lift(low, target, weight, full.astype(np.float32))
    np.testing.assert_allclose(lifted, np.clip(full @ a.T + b, 0, 1), atol=2e-4)


def test_two_regions_two_transforms():
    """Left and right halves changed differently: each is recovered away from the seam."""
    rng = np.random.default_rng(3)
    (a1, b1), (a2, b2) = _affine(rng), _affine(rng)
    full = rng.uniform(0.1, 0.9, (256, 256, 3))
    low = lifting.resize_float(full, (64, 64))
    target = np.concatenate([low[:, :32] @ a1.T + b1, low[:, 32:] @ a2.T + b2], axis=1)
    lifted = lifting.lift(low, target, np.ones((64, 64)), full.astype(np.float32), radius=2, eps=1e-6)
    np.testing.assert_allclose(lifted[:, :80], np.clip(full[:, :80] @ a1.T + b1, 0, 1), atol=2e-3)
    np.testing.assert_allclose(lifted[:, 176:], np.clip(full[:, 176:] @ a2.T + b2, 0, 1), atol=2e-3)


def test_zero_weight_pixels_do_not_count():
    rng = np.random.default_rng(4)
    guide = rng.random((32, 32, 3))
    target = rng.random((32, 32, 3))
    weight = np.zeros((32, 32))
    weight[8:24, 8:24] = 1
    c1 = lifting.fit_local_affine(guide, target, weight)
    target2 = target.copy()
    target2[weight == 0] = rng.random(((weight == 0).sum(), 3))
    c2 = lifting.fit_local_affine(guide, target2, weight)
    np.testing.assert_allclose(c1, c2, atol=1e-6)


def test_apply_affine_is_bilinear_upsampling_of_the_coefficients():
    """With A = 0 the output is b upsampled: compare with Pillow's bilinear upsampling."""
    rng = np.random.default_rng(5)
    b = rng.uniform(0.1, 0.9, (16, 24, 3)).astype(np.float32)
    coeffs = np.zeros((16, 24, 3, 4), np.float32)
    coeffs[..., 3] = b
    image = rng.random((70, 101, 3)).astype(np.float32)
    out = lifting.apply_affine(coeffs, image)
    expected = np.stack(
        [np.asarray(Image.fromarray(b[..., c]).resize((101, 70), Image.BILINEAR)) for c in range(3)], axis=-1
    )
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_array_equal(lifting.apply_affine(coeffs, image, rows_per_strip=7), out)


def test_apply_affine_matches_a_float64_reference_on_a_crop():
    """A general per-pixel transform: bilinear weights with half-pixel centres (edge-clamped), the
    interpolated 3x4 matrix applied to each pixel, in float64; a crop at an offset of a larger image."""
    rng = np.random.default_rng(8)
    coeffs = rng.normal(0, 0.3, (9, 13, 3, 4)).astype(np.float32)
    full_h, full_w, (oy, ox), (h, w) = 200, 310, (37, 51), (120, 190)
    image = rng.random((h, w, 3)).astype(np.float32)

    def weights(n_out, n_in, start, count):
        pos = np.clip((np.arange(start, start + count) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(pos).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), pos - i0

    y0, y1, fy = weights(full_h, 9, oy, h)
    x0, x1, fx = weights(full_w, 13, ox, w)
    c = coeffs.astype(np.float64)
    fy, fx = fy[:, None, None, None], fx[None, :, None, None]
    interp = (c[y0][:, x0] * (1 - fy) * (1 - fx) + c[y0][:, x1] * (1 - fy) * fx
              + c[y1][:, x0] * fy * (1 - fx) + c[y1][:, x1] * fy * fx)  # (h, w, 3, 4)
    expected = np.clip(np.einsum("hwij,hwj->hwi", interp[..., :3], image.astype(np.float64)) + interp[..., 3], 0, 1)
    out = lifting.apply_affine(coeffs, image, full_shape=(full_h, full_w), offset=(oy, ox))
    assert out.dtype == np.float32 and out.shape == image.shape
    assert np.abs(out - expected).max() < 1e-5
    np.testing.assert_array_equal(lifting.apply_affine(coeffs, image, full_shape=(full_h, full_w), offset=(oy, ox),
                                                       rows_per_strip=5), out)


def test_lifting_beats_upsampling_on_a_photo():
    """The oracle test of benchmarks/lifting_quality.py in small: a recoloured object of a real
    photo, the real image at 64 px as the 'network output'; lifting must win by > 3 dB."""
    real = skdata.astronaut().astype(np.float32) / 255  # 512 x 512
    h, w = real.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((yy - 300) / 150) ** 2 + ((xx - 260) / 120) ** 2 < 1
    recolour = np.clip(real @ np.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.1], [0.1, 0.0, 0.7]]).T + 0.08, 0, 1)
    composite = np.where(mask[..., None], recolour ** 1.3, real).astype(np.float32)
    low_c = lifting.resize_float(composite, (64, 64))
    low_r = lifting.resize_float(real, (64, 64))
    weight = lifting.resize_float(mask.astype(np.float32), (64, 64), Image.BOX)
    out_low = np.where((weight >= 0.5)[..., None], low_r, low_c)
    lifted = lifting.composite_foreground(
        lifting.lift(low_c, out_low, np.where(weight >= 0.5, weight, 0), composite), composite, mask
    )
    upsampled = lifting.composite_foreground(lifting.upsample(out_low, (w, h)), composite, mask)

    def psnr(x):
        return 10 * np.log10(1 / np.mean((x[mask] - real[mask]) ** 2))

    assert psnr(lifted) > psnr(upsampled) + 3
    np.testing.assert_array_equal(lifted[~mask], composite[~mask])  # background untouched


def test_composite_foreground_keeps_background_bits():
    bg = np.random.default_rng(6).integers(0, 256, (5, 5, 3), dtype=np.uint8)
    fg = np.zeros((5, 5, 3), np.uint8)
    mask = np.zeros((5, 5), bool)
    mask[1:3, 1:3] = True
    out = lifting.composite_foreground(fg, bg, mask)
    np.testing.assert_array_equal(out[~mask], bg[~mask])
    assert (out[mask] == 0).all()


def test_bad_shapes():
    with pytest.raises(ValueError, match="guide and target"):
        lifting.fit_local_affine(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="weight"):
        lifting.fit_local_affine(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="zero everywhere"):
        lifting.fit_local_affine(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.zeros((4, 4)))


def test_region_crop_equals_full_computation():
    rng = np.random.default_rng(7)
    guide = rng.random((32, 32, 3))
    target = np.clip(guide * 0.8 + 0.1 + rng.normal(0, 0.02, guide.shape), 0, 1)
    full = rng.random((150, 170, 3)).astype(np.float32)
    region = np.zeros((150, 170), bool)
    region[37:101, 55:160] = True
    whole = lifting.lift(guide, target, np.ones((32, 32)), full)
    cropped = lifting.lift(guide, target, np.ones((32, 32)), full, region=region)
    np.testing.assert_allclose(cropped[region], whole[region], atol=1e-6)
    np.testing.assert_array_equal(cropped[~region], full[~region])  # the region is its own bounding box
