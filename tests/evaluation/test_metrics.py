"""Protocol metrics against scikit-image and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio

from bargainnet.evaluation import metrics
from bargainnet.errors import InputError


def _pair(seed: int, h: int = 16, w: int = 12):
    rng = np.random.default_rng(seed)
    out = rng.uniform(-1, 1, (3, h, w)).astype(np.float32)
    real = np.clip(out + rng.normal(0, 0.2, out.shape), -1, 1).astype(np.float32)
    mask = np.zeros((1, h, w), np.float32)
    mask[:, 3:9, 2:7] = 1
    return out, real, mask


def test_truncation_matches_published_tensor2im():
    # published util.tensor2im: ((x + 1) / 2.0 * 255.0).astype(uint8) on float32 — truncation
    x = np.array([-1.0, -0.999, 0.0, 0.5, 0.99, 1.0], np.float32).reshape(1, 1, 6)
    x = np.repeat(x, 3, axis=0)
    got = metrics.to_uint8_truncate(x)[0, :, 0]
    # (x+1)/2*255 = 0, 0.1275, 127.5, 191.25, 253.725, 255 -> truncated
    assert got.tolist() == [0, 0, 127, 191, 253, 255]


@pytest.mark.parametrize("seed", range(4))
def test_plain_metrics_match_skimage(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (9, 7, 3)).astype(np.uint8)
    b = rng.integers(0, 256, (9, 7, 3)).astype(np.uint8)
    assert metrics.mse(a, b) == pytest.approx(mean_squared_error(a, b), rel=1e-12)
    rng_ = float(a.max()) - float(a.min())
    assert metrics.psnr(a, b, rng_) == pytest.approx(
        peak_signal_noise_ratio(b, a, data_range=rng_), rel=1e-12
    )
    assert metrics.psnr(a, b, 255) == pytest.approx(
        peak_signal_noise_ratio(b, a, data_range=255), rel=1e-12
    )


def test_hand_computed_values():
    # 2x2 RGB images; output differs from real by 10 in one channel of one pixel (the foreground)
    real = np.zeros((2, 2, 3))
    out = real.copy()
    out[0, 0, 0] = 10.0
    mask = np.array([[1, 0], [0, 0]])
    assert metrics.mse(out, real) == pytest.approx(100 / 12)
    assert metrics.fmse(out, real, mask) == pytest.approx(100 / 3)  # per channel, 1 fg pixel
    assert metrics.psnr(out, real, 255) == pytest.approx(10 * math.log10(255**2 * 12 / 100))
    assert metrics.psnr(real, real, 255) == math.inf
    assert math.isnan(metrics.fmse(out, real, np.zeros((2, 2))))


def test_published_protocol_equals_reference_pipeline():
    out, real, mask = _pair(1)
    got = metrics.image_metrics(torch.from_numpy(out), torch.from_numpy(real), mask, "published")
    # reference: the published steps written out with skimage
    o = ((np.transpose(out, (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)
    r = ((np.transpose(real, (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)
    m = mask[0][..., None]
    assert got["mse"] == pytest.approx(mean_squared_error(o, r), rel=1e-12)
    assert got["psnr"] == pytest.approx(
        peak_signal_noise_ratio(r, o, data_range=o.max() - o.min()), rel=1e-12
    )
    fm = mean_squared_error(o * m, r * m) * o.shape[0] * o.shape[1] / m.sum()
    assert got["fmse"] == pytest.approx(fm, rel=1e-12)
    assert got["fg_ratio"] == pytest.approx(100 * 30 / (16 * 12))


def test_published_scores_raw_output_standard_composites():
    out, real, mask = _pair(2)
    comp = real.copy()
    comp[:, mask[0] > 0.5] *= 0.5
    pub = metrics.image_metrics(out, real, mask, "published", composite=comp)
    std = metrics.image_metrics(out, real, mask, "standard", composite=comp)
    # standard: the background is the composite's, which equals the real one here
    m = mask[0] > 0.5
    o = np.clip((np.transpose(np.where(m, out, comp), (1, 2, 0)).astype(np.float64) + 1) / 2 * 255, 0, 255)
    r = np.clip((np.transpose(real, (1, 2, 0)).astype(np.float64) + 1) / 2 * 255, 0, 255)
    assert std["mse"] == pytest.approx(mean_squared_error(o, r), rel=1e-12)
    assert std["psnr"] == pytest.approx(peak_signal_noise_ratio(r, o, data_range=255), rel=1e-12)
    # both protocols see the same foreground (up to uint8 truncation)
    assert std["fmse"] == pytest.approx(pub["fmse"], rel=0.05)
    assert pub["mse"] > std["mse"]  # the raw output's background differs from the real one
    with pytest.raises(InputError, match="composite"):
        metrics.image_metrics(out, real, mask, "standard")


def test_batch_metrics_and_identity():
    out, real, mask = _pair(3)
    batch = np.stack([out, real])
    reals = np.stack([real, real])
    masks = np.stack([mask, mask])
    res = metrics.batch_metrics(torch.from_numpy(batch), reals, masks, "published")
    assert res[0] == metrics.image_metrics(out, real, mask, "published")
    assert res[1]["mse"] == 0 and res[1]["fmse"] == 0 and res[1]["psnr"] == math.inf


def test_bad_input_messages():
    out, real, mask = _pair(4)
    with pytest.raises(InputError, match="unknown protocol 'paper'"):
        metrics.get_protocol("paper")
    with pytest.raises(InputError, match=r"\(3, H, W\)"):
        metrics.image_metrics(out[:2], real, mask)
    with pytest.raises(InputError, match="mask has shape"):
        metrics.image_metrics(out, real, mask[:, :4])


def test_ratio_bins():
    assert [metrics.ratio_bin(r) for r in (0, 4.99, 5, 14.9, 15, 100)] == [
        "0-5%", "0-5%", "5-15%", "5-15%", "15-100%", "15-100%"
    ]
    with pytest.raises(InputError):
        metrics.ratio_bin(101)


def test_separate_fmse_mask():
    out, real, mask = _pair(5)
    other = np.zeros_like(mask)
    other[:, 0:4, 0:4] = 1
    got = metrics.image_metrics(out, real, mask, "published", fmse_mask=other)
    base = metrics.image_metrics(out, real, other, "published")
    assert got["fmse"] == base["fmse"] and got["fg_ratio"] == base["fg_ratio"]
    assert got["mse"] == base["mse"]
