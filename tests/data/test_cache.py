"""The training cache: built once, used by the reader, close to the raw pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bargainnet.data.cache import CACHE_DIRNAME, build_cache
from bargainnet.data.iharmony4 import IHarmony4Dataset
from bargainnet.data.synthesis import make_tiny_dataset
from bargainnet.data.transforms import test_transform, train_transform
from bargainnet.errors import InputError


@pytest.fixture()
def tiny(tmp_path):
    return make_tiny_dataset(tmp_path / "ds", n_train=6, n_test=3, size=160, seed=2)


def test_cache_built_and_used(tiny):
    result = build_cache(tiny, short_side=96, progress=False)
    assert result["items"] == 6 and result["added"] == 6 and not result["skipped"]
    cache = tiny / CACHE_DIRNAME
    index = json.loads((cache / "index.json").read_text())
    assert index["short_side"] == 96 and len(index["items"]) == 6
    raw = IHarmony4Dataset(tiny, "train", cache=None, transform=test_transform(64))
    cached = IHarmony4Dataset(tiny, "train", transform=test_transform(64))
    assert cached.cache is not None and raw.cache is None
    for i in range(len(raw)):
        assert cached.source_paths(i)[0].is_relative_to(cache)
        with Image.open(cached.source_paths(i)[0]) as im:
            assert min(im.size) == 96
        a, b = raw[i], cached[i]
        assert a["name"] == b["name"]
        # same content: two resampling paths and a JPEG re-encode apart
        assert (a["composite"] - b["composite"]).abs().mean() < 0.03
        assert (a["mask"] != b["mask"]).float().mean() < 0.03
    # the test split was not cached: read from the root
    test = IHarmony4Dataset(tiny, "test")
    assert not test.source_paths(0)[0].is_relative_to(cache)


def test_cache_is_incremental_and_skips_checks(tiny):
    build_cache(tiny, short_side=96, progress=False)
    again = build_cache(tiny, short_side=96, splits=("train", "test"), progress=False)
    assert again["added"] == 3 and again["items"] == 9
    # cached items are checked from the index: an empty mask recorded there is reported
    idx_path = tiny / CACHE_DIRNAME / "index.json"
    index = json.loads(idx_path.read_text())
    name = next(iter(index["items"]))
    index["items"][name][2] = 0.0
    idx_path.write_text(json.dumps(index))
    with pytest.raises(InputError, match="empty mask"):
        IHarmony4Dataset(tiny, "train")


def test_small_images_copied_and_augmentation_runs(tiny):
    build_cache(tiny, short_side=512, progress=False)  # 160 px images: copied as they are
    ds = IHarmony4Dataset(tiny, "train", transform=train_transform(64))
    for i in range(len(ds)):
        cp = ds.source_paths(i)[0]
        assert cp.read_bytes() == (tiny / ds.items[i].composite).read_bytes()
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=6)))
    assert batch["composite"].shape == (6, 3, 64, 64)


def test_cache_elsewhere_and_errors(tiny, tmp_path):
    out = tmp_path / "elsewhere"
    build_cache(tiny, out, short_side=96, progress=False)
    ds = IHarmony4Dataset(tiny, "train", cache=out)
    assert ds.source_paths(0)[0].is_relative_to(out)
    with pytest.raises(InputError, match="no cache index"):
        IHarmony4Dataset(tiny, "train", cache=tmp_path / "nothing")
    name = (tiny / "IHD_test.txt").read_text().split()[0]
    (tiny / name).unlink()
    with pytest.raises(InputError, match="missing files"):
        build_cache(tiny, out, short_side=96, splits=("test",), progress=False)
    r = build_cache(tiny, out, short_side=96, splits=("test",), skip_bad=True, progress=False)
    assert r["added"] == 2 and len(r["skipped"]) == 1


def test_downscaled_content_matches_reference(tiny):
    build_cache(tiny, short_side=80, progress=False)
    ds = IHarmony4Dataset(tiny, "train")
    t = ds.items[0]
    with Image.open(tiny / t.real) as im:
        ref = np.asarray(im.convert("RGB").resize((80, 80), Image.LANCZOS), np.float64)
    with Image.open(ds.source_paths(0)[2]) as im:
        got = np.asarray(im.convert("RGB"), np.float64)
    assert np.abs(got - ref).mean() < 2.0


def test_empty_mask_named_or_skipped(tiny):
    name = (tiny / "IHD_train.txt").read_text().split()[0]
    from bargainnet.data.iharmony4 import triplet_from_name

    Image.fromarray(np.zeros((160, 160), np.uint8)).save(tiny / triplet_from_name(name).mask)
    with pytest.raises(InputError, match=f"item {name}: empty mask"):
        build_cache(tiny, short_side=96, progress=False)
    r = build_cache(tiny, short_side=96, skip_bad=True, progress=False)
    assert r["items"] == 5 and [n for n, _ in r["skipped"]] == [name]
