"""Partial convolution (Liu et al., ECCV 2018) with a single-channel mask, as BargainNet uses it.

Reference: bcmi/BargainNet ``models/partialconv2d.py`` (multi_channel=False, return_mask=True).
Unlike the published layer this one is stateless (no cached mask ratio), which keeps it correct
under ``torch.compile`` and ONNX export (docs/design.md §2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def partial_conv2d(
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> tuple[Tensor, Tensor]:
    """Convolve only the pixels where ``mask`` is 1 and renormalise by the window's coverage.

    Args:
        x: (B, C_in, H, W) features.
        mask: (B, 1, H, W) region mask in [0, 1] (1 = valid).
        weight: (C_out, C_in, k, k) kernel; bias: (C_out,) or None.

    Returns:
        ``(out, new_mask)``: out (B, C_out, H', W'); new_mask (B, 1, H', W') = clamp(coverage, 0, 1).
        With ``update = conv(mask, ones(k, k))`` and ``ratio = k²/(update+1e-8)·clamp(update, 0, 1)``:
        out = ((conv(x·mask) − b)·ratio + b)·clamp(update, 0, 1) with bias, conv(x·mask)·ratio without.
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"partial_conv2d: mask must have shape (B, 1, H, W), got {tuple(mask.shape)}")
    if mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"partial_conv2d: mask {tuple(mask.shape)} does not match features {tuple(x.shape)}"
        )
    kh, kw = weight.shape[-2:]
    with torch.no_grad():
        ones = torch.ones(1, 1, kh, kw, dtype=mask.dtype, device=mask.device)
        update = F.conv2d(mask, ones, stride=stride, padding=padding)
        new_mask = update.clamp(0, 1)
        ratio = (kh * kw) / (update + 1e-8) * new_mask
    raw = F.conv2d(x * mask, weight, bias, stride=stride, padding=padding)
    if bias is None:
        return raw * ratio.to(raw.dtype), new_mask
    b = bias.view(1, -1, 1, 1)
    return ((raw - b) * ratio.to(raw.dtype) + b) * new_mask.to(raw.dtype), new_mask


class PartialConv2d(nn.Conv2d):
    """:func:`partial_conv2d` as a module; ``forward(x, mask) -> (out, new_mask)``."""

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        if not isinstance(self.padding, tuple) or len(set(self.padding)) != 1:
            raise ValueError("PartialConv2d supports symmetric integer padding only")
        return partial_conv2d(x, mask, self.weight, self.bias, self.stride[0], self.padding[0])
