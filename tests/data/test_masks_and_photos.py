"""Mask kinds, the cut-out hash split and the registry photo fetcher's pure parts."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from PIL import Image

from bargainnet.data import photos
from bargainnet.data.sources import GEOMETRIC_SHAPES, geometric_mask, hash_half, list_cutouts, procedural_photo
from bargainnet.data.synthesis import MASK_KINDS, MaskDrawer
from bargainnet.errors import InputError


def test_every_mask_kind_is_neither_empty_nor_full():
    image, obj = procedural_photo(np.random.default_rng(0), 64)
    alpha = np.zeros((30, 20), np.uint8)
    alpha[3:27, 4:16] = 255
    for kind in MASK_KINDS:
        if kind == "object":
            drawer = MaskDrawer([alpha], object_prob=1.0)
        else:
            drawer = MaskDrawer([alpha], mix={kind: 1.0}, object_prob=0.0)
        for seed in range(4):
            mask, got, _ = drawer.draw(image, obj, np.random.default_rng(seed))
            assert got == kind and mask.shape == (64, 64) and mask.dtype == bool
            assert 0 < mask.mean() < 1, kind
    for shape in GEOMETRIC_SHAPES:
        for seed in range(10):
            m, got = geometric_mask((40, 56), np.random.default_rng(seed), (0.05, 0.6), shape)
            assert got == shape and 0 < m.mean() < 1
    with pytest.raises(InputError):
        MaskDrawer(None, mix={"silhouette": 1.0})  # silhouettes need cut-outs


def test_cutout_hash_split(tmp_path):
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[2:10, 2:10, 3] = 255
    rels = [f"animals/a{i}.png" for i in range(6)] + [f"food/f{i}.png" for i in range(6)]
    for i, rel in enumerate(rels):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        rgba[..., 0] = i  # tell the files apart by their first pixel
        Image.fromarray(rgba.copy(), "RGBA").save(tmp_path / rel)
    even = {r for r in rels if zlib.crc32(r.encode()) % 2 == 0}
    assert 0 < len(even) < len(rels)
    assert {r for r in rels if hash_half(r) == "even"} == even
    assert all(photos.stamp_is_training(r) == (r in even) for r in rels)
    assert len(list_cutouts(tmp_path, half="even")) == len(even)
    assert len(list_cutouts(tmp_path, half="odd")) == len(rels) - len(even)
    assert len(list_cutouts(tmp_path)) == len(rels)


def test_copyright_parsing_and_reserved_packages(tmp_path):
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: x\nLicense: GPL-2+\n\n"
        "Files: nature/Aqua.jpg\n nature/Dune.jpg\nCopyright: y\nLicense: CC-BY-SA-4.0\n text of it\n"
    )
    st = photos.parse_copyright(text)
    assert photos.licence_of(st, "nature/Dune.jpg") == "CC-BY-SA-4.0"
    assert photos.licence_of(st, "abstract/Flow.png") == "GPL-2+"
    for reserved in ("plasma-workspace-wallpapers", "lomiri-wallpapers-20.04", "ukui-wallpapers", "sway-backgrounds"):
        with pytest.raises(InputError, match="reserved"):
            photos._unpack(reserved, tmp_path)
    names = {p.package for p in photos.photo_packages()}
    assert not names & photos.RESERVED_PACKAGES
