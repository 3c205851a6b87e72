"""Generator families by name: ``create_model("bargainnet", ngf=32)``.

A family is a model class with the interface of :mod:`bargainnet.models.base` and its
configuration class. The built-in families are listed in :data:`BUILTIN` by module path and
imported on first use; adding a family is a new file in ``models/`` plus one line there (or a
call to :func:`register_family` from outside the package). Weights files name their family in the
``architecture`` metadata field (:func:`bargainnet.models.convert.save_weights`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import InputError

DEFAULT_ARCHITECTURE = "bargainnet"

#: name -> (module, model class, config class); imported on first use.
BUILTIN: dict[str, tuple[str, str, str]] = {
    "bargainnet": ("bargainnet.models.bargainnet", "BargainNet", "BargainNetConfig"),
    "color_transform": ("bargainnet.models.color_transform", "ColorTransformNet", "ColorTransformConfig"),
}


@dataclass(frozen=True)
class Family:
    name: str
    model_class: type
    config_class: type


_REGISTERED: dict[str, Family] = {}


def register_family(name: str, model_class: type, config_class: type) -> Family:
    """Make ``name`` available to :func:`create_model` and :func:`load_weights`."""
    family = Family(name, model_class, config_class)
    _REGISTERED[name] = family
    return family


def families() -> list[str]:
    """Names of every known family."""
    return sorted(set(BUILTIN) | set(_REGISTERED))


def get_family(name: str | None) -> Family:
    """The family called ``name`` (None: the paper's model); :class:`InputError` when unknown."""
    name = name or DEFAULT_ARCHITECTURE
    if name not in _REGISTERED:
        if name not in BUILTIN:
            raise InputError(f"unknown model architecture {name!r}; known: {', '.join(families())}")
        module, model_name, config_name = BUILTIN[name]
        loaded = importlib.import_module(module)
        register_family(name, getattr(loaded, model_name), getattr(loaded, config_name))
    return _REGISTERED[name]


def architecture_of(model) -> str:
    """The registry name of ``model``'s family (from its config, else its class)."""
    name = getattr(type(model.config), "architecture", "")
    if name:
        return name
    for family in map(get_family, families()):
        if isinstance(model, family.model_class):
            return family.name
    raise InputError(f"{type(model).__name__} is not a registered model family")


def build_config(name: str | None = None, values: dict | None = None, **overrides):
    """The configuration of family ``name`` from a dict (as stored in weights files) and overrides."""
    family = get_family(name)
    return family.config_class.from_dict({**(values or {}), **overrides})


def create_model(name: str | None = None, config=None, **overrides):
    """A new model of family ``name`` (default ``"bargainnet"``), from ``config`` and/or overrides.

    Example: ``create_model("bargainnet", ngf=8, num_downs=6)``.
    """
    family = get_family(name)
    if config is None:
        config = family.config_class(**overrides)
    elif overrides:
        config = family.config_class.from_dict({**config.to_dict(), **overrides})
    return family.model_class(config)
