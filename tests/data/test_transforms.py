"""Joint transforms: identical geometry on composite, mask and real; empty-crop redraws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bargainnet.data.transforms import (
    random_resized_crop_params,
    test_transform,
    to_tensors,
    train_transform,
)
from bargainnet.errors import InputError


def _coded(h=90, w=120):
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) % 256], -1).astype(np.uint8)
    return Image.fromarray(rgb)


def test_train_transform_same_geometry_on_all_three():
    comp = _coded()
    real = comp.copy()
    mask = comp.getchannel("R")  # mask = the x coordinate: its transform must follow the others
    t = train_transform(48, scale=(0.5, 1.0))
    flips = 0
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        c, m, r = t(comp, mask, real, generator=g)
        c, m, r = map(np.asarray, (c, m, r))
        assert c.shape == (48, 48, 3) and m.shape == (48, 48)
        assert np.array_equal(c, r)
        assert np.array_equal(m, c[..., 0])
        flips += int(c[0, 0, 0] > c[0, -1, 0])  # x decreasing left to right: flipped
    assert 0 < flips < 12


def test_train_transform_is_seeded():
    comp, mask = _coded(), _coded().getchannel("G")
    t = train_transform(32)
    a = t(comp, mask, comp, generator=torch.Generator().manual_seed(3))
    b = t(comp, mask, comp, generator=torch.Generator().manual_seed(3))
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def test_crop_params_cover_scale_and_ratio():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_params(400, 300, (0.5, 1.0), (3 / 4, 4 / 3), g)
        assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 400
        assert 0.48 <= h * w / (400 * 300) <= 1.0
    # no crop fits in 10 tries for an extreme image: centred fallback within the ratio range
    top, left, h, w = random_resized_crop_params(1000, 10, (0.9, 1.0), (3 / 4, 4 / 3), g)
    assert (h, w) == (10, 13) and left == (1000 - 13) // 2


def test_empty_crops_are_redrawn():
    comp = _coded(200, 200)
    mask = np.zeros((200, 200), np.uint8)
    mask[:4, :4] = 255  # a tiny object in a corner: most crops miss it
    mask = Image.fromarray(mask)
    t = train_transform(32, scale=(0.5, 0.6))
    for seed in range(30):
        _, m, _ = t(comp, mask, comp, generator=torch.Generator().manual_seed(seed))
        assert np.asarray(m).max() > 127
    # Without redraws a crop that misses it falls back to a crop centred on the object.
    t0 = train_transform(32, scale=(0.5, 0.6), redraws=0)
    for seed in range(10):
        _, m, _ = t0(comp, mask, comp, generator=torch.Generator().manual_seed(seed))
        assert np.asarray(m).max() > 127


def test_test_transform_is_bilinear_resize():
    comp, real = _coded(), _coded(90, 120).transpose(Image.FLIP_TOP_BOTTOM)
    mask = Image.fromarray((np.arange(90 * 120).reshape(90, 120) % 7 * 40).astype(np.uint8))
    c, m, r = test_transform(64)(comp, mask, real)
    assert np.array_equal(np.asarray(c), np.asarray(comp.resize((64, 64), Image.BILINEAR)))
    assert np.array_equal(np.asarray(r), np.asarray(real.resize((64, 64), Image.BILINEAR)))
    ct, mt, rt = to_tensors(c, m, r)
    assert set(mt.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(mt[0] == 1, torch.from_numpy(np.asarray(m) > 127))
    assert ct.shape == (3, 64, 64) and ct.min() >= -1 and ct.max() <= 1
    assert test_transform((32, 48))(comp, mask, real)[0].size == (48, 32)


def test_transform_errors():
    with pytest.raises(InputError, match="one size"):
        train_transform(16)(_coded(), _coded(10, 10).getchannel("R"), _coded())
    with pytest.raises(InputError, match="scale"):
        train_transform(16, scale=(0.0, 1.0))


def test_regrade_against_float64_formulas():
    from bargainnet.data.transforms import regrade

    rng = np.random.default_rng(0)
    x = rng.random((16, 16, 3))
    assert np.allclose(regrade(x, 0.0, 0.0, 0.0, 1.0), x, atol=1e-12)
    # exposure: linear light times 2**ev (IEC 61966-2-1 transfer functions written out here)
    to_lin = lambda v: np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)  # noqa: E731
    to_srgb = lambda v: np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)  # noqa: E731
    dark = x * 0.4
    assert np.allclose(regrade(dark, 0.0, 0.0, 1.0, 1.0), to_srgb(np.clip(to_lin(dark) * 2.0, 0, 1)), atol=1e-12)
    # saturation 0: every pixel its Rec. 709 luma
    gray = regrade(x, 0.0, 0.0, 0.0, 0.0)
    assert np.allclose(gray, (x @ np.array([0.2126, 0.7152, 0.0722]))[..., None].repeat(3, -1), atol=1e-12)
    # white balance keeps gray's luminance and warms (red up, blue down)
    warm = regrade(np.full((1, 1, 3), 0.5), 0.5, 0.0, 0.0, 1.0)[0, 0]
    assert warm[0] > 0.5 > warm[2]


def test_grade_renders_composite_and_real_alike():
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    comp = real.copy()
    mask = np.zeros((60, 80), np.uint8)
    mask[15:45, 20:60] = 255
    comp[15:45, 20:60] //= 2
    graded = train_transform(40, grade=1.0)
    plain = train_transform(40)
    changed = 0
    for seed in range(8):
        c, m, r = (np.asarray(x) for x in graded(Image.fromarray(comp), Image.fromarray(mask), Image.fromarray(real),
                                                 generator=torch.Generator().manual_seed(seed)))
        # the background stays identical, so an unperturbed sample stays one
        bg = m == 0
        assert np.array_equal(c[bg], r[bg])
        c0, m0, r0 = (np.asarray(x) for x in plain(Image.fromarray(comp), Image.fromarray(mask), Image.fromarray(real),
                                                   generator=torch.Generator().manual_seed(seed)))
        assert np.array_equal(m, m0)  # same geometry: the grading draws after the crop and flip
        changed += np.abs(r.astype(int) - r0.astype(int)).mean() > 0.5
        same = graded(Image.fromarray(real), Image.fromarray(mask), Image.fromarray(real),
                      generator=torch.Generator().manual_seed(seed))
        assert np.array_equal(np.asarray(same[0]), np.asarray(same[2]))
    assert changed >= 6
    # grade=0 draws nothing more than the published transform
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    train_transform(40, grade=0.0)(Image.fromarray(comp), Image.fromarray(mask), Image.fromarray(real), generator=g1)
    plain(Image.fromarray(comp), Image.fromarray(mask), Image.fromarray(real), generator=g2)
    assert torch.equal(g1.get_state(), g2.get_state())
    with pytest.raises(InputError, match="grade"):
        train_transform(40, grade=1.5)
