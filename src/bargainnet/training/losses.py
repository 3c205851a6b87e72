"""BargainNet's training objective (paper §3.3, Eq. 1–3).

L = ‖Î − I‖₁ + λ·(T(ẑ_f, z_b, z̃_f) + T(z_f, ẑ_f, z̃_f)), T(a, p, n) = max(d(a,p) − d(a,n) + m, 0)
with d the Euclidean distance between L-dimensional codes. Paper defaults m = 1, λ = 0.01.

``distance="published"`` reproduces the published code instead: ``nn.TripletMarginLoss(margin=0.1)``
applied to (B, L, 1, 1) codes, which on current PyTorch measures distances along the last
(size-1) axis — i.e. per code dimension |a_i − p_i| — and averages the hinge over dimensions.
Use :meth:`LossConfig.published` for that behaviour (margin 0.1).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DISTANCES = ("euclidean", "published")
ENCODER_OBJECTIVES = ("paper", "discriminative")


RECONSTRUCTIONS = ("image", "foreground")
NORMS = ("l1", "l2")
MIN_FOREGROUND = 0.01  # foreground-normalised loss: areas below 1 % of the image count as 1 %


def reconstruction_loss(
    harmonized: Tensor, real: Tensor, mask: Tensor | None = None, sample_weight: Tensor | None = None,
    norm: str = "l1",
) -> Tensor:
    """Mean absolute error between (B, 3, H, W) images: ‖Î − I‖₁ / N (paper), or with ``mask``
    (B, 1, H, W) the error summed over the foreground and divided by its area (at least 1 % of
    the image), averaged over images — every composite counts alike whatever its object's size
    (the foreground-normalised loss of iDIH, Sofiiuk et al. 2021, with L1).

    ``sample_weight`` (B,): each image's error counts that many times in the batch mean (the
    weights are not renormalised: weight 2 is the image drawn twice). ``norm="l2"``: the squared
    error instead of the absolute one (same averaging), which weighs large errors more."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    diff = harmonized - real
    diff = diff.abs() if norm == "l1" else diff.square()
    if mask is None:
        if sample_weight is None:
            return diff.mean()
        per_image = diff.flatten(1).mean(1)
    else:
        err = (diff * mask).sum((1, 2, 3))
        area = mask.sum((1, 2, 3)).clamp(min=MIN_FOREGROUND * mask.shape[-1] * mask.shape[-2])
        per_image = err / (3 * area)
    if sample_weight is not None:
        per_image = per_image * sample_weight
    return per_image.mean()


def triplet_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 1.0,
    distance: str = "euclidean",
    weight: Tensor | None = None,
) -> Tensor:
    """T(a, p, n) averaged over the batch; codes (B, L) (any trailing shape is flattened).
    ``weight`` (B,): per-sample weights of the average (e.g. 0 for unperturbed samples).

    ``distance="euclidean"`` (paper): max(‖a−p‖₂ − ‖a−n‖₂ + m, 0). ``"published"``: what
    ``nn.TripletMarginLoss`` computes on (B, L, 1, 1) tensors (per-dimension distances).
    """
    a, p, n = (t.flatten(1) for t in (anchor, positive, negative))
    if distance == "euclidean":
        hinge = F.relu((a - p).norm(dim=1) - (a - n).norm(dim=1) + margin)
    elif distance == "published":
        shape = (a.shape[0], a.shape[1], 1, 1)
        hinge = F.triplet_margin_loss(a.view(shape), p.view(shape), n.view(shape), margin=margin, reduction="none")
        hinge = hinge.flatten(1).mean(1)
    else:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if weight is None:
        return hinge.mean()
    return (hinge * weight).sum() / weight.sum().clamp(min=1)


