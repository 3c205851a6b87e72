"""BargainNet = domain code extractor E + background-guided generator G (paper §3, Fig. 2).

z_b = E(Ĩ, 1−M) describes the background's capture condition; Î = G(Ĩ, M, z_b) translates the
foreground into that domain. The same E also gives foreground codes for the triplet losses,
background harmonization and the inharmony level (paper §4.6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import EfficientNetLite0
from .base import ModelConfig, check_model_inputs
from .domain_encoder import DomainEncoder
from .generator import AttentionUNet

HARMONY_SCORE_SCALE = 0.04212  # BCMI libcom's bounded harmony score exp(-0.04212 · d)
CODE_SOURCES = ("background", "composite")
OUTPUTS = ("rgb", "affine", "affine_global")
HINTS = ("none", "stats")
SEMANTICS = ("none", "lite0")
AFFINE_OUTPUTS = ("affine", "affine_global")


@dataclass
class BargainNetConfig(ModelConfig):
    """Architecture of a BargainNet; stored in every weights file.

    ``use_mask``/``use_code``/``code_source`` are the switches behind the supplement's ablations
    (Table 2): mask only = DoveNet (``use_code=False``); no mask (``use_mask=False``); code of the
    whole composite instead of the background (``code_source="composite"``).

    ``output``: what G's last layer predicts. "rgb" (the paper): the image, through Tanh.
    "affine": a 3×4 colour transform per pixel (PCT-Net's parametrisation), Tanh-bounded offsets
    from the identity, applied to G's input image; it starts as the identity and cannot invent
    texture. "affine_global": the same 12 maps averaged over the translated region, i.e. one 3×4
    transform per image: no part of the region can change colour on its own.

    ``encoder_width``: channels of E's first convolution (the paper: 64; the others are 2, 4, 8
    and 8 times it). E costs as much as a narrowed generator, so a light model narrows both.

    ``hint``: "stats" gives G three more input channels, the translated region recoloured so that
    each channel's mean and standard deviation match the rest of the image's
    (:func:`statistics_transfer`, a Reinhard-like transfer in RGB computed inside the model): G
    can follow it where the region plainly continues its surroundings and ignore it elsewhere.
    "none" (the paper): no hint.

    ``semantic``: "lite0" adds a frozen ImageNet EfficientNet-Lite0 (:mod:`.backbone`) whose
    features, averaged over the translated region and over the rest of the image, are projected
    to ``semantic_dim`` numbers that G reads as constant maps after the image channels: what the
    object and its surroundings are, which the narrow, briefly trained E cannot tell. "none" (the
    paper): no backbone.
    """

    architecture: ClassVar[str] = "bargainnet"

    ngf: int = 64
    num_downs: int = 8
    code_dim: int = 16
    use_mask: bool = True
    use_code: bool = True
    code_source: str = "background"
    use_dropout: bool = True
    use_attention: bool = True
    output: str = "rgb"
    encoder_width: int = 64
    hint: str = "none"
    semantic: str = "none"
    semantic_dim: int = 16
    # Not architecture: the resolution the weights were trained at (written by export-weights);
    # inference and evaluation run the network there by default. None: unknown.
    image_size: int | None = None

    def __post_init__(self):
        if self.code_source not in CODE_SOURCES:
            raise ValueError(f"code_source must be one of {CODE_SOURCES}, got {self.code_source!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.hint not in HINTS:
            raise ValueError(f"hint must be one of {HINTS}, got {self.hint!r}")
        if self.semantic not in SEMANTICS:
            raise ValueError(f"semantic must be one of {SEMANTICS}, got {self.semantic!r}")
        for name in ("ngf", "num_downs", "code_dim", "encoder_width", "semantic_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def image_channels(self) -> int:
        """G's input channels before the code maps: the image, the mask, the hint, the semantic maps."""
        semantic = self.semantic_dim if self.semantic != "none" else 0
        return 3 + int(self.use_mask) + (3 if self.hint == "stats" else 0) + semantic

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this (2**num_downs)."""
        return 2**self.num_downs


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """Published initialisation: conv weights N(0, 0.02), biases 0, BatchNorm weight N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class BargainNet(nn.Module):
    """The full model. Images (B, 3, H, W) in [-1, 1]; masks (B, 1, H, W) in [0, 1], 1 = foreground.

    H and W must be multiples of ``config.size_multiple`` (256 for the paper's 8 levels) and at
    least 64 (the extractor's five valid stride-2 convolutions).
    """

    def __init__(self, config: BargainNetConfig | None = None, **overrides):
        super().__init__()
        self.config = config = BargainNetConfig.resolve(config, **overrides)
        code_dim = config.code_dim if config.use_code else 0
        self.encoder = DomainEncoder(config.code_dim, width=config.encoder_width)
        self.generator = AttentionUNet(
            input_nc=config.image_channels + code_dim,
            output_nc=12 if config.output in AFFINE_OUTPUTS else 3,
            num_downs=config.num_downs,
            ngf=config.ngf,
            code_dim=code_dim,
            use_dropout=config.use_dropout,
            use_attention=config.use_attention,
        )
        init_weights(self)
        self.backbone = self.semantic_projection = None
        if config.semantic != "none":  # frozen, ImageNet weights loaded later (its own initialisation)
            self.backbone = EfficientNetLite0().requires_grad_(False).eval()
            self.semantic_projection = nn.Linear(2 * EfficientNetLite0.feature_channels, config.semantic_dim)
        if config.output in AFFINE_OUTPUTS:  # zero offsets: the identity transform at initialisation
            head = self.generator.output_layer
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    # -- checks ---------------------------------------------------------------------------
    def check_inputs(self, image: Tensor, mask: Tensor, name: str = "composite") -> None:
        """Raise ValueError naming the shapes when ``image``/``mask`` cannot go through the model."""
        check_model_inputs(self.config, image, mask, name)

    def train(self, mode: bool = True) -> "BargainNet":
        super().train(mode)
        if self.backbone is not None:  # frozen: its normalisation keeps ImageNet's statistics
            self.backbone.eval()
        return self

    # -- building blocks ------------------------------------------------------------------
    def semantic_code(self, image: Tensor, region_mask: Tensor) -> Tensor:
        """(B, semantic_dim): the backbone's features averaged over the region and over the rest, projected."""
        pooled = []
        for features, stride in zip(self.backbone(image), (16, 32)):
            inside = F.avg_pool2d(region_mask.to(features.dtype), stride)  # the region's share of each cell
            for weight in (inside, 1 - inside):
                pooled.append((features * weight).sum((2, 3)) / weight.sum((2, 3)).clamp_min(1e-6))
        return self.semantic_projection(torch.cat(pooled, 1))

    def domain_code(self, image: Tensor, region_mask: Tensor) -> Tensor:
        """E(image, region) -> (B, L) code of the region where ``region_mask`` is 1."""
        return self.encoder(image, region_mask)

    def guide_code(self, composite: Tensor, mask: Tensor, z_b: Tensor | None = None) -> Tensor | None:
        """The code that guides G: the background's z_b (or the whole composite's, ablation 8);
        None for a model without codes (ablation 1). ``z_b``: the background code when already computed."""
        if not self.config.use_code:
            return None
        if self.config.code_source == "composite":
            return self.encoder(composite, torch.ones_like(mask))
        return self.encoder(composite, 1 - mask) if z_b is None else z_b

    def translate(self, image: Tensor, region_mask: Tensor, code: Tensor | None) -> Tensor:
        """G's raw output for ``image`` whose ``region_mask`` region is translated to ``code``."""
        x = torch.cat([image, region_mask], 1) if self.config.use_mask else image
        if self.config.hint == "stats":
            x = torch.cat([x, statistics_transfer(image, region_mask)], 1)
        if self.backbone is not None:  # constant maps, like the code's but not scaled with it
            semantic = self.semantic_code(image, region_mask)
            x = torch.cat([x, semantic[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        out = self.generator(x, code if self.config.use_code else None)
        if self.config.output == "affine_global":  # the region's mean transform, everywhere
            weight = region_mask.to(out.dtype)
            mean = (out * weight).sum((2, 3), keepdim=True) / weight.sum((2, 3), keepdim=True).clamp_min(1e-6)
            out = mean.expand_as(out)
        return apply_pixel_affine(image, out) if self.config.output in AFFINE_OUTPUTS else out

    # -- public API -----------------------------------------------------------------------
    def forward(self, composite: Tensor, mask: Tensor) -> Tensor:
        """Paper forward: Î = G(Ĩ, M, z_b), G's raw output (B, 3, H, W) in [-1, 1]."""
        self.check_inputs(composite, mask)
        return self.translate(composite, mask, self.guide_code(composite, mask))

    def harmonize(self, composite: Tensor, mask: Tensor) -> Tensor:
        """Î·M + Ĩ·(1−M): the harmonized foreground on the untouched background."""
        out = self(composite, mask)
        return out * mask + composite * (1 - mask)

    def harmonize_with_inharmony(self, composite: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Harmonize and score in one pass: (Î·M + Ĩ·(1−M) (B, 3, H, W), d(z_b, z̃_f) (B,), d(z_b, ẑ_f) (B,)).

        No value checks (they cannot be traced): this is the graph the ONNX export writes and
        the Harmonizer runs; call :meth:`check_inputs` first on untrusted input.
        """
        background = 1 - mask
        # Two E calls in one batch: background code z_b and composite-foreground code z̃_f.
        codes = self.encoder(torch.cat([composite, composite]), torch.cat([background, mask]))
        z_b, z_f = codes.chunk(2)
        out = self.translate(composite, mask, self.guide_code(composite, mask, z_b))
        harmonized = out * mask + composite * background
        z_h = self.encoder(harmonized, mask)
        return harmonized, (z_b - z_f).norm(dim=1), (z_b - z_h).norm(dim=1)

    def harmonize_background(self, composite: Tensor, mask: Tensor) -> Tensor:
        """Background harmonization (paper §4.6): G(Ĩ, 1−M, z̃_f) composited over the foreground.

        The background is translated to the domain of the foreground's code z̃_f = E(Ĩ, M).
        """
        self.check_inputs(composite, mask)
        if not self.config.use_code:
            raise ValueError("background harmonization needs a code-guided model (use_code=True)")
        background = 1 - mask
        out = self.translate(composite, background, self.encoder(composite, mask))
        return out * background + composite * mask

    def inharmony(self, composite: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Inharmony level d(z_b, z̃_f) per image (B,), and the bounded score exp(−0.04212·d) (B,).

        Higher distance = less harmonious; the score is 1 for a perfectly harmonious image.
        """
        self.check_inputs(composite, mask)
        z_b = self.encoder(composite, 1 - mask)
        z_f = self.encoder(composite, mask)
        distance = (z_b - z_f).norm(dim=1)
        return distance, torch.exp(-HARMONY_SCORE_SCALE * distance)

    def training_forward(self, composite: Tensor, mask: Tensor, real: Tensor) -> dict[str, Tensor]:
        """Everything the loss needs: harmonized Î and the codes z_b, z_f, ẑ_f, z̃_f (each (B, L)).

        The four E calls run as one batched call over (Ĩ, 1−M), (I, M), (Î, M) would need Î first,
        so z_b/z_f/z̃_f go together and ẑ_f follows.
        """
        self.check_inputs(composite, mask)
        self.check_inputs(real, mask, name="real")
        b = composite.shape[0]
        codes = self.encoder(
            torch.cat([composite, real, composite]), torch.cat([1 - mask, mask, mask])
        )
        z_b, z_f, z_f_comp = codes.split(b)
        harmonized = self.translate(composite, mask, self.guide_code(composite, mask, z_b))
        z_f_harm = self.encoder(harmonized, mask)
        return {"harmonized": harmonized, "z_b": z_b, "z_f": z_f, "z_f_harm": z_f_harm, "z_f_comp": z_f_comp}

    def num_parameters(self) -> dict[str, int]:
        counts = {
            "generator": sum(p.numel() for p in self.generator.parameters()),
            "encoder": sum(p.numel() for p in self.encoder.parameters()),
        }
        if self.backbone is not None:
            counts["backbone (frozen)"] = sum(p.numel() for p in self.backbone.parameters())
            counts["semantic projection"] = sum(p.numel() for p in self.semantic_projection.parameters())
        return counts


def apply_pixel_affine(image: Tensor, offsets: Tensor) -> Tensor:
    """A 3×4 affine colour transform per pixel: (I + A)·x + b, clamped to [−1, 1].

    ``image`` (B, 3, H, W) in [−1, 1]; ``offsets`` (B, 12, H, W): A row by row (9 channels), then b.
    """
    b, _, h, w = image.shape
    matrix = offsets[:, :9].reshape(b, 3, 3, h, w)
    out = image + (matrix * image.unsqueeze(1)).sum(2) + offsets[:, 9:]
    return out.clamp(-1, 1)


def statistics_transfer(image: Tensor, region: Tensor, max_gain: float = 4.0) -> Tensor:
    """``image`` with the ``region`` recoloured so that each channel's mean and standard deviation
    over it match those over the rest of the image: (x − μ_r)·g + μ_o inside, with the gain
    g = σ_o / σ_r clamped to [1/max_gain, max_gain] (flat regions), clamped to [−1, 1]; the rest
    unchanged. ``image`` (B, 3, H, W) in [−1, 1]; ``region`` (B, 1, H, W) in {0, 1}.
    """
    inside = region.to(image.dtype)
    outside = 1 - inside

    def moments(weight: Tensor) -> tuple[Tensor, Tensor]:
        count = weight.sum((2, 3), keepdim=True).clamp_min(1.0)
        mean = (image * weight).sum((2, 3), keepdim=True) / count
        var = ((image - mean) ** 2 * weight).sum((2, 3), keepdim=True) / count
        return mean, var.clamp_min(1e-12).sqrt()

    mean_r, std_r = moments(inside)
    mean_o, std_o = moments(outside)
    gain = (std_o / std_r.clamp_min(1e-6)).clamp(1.0 / max_gain, max_gain)
    moved = ((image - mean_r) * gain + mean_o).clamp(-1, 1)
    return moved * inside + image * outside


def harmony_score(distance):
    """exp(−0.04212·d): maps an inharmony distance to (0, 1], 1 = harmonious (BCMI libcom's bounded score).

    A tensor gives a tensor, a number gives a float, anything else (arrays, lists) a float64 array.
    """
    if isinstance(distance, Tensor):
        return torch.exp(-HARMONY_SCORE_SCALE * distance)
    if isinstance(distance, (int, float)):
        return math.exp(-HARMONY_SCORE_SCALE * distance)
    return np.exp(-HARMONY_SCORE_SCALE * np.asarray(distance, dtype=np.float64))
