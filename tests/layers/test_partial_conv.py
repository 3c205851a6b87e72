import numpy as np
import pytest
import torch

from bargainnet.layers import PartialConv2d, partial_conv2d


def _reference(x, mask, weight, bias, stride):
    """Float64 loop over windows: (sum over valid pixels · k²/valid count) + bias, 0 where none valid."""
    x, mask, weight = x.double().numpy(), mask.double().numpy(), weight.double().numpy()
    b = np.zeros(weight.shape[0]) if bias is None else bias.double().numpy()
    k = weight.shape[-1]
    B, _, H, W = x.shape
    Ho, Wo = (H - k) // stride + 1, (W - k) // stride + 1
    out = np.zeros((B, weight.shape[0], Ho, Wo))
    new_mask = np.zeros((B, 1, Ho, Wo))
    for n in range(B):
        for i in range(Ho):
            for j in range(Wo):
                win_m = mask[n, 0, i * stride : i * stride + k, j * stride : j * stride + k]
                coverage = win_m.sum()
                if coverage == 0:
                    continue
                win = x[n, :, i * stride : i * stride + k, j * stride : j * stride + k] * win_m
                raw = np.einsum("chw,ochw->o", win, weight)
                out[n, :, i, j] = raw * (k * k) / coverage + b
                new_mask[n, 0, i, j] = min(coverage, 1.0)
    return torch.from_numpy(out), torch.from_numpy(new_mask)


@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_float64_window_reference(with_bias):
    x = torch.randn(2, 3, 11, 13)
    mask = (torch.rand(2, 1, 11, 13) > 0.6).float()
    mask[1] = 0  # an all-invalid image: output must be exactly zero
    conv = PartialConv2d(3, 5, 3, stride=2, padding=0, bias=with_bias)
    out, new_mask = conv(x, mask)
    ref_out, ref_mask = _reference(x, mask, conv.weight.detach(), conv.bias.detach() if with_bias else None, 2)
    assert torch.allclose(out.double(), ref_out, atol=1e-5)
    assert torch.equal(new_mask.double(), ref_mask)
    assert torch.count_nonzero(out[1]) == 0


def test_full_mask_equals_plain_convolution():
    x = torch.randn(1, 4, 9, 9)
    conv = PartialConv2d(4, 6, 3, stride=2, padding=0)
    out, new_mask = conv(x, torch.ones(1, 1, 9, 9))
    assert torch.allclose(out, torch.nn.functional.conv2d(x, conv.weight, conv.bias, stride=2), atol=1e-6)
    assert torch.all(new_mask == 1)


def test_function_and_module_agree():
    x, mask = torch.randn(1, 3, 8, 8), (torch.rand(1, 1, 8, 8) > 0.5).float()
    conv = PartialConv2d(3, 4, 3, stride=1, padding=1)
    a = conv(x, mask)
    b = partial_conv2d(x, mask, conv.weight, conv.bias, 1, 1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_bad_mask_shape_is_named():
    conv = PartialConv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        conv(torch.randn(1, 3, 8, 8), torch.ones(1, 3, 8, 8))
    with pytest.raises(ValueError, match="does not match"):
        conv(torch.randn(1, 3, 8, 8), torch.ones(1, 1, 7, 8))
