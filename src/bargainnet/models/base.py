"""What every generator family shares: the working-size rule and the model interface.

A family is a model class and its configuration dataclass (registered in
:mod:`bargainnet.models.registry`). The configuration owns the preprocessing facts — which sizes
the network accepts (``size_multiple``, ``min_size``) and its default working size
(``image_size``, the resolution the weights were trained at, when known) — and
:func:`check_size` is the one place that enforces them (the Harmonizer, evaluation's
``--model-size``, the ONNX export, ``analyze`` and the training configuration all call it).

The model interface (what the Harmonizer, evaluation, export and training rely on), all images
(B, 3, H, W) in [-1, 1] and masks (B, 1, H, W) in [0, 1] with 1 = foreground:

- ``forward(composite, mask)`` — the raw output;
- ``harmonize(composite, mask)`` — the output on the untouched background;
- ``harmonize_with_inharmony(composite, mask)`` — (harmonized, distance before, distance after),
  without value checks so that it can be traced for ONNX;
- ``harmonize_background(composite, mask)``, ``inharmony(composite, mask)``,
  ``domain_code(image, region_mask)``;
- ``training_forward(composite, mask, real)`` — what the loss needs;
- ``config`` — a :class:`ModelConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from ..errors import InputError

#: The one size the inharmony distance is measured at, whatever the model's working size: the
#: composite and mask are resized from full resolution to INHARMONY_SIZE x INHARMONY_SIZE and
#: only the domain code extractor runs there, so distances (``score``, ``--min-inharmony``, the
#: before/after numbers) are comparable across models and ``--size``.
INHARMONY_SIZE = 256

#: Smallest working size of every family: the domain code extractor's five valid stride-2
#: convolutions need 63 px (see :mod:`bargainnet.models.domain_encoder`).
MIN_WORKING_SIZE = 64


class ModelConfig:
    """Mixin for a family's configuration dataclass: size rules and (de)serialisation.

    Subclasses are dataclasses; they set ``architecture`` (the registry name) and may override
    ``size_multiple`` (a property) and ``min_size``. An ``image_size`` field, when present and
    set, is the default working size.
    """

    architecture: ClassVar[str] = ""
    min_size: ClassVar[int] = MIN_WORKING_SIZE

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this."""
        return 1

    @property
    def default_size(self) -> int:
        """The working size: the training resolution when known, else the smallest accepted size."""
        trained = getattr(self, "image_size", None)
        if trained:
            return int(trained)
        m = self.size_multiple
        return max(m, -(-self.min_size // m) * m)

    def size_problem(self, height: int, width: int | None = None) -> str | None:
        """None when the network accepts height x width, else what is wrong (for an error message)."""
        width = height if width is None else width
        m = self.size_multiple
        if height % m or width % m or min(height, width) < self.min_size:
            return f"must be a multiple of {m} and at least {max(m, self.min_size)}"
        return None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def resolve(cls, config=None, **overrides):
        """``config`` (default: the defaults) with ``overrides`` applied: what a model's
        ``__init__(config=None, **overrides)`` builds itself from."""
        if config is None:
            return cls(**overrides)
        return cls(**{**config.to_dict(), **overrides}) if overrides else config

    @classmethod
    def from_dict(cls, values: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.architecture or cls.__name__} configuration keys: {unknown}")
        return cls(**values)


def default_size(config) -> int:
    """The working size of a model configuration (see :attr:`ModelConfig.default_size`)."""
    return int(config.default_size)


def check_size(config, size: int | None = None, *, what: str = "working size") -> int:
    """``size`` (default: the config's default working size) if the model accepts size x size;
    otherwise an :class:`~bargainnet.errors.InputError` saying which sizes it accepts."""
    size = int(size or config.default_size)
    problem = config.size_problem(size)
    if problem:
        raise InputError(f"{what} {size} {problem}")
    return size


def check_model_inputs(config, image, mask, name: str = "composite") -> None:
    """Raise ValueError naming the shapes/values when ``image`` (B, 3, H, W) in [-1, 1] and ``mask``
    (B, 1, H, W) in [0, 1] cannot go through a model with this ``config`` (every family's
    ``check_inputs``)."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(image.shape)}")
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must have shape (B, 1, H, W) (one channel), got {tuple(mask.shape)}")
    if mask.shape[0] != image.shape[0] or mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match {name} {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if config.size_problem(h, w):
        m = config.size_multiple
        raise ValueError(
            f"{name} size {h}x{w} cannot go through this model: height and width must be "
            f"multiples of {m} and at least {max(m, config.min_size)}; resize first"
        )
    lo, hi = float(mask.min()), float(mask.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"mask values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]")
    lo, hi = float(image.min()), float(image.max())
    if lo < -1 - 1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{name} values must lie in [-1, 1], got [{lo:.3g}, {hi:.3g}]")


#: The range of an inference ``strength`` (0 = the input unchanged, 1 = the model's result, above 1 = amplified).
STRENGTH_RANGE = (0.0, 2.0)


def check_strength(strength, what: str = "strength") -> float:
    """``strength`` as a float in :data:`STRENGTH_RANGE`; InputError naming ``what`` otherwise."""
    low, high = STRENGTH_RANGE
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not low <= strength <= high:
        raise InputError(f"{what} must be a number from {low:g} to {high:g}, got {strength!r}")
    return float(strength)


#: The strength setting that measures each image's strength on its own background
#: (:mod:`bargainnet.inference.calibration`) instead of applying a fixed one.
AUTO_STRENGTH = "auto"
#: The strength setting that predicts each image's strength with the weights file's learned head
#: (:mod:`bargainnet.models.strength_head`).
LEARNED_STRENGTH = "learned"
#: The strength settings that decide each image's strength for it.
PER_IMAGE_STRENGTHS = (AUTO_STRENGTH, LEARNED_STRENGTH)


def check_strength_setting(strength, what: str = "strength") -> float | str:
    """A fixed strength (see :func:`check_strength`) or one of :data:`PER_IMAGE_STRENGTHS`."""
    if isinstance(strength, str) and strength.strip().lower() in PER_IMAGE_STRENGTHS:
        return strength.strip().lower()
    low, high = STRENGTH_RANGE
    if isinstance(strength, str):
        raise InputError(f"{what} must be a number from {low:g} to {high:g}, {AUTO_STRENGTH!r} or {LEARNED_STRENGTH!r}, "
                         f"got {strength!r}")
    return check_strength(strength, what)


@dataclass(frozen=True)
class Calibration:
    """How ``strength="auto"`` turns the factor k measured on the image's own background into
    a strength: ``clip(scale * k, min_strength, max_strength)`` over ``placements`` background
    patches (pooled), or ``fallback`` when no patch can be placed; ``size``: the patches are
    measured at this size (the working size divided by a whole number; 0 = the working size
    itself), which makes the extra network call cheaper. ``null_ratio`` > 0 also runs the network
    on each patch left unperturbed (in the same batch) and scales the strength by
    ``min(1, rho / null_ratio)``, rho being the network's change on the foreground relative to
    its change there (root mean squares): a foreground the network changes no more than a patch
    of the image's own background is most likely harmonious already; 0 = off. The defaults were
    chosen for the bundled default model on the validation set (docs/evaluation.md, fourteenth
    session)."""

    scale: float = 0.6
    max_strength: float = 0.9
    placements: int = 3
    fallback: float = 0.7
    min_strength: float = 0.4
    size: int = 0
    null_ratio: float = 0.0

    def __post_init__(self):
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not 0 < self.scale <= 4:
            raise InputError(f"calibration scale must be a number in (0, 4], got {self.scale!r}")
        check_strength(self.max_strength, "calibration max_strength")
        check_strength(self.fallback, "calibration fallback")
        check_strength(self.min_strength, "calibration min_strength")
        if self.min_strength > self.max_strength:
            raise InputError(f"calibration min_strength {self.min_strength:g} is above max_strength {self.max_strength:g}")
        if isinstance(self.placements, bool) or not isinstance(self.placements, int) or not 1 <= self.placements <= 15:
            raise InputError(f"calibration placements must be a whole number from 1 to 15, got {self.placements!r}")
        if isinstance(self.null_ratio, bool) or not isinstance(self.null_ratio, (int, float)) or not 0 <= self.null_ratio <= 100:
            raise InputError(f"calibration null_ratio must be a number from 0 (off) to 100, got {self.null_ratio!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise InputError(f"calibration size must be a whole number >= 0 (0 = the working size), got {self.size!r}")

    @classmethod
    def from_dict(cls, settings, where: str = "calibration") -> "Calibration":
        if not isinstance(settings, dict):
            raise InputError(f"{where}: calibration settings must be an object, got {settings!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise InputError(f"{where}: unknown calibration settings {unknown} (known: {sorted(known)})")
        try:
            return cls(**settings)
        except InputError as err:
            raise InputError(f"{where}: {err}") from None

    def to_dict(self) -> dict:
        return asdict(self)
