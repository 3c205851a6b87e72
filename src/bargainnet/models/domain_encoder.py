"""Domain code extractor E (paper §3.2; published ``StyleEncoder``).

Five 3×3 stride-2 partial convolutions (padding 0) see only the pixels of one region, then
average pooling over all positions and a 1×1 convolution give an L-dimensional domain code.
Attribute names follow the published checkpoint (``conv1f``, ``norm2f``, …, ``convs``).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import PartialConv2d

MIN_SIZE = 63  # five valid 3×3 stride-2 convolutions need at least 63 px to leave one position


class DomainEncoder(nn.Module):
    """E(image, region_mask) -> (B, L) domain code.

    Args:
        code_dim: L, the code length (paper: 16).
        in_channels: image channels (3).
        width: channels of the first convolution (paper: 64); the others are 2, 4, 8 and 8 times it.

    Input image (B, 3, H, W) in [-1, 1], region mask (B, 1, H, W) with 1 = the region to
    describe; H, W >= 63.
    """

    def __init__(self, code_dim: int = 16, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.code_dim = code_dim
        widths = [in_channels, width, 2 * width, 4 * width, 8 * width, 8 * width]
        self.conv1f = PartialConv2d(widths[0], widths[1], 3, stride=2, padding=0, bias=True)
        self.conv2f = PartialConv2d(widths[1], widths[2], 3, stride=2, padding=0, bias=False)
        self.norm2f = nn.BatchNorm2d(widths[2])
        self.conv3f = PartialConv2d(widths[2], widths[3], 3, stride=2, padding=0, bias=False)
        self.norm3f = nn.BatchNorm2d(widths[3])
        self.conv4f = PartialConv2d(widths[3], widths[4], 3, stride=2, padding=0, bias=False)
        self.norm4f = nn.BatchNorm2d(widths[4])
        self.conv5f = PartialConv2d(widths[4], widths[5], 3, stride=2, padding=0, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.convs = nn.Conv2d(widths[5], code_dim, 1)
        self.relu = nn.ReLU()

    def forward(self, image: Tensor, region_mask: Tensor) -> Tensor:
        x, m = self.conv1f(image, region_mask)
        x = self.relu(x)
        for conv, norm in ((self.conv2f, self.norm2f), (self.conv3f, self.norm3f), (self.conv4f, self.norm4f)):
            x, m = conv(x, m)
            x = self.relu(norm(x))
        x, _ = self.conv5f(x, m)
        return self.convs(self.pool(x)).flatten(1)
