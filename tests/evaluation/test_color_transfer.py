"""Region colour transfer against float64 reference formulas and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import color
from skimage.exposure import match_histograms

from bargainnet.evaluation.color_transfer import (
    METHODS,
    covariance_transfer,
    histogram_match,
    mkl_matrix,
    reinhard,
)
from bargainnet.errors import InputError


def _pair(seed=0, h=24, w=32):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.2, 0.8, (h, w, 3))
    mask = np.zeros((h, w))
    mask[4:18, 6:20] = 1.0
    reference = np.clip(rng.normal([0.5, 0.4, 0.3], 0.08, (20, 20, 3)), 0, 1)
    reference_mask = np.zeros((20, 20), bool)
    reference_mask[2:15, 3:17] = True
    return image, mask, reference, reference_mask


@pytest.mark.parametrize("name", sorted(METHODS))
def test_outside_bit_identical_and_range(name):
    image, mask, reference, reference_mask = _pair()
    out = METHODS[name](image, mask, reference, reference_mask)
    assert out is not image and out.shape == image.shape and out.dtype == image.dtype
    assert np.array_equal(out[mask == 0], image[mask == 0])
    assert out.min() >= 0 and out.max() <= 1
    assert not np.allclose(out[mask == 1], image[mask == 1])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_strength_zero_is_identity_and_float32_kept(name):
    image, mask, reference, reference_mask = _pair(1)
    image = image.astype(np.float32)
    assert np.array_equal(METHODS[name](image, mask, reference, reference_mask, 0.0), image)
    out = METHODS[name](image, mask, reference, reference_mask, 0.5)
    assert out.dtype == np.float32


def test_strength_blends_linearly():
    image, mask, reference, reference_mask = _pair(2)
    full = covariance_transfer(image, mask, reference, reference_mask, 1.0)
    half = covariance_transfer(image, mask, reference, reference_mask, 0.5)
    # Nothing clipped for these mid-range values, so the half result is the midpoint.
    np.testing.assert_allclose(half, (image + full) / 2, atol=1e-12)


def test_reinhard_matches_lab_formula():
    image, mask, reference, reference_mask = _pair(3)
    out = reinhard(image, mask, reference, reference_mask)
    # float64 reference: whole-image Lab, stats over the regions, formula, back to RGB.
    lab = color.rgb2lab(image)
    ref_lab = color.rgb2lab(reference)[reference_mask]
    src = lab[mask > 0.5]
    expect = (src - src.mean(0)) / src.std(0) * ref_lab.std(0) + ref_lab.mean(0)
    expect_rgb = np.clip(color.lab2rgb(expect[:, None, :])[:, 0], 0, 1)
    np.testing.assert_allclose(out[mask > 0.5], expect_rgb, atol=1e-9)
    # And the Lab statistics of the result equal the reference's (values stay in gamut here).
    got = color.rgb2lab(out)[mask > 0.5]
    np.testing.assert_allclose(got.mean(0), ref_lab.mean(0), atol=0.05)
    np.testing.assert_allclose(got.std(0), ref_lab.std(0), rtol=0.02)


def test_histogram_match_equals_skimage():
    image, mask, reference, reference_mask = _pair(4)
    out = histogram_match(image, mask, reference, reference_mask)
    region = image[mask > 0.5][:, None, :]
    ref_region = reference[reference_mask][:, None, :]
    expect = match_histograms(region, ref_region, channel_axis=-1)[:, 0]
    np.testing.assert_allclose(out[mask > 0.5], expect, atol=1e-12)


def test_histogram_match_quantized_independent():
    # Independent check on 8-bit-like values: after matching to a region with the same number of
    # pixels and all-distinct values, the sorted output equals the sorted reference per channel.
    rng = np.random.default_rng(5)
    image = rng.permutation(256)[:100].reshape(10, 10, 1).repeat(3, 2) / 255.0
    reference = np.sort(rng.random((10, 10, 3)), axis=None).reshape(10, 10, 3)
    mask = np.ones((10, 10))
    out = histogram_match(image, mask, reference, np.ones((10, 10)))
    for c in range(3):
        np.testing.assert_allclose(np.sort(out[..., c], None), np.sort(reference[..., c], None))


def test_covariance_transfer_moments():
    image, mask, reference, reference_mask = _pair(6)
    out = covariance_transfer(image, mask, reference, reference_mask)
    got = out[mask > 0.5]
    ref = reference[reference_mask]
    np.testing.assert_allclose(got.mean(0), ref.mean(0), atol=1e-6)
    np.testing.assert_allclose(
        np.cov(got, rowvar=False, bias=True), np.cov(ref, rowvar=False, bias=True), atol=1e-5
    )


def test_mkl_matrix_is_symmetric_and_maps_covariances():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    s, t = a @ a.T + 0.1 * np.eye(3), b @ b.T + 0.1 * np.eye(3)
    m = mkl_matrix(s, t)
    np.testing.assert_allclose(m, m.T, atol=1e-9)
    np.testing.assert_allclose(m @ s @ m.T, t, rtol=1e-4, atol=1e-5)
    assert np.linalg.eigvalsh(m).min() > 0


def test_soft_mask_blends_and_zero_untouched():
    image, mask, reference, reference_mask = _pair(8)
    soft = mask.copy()
    soft[3, 6:20] = 0.3  # a soft edge row next to the region
    hard = covariance_transfer(image, mask, reference, reference_mask)
    out = covariance_transfer(image, soft, reference, reference_mask)
    np.testing.assert_allclose(out[mask > 0.5], hard[mask > 0.5])
    assert not np.array_equal(out[3, 6:20], image[3, 6:20])
    assert np.array_equal(out[soft == 0], image[soft == 0])


@pytest.mark.parametrize(
    "kwargs, text",
    [
        (dict(image=np.zeros((4, 4))), "(H, W, 3)"),
        (dict(mask=np.zeros((4, 4))), "mask is empty"),
        (dict(reference_mask=np.zeros((5, 5))), "reference_mask is empty"),
        (dict(mask=np.ones((3, 4))), "mask must have shape (4, 4)"),
        (dict(image=np.full((4, 4, 3), 2.0)), "[0, 1]"),
        (dict(image=np.zeros((4, 4, 3), np.uint8)), "float"),
        (dict(strength=1.5), "strength"),
    ],
)
def test_input_errors(kwargs, text):
    args = dict(
        image=np.full((4, 4, 3), 0.5),
        mask=np.ones((4, 4)),
        reference=np.full((5, 5, 3), 0.2),
        reference_mask=np.ones((5, 5)),
    )
    args.update(kwargs)
    with pytest.raises(InputError, match=None) as info:
        reinhard(**args)
    assert text in str(info.value)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    strength=st.floats(0.0, 1.0),
    name=st.sampled_from(sorted(METHODS)),
)
def test_property_range_and_locality(seed, strength, name):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(2, 12, size=2)
    image = rng.random((h, w, 3))
    mask = (rng.random((h, w)) > 0.5).astype(float)
    mask.flat[rng.integers(mask.size)] = 1.0
    reference = rng.random((5, 6, 3)) ** rng.uniform(0.3, 3)
    out = METHODS[name](image, mask, reference, np.ones((5, 6)), strength)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert np.array_equal(out[mask == 0], image[mask == 0])


def _flat_and_varied(seed=9):
    rng = np.random.default_rng(seed)
    image = np.clip(0.5 + rng.normal(0, 0.01, (30, 30, 3)), 0, 1)  # a flat, slightly noisy region
    reference = rng.random((20, 20, 3))  # a varied one
    return image, np.ones((30, 30)), reference, np.ones((20, 20))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_max_gain_bounds_noise_amplification(name):
    image, mask, reference, reference_mask = _flat_and_varied()
    g = 2.0
    exact = METHODS[name](image, mask, reference, reference_mask)
    limited = METHODS[name](image, mask, reference, reference_mask, max_gain=g)
    var = lambda x: np.var(x.reshape(-1, 3), axis=0)  # noqa: E731
    assert var(exact).sum() > 20 * var(image).sum()  # the exact transfer amplifies a lot
    if name == "reinhard":  # bounded per Lab channel
        lab_in, lab_out = color.rgb2lab(image).reshape(-1, 3), color.rgb2lab(limited).reshape(-1, 3)
        assert (lab_out.std(0) <= g * lab_in.std(0) * 1.05 + 1e-6).all()
    elif name == "histogram":  # each channel's map is g-Lipschitz
        assert (var(limited) <= g**2 * var(image) * 1.0001).all()
    else:  # ||A (x - mu)|| <= g ||x - mu||
        assert var(limited).sum() <= g**2 * var(image).sum() * 1.0001
    # the mean still moves to the reference's (limited values stay in gamut, so nothing clips)
    if name == "reinhard":
        np.testing.assert_allclose(
            color.rgb2lab(limited).reshape(-1, 3).mean(0), color.rgb2lab(reference).reshape(-1, 3).mean(0), atol=0.5
        )
    else:
        np.testing.assert_allclose(limited.reshape(-1, 3).mean(0), reference.reshape(-1, 3).mean(0), atol=0.01)
    # and without amplification the gain changes nothing: a region matched to itself
    same = METHODS[name](image, mask, image, mask, max_gain=g)
    np.testing.assert_allclose(same, METHODS[name](image, mask, image, mask), atol=1e-9)
