"""Lightning callbacks: atomic checkpoint writes, step checkpoints, a progress bar counting optimiser steps."""

from __future__ import annotations

import os

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import (
    ModelCheckpoint,
    TQDMProgressBar,
)

from ..io import atomic_write
from .checkpoints import CHECKPOINT_PATTERN


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
