"""One typed training configuration: model, loss, data, optimiser and trainer.

A configuration is read from a YAML file (which may name a ``base:`` file it extends), then
``key.sub=value`` overrides from the command line are applied, and every value is checked
against the type of its field. Unknown keys are errors that name the key, the file and the
known keys. Machine paths (data roots, image folders) are not hyper-parameters: they are given
on the command line (``--data``, ``--stream-images``) and stored with the run, not here.

Example::

    cfg = load_config("configs/bargainnet.yaml", ["loss.margin=0.25", "data.batch_size=16"])
    cfg.model.ngf, cfg.loss.triplet_weight, cfg.optim.lr
    save_config(cfg, "runs/x/config.yaml")      # resolved, with every default written out

The supplement's sweeps are overrides: ``loss.margin=0.25`` (m), ``loss.triplet_weight=1e-3``
(λ), ``model.code_dim=8`` (L).
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union

import yaml

from ..errors import InputError
from ..evaluation.protocols import PROTOCOL_NAMES as PROTOCOLS
from ..io import atomic_write_text
from ..models.bargainnet import BargainNetConfig
from ..models.base import MIN_WORKING_SIZE
from ..models.registry import DEFAULT_ARCHITECTURE, get_family
from .losses import LossConfig

SCHEDULES = ("constant", "cosine", "linear", "step")
PRECISIONS = ("32", "32-true", "bf16-mixed", "bf16-true", "16-mixed", "64", "64-true")


@dataclass
class DataConfig:
    """What the loaders produce. Paths are not here: ``--data ROOT`` and ``--stream-images DIR``.

    With ``--data`` alone, training reads ROOT's ``train`` split (iHarmony4 layout) and validation
    its ``test`` split; with ``--stream-images`` training draws composites on the fly
    (``CompositeStream``) and validation still reads ``--data``'s test split when given.
    """

    size: int = 256  # training and validation images are size x size
    scale: tuple[float, float] = (0.5, 1.0)  # RandomResizedCrop area range (published)
    batch_size: int = 1  # per device (published: 1)
    val_batch_size: int | None = None  # None: batch_size
    num_workers: int = 4
    subsets: list[str] | None = None  # e.g. [HCOCO, HFlickr]; None: all sub-datasets
    val_samples: int | None = None  # validate on this many test images (evenly spaced); None: all
    stream_options: dict[str, Any] = field(default_factory=dict)  # extra CompositeStream arguments
    grade: float = 0.0  # probability of rendering a training photo's colours anew (TrainTransform's grade)

    def __post_init__(self):
        if self.size < MIN_WORKING_SIZE:
            raise ValueError(
                f"size must be at least {MIN_WORKING_SIZE} (the domain code extractor needs 63 px), got {self.size}"
            )
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        if self.batch_size < 1 or (self.val_batch_size is not None and self.val_batch_size < 1):
            raise ValueError("batch sizes must be positive")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if not 0 <= self.grade <= 1:
            raise ValueError(f"grade must be a probability in [0, 1], got {self.grade}")
        if self.val_samples is not None and self.val_samples < 1:
            raise ValueError(f"val_samples must be positive or null (all), got {self.val_samples}")


@dataclass
class OptimConfig:
    """Adam and its learning-rate schedule (published: lr 1e-4, betas (0.9, 0.999), constant)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine | linear | step
    warmup_steps: int = 0  # linear warm-up from 0 over this many steps (any schedule)
    min_lr_ratio: float = 0.0  # cosine/linear: final lr = lr * min_lr_ratio
    decay_start: float = 0.5  # linear: keep lr constant for this fraction of max_steps, then decay
    milestones: list[int] = field(default_factory=list)  # step: multiply lr by gamma at these steps
    gamma: float = 0.1
    grad_clip: float | None = None  # clip the global gradient norm (None: off, as published)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if not 0 <= self.decay_start <= 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("decay_start and min_lr_ratio must lie in [0, 1]")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class TrainerConfig:
    """Lightning trainer settings, intervals (in optimiser steps) and reproducibility."""

    max_steps: int = 100_000
    max_hours: float | None = None  # also stop after this much training wall time (checkpoint at the end)
    precision: str = "32"  # 32 | bf16-mixed | 16-mixed | bf16-true
    accelerator: str = "auto"  # auto | cpu | gpu | cuda | mps
    devices: Union[int, str, list[int]] = "auto"
    strategy: str = "auto"  # auto | ddp | ddp_find_unused_parameters_true | fsdp ...
    num_nodes: int = 1
    sync_batchnorm: bool = False  # DDP: BatchNorm statistics over all devices
    log_every_n_steps: int = 50
    val_every_n_steps: int = 1000  # 0: no validation
    ckpt_every_n_steps: int = 1000
    keep_last_k: int = 3  # step checkpoints kept besides last.ckpt (-1: all)
    image_every_n_steps: int = 1000  # validation image grid (at the first validation at or after)
    num_image_samples: int = 8
    metric_protocol: str = "published"  # how validation MSE/PSNR/fMSE are computed (bargainnet.evaluation.metrics)
    seed: int = 0
    deterministic: bool = False
    channels_last: bool = False  # GPU speed: NHWC convolutions
    compile: bool = False  # torch.compile the generator and the extractor
    check_finite: bool = True  # stop on a NaN/inf loss or gradient

    def __post_init__(self):
        self.precision = str(self.precision)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.metric_protocol not in PROTOCOLS:
            raise ValueError(f"metric_protocol must be one of {PROTOCOLS}, got {self.metric_protocol!r}")
        for name in ("max_steps", "log_every_n_steps", "ckpt_every_n_steps", "num_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("val_every_n_steps", "image_every_n_steps", "num_image_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_hours is not None and self.max_hours <= 0:
            raise ValueError(f"max_hours must be positive or null, got {self.max_hours}")
        if self.keep_last_k == 0 or self.keep_last_k < -1:
            raise ValueError(f"keep_last_k must be positive or -1 (all), got {self.keep_last_k}")


@dataclass
class TrainConfig:
    """Everything that defines a training run except machine paths.

    ``architecture`` names the generator family (:mod:`bargainnet.models.registry`); ``model`` is
    that family's configuration (``BargainNetConfig`` for the paper's model).
    """

    architecture: str = DEFAULT_ARCHITECTURE
    model: BargainNetConfig = field(default_factory=BargainNetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, values: dict, source: str = "configuration") -> "TrainConfig":
        """Build and type-check from a (possibly partial) nested dict; missing keys keep defaults."""
        if not isinstance(values, dict):
            return _build(cls, values, "", source)
        values = dict(values)
        architecture = values.get("architecture", DEFAULT_ARCHITECTURE)
        model = values.pop("model", {})
        config = _build(cls, values, "", source)
        try:
            config_class = get_family(architecture).config_class
        except InputError as err:
            raise InputError(f"{source}: {err}") from None
        config.model = _build(config_class, model, "model.", source)
        return config


# ------------------------------------------------------------------------------------------
# building with type checks


def _plain(value):
    """Tuples -> lists, recursively, so that YAML stays plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _known(cls) -> list[str]:
    return [f.name for f in fields(cls)]


def _unknown_key_error(key: str, prefix: str, cls, source: str) -> InputError:
    known = _known(cls)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
    where = f"section '{prefix[:-1]}'" if prefix else "the top level"
    return InputError(
        f"unknown configuration key '{prefix}{key}' in {source}{hint} (known keys in {where}: {', '.join(known)})"
    )


def _build(cls, values: Any, prefix: str, source: str):
    if not isinstance(values, dict):
        raise InputError(f"{source}: '{prefix[:-1] or 'configuration'}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in hints or key not in _known(cls):
            raise _unknown_key_error(str(key), prefix, cls, source)
        tp = hints[key]
        if is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{prefix}{key}.", source)
        else:
            kwargs[key] = _coerce(value, tp, f"{prefix}{key}", source)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        where = f"'{prefix[:-1]}'" if prefix else "configuration"
        raise InputError(f"{source}: invalid {where}: {err}") from None


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str, source: str):
    """``value`` converted to ``tp`` (YAML gives ``1e-4`` as a string, lists for tuples)."""

    def fail(extra: str = ""):
        raise InputError(f"{source}: '{key}' must be {_type_name(tp)}, got {value!r}{extra}")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            fail()
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except InputError:
                continue
        fail()
    if tp is bool:
        if isinstance(value, bool):
            return value
        fail(" (use true or false)")
    if tp is int:
        if isinstance(value, bool):
            fail()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                fail()
            if number.is_integer():
                return int(number)
        fail()
    if tp is float:
        if isinstance(value, bool):
            fail()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                fail()
        fail()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and key.endswith("precision"):
            return str(value)  # `precision: 32` in YAML
        fail()
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            fail()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key, source) for v in value)
        if len(value) != len(args):
            fail(f" ({len(args)} values expected)")
        return tuple(_coerce(v, a, key, source) for v, a in zip(value, args))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            fail()
        return [_coerce(v, args[0], key, source) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        return dict(value)
    return value


# ------------------------------------------------------------------------------------------
# YAML files and overrides


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    if update.get("architecture", out.get("architecture")) != out.get("architecture"):
        out.pop("model", None)  # another generator family: the base's model section does not apply
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "stream_options":
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | os.PathLike, _seen: tuple = ()) -> dict:
    """The nested dict of a configuration file, with its ``base:`` chain merged in (base first)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"configuration file not found: {path}")
    if path.resolve() in _seen:
        raise InputError(f"configuration {path}: 'base' chain loops back to itself")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"configuration {path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise InputError(f"configuration {path} must be a mapping of sections, got {type(values).__name__}")
    base = values.pop("base", None)
    if base is not None:
        base_path = (path.parent / str(base)) if not Path(str(base)).is_absolute() else Path(str(base))
        values = _deep_merge(read_yaml(base_path, _seen + (path.resolve(),)), values)
    return values


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"loss.margin=0.25"`` -> (["loss", "margin"], 0.25); the value is read as YAML."""
    if "=" not in text:
        raise InputError(f"override {text!r} must look like key.sub=value (e.g. loss.margin=0.5)")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise InputError(f"override {text!r}: empty key part in {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(values: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Nested dict with each ``key.sub=value`` set (keys are checked later, when building)."""
    values = _plain(values)
    for text in overrides:
        parts, value = parse_override(text)
        node = values
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise InputError(f"override {text!r}: '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return values


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults <- YAML file (with its ``base:`` chain) <- ``key.sub=value`` overrides, type-checked.

    Raises :class:`InputError` for a missing/invalid file, an unknown key (with a suggestion) or a
    value of the wrong type or range.
    """
    values = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "configuration"
    if overrides:
        # check override keys on their own, so the message names the override, not the file
        # (within the file's generator family, which the model keys depend on)
        family = {"architecture": values["architecture"]} if "architecture" in values else {}
        TrainConfig.from_dict(apply_overrides(family, overrides), source="command-line overrides")
        values = apply_overrides(values, overrides)
        source += " + command-line overrides"
    return TrainConfig.from_dict(values, source=source)


def config_to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)


def save_config(config: TrainConfig, path: str | os.PathLike) -> Path:
    """Write the resolved configuration as YAML, atomically; :class:`OutputError` when it cannot."""
    return atomic_write_text(path, config_to_yaml(config))
