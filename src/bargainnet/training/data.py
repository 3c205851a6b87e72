"""Training data: deterministic sample positions, the iHarmony4/stream data module (exact resume, see docs/design.md §5)."""

from __future__ import annotations

import os
import warnings
from itertools import count
from pathlib import Path
from typing import Any, Callable, Iterator

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import InputError

STREAM_VAL_SAMPLES = 200  # validation size when only a stream is given

def _seed_from(*values: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence: no collisions between nearby tuples)."""
    return int(np.random.SeedSequence([int(v) & 0xFFFFFFFFFFFF for v in values]).generate_state(2, np.uint64)[0] >> 1)



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
        from ..data.transforms import to_tensors

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
        config: the ``data`` section (:class:`~bargainnet.training.config.DataConfig`).
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
        from ..data.synthesis import CompositeStream

        c = self.config
        try:
            return CompositeStream(
                self.stream_images, self.stream_masks, size=c.size, seed=seed, augment=augment,
                scale=tuple(c.scale), grade=c.grade, **c.stream_options,
            )
        except TypeError as err:
            raise InputError(f"data.stream_options: {err}") from None

    def setup(self, stage: str | None = None) -> None:
        from ..data.iharmony4 import IHarmony4Dataset
        from ..data.transforms import test_transform, train_transform

        c = self.config
        if self.train_items is None:
            if self.stream_images is not None:
                self.train_items = PositionDataset(self._stream(True, self.seed), seed=self.seed)
            else:
                transform = train_transform(c.size, tuple(c.scale), grade=c.grade)
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
