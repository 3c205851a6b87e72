"""Classical harmonization baselines: move the foreground's colour statistics to the background's.

Each method adjusts only the foreground (mask > 0) of a composite, using the composite's own
background (mask <= 0.5) as the colour reference — the training-free counterpart of what
BargainNet learns:

- ``composite`` — the input composite unchanged (the "Input composite" row of the paper's tables);
- ``reinhard`` — Lab mean/standard-deviation transfer (:func:`bargainnet.evaluation.color_transfer.reinhard`);
- ``histogram`` — per-channel RGB histogram matching (:func:`~bargainnet.evaluation.color_transfer.histogram_match`);
- ``covariance`` — linear Monge–Kantorovich transfer of the RGB mean and covariance
  (:func:`~bargainnet.evaluation.color_transfer.covariance_transfer`).

:func:`harmonize_numpy` works on one float [0, 1] image; :func:`harmonize_batch` on the model's
tensor convention (B, 3, H, W) in [-1, 1] with masks (B, 1, H, W), so the baselines can be
evaluated side by side with a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from . import color_transfer

__all__ = ["BASELINES", "LABELS", "harmonize_numpy", "harmonize_batch"]

BASELINES: tuple[str, ...] = ("composite", "reinhard", "histogram", "covariance")

# Row names used in comparison tables (the paper's "Input composite" row first).
LABELS: dict[str, str] = {
    "composite": "Input composite",
    "reinhard": "Reinhard (Lab mean/std transfer)",
    "histogram": "Histogram matching (RGB)",
    "covariance": "Covariance transfer (linear MK)",
}


def _check_name(method: str) -> None:
    if method not in BASELINES:
        raise InputError(f"unknown baseline {method!r}; known: {', '.join(BASELINES)}")


def harmonize_numpy(method: str, image: np.ndarray, mask: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Harmonize one composite with a classical method.

    ``image``: float (H, W, 3) in [0, 1]; ``mask``: (H, W) in [0, 1], 1 = foreground. The
    foreground's colour statistics are transferred to those of the background (mask <= 0.5);
    background pixels (mask 0) are returned unchanged. An image whose foreground or background is
    empty is returned unchanged (there is nothing to match).
    """
    _check_name(method)
    image = np.asarray(image)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if method == "composite":
        return image.copy()
    fg = mask > 0.5
    if not fg.any() or fg.all():
        return image.copy()
    background = (~fg).astype(np.float64)
    return color_transfer.METHODS[method](image, mask, image, background, strength=strength)


def harmonize_batch(method: str, composite: Any, mask: Any) -> Any:
    """Batched :func:`harmonize_numpy` on tensors: (B, 3, H, W) in [-1, 1], masks (B, 1, H, W).

    Returns a tensor like ``composite`` (same dtype and device). The numpy work runs per image
    on the CPU.
    """
    import torch

    _check_name(method)
    if composite.dim() != 4 or composite.shape[1] != 3:
        raise InputError(f"composite must have shape (B, 3, H, W), got {tuple(composite.shape)}")
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != composite.shape[0] or mask.shape[-2:] != composite.shape[-2:]:
        raise InputError(f"mask must have shape (B, 1, H, W) matching {tuple(composite.shape)}, got {tuple(mask.shape)}")
    if method == "composite":
        return composite.clone()
    imgs = ((composite.detach().float().cpu().permute(0, 2, 3, 1).numpy().astype(np.float64) + 1.0) / 2.0).clip(0.0, 1.0)
    masks = mask.detach().float().cpu()[:, 0].numpy().astype(np.float64).clip(0.0, 1.0)
    out = np.stack([harmonize_numpy(method, im, m) for im, m in zip(imgs, masks)])
    result = torch.from_numpy(out * 2.0 - 1.0).permute(0, 3, 1, 2)
    return result.to(dtype=composite.dtype, device=composite.device).contiguous()
