"""Classical baselines: background untouched, foreground statistics moved to the background's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import color

from bargainnet.evaluation import baselines
from bargainnet.errors import InputError


def _scene(seed=0, h=40, w=48):
    """A real image (one illumination everywhere) and a composite whose foreground is recoloured."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.3 + 0.3 * xx, 0.4 + 0.2 * yy, 0.5 - 0.2 * xx], -1)
    real = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
    mask = np.zeros((h, w))
    mask[10:30, 12:36] = 1
    comp = real.copy()
    fg = mask > 0.5
    comp[fg] = np.clip(comp[fg] * [1.4, 0.8, 0.6] + [0.05, 0.0, 0.1], 0, 1)  # a colour cast
    return comp, real, mask


@pytest.mark.parametrize("method", baselines.BASELINES)
def test_background_unchanged_and_shape(method):
    comp, _, mask = _scene()
    out = baselines.harmonize_numpy(method, comp, mask)
    assert out.shape == comp.shape and out.dtype == comp.dtype
    np.testing.assert_array_equal(out[mask == 0], comp[mask == 0])
    if method == "composite":
        np.testing.assert_array_equal(out, comp)


def test_statistics_move_to_background():
    comp, _, mask = _scene(1)
    fg, bg = mask > 0.5, mask <= 0.5
    rein = baselines.harmonize_numpy("reinhard", comp, mask)
    lab_out, lab_ref = color.rgb2lab(rein)[fg], color.rgb2lab(comp)[bg]
    np.testing.assert_allclose(lab_out.mean(0), lab_ref.mean(0), atol=0.5)
    np.testing.assert_allclose(lab_out.std(0), lab_ref.std(0), rtol=0.05)
    cov = baselines.harmonize_numpy("covariance", comp, mask)
    np.testing.assert_allclose(cov[fg].mean(0), comp[bg].mean(0), atol=5e-3)
    np.testing.assert_allclose(np.cov(cov[fg].T), np.cov(comp[bg].T), atol=2e-4)
    hist = baselines.harmonize_numpy("histogram", comp, mask)
    for c in range(3):  # matched quantiles
        q = np.linspace(0.05, 0.95, 7)
        np.testing.assert_allclose(
            np.quantile(hist[fg][:, c], q), np.quantile(comp[bg][:, c], q), atol=0.01
        )


@pytest.mark.parametrize("method", ["reinhard", "histogram", "covariance"])
def test_baselines_reduce_foreground_error(method):
    comp, real, mask = _scene(2)
    fg = mask > 0.5
    before = np.mean((comp[fg] - real[fg]) ** 2)
    after = np.mean((baselines.harmonize_numpy(method, comp, mask)[fg] - real[fg]) ** 2)
    assert after < 0.5 * before


def test_batch_matches_numpy_and_keeps_background_bits():
    scenes = [_scene(s) for s in (3, 4)]
    comp = torch.tensor(np.stack([c for c, _, _ in scenes]), dtype=torch.float32).permute(0, 3, 1, 2) * 2 - 1
    mask = torch.tensor(np.stack([m for _, _, m in scenes]), dtype=torch.float32)[:, None]
    for method in baselines.BASELINES:
        out = baselines.harmonize_batch(method, comp, mask)
        assert out.shape == comp.shape and out.dtype == comp.dtype
        assert torch.equal(out[mask.expand_as(out) == 0], comp[mask.expand_as(comp) == 0])
        ref = baselines.harmonize_numpy(
            method, ((comp[1].permute(1, 2, 0).double() + 1) / 2).numpy(), mask[1, 0].double().numpy()
        )
        np.testing.assert_allclose(out[1].permute(1, 2, 0).numpy(), ref * 2 - 1, atol=1e-6)


def test_empty_regions_and_errors():
    comp, _, mask = _scene()
    np.testing.assert_array_equal(baselines.harmonize_numpy("reinhard", comp, np.zeros_like(mask)), comp)
    np.testing.assert_array_equal(baselines.harmonize_numpy("reinhard", comp, np.ones_like(mask)), comp)
    with pytest.raises(InputError, match="unknown baseline 'poisson'"):
        baselines.harmonize_numpy("poisson", comp, mask)
    with pytest.raises(InputError, match=r"\(B, 1, H, W\)"):
        baselines.harmonize_batch("reinhard", torch.zeros(1, 3, 8, 8), torch.zeros(1, 8, 8))
