"""A colour-transform generator family guided by BargainNet's background domain code.

The paper's generator paints RGB pixels at the working size. This family keeps the paper's
domain code extractor E and its roles — z_b = E(Ĩ, 1−M) guides the generator, the triplet losses
use ẑ_f = E(Î, M), the inharmony level is d(z_b, z̃_f) — but the generator predicts the
*parameters of a colour transform* from a small view of the composite and applies that transform
to the foreground. Because a colour transform cannot invent texture and its parameters do not
depend on the image size, the same prediction is applied at the photo's own resolution (see
:meth:`ColorTransformNet.apply_transform`). This is how the stronger harmonizers after BargainNet
work (docs/design.md: Harmonizer's global filters, PCT-Net's per-pixel affine maps, LUT models).

The transform, applied to x = the composite in [0, 1] at pixel p (normalised position u ∈ [0,1]²):

1. a global per-channel tone curve, piecewise linear through ``curve_knots`` evenly spaced knots
   (offsets from the identity);
2. a global affine colour transform y = (I + A) x + b (3×4 parameters);
3. (``grid`` > 0) a local affine transform (I + A(u)) y + b(u) whose 12 parameters are bilinearly
   interpolated from a ``grid``×``grid`` lattice over the image.

Every output layer that predicts parameters starts at zero, so a new model is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bargainnet import harmony_score
from .base import ModelConfig, check_model_inputs
from .domain_encoder import DomainEncoder


@dataclass
class ColorTransformConfig(ModelConfig):
    """Architecture of a :class:`ColorTransformNet`; stored in every weights file.

    ``encoder_width`` is E's first width (the paper's 64 costs 2 GFLOPs per code at 256²; 16 costs
    1/16 of that). ``width`` is the first stage's channels (doubling per stage up to 8×); ``depth`` the number of
    stride-2 stages (the working size must be a multiple of 2**depth); ``grid`` the side of the local
    affine lattice (0 = global transform only); ``curve_knots`` the knots of the global tone curve
    (0 = none).
    """

    width: int = 32
    depth: int = 5
    code_dim: int = 16
    encoder_width: int = 16
    grid: int = 8
    curve_knots: int = 8
    image_size: int | None = 256  # default working size (the view the parameters are predicted from)
    # the global head also reads the foreground's and background's colour statistics (mean, std per
    # channel), the numbers classical colour transfer works from
    color_stats: bool = False
    # the global head also reads the foreground's and background's features pooled at every stage
    # (not only the last, where a 4x4 map at 128 px blurs a small object into its surroundings)
    multiscale: bool = False
    # 0: the local lattice is grid x grid, from pooled features. k > 0: a decoder (k upsampling
    # levels with skip connections, as a U-Net's) predicts the lattice densely at the working size
    # / 2**(depth - k), e.g. 32x32 at 128 px with depth 5 and k = 3 (``grid`` > 0 still switches
    # the local transform on). Per-pixel transform maps from a U-Net learn far faster than pooled
    # ones (docs/evaluation.md).
    decoder_levels: int = 0

    architecture: ClassVar[str] = "color_transform"

    def __post_init__(self):
        for name in ("width", "depth", "code_dim", "encoder_width"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.decoder_levels < self.depth:
            raise ValueError(f"decoder_levels must be in [0, depth), got {self.decoder_levels} with depth {self.depth}")
        if self.grid < 0 or self.curve_knots < 0 or self.curve_knots == 1:
            raise ValueError(f"grid must be >= 0 and curve_knots 0 or >= 2, got {self.grid}, {self.curve_knots}")

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this (2**depth)."""
        return 2**self.depth


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
    )


def _up_stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


def _masked_mean(x: Tensor, weight: Tensor) -> Tensor:
    """Mean of (B, C, h, w) features over the region ``weight`` (B, 1, h, w) -> (B, C)."""
    return (x * weight).sum((2, 3)) / weight.sum((2, 3)).clamp(min=1e-6)


def _pool_matrix(n: int, cells: int, like: Tensor) -> Tensor:
    """(cells, n): row i averages the inputs [floor(i·n/cells), ceil((i+1)·n/cells)), the regions
    of ``adaptive_avg_pool``."""
    i = torch.arange(cells)
    lo, hi = (i * n) // cells, ((i + 1) * n + cells - 1) // cells
    j = torch.arange(n)
    w = ((j[None] >= lo[:, None]) & (j[None] < hi[:, None])).to(like.dtype)
    return (w / w.sum(1, keepdim=True)).to(like.device)


