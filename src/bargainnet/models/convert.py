"""Weights in and out: published checkpoints, and our self-describing safetensors format.

Published BargainNet (bcmi/BargainNet) saves ``latest_net_G.pth`` (UnetGenerator state dict) and
``latest_net_E.pth`` (StyleEncoder state dict); DoveNet saves a 4-input-channel generator. Our
module names follow that layout, so loading is a key-by-key check. ``torch.load`` always runs
with ``weights_only=True``: no pickled code is ever executed.

Our format is one safetensors file whose metadata holds the model configuration (JSON), so a
weights file describes itself: ``load_weights(path)`` needs nothing else. It may also recommend
inference settings (``inference``: JSON, e.g. ``{"lift_radius": 64, "strength": 0.8}``, or ``"strength": "auto"``
with its ``calibration``), which the loaded model
carries as ``model.inference_settings`` and :class:`~bargainnet.inference.Harmonizer` uses unless
told otherwise. A file may also hold a learned strength head (tensors ``strength_head.*``, its
configuration in the metadata key ``strength_head``; :mod:`.strength_head`), loaded as
``model.strength_head``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor

from ..errors import InputError
from ..io import atomic_write
from .base import LEARNED_STRENGTH, Calibration, check_strength_setting
from .bargainnet import BargainNet, BargainNetConfig
from .registry import DEFAULT_ARCHITECTURE, architecture_of, get_family

FORMAT_NAME = "bargainnet"
FORMAT_VERSION = "1"
#: Inference settings a weights file may recommend (metadata key ``inference``, JSON).
INFERENCE_SETTINGS = ("lift_radius", "strength", "calibration")
_FIRST_DOWN = "model.model.0.weight"  # outermost down-convolution: (ngf, input_nc, 4, 4)


def _load_state_dict(path: str | os.PathLike, what: str) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, pickled code, not a torch file
        raise InputError(f"cannot read {what} checkpoint {path}: {err.__class__.__name__}: {err}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(f"{what} checkpoint {path} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def infer_published_config(g_state: dict[str, Tensor], e_state: dict[str, Tensor] | None) -> BargainNetConfig:
    """Read ngf, num_downs, the code size and whether the mask/code are used from the tensors."""
    if _FIRST_DOWN not in g_state:
        raise InputError(f"generator checkpoint has no '{_FIRST_DOWN}': not a (DoveNet/BargainNet) UnetGenerator")
    ngf, input_nc = g_state[_FIRST_DOWN].shape[:2]
    num_downs = 1 + sum(1 for k in g_state if k.endswith("model.1.weight") and "attention" not in k)
    if e_state is not None and "convs.weight" in e_state:
        code_dim = int(e_state["convs.weight"].shape[0])
    else:
        code_dim = 16
    use_code = "weight" in g_state
    extra = int(input_nc) - (code_dim if use_code else 0)
    if extra not in (3, 4):
        raise InputError(
            f"generator takes {int(input_nc)} input channels, which is neither 3/4 (image[+mask]) "
            f"nor 3/4 + the code size {code_dim}"
        )
    return BargainNetConfig(
        ngf=int(ngf), num_downs=int(num_downs), code_dim=code_dim, use_mask=extra == 4, use_code=use_code
    )


def _check_and_load(module: torch.nn.Module, state: dict[str, Tensor], what: str, path) -> None:
    expected = module.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise InputError(f"{what} checkpoint {path} lacks '{key}' (expected shape {tuple(value.shape)})")
        if state[key].shape != value.shape:
            raise InputError(
                f"{what} checkpoint {path}: '{key}' has shape {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)}"
            )
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise InputError(f"{what} checkpoint {path} has unexpected key '{unexpected[0]}' ({len(unexpected)} in all)")
    module.load_state_dict(state)


def load_published(netG_path: str | os.PathLike, netE_path: str | os.PathLike | None = None) -> BargainNet:
    """A BargainNet holding the published implementation's weights, in eval mode.

    Args:
        netG_path: ``latest_net_G.pth`` (BargainNet, 20 input channels) or a DoveNet generator
            (4 input channels; loaded as the mask-only model of ablation 1).
        netE_path: ``latest_net_E.pth``; required for a code-guided generator.

    ngf, num_downs and the code size are inferred from the tensors; every key and shape is
    checked and the first mismatch is named.
    """
    g_state = _load_state_dict(netG_path, "generator")
    e_state = _load_state_dict(netE_path, "domain-encoder") if netE_path is not None else None
    config = infer_published_config(g_state, e_state)
    if config.use_code and e_state is None:
        raise InputError(f"{netG_path} is a code-guided BargainNet generator: pass the encoder (netE) checkpoint too")
    model = BargainNet(config)
    _check_and_load(model.generator, g_state, "generator", netG_path)
    if e_state is not None:
        _check_and_load(model.encoder, e_state, "domain-encoder", netE_path)
    return model.eval()


def save_weights(model: torch.nn.Module, path: str | os.PathLike, dtype: torch.dtype | None = None, **info: str) -> Path:
    """Write ``model`` (any registered family) as a self-describing safetensors file (atomically).

    The metadata names the family (``architecture``, e.g. ``"bargainnet"``) and holds its
    configuration, so :func:`load_weights` rebuilds the right class.

    Args:
        dtype: e.g. torch.float16 to halve the file; buffers that count batches stay integers.
        info: extra string metadata (e.g. ``trained_on``, ``license``).

    The model's ``inference_settings`` (when set and not empty) are written as ``inference``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": architecture_of(model),
        "config": json.dumps(model.config.to_dict()),
        **{k: str(v) for k, v in info.items()},
    }
    settings = check_inference_settings(getattr(model, "inference_settings", None) or {}, str(path))
    if settings:
        metadata["inference"] = json.dumps(settings, sort_keys=True)
    head = getattr(model, "strength_head", None)
    if head is not None:
        metadata["strength_head"] = json.dumps(head.config.to_dict())
    elif settings.get("strength") == LEARNED_STRENGTH:
        raise InputError(f"{path}: the model has no strength head, so it cannot recommend strength 'learned'")
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), suffix=".tmp")
    return path


