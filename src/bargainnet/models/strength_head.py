"""A small learned head that predicts, for each image, how much of the network's change to apply.

The head is a bag of ``heads`` MLPs (``inputs -> hidden -> hidden -> 1``, GELU) whose strengths
``min_strength + (max_strength − min_strength) · sigmoid(·)`` are averaged; it reads the columns
``columns`` of a feature vector of ``features`` numbers (listed and computed by
:mod:`bargainnet.inference.learned_strength`), normalised by the means and spreads of its
training set, stored with it. It lives in the model's
weights file beside the network (tensors ``strength_head.*``, its configuration in the metadata
key ``strength_head``); ``strength="learned"`` uses it (:class:`~bargainnet.inference.Harmonizer`).
It is trained by ``benchmarks/strength_head.py``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..errors import InputError


#: colour statistics, the first columns of the feature vector
STATS = 54


def feature_count(code_length: int) -> int:
    """How many features a head reads for a model whose domain code has ``code_length`` numbers:
    colour statistics, three codes, the foreground's share, the measured strength."""
    return STATS + 3 * code_length + 2


@dataclass(frozen=True)
class StrengthHeadConfig:
    """``columns``: the feature columns the head reads, of ``features`` in all; ``heads`` MLPs of
    ``hidden`` units; strengths from ``min_strength`` to ``max_strength``."""

    columns: tuple[int, ...]
    features: int
    heads: int = 5
    hidden: int = 32
    max_strength: float = 1.5
    min_strength: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "columns", tuple(int(c) for c in self.columns))
        if not self.columns or len(set(self.columns)) != len(self.columns) or not all(0 <= c < self.features for c in self.columns):
            raise InputError(f"strength head: columns must be distinct feature indices below {self.features}, got {self.columns}")
        if self.heads < 1 or self.hidden < 1:
            raise InputError(f"strength head: heads and hidden must be >= 1, got {self.heads} and {self.hidden}")
        if not 0 <= self.min_strength < self.max_strength <= 2:
            raise InputError("strength head: need 0 <= min_strength < max_strength <= 2, "
                             f"got {self.min_strength} and {self.max_strength}")

    def to_dict(self) -> dict:
        return {**asdict(self), "columns": list(self.columns)}

    @classmethod
    def from_dict(cls, settings: dict, where: str = "strength head") -> "StrengthHeadConfig":
        try:
            return cls(**settings)
        except (TypeError, ValueError) as err:
            raise InputError(f"{where}: invalid strength head configuration: {err}") from None


class StrengthHead(nn.Module):
    """Features (B, ``config.features``) -> strengths (B,) in [``config.min_strength``, ``config.max_strength``]."""

    def __init__(self, config: StrengthHeadConfig):
        super().__init__()
        self.config = config
        n, h = len(config.columns), config.hidden
        self.register_buffer("columns", torch.tensor(config.columns, dtype=torch.long), persistent=False)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(n, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1)) for _ in range(config.heads)
        )

    @classmethod
    def from_metadata(cls, text: str, code_length: int, where) -> "StrengthHead":
        """The (untrained) head a weights file's ``strength_head`` metadata (JSON) describes, for
        a model whose domain code has ``code_length`` numbers; InputError naming ``where``."""
        try:
            settings = json.loads(text)
        except ValueError as err:
            raise InputError(f"{where}: invalid strength head configuration in its metadata: {err}") from None
        if not isinstance(settings, dict):
            raise InputError(f"{where}: the strength head configuration must be a JSON object, got {settings!r}")
        config = StrengthHeadConfig.from_dict(settings, str(where))
        expected = feature_count(code_length)
        if config.features != expected:
            raise InputError(f"{where}: the strength head reads {config.features} features; this model's are {expected}")
        return cls(config)

    def tensors_text(self) -> str:
        """The head's tensors as text (safetensors bytes, base64), for metadata that holds only text (ONNX)."""
        from safetensors.torch import save

        return base64.b64encode(save({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()})).decode()

    def load_tensors_text(self, text: str, where) -> "StrengthHead":
        """Load tensors written by :meth:`tensors_text`; InputError naming ``where``."""
        from safetensors.torch import load

        try:
            self.load_state_dict(load(base64.b64decode(text)))
        except Exception as err:  # bad base64, bad safetensors, missing or misshapen tensors
            raise InputError(f"{where}: invalid strength head tensors in its metadata: {err}") from None
        return self.eval()

    def forward(self, features: Tensor) -> Tensor:
        x = (features[:, self.columns] - self.mean) / self.std
        return torch.stack([self.strength(mlp(x)[:, 0]) for mlp in self.mlps]).mean(0)

    def strength(self, logit: Tensor) -> Tensor:
        """One MLP's output as a strength."""
        low, high = self.config.min_strength, self.config.max_strength
        return low + (high - low) * torch.sigmoid(logit)
