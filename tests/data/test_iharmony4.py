"""iHarmony4 layout reader: names, lists, checks and their messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bargainnet.data.iharmony4 import (
    IHarmony4Dataset,
    list_entries,
    parse_composite_name,
    triplet_from_name,
)
from bargainnet.data.synthesis import make_tiny_dataset
from bargainnet.data.transforms import test_transform, train_transform
from bargainnet.errors import InputError


@pytest.mark.parametrize(
    "name, expect",
    [
        ("c100300_1602094_1.jpg", ("c100300", "1602094", "1")),
        ("a0001_1_1.jpg", ("a0001", "1", "1")),
        ("d21901-20130410-181833_1_9.jpg", ("d21901-20130410-181833", "1", "9")),
        ("f1_1_1.jpg", ("f1", "1", "1")),
        ("image_100005_1_2.jpg", ("image_100005", "1", "2")),
        ("HCOCO/composite_images/c1_2_3.jpg", ("c1", "2", "3")),
    ],
)
def test_parse_composite_name(name, expect):
    assert parse_composite_name(name) == expect


@pytest.mark.parametrize("bad", ["a0001_1.jpg", "a0001.jpg", "_1_1.jpg", "a__1.jpg"])
def test_parse_composite_name_rejects(bad):
    with pytest.raises(InputError, match="<real>_<maskid>_<k>"):
        parse_composite_name(bad)


def test_triplet_paths_follow_iharmony4():
    t = triplet_from_name("Hday2night/composite_images/d21901-20130410-181833_1_9.jpg")
    assert t.subset == "Hday2night"
    assert t.mask == "Hday2night/masks/d21901-20130410-181833_1.png"
    assert t.real == "Hday2night/real_images/d21901-20130410-181833.jpg"


@pytest.fixture()
def tiny(tmp_path) -> Path:
    return make_tiny_dataset(tmp_path / "ds", n_train=6, n_test=3, size=48, seed=1)


def test_items_and_subset_filter(tiny):
    ds = IHarmony4Dataset(tiny, "train", subsets=["retouch"])
    assert len(ds) == 2 and ds.subsets == ["retouch"]
    item = ds[1]
    assert item["subset"] == "retouch" and item["name"].startswith("retouch/composite_images/")
    with pytest.raises(InputError, match="HCOCO have no train entries .* present: illumination, retouch, transfer"):
        IHarmony4Dataset(tiny, "train", subsets=["HCOCO"])


def test_per_subset_lists_used_without_ihd_list(tiny):
    names = list_entries(tiny, "test")
    (tiny / "IHD_test.txt").unlink()
    assert sorted(list_entries(tiny, "test")) == sorted(names)
    assert len(IHarmony4Dataset(tiny, "test")) == 3


def test_missing_list_file(tiny):
    (tiny / "IHD_train.txt").unlink()
    for sub in ("transfer", "retouch", "illumination"):
        (tiny / sub / f"{sub}_train.txt").unlink()
    with pytest.raises(InputError, match="no list file for split 'train'.*IHD_train.txt"):
        IHarmony4Dataset(tiny, "train")
    with pytest.raises(InputError, match="split must be one of"):
        IHarmony4Dataset(tiny, "val")
    with pytest.raises(InputError, match="dataset root not found"):
        IHarmony4Dataset(tiny / "nope", "train")


def test_missing_files_counted_with_examples(tiny):
    names = (tiny / "IHD_train.txt").read_text().split()
    for n in names[:3]:
        (tiny / n).unlink()
    with pytest.raises(InputError) as info:
        IHarmony4Dataset(tiny, "train")
    msg = str(info.value)
    assert "3 list entries point to missing files" in msg and names[0] in msg and "skip_bad" in msg
    with pytest.warns(UserWarning, match="skipping bad items"):
        ds = IHarmony4Dataset(tiny, "train", skip_bad=True)
    assert len(ds) == 3 and {n for n, _ in ds.skipped} == set(names[:3])
    assert {kind for _, kind in ds.skipped} == {"missing"}


def _mask_path(root: Path, name: str) -> Path:
    t = triplet_from_name(name)
    return root / t.mask


def test_size_mismatch_and_empty_mask(tiny):
    names = (tiny / "IHD_train.txt").read_text().split()
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(_mask_path(tiny, names[0]))  # wrong size
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(_mask_path(tiny, names[1]))  # empty
    with pytest.raises(InputError) as info:
        IHarmony4Dataset(tiny, "train")
    msg = str(info.value)
    assert "1 items have composite/mask/real of different sizes" in msg and "mask 30x20" in msg
    assert "1 items have an empty mask (no pixel > 127)" in msg and names[1] in msg
    # headers only: the empty mask is not seen, the size mismatch is
    with pytest.raises(InputError, match="different sizes"):
        IHarmony4Dataset(tiny, "train", check="sizes")
    ds = IHarmony4Dataset(tiny, "train", check="files")
    with pytest.raises(InputError, match="differ in size"):
        ds[[t.name for t in ds.items].index(names[0])]


def test_malformed_list_line(tiny):
    with open(tiny / "IHD_test.txt", "a") as f:
        f.write("transfer/wrong_folder/x_1_1.jpg\n")
    with pytest.raises(InputError, match="1 list lines are not"):
        IHarmony4Dataset(tiny, "test")


def test_unreadable_file(tiny):
    name = (tiny / "IHD_test.txt").read_text().split()[0]
    (tiny / name).write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="cannot be read"):
        IHarmony4Dataset(tiny, "test")


def test_transforms_applied_and_dataloader(tiny):
    import torch

    ds = IHarmony4Dataset(tiny, "train", transform=train_transform(32, scale=(0.5, 1.0)))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["composite"].shape == (3, 3, 32, 32) and batch["mask"].shape == (3, 1, 32, 32)
    assert (batch["mask"].flatten(1).sum(1) > 0).all()
    test = IHarmony4Dataset(tiny, "test", transform=test_transform(64))
    assert test[0]["real"].shape == (3, 64, 64)


def test_values_match_files(tiny):
    ds = IHarmony4Dataset(tiny, "test")
    item = ds[0]
    comp = np.asarray(Image.open(tiny / item["name"]).convert("RGB"), np.float32)
    np.testing.assert_allclose(item["composite"].numpy().transpose(1, 2, 0), comp / 127.5 - 1, atol=1e-6)
    mask = np.asarray(Image.open(_mask_path(tiny, item["name"])).convert("L")) > 127
    assert np.array_equal(item["mask"][0].numpy() == 1, mask)
