"""CompositeStream: the dataset's item dict, seeding per worker, object-only changes."""

from __future__ import annotations

import itertools

import pytest
import torch

from bargainnet.data.sources import procedural_photos
from bargainnet.data.synthesis import FAMILIES, IDENTITY, CompositeStream


@pytest.fixture(scope="module")
def photos():
    return procedural_photos(6, 64, seed=11)


def _take(stream, n):
    return list(itertools.islice(iter(stream), n))


def test_items_like_dataset(photos):
    items = _take(CompositeStream(photos, size=32, seed=0, identity_fraction=0.3), 40)
    for it in items:
        assert it["composite"].shape == (3, 32, 32) and it["real"].shape == (3, 32, 32)
        assert it["mask"].shape == (1, 32, 32) and set(it["mask"].unique().tolist()) == {0.0, 1.0}
        assert it["subset"] in (*FAMILIES, IDENTITY) and isinstance(it["name"], str)
        m = it["mask"].bool().expand(3, -1, -1)
        # only the object changed (exactly: nothing is JPEG-encoded on the fly)
        assert torch.equal(it["composite"][~m], it["real"][~m])
        if it["subset"] == IDENTITY:
            assert torch.equal(it["composite"], it["real"])
    changed = [(it["composite"] - it["real"]).abs().amax() > 0.02 for it in items if it["subset"] != IDENTITY]
    assert sum(changed) > 0.7 * len(changed)
    assert {it["subset"] for it in items} == {*FAMILIES, IDENTITY}


def test_seeded_and_epochs_differ(photos):
    a = _take(CompositeStream(photos, size=32, seed=4), 3)
    b = _take(CompositeStream(photos, size=32, seed=4), 3)
    for x, y in zip(a, b):
        assert torch.equal(x["composite"], y["composite"]) and x["name"] == y["name"]
    s = CompositeStream(photos, size=32, seed=4)
    s.set_epoch(1)
    c = _take(s, 1)
    assert not torch.equal(c[0]["composite"], a[0]["composite"])


def test_workers_draw_different_samples_and_length_is_split(photos):
    stream = CompositeStream(photos, size=32, seed=0, length=6, families=("retouch",))
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    names = [it["name"] for it in loader]
    assert len(names) == 6 == len(stream)
    shards = {n.rsplit("_", 1)[1].split(".")[0] for n in names}
    assert shards == {"0", "1"}
    first = [it for it in loader]
    comps = [it["composite"] for it in first]
    # the two workers' first samples differ (different seeds per worker)
    assert not torch.equal(comps[0], comps[1])
    # and the whole run repeats exactly
    again = [it["composite"] for it in loader]
    assert all(torch.equal(x, y) for x, y in zip(comps, again))


def test_photos_without_masks_and_no_augment(photos, tmp_path):
    from PIL import Image

    for p in photos[:3]:
        Image.fromarray(p.image).save(tmp_path / f"{p.stem}.jpg", quality=95)
    stream = CompositeStream(tmp_path, size=48, augment=False, seed=1)
    it = _take(stream, 2)[1]
    assert it["composite"].shape == (3, 48, 48)
    frac = float(it["mask"].mean())
    assert 0.02 < frac < 0.8
    with pytest.raises(TypeError):
        len(stream)


def test_several_folders_cutouts_and_holdout(photos, tmp_path):
    import numpy as np
    from PIL import Image

    a, b, cut = tmp_path / "a", tmp_path / "b", tmp_path / "cut"
    for d in (a, b, cut):
        d.mkdir()
    for p in photos[:4]:
        Image.fromarray(p.image).save(a / f"{p.stem}.png")
    for p in photos[4:]:
        Image.fromarray(p.image).save(b / f"{p.stem}.png")
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[4:16, 6:14, 3] = 255
    Image.fromarray(rgba, "RGBA").save(cut / "s.png")
    s = CompositeStream(a, photo_dirs=[b], cutouts=cut, size=32, seed=0, photo_dirs_share=0.5,
                        mask_mix={"silhouette": 1.0}, holdout=True, test_fraction=0.25)
    assert len(s.photos) == 3 + 1  # one test photo of each folder held out
    names = [it["name"] for it in _take(s, 12)]
    assert any(n.startswith("b__") for n in names) and any(not n.startswith("b__") for n in names)