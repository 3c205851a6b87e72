"""The LightningModule: BargainNet (or any registered generator family) + the paper's loss, schedules, validation metrics and grids."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from ..errors import EXIT_FAILURE, UserError
from ..io import atomic_save_pil
from ..models.registry import create_model
from .checkpoints import CHECKPOINT_PATTERN
from .config import TrainConfig
from .data import _seed_from
from .losses import bargainnet_loss, frozen_encoder_code

PSNR_CAP = 100.0  # dB; identical images give inf, which would make a mean meaningless
METRIC_KEYS = ("mse", "psnr", "fmse")

class NonFiniteLossError(UserError):
    """The loss or the gradient became NaN/inf: training stopped, earlier checkpoints are intact."""

    exit_code = EXIT_FAILURE



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
    """LightningModule training a :class:`BargainNet` (or any family of :mod:`bargainnet.models.registry`,
    chosen by ``config.architecture``) with the paper's loss.

    ``config``: a :class:`~bargainnet.training.config.TrainConfig` (or its dict, as stored in checkpoints
    under ``hyper_parameters["config"]``). Batches are dicts with ``composite`` (B, 3, H, W) in
    [-1, 1], ``mask`` (B, 1, H, W) in {0, 1} and ``real`` (B, 3, H, W).
    """

    def __init__(self, config: TrainConfig | dict):
        super().__init__()
        import torchmetrics

        cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config, "checkpoint configuration")
        self.save_hyperparameters({"config": cfg.to_dict()})
        self.cfg = cfg
        self.model = create_model(cfg.architecture, cfg.model)
        # No loss term needs E's codes of the real and harmonized foregrounds: a plain forward
        # (and no unused parameters for DDP to trip over).
        self.needs_triplet_codes = cfg.loss.uses_codes
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
        self._teacher: list[torch.nn.Module] = []  # in a list: not a submodule, not in checkpoints

    def set_teacher(self, teacher: torch.nn.Module) -> None:
        """The frozen model that ``loss.distill``/``loss.distill_codes`` compare with (``--teacher``)."""
        teacher.eval().requires_grad_(False)
        if self.cfg.trainer.channels_last:
            teacher.to(memory_format=torch.channels_last)
        self._teacher[:] = [teacher]

    def _teacher_outputs(self, composite: Tensor, mask: Tensor, real: Tensor) -> dict[str, Tensor]:
        """The teacher's raw output and its codes of (Ĩ, 1−M), (I, M), (Ĩ, M), without gradients."""
        loss = self.cfg.loss
        if not loss.uses_teacher:
            return {}
        if not self._teacher:
            raise UserError("loss.distill and loss.distill_codes need a teacher model (bargainnet train --teacher W)")
        teacher = self._teacher[0].to(self.device)
        out = {}
        with torch.no_grad():
            if loss.distill > 0:
                out["teacher_output"] = teacher(composite, mask)
            if loss.distill_codes > 0:
                out["teacher_codes"] = teacher.domain_code(
                    torch.cat([composite, real, composite]), torch.cat([1 - mask, mask, mask])
                )
        return out

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

    def step_loss(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss a training step optimises on ``batch``: the total and its components."""
        composite, mask, real = self._inputs(batch)
        if self.needs_triplet_codes:
            outputs = self.model.training_forward(composite, mask, real)
            if self.cfg.loss.discriminative and self.cfg.loss.background_triplet:
                outputs["z_f_harm_frozen"] = frozen_encoder_code(self.model.encoder, outputs["harmonized"], mask)
        else:
            outputs = {"harmonized": self.model(composite, mask)}
        outputs.update(self._teacher_outputs(composite, mask, real))
        # bf16 autocast leaves codes in bf16 (3 significant digits): take the loss in fp32
        outputs = {k: v.float() for k, v in outputs.items()}
        return bargainnet_loss(outputs, real.float(), self.cfg.loss, mask.float(), composite.float())

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        total, parts = self.step_loss(batch)
        if self.cfg.trainer.check_finite:
            self._check_finite(total, parts, batch)
        n = batch["composite"].shape[0]
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
        from ..evaluation.metrics import batch_metrics

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