def _adaptive_pool(x: Tensor, size) -> Tensor:
    """``F.adaptive_avg_pool2d(x, size)`` (= area interpolation) as two small matrix products,
    which the ONNX export can write at any pair of sizes (sizes are fixed by the working size)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    return _pool_matrix(h, int(size[0]), x) @ x @ _pool_matrix(w, int(size[1]), x).T


def _color_stats(image: Tensor, mask: Tensor) -> Tensor:
    """(B, 12): per-channel mean and standard deviation of the foreground, then of the background."""
    out = []
    for w in (mask, 1 - mask):
        mean = _masked_mean(image, w)
        var = _masked_mean((image - mean[:, :, None, None]) ** 2, w)
        out += [mean, (var + 1e-6).sqrt()]
    return torch.cat(out, 1)


class TransformPredictor(nn.Module):
    """The generator of this family: (Ĩ, M, z_b) at the working size -> transform parameters.

    A strided CNN over cat[Ĩ, M, Z_b] (the code replicated over the image, scaled by the published
    learnable ``clamp(w, 0.001)``); the global head reads the features pooled over the foreground
    and over the background (of the last stage, or with ``multiscale`` of every stage) plus z_b;
    the local head reads the features resampled to the grid, or with ``decoder_levels`` the output
    of a small U-Net decoder over the stages.
    """

    def __init__(self, config: ColorTransformConfig):
        super().__init__()
        c = config
        self.config = c
        self.weight = nn.Parameter(torch.tensor([0.1]))
        chans = [min(c.width * 2**i, c.width * 8) for i in range(c.depth)]
        stages, cin = [], 4 + c.code_dim
        for cout in chans:
            stages.append(_stage(cin, cout))
            cin = cout
        self.stages = nn.ModuleList(stages)
        feat = chans[-1]
        hidden = max(64, feat)
        n_global = 12 + 3 * c.curve_knots
        n_stats = 12 if c.color_stats else 0
        pooled = sum(chans) if c.multiscale else feat
        self.global_head = nn.Sequential(
            nn.Linear(2 * pooled + c.code_dim + n_stats, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, n_global)
        )
        self.local_head = None
        self.decoder = None
        if c.grid > 0 and c.decoder_levels:
            ups, cin = [], feat
            for skip in reversed(chans[-1 - c.decoder_levels : -1]):
                ups.append(_up_stage(cin + skip, skip))
                cin = skip
            self.decoder = nn.ModuleList(ups)
            self.local_head = nn.Sequential(
                nn.Conv2d(cin + feat, hidden, 1), nn.LeakyReLU(0.2), nn.Conv2d(hidden, 12, 1)
            )
        elif c.grid > 0:
            mid = chans[min(len(chans) - 1, 2)]
            self.local_head = nn.Sequential(
                nn.Conv2d(feat + mid + feat, hidden, 1), nn.LeakyReLU(0.2), nn.Conv2d(hidden, 12, 1)
            )
        for head in (self.global_head, self.local_head):
            if head is not None:  # identity at initialisation
                nn.init.zeros_(head[-1].weight)
                nn.init.zeros_(head[-1].bias)

    def forward(self, composite: Tensor, mask: Tensor, code: Tensor) -> dict[str, Tensor]:
        c = self.config
        b, _, h, w = composite.shape
        maps = code.view(b, -1, 1, 1).expand(-1, -1, h, w) * self.weight.clamp(min=0.001)
        x = torch.cat([composite, mask, maps], 1)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        last = feats[-1]
        m = _adaptive_pool(mask, last.shape[-2:])
        pooled_f, pooled_b = _masked_mean(last, m), _masked_mean(last, 1 - m)
        inputs = [pooled_f, pooled_b, code]
        if c.multiscale:
            inputs = [code]
            for f in feats:
                mf = _adaptive_pool(mask, f.shape[-2:])
                inputs += [_masked_mean(f, mf), _masked_mean(f, 1 - mf)]
        if c.color_stats:
            inputs.append(_color_stats(composite, mask))
        g = self.global_head(torch.cat(inputs, 1))
        params = {"affine": g[:, :12].view(b, 3, 4)}
        if c.curve_knots:
            params["curve"] = g[:, 12:].view(b, 3, c.curve_knots)
        if self.decoder is not None:
            x = last
            for up, skip in zip(self.decoder, reversed(feats[-1 - c.decoder_levels : -1])):
                x = up(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], 1))
            glob = pooled_f[:, :, None, None].expand(-1, -1, *x.shape[-2:])
            params["grid"] = self.local_head(torch.cat([x, glob], 1))  # (B, 12, h/2**(depth-k), w/...)
        elif self.local_head is not None:
            size = (c.grid, c.grid)
            mid = feats[min(len(feats) - 1, 2)]
            glob = pooled_f[:, :, None, None].expand(-1, -1, *size)
            local_in = torch.cat([_adaptive_pool(last, size), _adaptive_pool(mid, size), glob], 1)
            params["grid"] = self.local_head(local_in)  # (B, 12, grid, grid)
        return params


def _apply_curve(x: Tensor, offsets: Tensor) -> Tensor:
    """Per-channel piecewise-linear curve: x (B, 3, H, W) in [0, 1], offsets (B, 3, K) -> same shape."""
    k = offsets.shape[-1]
    pos = x.clamp(0, 1) * (k - 1)
    lo = pos.floor().clamp(max=k - 2)
    frac = pos - lo
    b, ch, h, w = x.shape
    idx = lo.long().view(b, ch, -1)
    o_lo = offsets.gather(2, idx).view(b, ch, h, w)
    o_hi = offsets.gather(2, idx + 1).view(b, ch, h, w)
    return x + o_lo + (o_hi - o_lo) * frac


def _apply_affine(x: Tensor, matrix: Tensor, bias: Tensor) -> Tensor:
    """y = (I + A) x + b for x (B, 3, H, W): A (B, 3, 3) and b (B, 3) global, or A (B, 3, 3, H, W)
    and b (B, 3, H, W) per pixel. Written as multiply-adds (a generic einsum over per-pixel
    matrices is several times slower on a CPU)."""
    if matrix.dim() == 3:
        matrix, bias = matrix[..., None, None], bias[..., None, None]
    x0, x1, x2 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return x + matrix[:, :, 0] * x0 + matrix[:, :, 1] * x1 + matrix[:, :, 2] * x2 + bias


def _interpolation_weights(n: int, cells: int, start: float, extent: float, like: Tensor) -> Tensor:
    """(n, cells) bilinear weights of ``n`` pixel centres spanning [start, start + extent] of the
    image (fractions) over a lattice of ``cells`` cell centres; border-clamped, i.e. what
    ``grid_sample(align_corners=False, padding_mode="border")`` does along one axis."""
    pos = (start + (torch.arange(n, device=like.device, dtype=like.dtype) + 0.5) / n * extent) * cells - 0.5
    pos = pos.clamp(0, cells - 1)
    lo = pos.floor().clamp(max=max(cells - 2, 0)).long()
    frac = (pos - lo).unsqueeze(1)
    w = torch.zeros(n, cells, device=like.device, dtype=like.dtype)
    w.scatter_(1, lo.unsqueeze(1), 1 - frac)
    if cells > 1:
        w.scatter_add_(1, (lo + 1).unsqueeze(1), frac)
    return w


def _curve_lookup(x8: Tensor, offsets: Tensor | None) -> Tensor:
    """The tone curve of 8-bit pixels x8 (B, 3, H, W) as a 256-entry table per channel: the same
    float32 numbers as :func:`_apply_curve` on x8 · float32(1/255), one lookup per pixel."""
    levels = torch.arange(256, dtype=torch.float32, device=x8.device) * torch.tensor(1 / 255, dtype=torch.float32)
    if offsets is None:
        return levels[x8.long()]
    b, ch, h, w = x8.shape
    table = _apply_curve(levels.view(1, 1, 1, 256).expand(b, ch, 1, 256), offsets.float()).view(b, ch, 256)
    return table.gather(2, x8.reshape(b, ch, h * w).long()).view(b, ch, h, w)


def apply_params(x: Tensor, params: dict[str, Tensor], grid_window: tuple[float, float, float, float] | None = None) -> Tensor:
    """Apply predicted transform parameters to images x (B, 3, H, W) in [0, 1] -> [0, 1].

    ``x`` may also be 8-bit (uint8, value / 255): the tone curve is then a table lookup, with the
    same result as on the float pixels.

    ``grid_window`` = (top, left, height, width) of x inside the full image, as fractions of the full
    image's size (default: x is the whole image): the local lattice is sampled at the right places
    when only a crop (the foreground's box, a tile) is transformed.
    """
    if x.dtype == torch.uint8:
        y = _curve_lookup(x, params.get("curve"))
    else:
        y = _apply_curve(x, params["curve"]) if "curve" in params else x
    a = params["affine"].to(y.dtype)
    if "grid" not in params:
        return _apply_affine(y, a[:, :, :3], a[:, :, 3]).clamp(0, 1)
    b, _, h, w = x.shape
    top, left, hh, ww = grid_window or (0.0, 0.0, 1.0, 1.0)
    lattice = _compose_with_global(params["grid"].to(y.dtype), a)
    # bilinear interpolation of the lattice at the pixel centres, separably: Wy · lattice · Wxᵀ
    # (dense weight matrices: a matrix product beats gathering two entries per pixel on a CPU)
    wy = _interpolation_weights(h, lattice.shape[-2], top, hh, y)
    wx = _interpolation_weights(w, lattice.shape[-1], left, ww, y)
    local = wy @ lattice @ wx.T  # (B, 12, h, w)
    return _apply_affine(y, local[:, :9].view(b, 3, 3, h, w), local[:, 9:]).clamp(0, 1)


def _compose_with_global(lattice: Tensor, affine: Tensor) -> Tensor:
    """The lattice of the composition local ∘ global: (I + A_l)((I + A_g) x + b_g) + b_l, as
    deltas from the identity, cell by cell. Exact after interpolation (it is linear in the
    lattice), and it saves a full-resolution pass."""
    b, _, gh, gw = lattice.shape
    eye = torch.eye(3, dtype=lattice.dtype, device=lattice.device)
    local = eye[None, :, :, None, None] + lattice[:, :9].view(b, 3, 3, gh, gw)
    matrix = torch.einsum("bijhw,bjk->bikhw", local, eye + affine[:, :, :3]) - eye[None, :, :, None, None]
    bias = torch.einsum("bijhw,bj->bihw", local, affine[:, :, 3]) + lattice[:, 9:]
    return torch.cat([matrix.reshape(b, 9, gh, gw), bias], 1)


class ColorTransformNet(nn.Module):
    """E (the paper's extractor) + a colour-transform generator; the :class:`BargainNet` interface.

    Images (B, 3, H, W) in [-1, 1]; masks (B, 1, H, W) in [0, 1], 1 = foreground. ``forward`` and
    ``harmonize`` return the transformed foreground composited on the untouched background.
    """

    architecture = "color_transform"
    predicts_transform = True  # the Harmonizer applies the parameters at full resolution

    def __init__(self, config: ColorTransformConfig | None = None, **overrides):
        super().__init__()
        self.config = config = ColorTransformConfig.resolve(config, **overrides)
        self.encoder = DomainEncoder(config.code_dim, width=config.encoder_width)
        self.generator = TransformPredictor(config)
        # E keeps PyTorch's default initialisation: with the published N(0, 0.02) a narrow E starts
        # with near-constant codes (d(z_b, z̃_f) ≈ 0.001), where the triplet terms barely move it
        # (docs/evaluation.md, "Candidates for a new default"); the default gives ~50× larger ones.

    def check_inputs(self, image: Tensor, mask: Tensor, name: str = "composite") -> None:
        """Raise ValueError naming the shapes when ``image``/``mask`` cannot go through the model."""
        check_model_inputs(self.config, image, mask, name)

    # -- the BargainNet interface ----------------------------------------------------------
    def domain_code(self, image: Tensor, region_mask: Tensor) -> Tensor:
        """E(image, region) -> (B, L) code of the region where ``region_mask`` is 1."""
        return self.encoder(image, region_mask)

    def guide_code(self, composite: Tensor, mask: Tensor) -> Tensor:
        """z_b = E(Ĩ, 1−M), the background's code that guides the generator."""
        return self.encoder(composite, 1 - mask)

    def predict(self, composite: Tensor, mask: Tensor, code: Tensor | None = None) -> dict[str, Tensor]:
        """Transform parameters for the region ``mask`` of ``composite`` (working size), guided by
        ``code`` (default z_b). Apply them at any resolution with :func:`apply_params`."""
        self.check_inputs(composite, mask)
        code = self.guide_code(composite, mask) if code is None else code
        return self.generator(composite, mask, code)

    def translate(self, image: Tensor, region_mask: Tensor, code: Tensor) -> Tensor:
        """``image`` whose ``region_mask`` region is transformed towards ``code``, composited."""
        params = self.generator(image, region_mask, code)
        out = apply_params((image + 1) / 2, params) * 2 - 1
        return out * region_mask + image * (1 - region_mask)

    def forward(self, composite: Tensor, mask: Tensor) -> Tensor:
        """Î: the foreground transformed towards the background's domain, on the untouched background."""
        self.check_inputs(composite, mask)
        return self.translate(composite, mask, self.guide_code(composite, mask))

    def harmonize(self, composite: Tensor, mask: Tensor, return_params: bool = False):
        """Î, and with ``return_params`` the transform parameters too (see :meth:`harmonize_with_inharmony`)."""
        params = self.predict(composite, mask)
        out = apply_params((composite + 1) / 2, params) * 2 - 1
        harmonized = out * mask + composite * (1 - mask)
        return (harmonized, params) if return_params else harmonized

    def harmonize_with_inharmony(self, composite: Tensor, mask: Tensor, return_params: bool = False):
        """Harmonize and score in one pass: (Î (B, 3, H, W), d(z_b, z̃_f) (B,), d(z_b, ẑ_f) (B,)),
        and with ``return_params`` the transform parameters too (to apply at full resolution with
        :meth:`apply_transform`).

        No value checks (they cannot be traced): the graph the ONNX export writes.
        """
        codes = self.encoder(torch.cat([composite, composite]), torch.cat([1 - mask, mask]))
        z_b, z_f = codes.chunk(2)
        params = self.generator(composite, mask, z_b)
        out = apply_params((composite + 1) / 2, params) * 2 - 1
        harmonized = out * mask + composite * (1 - mask)
        z_h = self.encoder(harmonized, mask)
        outputs = (harmonized, (z_b - z_f).norm(dim=1), (z_b - z_h).norm(dim=1))
        return (*outputs, params) if return_params else outputs

    def background_params(self, composite: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Transform parameters that move the background (1 − mask) towards z̃_f = E(Ĩ, M)."""
        return self.generator(composite, 1 - mask, self.encoder(composite, mask))

    @staticmethod
    def apply_transform(image: Tensor, params: dict[str, Tensor], window=None) -> Tensor:
        """Apply predicted parameters to ``image`` (B, 3, h, w) in [0, 1] at any resolution; see
        :func:`apply_params` for ``window``."""
        return apply_params(image, params, window)

    def harmonize_background(self, composite: Tensor, mask: Tensor) -> Tensor:
        """Background harmonization (paper §4.6): the background transformed towards z̃_f = E(Ĩ, M)."""
        self.check_inputs(composite, mask)
        return self.translate(composite, 1 - mask, self.encoder(composite, mask))

    def inharmony(self, composite: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Inharmony level d(z_b, z̃_f) (B,) and the bounded score exp(−0.04212·d) (B,)."""
        self.check_inputs(composite, mask)
        codes = self.encoder(torch.cat([composite, composite]), torch.cat([1 - mask, mask]))
        z_b, z_f = codes.split(composite.shape[0])
        distance = (z_b - z_f).norm(dim=1)
        return distance, harmony_score(distance)

    def training_forward(self, composite: Tensor, mask: Tensor, real: Tensor) -> dict[str, Tensor]:
        """Harmonized Î and the codes z_b, z_f, ẑ_f, z̃_f (each (B, L)) for the paper's losses."""
        self.check_inputs(composite, mask)
        self.check_inputs(real, mask, name="real")
        b = composite.shape[0]
        codes = self.encoder(torch.cat([composite, real, composite]), torch.cat([1 - mask, mask, mask]))
        z_b, z_f, z_f_comp = codes.split(b)
        harmonized = self.translate(composite, mask, z_b)
        z_f_harm = self.encoder(harmonized, mask)
        return {"harmonized": harmonized, "z_b": z_b, "z_f": z_f, "z_f_harm": z_f_harm, "z_f_comp": z_f_comp}

    def num_parameters(self) -> dict[str, int]:
        return {
            "generator": sum(p.numel() for p in self.generator.parameters()),
            "encoder": sum(p.numel() for p in self.encoder.parameters()),
        }
