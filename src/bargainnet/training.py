"""Training BargainNet with PyTorch Lightning: module, data module, checkpoints, and :func:`train`.

- :class:`BargainNetModule` wraps :class:`~bargainnet.models.bargainnet.BargainNet` and
  :func:`~bargainnet.losses.bargainnet_loss` (paper §3.3): Adam (published: lr 1e-4, betas
  (0.9, 0.999), constant), a configurable per-step schedule, every loss term logged, validation
  MSE/PSNR/fMSE (:mod:`bargainnet.metrics`, named protocol) of the output *and* of the input
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

import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from itertools import count
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from .config import OptimConfig, TrainConfig, save_config
from .errors import EXIT_FAILURE, InputError, OutputError, UserError
from .io import atomic_save_pil, atomic_write, atomic_write_text, make_folder
from .losses import bargainnet_loss
from .models.bargainnet import BargainNet

CHECKPOINT_PATTERN = "step{step:08d}"
LAST = "last.ckpt"
PSNR_CAP = 100.0  # dB; identical images give inf, which would make a mean meaningless
STREAM_VAL_SAMPLES = 200  # validation size when only a stream is given
METRIC_KEYS = ("mse", "psnr", "fmse")


class NonFiniteLossError(UserError):
    """The loss or the gradient became NaN/inf: training stopped, earlier checkpoints are intact."""

    exit_code = EXIT_FAILURE


def _seed_from(*values: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence: no collisions between nearby tuples)."""
    return int(np.random.SeedSequence([int(v) & 0xFFFFFFFFFFFF for v in values]).generate_state(2, np.uint64)[0] >> 1)


# ------------------------------------------------------------------------------------------
# data


class PositionSampler(Sampler):
    """Endless global sample positions for one rank: step ``s`` takes positions
    ``(s·world + rank)·B … +B−1``, starting at the step that ``start_step()`` returns when
    iteration begins (the restored global step on resume)."""

    def __init__(self, batch_size: int, rank: int = 0, world: int = 1, start_step: Callable[[], int] = lambda: 0):
        self.batch_size, self.rank, self.world, self.start_step = batch_size, rank, world, start_step

    def __iter__(self) -> Iterator[int]:
        for step in count(int(self.start_step())):
            first = (step * self.world + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)


