"""Generator G: the attention-enhanced U-Net of DoveNet / BargainNet (published ``UnetGenerator``).

A pix2pix U-Net built from nested skip blocks; in the blocks just inside the outermost one the
skip-concatenated tensor t = cat[x, inner(x)] is reweighted by ``sigmoid(conv1×1(t)) * t``
(DoveNet's attention). As in the published code (an in-place LeakyReLU), every skip connection
carries LeakyReLU(x). Module names and indices follow the published checkpoint layout
(``model.model.1.attention.0.weight``, …) so published weights load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class UnetSkipBlock(nn.Module):
    """One U-Net level: down-sample, run the inner block, up-sample, concatenate the skip.

    ``role`` is "outermost" (image in, image out, Tanh, no skip), "innermost" (no inner block)
    or "middle". ``outer_nc``/``inner_nc`` are the channels outside/inside this level.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        inner: nn.Module | None = None,
        role: str = "middle",
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        use_dropout: bool = False,
        use_attention: bool = False,
        output_nc: int | None = None,
    ):
        super().__init__()
        self.outermost = role == "outermost"
        input_nc = outer_nc if input_nc is None else input_nc
        use_bias = norm_layer is not nn.BatchNorm2d  # BatchNorm has its own shift
        down_conv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=use_bias)
        down_relu = nn.LeakyReLU(0.2)
        up_relu = nn.ReLU()
        if role == "outermost":
            up_conv = nn.ConvTranspose2d(inner_nc * 2, output_nc or outer_nc, 4, stride=2, padding=1)
            layers = [down_conv, inner, up_relu, up_conv, nn.Tanh()]
        elif role == "innermost":
            up_conv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=use_bias)
            layers = [down_relu, down_conv, up_relu, up_conv, norm_layer(outer_nc)]
        elif role == "middle":
            up_conv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=use_bias)
            layers = [down_relu, down_conv, norm_layer(inner_nc), inner, up_relu, up_conv, norm_layer(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        else:
            raise ValueError(f"role must be outermost, middle or innermost, got {role!r}")
        self.model = nn.Sequential(*layers)
        self.attention = None
        if use_attention and not self.outermost:
            channels = input_nc + outer_nc
            self.attention = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        # The published block's first layer is an in-place LeakyReLU, so the skip connection
        # carries LeakyReLU(x), not x; parity with published weights depends on it.
        x = self.model[0](x)
        inner = x
        for layer in self.model[1:]:
            inner = layer(inner)
        t = torch.cat([x, inner], 1)
        return self.attention(t) * t if self.attention is not None else t


class AttentionUNet(nn.Module):
    """G(x, code) -> (B, output_nc, H, W) in [-1, 1].

    Args:
        input_nc: channels of ``x`` (composite + mask = 4, or 3 without the mask) plus ``code_dim``.
        code_dim: length of the domain code appended as constant maps (0 = no code, DoveNet).
        ngf: width of the outermost level (paper 64); num_downs: levels (8 for 256×256 inputs).

    The code maps are scaled by the published learnable scalar ``clamp(weight, min=0.001)``
    (initialised to 0.1). H and W must be multiples of 2**num_downs.
    """

    def __init__(
        self,
        input_nc: int = 20,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        code_dim: int = 16,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        use_dropout: bool = True,
        use_attention: bool = True,
    ):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5 (4 fixed levels + innermost), got {num_downs}")
        self.num_downs = num_downs
        self.code_dim = code_dim
        if code_dim > 0:
            self.weight = nn.Parameter(torch.tensor([0.1]))
        block = UnetSkipBlock(ngf * 8, ngf * 8, role="innermost", norm_layer=norm_layer)
        for _ in range(num_downs - 5):
            block = UnetSkipBlock(ngf * 8, ngf * 8, inner=block, norm_layer=norm_layer, use_dropout=use_dropout)
        for mult in (4, 2, 1):
            block = UnetSkipBlock(
                ngf * mult, ngf * mult * 2, inner=block, norm_layer=norm_layer, use_attention=use_attention
            )
        self.model = UnetSkipBlock(
            ngf, ngf, input_nc=input_nc, inner=block, role="outermost", norm_layer=norm_layer, output_nc=output_nc
        )

    @property
    def first_layer(self) -> nn.Conv2d:
        """The first (outermost) convolution, which reads the input channels."""
        return self.model.model[0]

    @property
    def output_layer(self) -> nn.ConvTranspose2d:
        """The last (outermost) up-convolution, which writes the output channels."""
        return self.model.model[3]

    def forward(self, x: Tensor, code: Tensor | None = None) -> Tensor:
        if self.code_dim == 0:
            return self.model(x)
        if code is None:
            raise ValueError("this generator is guided by a domain code; pass code=(B, L)")
        # G reads cat[x, code maps]; the first convolution is linear and has no bias, so its
        # output is conv(x) plus the response to the constant maps, which is computed once on a
        # small tile instead of over the whole image (the same sum, without convolving L more
        # channels at full size).
        first = self.first_layer
        channels = x.shape[1]
        y = F.conv2d(x, first.weight[:, :channels], None, first.stride, first.padding)
        y = y + self._code_response(code * self.weight.clamp(min=0.001), first.weight[:, channels:], y.shape[2:])
        for layer in self.model.model[1:]:
            y = layer(y)
        return y

    def _code_response(self, code: Tensor, weight: Tensor, size) -> Tensor:
        """The first convolution (4×4, stride 2, padding 1) of maps constant at ``code`` (B, L),
        (B, C, *size): on an 8×8 tile the 4×4 result holds every case — a first or last output
        row (or column) whose window reaches the zero padding, and the interior rows, all alike
        — and is repeated to ``size``."""
        tile = code[:, :, None, None].expand(-1, -1, 8, 8)
        cases = F.conv2d(tile, weight, None, self.first_layer.stride, self.first_layer.padding)  # (B, C, 4, 4)
        rows = _edge_interior_index(size[0], cases.device)
        cols = _edge_interior_index(size[1], cases.device)
        return cases.index_select(2, rows).index_select(3, cols)


def _edge_interior_index(n: int, device) -> Tensor:
    """Which of the tile's 4 output positions each of n positions repeats: 0, then 1 (interior), then 3."""
    index = torch.ones(n, dtype=torch.long, device=device)
    index[0], index[-1] = 0, 3
    return index