@dataclass
class LossConfig:
    """Weights of the objective. The ablations switch the two triplet terms on and off."""

    margin: float = 1.0
    triplet_weight: float = 0.01  # λ
    background_triplet: bool = True  # T(ẑ_f, z_b, z̃_f): harmonized foreground close to the background
    foreground_triplet: bool = True  # T(z_f, ẑ_f, z̃_f): real foreground closer to harmonized than composite
    # How E is trained. "paper": by both triplet terms. "discriminative" (not in the paper): E
    # learns from T(z_b, z_f, z̃_f) — the background's code closer to the real foreground's than to
    # the composite's — and the foreground triplet, while the background triplet trains only the
    # generator (its codes come from a frozen copy of E). An identity-initialised generator (the
    # colour-transform family) starts with ẑ_f = z̃_f, where the paper's background triplet is
    # d(z̃_f, z_b) + m and only pulls the two codes together: E collapses to a constant code.
    encoder_objective: str = "paper"
    distance: str = "euclidean"
    reconstruction: str = "image"  # "image": ‖Î − I‖₁ over all pixels (paper); "foreground": per-area
    # "l1" (paper) or "l2": the reconstruction and distillation terms' per-pixel error, absolute or
    # squared (on the [-1, 1] scale: squared errors are smaller, so lower triplet_weight with it).
    norm: str = "l1"
    # How many times an unperturbed sample's (composite = real) reconstruction error counts, against
    # 1 for a composite (not in the paper; iHarmony4 has no such samples). Above 1 it trades some
    # of the change on composites for leaving harmonious foregrounds alone.
    identity_weight: float = 1.0
    # Knowledge distillation (not in the paper; `bargainnet train --teacher W`): ``distill`` is the
    # share of the reconstruction term measured against a trained teacher's output instead of the
    # real image; ``distill_codes`` weighs the squared distance between this model's codes and the
    # teacher's for the background, the real and the composite foregrounds (so that a smaller
    # student keeps the teacher's code space: inharmony distances stay comparable).
    distill: float = 0.0
    distill_codes: float = 0.0
    # False: unperturbed samples (composite = real) learn from the real image alone — there the
    # answer is known and a teacher that repaints harmonious photos would be copied.
    distill_unperturbed: bool = True

    def __post_init__(self):
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {self.distance!r}")
        if self.encoder_objective not in ENCODER_OBJECTIVES:
            raise ValueError(f"encoder_objective must be one of {ENCODER_OBJECTIVES}, got {self.encoder_objective!r}")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {self.reconstruction!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if not self.identity_weight >= 0:
            raise ValueError(f"identity_weight must be >= 0, got {self.identity_weight!r}")
        if not 0 <= self.distill <= 1:
            raise ValueError(f"distill must lie in [0, 1], got {self.distill!r}")
        if not self.distill_codes >= 0:
            raise ValueError(f"distill_codes must be >= 0, got {self.distill_codes!r}")

    @property
    def uses_codes(self) -> bool:
        """Whether any term needs E's codes of the real and harmonized foregrounds."""
        return self.background_triplet or self.foreground_triplet or self.discriminative or self.distill_codes > 0

    @property
    def uses_teacher(self) -> bool:
        """Whether a term compares with a teacher model (``--teacher``)."""
        return self.distill > 0 or self.distill_codes > 0

    @property
    def discriminative(self) -> bool:
        """Whether E is trained by the discriminative objective (see ``encoder_objective``)."""
        return self.encoder_objective == "discriminative"

    @classmethod
    def published(cls) -> "LossConfig":
        """The published code's loss: margin 0.1, per-dimension TripletMarginLoss distances."""
        return cls(margin=0.1, distance="published")

    def to_dict(self) -> dict:
        return asdict(self)


def bargainnet_loss(
    outputs: dict[str, Tensor],
    real: Tensor,
    config: LossConfig | None = None,
    mask: Tensor | None = None,
    composite: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its components (detached) from :meth:`BargainNet.training_forward` outputs.

    ``mask`` (B, 1, H, W) is needed for ``reconstruction="foreground"``. With ``composite``, samples
    whose composite equals the real image (unperturbed training samples) are left out of the
    triplet terms: there z̃_f = z_f, and the background triplet would push a harmonious
    foreground to change. (iHarmony4 has no such samples, so the paper's loss is unchanged.)

    With ``encoder_objective="discriminative"`` the outputs also need ``z_f_harm_frozen`` (ẑ_f from
    a frozen copy of E, see :func:`frozen_encoder_code`) for the background triplet. With
    distillation they need the teacher's ``teacher_output`` (its raw output, like ``harmonized``)
    and/or ``teacher_codes`` (its codes of z_b, z_f, z̃_f, stacked (3B, L)).

    Returns ``(total, {"l1", "triplet_background", "triplet_foreground", "total"})`` ("l1": the
    reconstruction term, squared errors with ``norm="l2"``), plus
    ``"triplet_real"`` with the discriminative objective and ``"distill"``/``"distill_codes"`` when
    distilling.
    """
    config = config or LossConfig()
    if config.reconstruction == "foreground" and mask is None:
        raise ValueError("reconstruction='foreground' needs the mask")
    if config.identity_weight != 1 and composite is None:
        raise ValueError("identity_weight != 1 needs the composite (to tell unperturbed samples)")
    if config.distill > 0 and not config.distill_unperturbed and composite is None:
        raise ValueError("distill_unperturbed=False needs the composite (to tell unperturbed samples)")
    weight = None
    if composite is not None:
        weight = (composite != real).flatten(1).any(1).to(real.dtype)
    sample_weight = None if config.identity_weight == 1 else weight + config.identity_weight * (1 - weight)
    rec_mask = mask if config.reconstruction == "foreground" else None
    rec = functools.partial(reconstruction_loss, norm=config.norm)
    l1 = rec(outputs["harmonized"], real, rec_mask, sample_weight)
    extra = {}
    if config.distill > 0:
        out, teacher = outputs["harmonized"], outputs["teacher_output"]
        extra["distill"] = rec(out, teacher, rec_mask, sample_weight)
        if config.distill_unperturbed:
            total = (1 - config.distill) * l1 + config.distill * extra["distill"]
        else:  # per sample: the teacher's share on composites, none on unperturbed samples
            share = config.distill * weight
            base = torch.ones_like(weight) if sample_weight is None else sample_weight
            total = rec(out, real, rec_mask, base * (1 - share)) + rec(out, teacher, rec_mask, base * share)
    else:
        total = l1
    if config.distill_codes > 0:
        student = torch.cat([outputs["z_b"], outputs["z_f"], outputs["z_f_comp"]])
        extra["distill_codes"] = (student - outputs["teacher_codes"]).pow(2).sum(1).mean()
        total = total + config.distill_codes * extra["distill_codes"]
    zero = l1.new_zeros(())
    t_bg = t_fg = zero
    if config.background_triplet:
        codes = (outputs["z_f_harm"], outputs["z_b"], outputs["z_f_comp"])
        if config.discriminative:  # trains the generator only
            codes = (outputs["z_f_harm_frozen"], outputs["z_b"].detach(), outputs["z_f_comp"].detach())
        t_bg = triplet_loss(*codes, config.margin, config.distance, weight)
        total = total + config.triplet_weight * t_bg
    if config.foreground_triplet:
        t_fg = triplet_loss(outputs["z_f"], outputs["z_f_harm"], outputs["z_f_comp"], config.margin, config.distance, weight)
        total = total + config.triplet_weight * t_fg
    parts = {"l1": l1, "triplet_background": t_bg, "triplet_foreground": t_fg, **extra}
    if config.discriminative:
        parts["triplet_real"] = triplet_loss(outputs["z_b"], outputs["z_f"], outputs["z_f_comp"], config.margin, config.distance, weight)
        total = total + config.triplet_weight * parts["triplet_real"]
    parts["total"] = total
    return total, {k: v.detach() for k, v in parts.items()}


def frozen_encoder_code(encoder: nn.Module, image: Tensor, region_mask: Tensor) -> Tensor:
    """E(image, region) through a frozen copy of ``encoder``: gradients reach ``image`` but not E's
    parameters, and batch-norm running statistics are left as they are."""
    params = {k: v.detach() for k, v in encoder.named_parameters()}
    buffers = {k: v.clone() for k, v in encoder.named_buffers()}
    return torch.func.functional_call(encoder, {**params, **buffers}, (image, region_mask))


class BargainNetLoss(nn.Module):
    """Module twin of :func:`bargainnet_loss`."""

    def __init__(self, config: LossConfig | None = None, **overrides):
        super().__init__()
        base = config or LossConfig()
        self.config = LossConfig(**{**base.to_dict(), **overrides})

    def forward(
        self, outputs: dict[str, Tensor], real: Tensor, mask: Tensor | None = None, composite: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return bargainnet_loss(outputs, real, self.config, mask, composite)
