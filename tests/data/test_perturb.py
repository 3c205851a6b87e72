"""Perturbation families and pixel operations: range, locality, reference formulas."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bargainnet.data import perturb
from bargainnet.data.sources import ellipse_mask, object_mask, procedural_photo, shape_mask
from bargainnet.data.synthesis import FAMILIES, perturb_image


def _image_mask(seed, h, w):
    rng = np.random.default_rng(seed)
    image = rng.random((h, w, 3))
    mask = rng.random((h, w)) > 0.5
    mask.flat[rng.integers(mask.size)] = True
    return image, mask, rng


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), family=st.sampled_from(FAMILIES), h=st.integers(2, 24), w=st.integers(2, 24))
def test_families_stay_in_range_and_touch_only_the_mask(seed, family, h, w):
    image, mask, rng = _image_mask(seed, h, w)
    ref = (rng.random((7, 9, 3)), rng.random((7, 9)) > 0.3 if rng.random() < 0.5 else None)
    if ref[1] is not None and not ref[1].any():
        ref = (ref[0], None)
    out, params = perturb_image(family, image, mask, rng, ref)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert np.array_equal(out[~mask], image[~mask])
    assert isinstance(params, dict)


OPS = {
    "exposure": lambda x, v: perturb.exposure(x, v * 3),
    "white_balance": lambda x, v: perturb.white_balance(x, v, -v),
    "contrast": lambda x, v: perturb.contrast(x, 1 + v),
    "saturation": lambda x, v: perturb.saturation(x, 1 + v),
    "gamma": lambda x, v: perturb.gamma(x, np.exp(v)),
    "tone_curve": lambda x, v: perturb.tone_curve(x, v),
    "hue_rotate": lambda x, v: perturb.hue_rotate(x, 180 * v),
}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), op=st.sampled_from(sorted(OPS)), v=st.floats(-1, 1))
def test_region_ops_range_and_locality(seed, op, v):
    image, mask, _ = _image_mask(seed, 9, 11)
    out = perturb.apply_to_region(image, mask, lambda x: OPS[op](x, v))
    assert out.min() >= 0 and out.max() <= 1 and np.array_equal(out[~mask], image[~mask])


def test_pixel_ops_reference_values():
    x = np.array([[0.0, 0.5, 1.0], [0.2, 0.4, 0.6]])
    # sRGB round trip and one stop brighter = linear x2
    np.testing.assert_allclose(perturb.linear_to_srgb(perturb.srgb_to_linear(x)), x, atol=1e-12)
    np.testing.assert_allclose(perturb.srgb_to_linear(np.array([0.5])), [0.21404114], atol=1e-7)
    np.testing.assert_allclose(
        perturb.srgb_to_linear(perturb.exposure(x[1:], 1.0)), np.clip(2 * perturb.srgb_to_linear(x[1:]), 0, 1), atol=1e-12
    )
    np.testing.assert_allclose(perturb.saturation(x, 0.0)[:, 0], x @ [0.2126, 0.7152, 0.0722])
    np.testing.assert_allclose(perturb.hue_rotate(x, 360.0), x, atol=1e-12)
    gray = np.full((1, 3), 0.4)
    np.testing.assert_allclose(perturb.hue_rotate(gray, 77.0), gray, atol=1e-12)  # gray axis fixed
    np.testing.assert_allclose(perturb.white_balance(gray, 0.0, 0.0), gray, atol=1e-12)
    warm = perturb.white_balance(gray, 0.8)
    assert warm[0, 0] > warm[0, 1] > warm[0, 2]
    t = np.linspace(0, 1, 101)[:, None].repeat(3, 1)
    for a in (-1.0, -0.3, 0.5, 1.0):
        assert (np.diff(perturb.tone_curve(t, a)[:, 0]) >= -1e-12).all()  # monotone


def test_rejection_reasons():
    image, mask, _ = _image_mask(0, 16, 16)
    assert perturb.rejection_reason(image, image, mask) is None  # no floor by default
    assert perturb.rejection_reason(image, image, mask, min_fmse=100.0) == "too_small"
    assert perturb.rejection_reason(1 - image, image, mask, max_fmse=100.0) == "too_large"
    black = image.copy()
    black[mask] = 0.0
    assert perturb.rejection_reason(black, image, mask, max_fmse=1e9) == "clipped"
    shifted = np.clip(image + 0.1 * mask[..., None], 0, 1)
    assert perturb.rejection_reason(shifted, image, mask) is None
    np.testing.assert_allclose(
        perturb.foreground_mse(shifted, image, mask), np.mean(((shifted - image)[mask] * 255) ** 2)
    )


def test_masks_from_segments_shapes_and_procedural():
    rng = np.random.default_rng(0)
    from scipy import ndimage

    for seed in range(5):
        image, obj = procedural_photo(np.random.default_rng(seed), 96)
        assert 0.02 < obj.mean() < 0.6 and image.dtype == np.uint8
        m = object_mask(image, np.random.default_rng(seed), (0.1, 0.4))
        assert 0.02 < m.mean() < 0.75
        assert ndimage.label(m)[1] == 1  # one connected region
    alpha = np.zeros((40, 30), np.uint8)
    alpha[5:35, 10:20] = 255
    m = shape_mask(alpha, (100, 120), rng, (0.2, 0.2))
    assert abs(m.mean() - 0.2) < 0.03
    e = ellipse_mask((50, 60), rng, (0.3, 0.3))
    assert abs(e.mean() - 0.3) < 0.05


NEW_FAMILIES = ("mixing", "camera", "lighting", "haze")


def test_every_family_is_identity_at_zero_strength_and_local():
    image, mask, rng = _image_mask(1, 12, 14)
    ref = (rng.random((5, 6, 3)), None)
    for family in FAMILIES:
        fn = getattr(perturb, family)
        args = (ref[0],) if family == "transfer" else ()
        out, _ = fn(image, mask, np.random.default_rng(0), *args, strength=0.0)
        assert np.array_equal(out, image), family
        out, _ = fn(image, mask, np.random.default_rng(0), *args, strength=1.0)
        assert np.array_equal(out[~mask], image[~mask]), family
        assert not np.array_equal(out[mask], image[mask]), family
    assert set(NEW_FAMILIES) <= set(FAMILIES)


def test_new_families_reference_behaviour():
    gray = np.full((4, 4, 3), 0.5)
    mask = np.ones((4, 4), bool)
    rng = np.random.default_rng(3)
    # lighting: a spatially varying gain over the object (not one global change)
    ramp = np.tile(np.linspace(0.2, 0.8, 16)[None, :, None], (16, 1, 3))
    out, p = perturb.lighting(ramp, np.ones((16, 16), bool), rng, strength=1.0)
    ratio = perturb.srgb_to_linear(out[..., 1]) / perturb.srgb_to_linear(ramp[..., 1])
    assert ratio.std() > 0.01, p
    # haze/fade lower the object's contrast
    x = np.random.default_rng(0).random((16, 16, 3))
    out, _ = perturb.haze(x, np.ones((16, 16), bool), rng, strength=1.0)
    assert out.std() < x.std()
    # camera: exposure and white balance are gains in linear light
    out, p = perturb.camera(gray, mask, rng, strength=1.0)
    lin = perturb.srgb_to_linear(out[0, 0]) / perturb.srgb_to_linear(0.5)
    assert np.allclose(lin[1], 2 ** (p["ev"]) * lin[1] / 2 ** p["ev"])  # finite and consistent
    assert np.ptp(perturb.srgb_to_linear(out).reshape(-1, 3), axis=0).max() < 1e-12  # spatially uniform


def test_per_channel_curves_family_is_absent():
    """`curves` (a different tone curve per R/G/B channel) is held out for evaluation."""
    import pytest

    from bargainnet.errors import InputError

    assert "curves" not in FAMILIES and not hasattr(perturb, "curves")
    image, mask, rng = _image_mask(2, 8, 8)
    with pytest.raises(InputError):
        perturb_image("curves", image, mask, rng)
    # the retouch's gamma and tone curve act on the three channels alike: grays stay gray
    ramp = np.tile(np.linspace(0, 1, 64)[:, None], (1, 3)).reshape(8, 8, 3)
    for edit in ("gamma", "tone_curve"):
        out, _ = perturb.retouch(ramp, np.ones((8, 8), bool), np.random.default_rng(0), edits=(edit,), strength=1.0)
        assert np.allclose(out[..., 0], out[..., 1]) and np.allclose(out[..., 1], out[..., 2]), edit
