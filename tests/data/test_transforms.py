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
