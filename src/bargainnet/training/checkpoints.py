"""Training checkpoints: finding, resuming from, reading, and the model inside one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError, OutputError
from ..models.registry import create_model
from .config import OptimConfig, TrainConfig

CHECKPOINT_PATTERN = "step{step:08d}"
LAST = "last.ckpt"

def find_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """The step checkpoints of a run folder, oldest first."""
    return sorted(Path(out_dir).glob("step*.ckpt"))


def resolve_resume(resume: str | os.PathLike | None, out_dir: Path) -> Path | None:
    """``None`` (fresh run; refuses a folder that holds checkpoints), ``"auto"`` (``last.ckpt`` of
    ``out_dir`` when it exists, else fresh) or a checkpoint path (or a run folder)."""
    existing = (out_dir / LAST).is_file() or bool(find_checkpoints(out_dir))
    if resume is None:
        if existing:
            raise OutputError(
                f"{out_dir} already holds checkpoints of a run; continue it with --resume auto, "
                "or choose another --out"
            )
        return None
    if str(resume) == "auto":
        # last.ckpt, or a newer checkpoint Lightning wrote when SLURM signalled a requeue
        candidates = [p for p in [out_dir / LAST, *out_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
        if candidates:
            return max(candidates, key=lambda p: p.stat().st_mtime)
        ckpts = find_checkpoints(out_dir)
        return ckpts[-1] if ckpts else None
    path = Path(resume)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise InputError(f"checkpoint to resume from not found: {path}")
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A Lightning checkpoint written by :func:`train`, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        # Checkpoints of bargainnet 0.1.0's first runs with a learning-rate schedule hold the
        # schedule's configuration dataclasses; they are data, so they are allowed here.
        with torch.serialization.safe_globals([OptimConfig]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(f"cannot read checkpoint {path}: {err.__class__.__name__}: {err}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt.get("hyper_parameters", {}):
        raise InputError(f"{path} is not a checkpoint written by 'bargainnet train' (no state_dict/config)")
    return ckpt


def checkpoint_config(path: str | os.PathLike) -> TrainConfig:
    """The training configuration stored in a checkpoint."""
    return TrainConfig.from_dict(read_checkpoint(path)["hyper_parameters"]["config"], f"checkpoint {path}")


def model_from_checkpoint(path: str | os.PathLike) -> torch.nn.Module:
    """The model (a :class:`BargainNet`, or the checkpoint's registered family) of a training checkpoint, in eval mode."""
    return trained_model(path).model


@dataclass
class TrainedModel:
    """What a checkpoint holds for export: the model (eval mode), its training configuration and step."""

    path: Path
    model: torch.nn.Module
    config: TrainConfig
    step: int | str


def trained_model(path: str | os.PathLike) -> TrainedModel:
    """Read a checkpoint once: its model (eval mode), configuration and training step."""
    ckpt = read_checkpoint(path)
    config = TrainConfig.from_dict(ckpt["hyper_parameters"]["config"], f"checkpoint {path}")
    model = create_model(config.architecture, config.model)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(f"checkpoint {path}: weights do not match its configuration: {err}") from None
    return TrainedModel(Path(path), model.eval(), config, ckpt.get("global_step", "?"))


def average_models(trained: list[TrainedModel]) -> TrainedModel:
    """The uniform average of several checkpoints' weights (a "model soup", Wortsman et al., 2022).

    Meant for runs fine-tuned from one initialisation with one recipe (e.g. different seeds), whose
    weights lie in one basin; averaging unrelated models gives a useless model. Every checkpoint
    must have the same family, model configuration and training image size. Floating-point
    parameters and buffers (BatchNorm running statistics too) are averaged in float64 and stored in
    their own dtype; integer buffers (batch counters) are taken from the first checkpoint. The
    result keeps the first checkpoint's configuration; its ``step`` names every source.
    """
    if not trained:
        raise ValueError("average_models needs at least one checkpoint")
    first = trained[0]
    for other in trained[1:]:
        for what, a, b in (("architecture", first.config.architecture, other.config.architecture),
                           ("model configuration", first.config.model, other.config.model),
                           ("training image size (data.size)", first.config.data.size, other.config.data.size)):
            if a != b:
                raise InputError(f"cannot average {first.path} and {other.path}: their {what} differs ({a} vs {b})")
    states = [t.model.state_dict() for t in trained]
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            total = sum(s[key].to(torch.float64) for s in states)
            averaged[key] = (total / len(states)).to(value.dtype)
        else:
            averaged[key] = value
    model = create_model(first.config.architecture, first.config.model)
    model.load_state_dict(averaged)
    step = " + ".join(f"{t.path} (step {t.step})" for t in trained)
    return TrainedModel(first.path, model.eval(), first.config, step)


def checkpoint_in(source: str | os.PathLike) -> Path:
    """``source`` itself, or for a run folder its ``last.ckpt`` (else its newest step checkpoint)."""
    source = Path(source)
    if not source.is_dir():
        return source
    if (source / LAST).is_file():
        return source / LAST
    found = find_checkpoints(source)
    if not found:
        raise InputError(f"{source} holds no checkpoint ({LAST} or step*.ckpt)")
    return found[-1]