class PositionDataset(Dataset):
    """Training items indexed by global sample position (see the module docstring).

    ``source``: an :class:`IHarmony4Dataset` (epochs of seeded permutations, the training
    augmentation drawn from a per-position generator) or a :class:`CompositeStream` (each
    position one fresh sample from ``default_rng([seed, position])``).
    """

    def __init__(self, source, transform=None, seed: int = 0):
        self.source, self.transform, self.seed = source, transform, int(seed)
        self.is_stream = hasattr(source, "sample") and not hasattr(source, "load")
        self._perms: dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.source))
        return self._perms[epoch]

    def __getitem__(self, position: int) -> dict:
        position = int(position)
        if self.is_stream:
            item = self.source.sample(np.random.default_rng([self.seed, position]))
            item["name"] = f"{item['name']}_{item['subset']}_{position}"
            return item
        from .data.transforms import to_tensors

        n = len(self.source)
        index = int(self._permutation(position // n)[position % n])
        composite, mask, real = self.source.load(index)
        if self.transform is not None:
            generator = torch.Generator().manual_seed(_seed_from(self.seed, position))
            composite, mask, real = self.transform(composite, mask, real, generator=generator)
        c, m, r = to_tensors(composite, mask, real)
        t = self.source.items[index]
        return {"composite": c, "mask": m, "real": r, "name": t.name, "subset": t.subset}


class StreamValidation(Dataset):
    """A fixed validation set drawn from a stream (no augmentation), sample ``i`` from
    ``default_rng([seed, i])``: the same every validation, computed on the fly."""

    def __init__(self, stream, n: int, seed: int):
        self.stream, self.n, self.seed = stream, n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        item = self.stream.sample(np.random.default_rng([self.seed, int(i)]))
        item["name"] = f"{item['name']}_{item['subset']}_val{i}"
        return item


def _collate(items: list[dict]) -> dict:
    out = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if isinstance(values[0], Tensor) else values
    return out


class BargainNetDataModule(L.LightningDataModule):
    """Training and validation loaders for :class:`BargainNetModule`.

    Args:
        config: the ``data`` section (:class:`~bargainnet.config.DataConfig`).
        data_root: an iHarmony4-layout root: its ``train`` split trains (unless a stream is
            given), its ``test`` split validates. A ``bargainnet_cache`` inside is used.
        stream_images / stream_masks: photos (and their object masks) for on-the-fly composites.
        seed: the run's seed (data order, augmentation, stream draws).
        validate: build a validation loader (False when ``val_every_n_steps`` is 0).
    """

    def __init__(
        self,
        config,
        data_root: str | os.PathLike | None = None,
        stream_images: str | os.PathLike | None = None,
        stream_masks: str | os.PathLike | None = None,
        seed: int = 0,
        validate: bool = True,
    ):
        super().__init__()
        if data_root is None and stream_images is None:
            raise InputError("no training data: pass --data ROOT (iHarmony4 layout) and/or --stream-images DIR")
        if stream_masks is not None and stream_images is None:
            raise InputError("--stream-masks needs --stream-images")
        self.config = config
        self.data_root = Path(data_root) if data_root is not None else None
        self.stream_images = Path(stream_images) if stream_images is not None else None
        self.stream_masks = Path(stream_masks) if stream_masks is not None else None
        self.seed = int(seed)
        self.validate = validate
        self.train_items: PositionDataset | None = None
        self.val_items: Dataset | None = None

    # -- building the datasets ----------------------------------------------------------
    def _stream(self, augment: bool, seed: int):
        from .data.synthesis import CompositeStream

        c = self.config
        try:
            return CompositeStream(
                self.stream_images, self.stream_masks, size=c.size, seed=seed, augment=augment,
                scale=tuple(c.scale), **c.stream_options,
            )
        except TypeError as err:
            raise InputError(f"data.stream_options: {err}") from None

    def setup(self, stage: str | None = None) -> None:
        from .data.iharmony4 import IHarmony4Dataset
        from .data.transforms import test_transform, train_transform

        c = self.config
        if self.train_items is None:
            if self.stream_images is not None:
                self.train_items = PositionDataset(self._stream(True, self.seed), seed=self.seed)
            else:
                transform = train_transform(c.size, tuple(c.scale))
                source = IHarmony4Dataset(self.data_root, "train", c.subsets, transform=transform)
                self.train_items = PositionDataset(source, transform, seed=self.seed)
        if self.validate and self.val_items is None:
            if self.data_root is not None:
                try:
                    val = IHarmony4Dataset(self.data_root, "test", c.subsets, transform=test_transform(c.size), cache=None)
                except InputError as err:
                    raise InputError(f"{err}\n(validation reads the test split; set trainer.val_every_n_steps=0 to train without it)") from None
                n = len(val) if c.val_samples is None else min(c.val_samples, len(val))
                indices = np.linspace(0, len(val) - 1, n).round().astype(int).tolist() if n < len(val) else list(range(len(val)))
            else:
                n = c.val_samples or STREAM_VAL_SAMPLES
                warnings.warn(
                    f"no --data: validating on {n} fixed stream composites drawn from the training photos "
                    "(not held out); pass --data ROOT to validate on its test split",
                    stacklevel=2,
                )
                val = StreamValidation(self._stream(False, self.seed + 1), n, _seed_from(self.seed, 7919))
                indices = list(range(n))
            rank, world = self._rank_world()
            self.val_items = torch.utils.data.Subset(val, indices[rank::world])

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    # -- loaders --------------------------------------------------------------------------
    def _loader_kwargs(self) -> dict:
        c = self.config
        trainer = getattr(self, "trainer", None)
        pin = bool(trainer is not None and trainer.strategy.root_device.type == "cuda")
        kw: dict[str, Any] = dict(num_workers=c.num_workers, collate_fn=_collate, pin_memory=pin)
        if c.num_workers > 0:
            kw.update(persistent_workers=True, prefetch_factor=4)
        return kw

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        trainer = getattr(self, "trainer", None)
        sampler = PositionSampler(
            self.config.batch_size, rank, world,
            start_step=(lambda: trainer.global_step) if trainer is not None else (lambda: 0),
        )
        return DataLoader(
            self.train_items, batch_size=self.config.batch_size, sampler=sampler, drop_last=False,
            generator=torch.Generator().manual_seed(self.seed), **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        if self.val_items is None or len(self.val_items) == 0:
            return []
        c = self.config
        return DataLoader(
            self.val_items, batch_size=c.val_batch_size or c.batch_size, shuffle=False,
            generator=torch.Generator().manual_seed(self.seed), **self._loader_kwargs(),
        )


# ------------------------------------------------------------------------------------------
# the module


def lr_factor(step: int, optim, max_steps: int) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    factor = 1.0
    if optim.warmup_steps and step < optim.warmup_steps:
        factor = (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return factor
    if optim.schedule == "step":
        return factor * optim.gamma ** sum(1 for m in optim.milestones if step >= m)
    floor = optim.min_lr_ratio
    if optim.schedule == "cosine":
        span = max(1, max_steps - optim.warmup_steps)
        progress = min(1.0, max(0.0, (step - optim.warmup_steps) / span))
        return factor * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    start = optim.decay_start * max_steps  # linear
    if step < start:
        return factor
    progress = min(1.0, (step - start) / max(1.0, max_steps - start))
    return factor * (1 - (1 - floor) * progress)


class _LrLambda:
    """Schedule for LambdaLR. LambdaLR saves a callable object's ``__dict__`` in checkpoints, so
    it holds plain numbers and strings only: checkpoints then load with ``weights_only=True``."""

    _FIELDS = ("schedule", "warmup_steps", "gamma", "milestones", "min_lr_ratio", "decay_start")

    def __init__(self, optim, max_steps: int):
        for name in self._FIELDS:
            value = getattr(optim, name)
            setattr(self, name, list(value) if isinstance(value, (list, tuple)) else value)
        self.max_steps = max_steps

    def __call__(self, step: int) -> float:
        return lr_factor(step, self, self.max_steps)


def _grid_image(samples: dict[str, Tensor], pad: int = 2) -> np.ndarray:
    """(H', W', 3) uint8 grid: one row per sample, columns composite | mask | output | harmonized | real."""
    comp, mask, out, real = (samples[k].float() for k in ("composite", "mask", "output", "real"))
    harm = out * mask + comp * (1 - mask)
    columns = [comp, mask.expand_as(comp) * 2 - 1, out, harm, real]
    b, _, h, w = comp.shape
    grid = torch.ones(3, b * (h + pad) + pad, len(columns) * (w + pad) + pad)
    for i in range(b):
        for j, col in enumerate(columns):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[:, y : y + h, x : x + w] = col[i].clamp(-1, 1)
    return ((grid.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)


class BargainNetModule(L.LightningModule):
    """LightningModule training a :class:`BargainNet` with the paper's loss.

    ``config``: a :class:`~bargainnet.config.TrainConfig` (or its dict, as stored in checkpoints
    under ``hyper_parameters["config"]``). Batches are dicts with ``composite`` (B, 3, H, W) in
    [-1, 1], ``mask`` (B, 1, H, W) in {0, 1} and ``real`` (B, 3, H, W).
    """

    def __init__(self, config: TrainConfig | dict):
        super().__init__()
        import torchmetrics

        cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config, "checkpoint configuration")
        self.save_hyperparameters({"config": cfg.to_dict()})
        self.cfg = cfg
        self.model = BargainNet(cfg.model)
        # Neither the code nor a triplet needs E: a plain forward skips E (and leaves no unused
        # parameters for DDP to trip over).
        self.needs_codes = cfg.model.use_code or cfg.loss.background_triplet or cfg.loss.foreground_triplet
        self.needs_triplet_codes = cfg.loss.background_triplet or cfg.loss.foreground_triplet
        # The configured protocol's metrics, and when that scores the raw output (published), the
        # composited output's too (suffix "_composited", the "standard" protocol).
        self.val_protocols = {"": cfg.trainer.metric_protocol}
        if cfg.trainer.metric_protocol == "published":
            self.val_protocols["_composited"] = "standard"
        self.val_metrics = torch.nn.ModuleDict(
            {
                f"{prefix}{key}{suffix}": torchmetrics.MeanMetric(nan_strategy="ignore" if key == "fmse" else "warn")
                for suffix in self.val_protocols
                for prefix in ("", "input_")
                for key in METRIC_KEYS
            }
        )
        self.image_dir: Path | None = None  # set by train(); else <default_root_dir>/images
        self._seconds_before = 0.0  # training wall time of earlier launches (from the checkpoint)
        self._fit_start: float | None = None
        self._grid: dict[str, list[Tensor]] = {}
        self._last_grid_step: int | None = None

    # -- setup ------------------------------------------------------------------------------
    def configure_model(self) -> None:
        t = self.cfg.trainer
        if t.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if t.compile and not getattr(self, "_compiled", False):
            self.model.generator.compile()
            self.model.encoder.compile()
            self._compiled = True

    def configure_optimizers(self):
        o = self.cfg.optim
        optimizer = torch.optim.Adam(self.model.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        if o.schedule == "constant" and not o.warmup_steps:
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _LrLambda(o, self.cfg.trainer.max_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # -- training ---------------------------------------------------------------------------
    def forward(self, composite: Tensor, mask: Tensor) -> Tensor:
        return self.model(composite, mask)

    def _inputs(self, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
        c, m, r = batch["composite"], batch["mask"], batch["real"]
        if self.cfg.trainer.channels_last:
            c, m, r = (x.contiguous(memory_format=torch.channels_last) for x in (c, m, r))
        return c, m, r

    def on_train_start(self) -> None:
        self._fit_start = time.monotonic()

    def train_seconds(self) -> float:
        """Wall time spent in training so far, over all launches of this run (validation included)."""
        running = time.monotonic() - self._fit_start if self._fit_start is not None else 0.0
        return self._seconds_before + running

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout draws depend on (seed, step, rank) only: resuming at step N reproduces them.
        torch.manual_seed(_seed_from(self.cfg.trainer.seed, self.global_step, self.global_rank))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        composite, mask, real = self._inputs(batch)
        if self.needs_triplet_codes:
            outputs = self.model.training_forward(composite, mask, real)
        else:
            outputs = {"harmonized": self.model(composite, mask)}
        # bf16 autocast leaves codes in bf16 (3 significant digits): take the loss in fp32
        outputs = {k: v.float() for k, v in outputs.items()}
        total, parts = bargainnet_loss(outputs, real.float(), self.cfg.loss)
        if self.cfg.trainer.check_finite:
            self._check_finite(total, parts, batch)
        n = composite.shape[0]
        self.log_dict({f"train/{k}": v for k, v in parts.items() if k != "total"}, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/loss", total.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log("train/hours", self.train_seconds() / 3600.0, on_step=True, on_epoch=False, batch_size=n)
        return total

    def _last_good_checkpoint(self) -> str:
        cb = getattr(self.trainer, "checkpoint_callback", None)
        path = getattr(cb, "last_model_path", "") or getattr(cb, "best_model_path", "")
        return f"the last good checkpoint is {path}" if path else "no checkpoint was written yet"

    def _decide_finite(self, value: Tensor) -> bool:
        finite = bool(torch.isfinite(value).all())
        if self.trainer.world_size > 1:  # every rank must stop, or the others hang in all-reduce
            finite = bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))
        return finite

    def _check_finite(self, total: Tensor, parts: dict[str, Tensor], batch: dict) -> None:
        if self._decide_finite(total.detach()):
            return
        values = ", ".join(f"{k}={float(v):.4g}" for k, v in parts.items())
        names = ", ".join(map(str, batch.get("name", [])[:4]))
        raise NonFiniteLossError(
            f"training stopped at step {self.global_step + 1}: the loss is not finite ({values}; "
            f"on some rank; batch items on this rank: {names}). No update was applied and no "
            f"checkpoint was written for this step; {self._last_good_checkpoint()}. Try a lower "
            "optim.lr, optim.grad_clip=1.0 or --precision 32, check the data, then --resume auto."
        )

    def on_before_optimizer_step(self, optimizer) -> None:
        t = self.cfg.trainer
        if not t.check_finite:
            return
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
        if t.precision == "16-mixed":  # the grad scaler skips inf steps by design
            return
        if not self._decide_finite(norm):
            raise NonFiniteLossError(
                f"training stopped at step {self.global_step + 1}: the gradient norm is {float(norm)} "
                f"although the loss was finite. No update was applied and no checkpoint was written "
                f"for this step; {self._last_good_checkpoint()}. Try a lower optim.lr, "
                "optim.grad_clip=1.0 or --precision 32, then --resume auto."
            )
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/grad_norm", norm.detach(), on_step=True, on_epoch=False)

    # -- validation -------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        from .metrics import batch_metrics

        composite, mask, real = self._inputs(batch)
        output = self.model(composite, mask).float()
        for suffix, protocol in self.val_protocols.items():
            for prefix, image in (("", output), ("input_", composite)):
                rows = batch_metrics(image, real, mask, protocol, composite)
                for key in METRIC_KEYS:
                    values = [min(r[key], PSNR_CAP) if key == "psnr" else r[key] for r in rows]
                    self.val_metrics[prefix + key + suffix].update(torch.tensor(values, dtype=torch.float32, device=self.device))
        want = self.cfg.trainer.num_image_samples
        have = sum(len(v) for v in self._grid.get("composite", []))
        if self.global_rank == 0 and want and have < want and not self.trainer.sanity_checking:
            k = want - have
            for key, value in (("composite", composite), ("mask", mask), ("output", output), ("real", real)):
                self._grid.setdefault(key, []).append(value[:k].detach().float().cpu())

    def on_validation_epoch_end(self) -> None:
        values = {}
        for name, metric in self.val_metrics.items():
            values[name] = metric.compute()
            metric.reset()
        logged = {f"val/{k}": v for k, v in values.items()}
        for suffix in self.val_protocols:
            if float(values[f"input_mse{suffix}"]) > 0:
                logged[f"val/mse_ratio{suffix}"] = values[f"mse{suffix}"] / values[f"input_mse{suffix}"]
        if not self.trainer.sanity_checking:
            mse = logged.pop("val/mse")
            logged["val/hours"] = self.train_seconds() / 3600.0
            self.log_dict(logged, sync_dist=False)
            self.log("val/mse", mse, prog_bar=True, sync_dist=False)
        self._write_grid()

    def _write_grid(self) -> None:
        grid, self._grid = self._grid, {}
        if not grid or self.global_rank != 0 or self.trainer.sanity_checking:
            return
        step = self.global_step
        every = self.cfg.trainer.image_every_n_steps
        if not every or (self._last_grid_step is not None and step - self._last_grid_step < every):
            return
        self._last_grid_step = step
        image = _grid_image({k: torch.cat(v) for k, v in grid.items()})
        folder = self.image_dir or Path(self.trainer.default_root_dir) / "images"
        from PIL import Image

        atomic_save_pil(Image.fromarray(image), Path(folder) / f"val_{CHECKPOINT_PATTERN.format(step=step)}.png")
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):  # TensorBoard
                experiment.add_image("val/samples", image, step, dataformats="HWC")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["bargainnet"] = {
            "model_config": self.cfg.model.to_dict(),
            "global_step": self.global_step,
            "train_seconds": self.train_seconds(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._seconds_before = float(checkpoint.get("bargainnet", {}).get("train_seconds", 0.0))


# ------------------------------------------------------------------------------------------
# checkpoints and progress


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file in the checkpoint's folder, fsync, then ``os.replace``:
    a crash mid-write never leaves a truncated checkpoint under the final name."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp), suffix=".tmp", fsync=True)


class StepCheckpoint(ModelCheckpoint):
    """Every ``every`` steps and at the end: ``step{N:08d}.ckpt`` (newest ``keep`` kept) + ``last.ckpt``."""

    def __init__(self, dirpath: str | os.PathLike, every: int, keep: int):
        super().__init__(
            dirpath=str(dirpath), filename=CHECKPOINT_PATTERN, auto_insert_metric_name=False,
            monitor="step", mode="max", save_top_k=keep, every_n_train_steps=every, save_last=True,
            enable_version_counter=False,
        )

    # Saves happen on step boundaries and at the end only: Lightning's epoch/validation-end hooks
    # would write last.ckpt a second time for the same step.
    def on_validation_end(self, trainer, pl_module) -> None:
        pass

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pass

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step > self._last_global_step_saved and not trainer.sanity_checking:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        super().on_train_end(trainer, pl_module)


class StepProgressBar(TQDMProgressBar):
    """The training bar counts optimiser steps up to ``max_steps`` (the loader is endless)."""

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        bar = self.train_progress_bar
        bar.total = trainer.max_steps
        bar.initial = trainer.global_step
        bar.n = trainer.global_step
        bar.set_description("train")
        bar.refresh()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar = self.train_progress_bar
        n = trainer.global_step
        if bar is not None and (n % self.refresh_rate == 0 or n >= trainer.max_steps):
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module))
            bar.refresh()


# ------------------------------------------------------------------------------------------
# a run


@dataclass
class TrainResult:
    out_dir: Path
    last_checkpoint: Path | None
    global_step: int
    metrics: dict[str, float]


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


def model_from_checkpoint(path: str | os.PathLike) -> BargainNet:
    """The :class:`BargainNet` of a training checkpoint, in eval mode."""
    ckpt = read_checkpoint(path)
    config = TrainConfig.from_dict(ckpt["hyper_parameters"]["config"], f"checkpoint {path}")
    model = BargainNet(config.model)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(f"checkpoint {path}: weights do not match its configuration: {err}") from None
    return model.eval()


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

    from . import __version__

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


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    stream_images: str | os.PathLike | None = None,
    stream_masks: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    callbacks: Sequence = (),
    loggers: bool = True,
    progress_bar: bool = True,
    checkpointing: bool = True,
    model_summary: bool = False,
    command: Sequence[str] | None = None,
) -> TrainResult:
    """Train (or resume) a run in ``out_dir``; see the module docstring for the folder layout.

    ``resume``: None (fresh; refuses a folder with checkpoints), ``"auto"`` or a checkpoint.
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
            trainer.fit(module, datamodule=data, ckpt_path=str(resume_path) if resume_path is not None else None)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
    last = out_dir / LAST
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if isinstance(v, Tensor) and v.numel() == 1}
    return TrainResult(out_dir, last if last.is_file() else None, trainer.global_step, metrics)