def parse_inference_settings(text: str | None, where: str) -> dict:
    """The inference settings stored as JSON ``text`` (None or empty: none), validated."""
    try:
        settings = json.loads(text or "{}")
    except ValueError as err:
        raise InputError(f"{where}: invalid inference settings in its metadata: {err}") from None
    return check_inference_settings(settings, where)


def check_inference_settings(settings, where: str) -> dict:
    """``settings`` (a dict of :data:`INFERENCE_SETTINGS`) validated; InputError naming ``where``."""
    if not isinstance(settings, dict):
        raise InputError(f"{where}: inference settings must be a JSON object, got {settings!r}")
    unknown = sorted(set(settings) - set(INFERENCE_SETTINGS))
    if unknown:
        raise InputError(f"{where}: unknown inference settings {unknown} (known: {list(INFERENCE_SETTINGS)})")
    radius = settings.get("lift_radius")
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, int) or radius < 1):
        raise InputError(f"{where}: lift_radius must be a whole number >= 1, got {radius!r}")
    settings = dict(settings)
    if "strength" in settings:
        settings["strength"] = check_strength_setting(settings["strength"], f"{where}: strength")
    if "calibration" in settings:
        settings["calibration"] = Calibration.from_dict(settings["calibration"], where).to_dict()
    return settings



def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a weights file (format, config JSON, provenance)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:
        raise InputError(f"cannot read weights file {path}: not a safetensors file ({err})") from None


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a file written by :func:`save_weights` (or ``bargainnet convert``), in eval mode, fp32,
    with the file's recommended ``inference_settings`` (a dict, empty when none).

    The model's class comes from the file's ``architecture`` field (:mod:`.registry`); files
    written before that field existed hold the paper's model.
    """
    from safetensors.torch import load_file

    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT_NAME or "config" not in metadata:
        raise InputError(
            f"{path} is a safetensors file but not a bargainnet weights file (no bargainnet config "
            "in its metadata); convert published checkpoints with 'bargainnet convert'"
        )
    architecture = metadata.get("architecture", DEFAULT_ARCHITECTURE)
    try:
        family = get_family(architecture)
        config = family.config_class.from_dict(json.loads(metadata["config"]))
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    except (ValueError, TypeError) as err:
        raise InputError(f"{path}: invalid model configuration in metadata: {err}") from None
    settings = parse_inference_settings(metadata.get("inference"), str(path))
    model = family.model_class(config)
    model.inference_settings = settings
    if "strength_head" in metadata:
        from .strength_head import StrengthHead

        model.strength_head = StrengthHead.from_metadata(metadata["strength_head"], config.code_dim, path)
    state = load_file(str(path))
    expected = model.state_dict()
    state = {k: v.to(expected[k].dtype) if k in expected else v for k, v in state.items()}
    _check_and_load(model, state, "weights", path)
    return model.to(device).eval()
