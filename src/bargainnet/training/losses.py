"""BargainNet's training objective (paper §3.3, Eq. 1–3).

L = ‖Î − I‖₁ + λ·(T(ẑ_f, z_b, z̃_f) + T(z_f, ẑ_f, z̃_f)), T(a, p, n) = max(d(a,p) − d(a,n) + m, 0)
with d the Euclidean distance between L-dimensional codes. Paper defaults m = 1, λ = 0.01.

``distance="published"`` reproduces the published code instead: ``nn.TripletMarginLoss(margin=0.1)``
applied to (B, L, 1, 1) codes, which on current PyTorch measures distances along the last
(size-1) axis — i.e. per code dimension |a_i − p_i| — and averages the hinge over dimensions.
Use :meth:`LossConfig.published` for that behaviour (margin 0.1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch.nn.functional as F
from torch import Tensor, nn

DISTANCES = ("euclidean", "published")


def reconstruction_loss(harmonized: Tensor, real: Tensor) -> Tensor:
    """Mean absolute error ‖Î − I‖₁ / N between (B, 3, H, W) images."""
    return F.l1_loss(harmonized, real)


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0, distance: str = "euclidean") -> Tensor:
    """T(a, p, n) averaged over the batch; codes (B, L) (any trailing shape is flattened).

    ``distance="euclidean"`` (paper): max(‖a−p‖₂ − ‖a−n‖₂ + m, 0). ``"published"``: what
    ``nn.TripletMarginLoss`` computes on (B, L, 1, 1) tensors (per-dimension distances).
    """
    a, p, n = (t.flatten(1) for t in (anchor, positive, negative))
    if distance == "euclidean":
        return F.relu((a - p).norm(dim=1) - (a - n).norm(dim=1) + margin).mean()
    if distance == "published":
        shape = (a.shape[0], a.shape[1], 1, 1)
        return F.triplet_margin_loss(a.view(shape), p.view(shape), n.view(shape), margin=margin)
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


@dataclass
class LossConfig:
    """Weights of the objective. The ablations switch the two triplet terms on and off."""

    margin: float = 1.0
    triplet_weight: float = 0.01  # λ
    background_triplet: bool = True  # T(ẑ_f, z_b, z̃_f): harmonized foreground close to the background
    foreground_triplet: bool = True  # T(z_f, ẑ_f, z̃_f): real foreground closer to harmonized than composite
    distance: str = "euclidean"

    def __post_init__(self):
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {self.distance!r}")

    @classmethod
    def published(cls) -> "LossConfig":
        """The published code's loss: margin 0.1, per-dimension TripletMarginLoss distances."""
        return cls(margin=0.1, distance="published")

    def to_dict(self) -> dict:
        return asdict(self)


def bargainnet_loss(outputs: dict[str, Tensor], real: Tensor, config: LossConfig | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its components (detached) from :meth:`BargainNet.training_forward` outputs.

    Returns ``(total, {"l1", "triplet_background", "triplet_foreground", "total"})``.
    """
    config = config or LossConfig()
    l1 = reconstruction_loss(outputs["harmonized"], real)
    total = l1
    zero = l1.new_zeros(())
    t_bg = t_fg = zero
    if config.background_triplet:
        t_bg = triplet_loss(outputs["z_f_harm"], outputs["z_b"], outputs["z_f_comp"], config.margin, config.distance)
        total = total + config.triplet_weight * t_bg
    if config.foreground_triplet:
        t_fg = triplet_loss(outputs["z_f"], outputs["z_f_harm"], outputs["z_f_comp"], config.margin, config.distance)
        total = total + config.triplet_weight * t_fg
    parts = {"l1": l1, "triplet_background": t_bg, "triplet_foreground": t_fg, "total": total}
    return total, {k: v.detach() for k, v in parts.items()}


class BargainNetLoss(nn.Module):
    """Module twin of :func:`bargainnet_loss`."""

    def __init__(self, config: LossConfig | None = None, **overrides):
        super().__init__()
        base = config or LossConfig()
        self.config = LossConfig(**{**base.to_dict(), **overrides})

    def forward(self, outputs: dict[str, Tensor], real: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return bargainnet_loss(outputs, real, self.config)
