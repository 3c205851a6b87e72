"""Reading a training cache's index (written by :mod:`bargainnet.data.cache`); kept apart from the
builder so that the dataset reader (:mod:`bargainnet.data.iharmony4`) and the builder depend on it,
not on each other."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..io import atomic_write_bytes

CACHE_DIRNAME = "bargainnet_cache"
INDEX = "index.json"
FORMAT = "bargainnet-cache"
VERSION = 1


@dataclass
class CacheIndex:
    """A cache folder and its index (see the module docstring)."""

    path: Path
    short_side: int
    quality: int
    items: dict[str, list]

    def has(self, name: str) -> bool:
        return name in self.items

    def known(self) -> dict[str, tuple[int, int, float]]:
        """``{name: (orig_W, orig_H, mask_fraction)}`` of the cached, already-checked items."""
        return {k: tuple(v) for k, v in self.items.items()}

    @classmethod
    def read(cls, path: Path) -> "CacheIndex":
        index = path / INDEX
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read cache index {index}: {err}") from None
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise InputError(f"{index} is not a bargainnet cache index (format version {VERSION})")
        return cls(path, int(data["short_side"]), int(data["quality"]), dict(data["items"]))

    def write(self) -> None:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "short_side": self.short_side,
            "quality": self.quality,
            "items": self.items,
        }
        atomic_write_bytes(self.path / INDEX, json.dumps(data, separators=(",", ":")).encode())


def find_cache(root: Path, cache: str | os.PathLike | None | bool = "auto") -> CacheIndex | None:
    """The cache to use for ``root``: ``"auto"`` → ``<root>/bargainnet_cache`` if it has an index;
    a path → that cache (an error when it has no index); None/False → no cache."""
    if cache is None or cache is False:
        return None
    if cache == "auto" or cache is True:
        path = Path(root) / CACHE_DIRNAME
        return CacheIndex.read(path) if (path / INDEX).is_file() else None
    path = Path(cache)
    if not (path / INDEX).is_file():
        raise InputError(f"no cache index at {path / INDEX}; build one with 'bargainnet data cache'")
    return CacheIndex.read(path)
