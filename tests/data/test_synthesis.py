"""The composite synthesizer: layout, background/foreground, determinism, rejection, splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bargainnet.data.iharmony4 import IHarmony4Dataset, parse_composite_name
from bargainnet.data.sources import procedural_photos
from bargainnet.data.synthesis import TINY_FAMILIES, draw_composite, make_tiny_dataset, synthesize
from bargainnet.errors import InputError, OutputError
from tests.conftest import LALONDE, needs_shared


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def _triplets(root: Path, split: str):
    for line in (root / f"IHD_{split}.txt").read_text().split():
        sub, _, fname = line.split("/")
        real, mask_id, _ = parse_composite_name(fname)
        yield (
            line,
            _read(root / line),
            np.asarray(Image.open(root / sub / "masks" / f"{real}_{mask_id}.png")) > 127,
            _read(root / sub / "real_images" / f"{real}.jpg"),
        )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "ds", n_train=9, n_test=6, size=64, seed=3, preview=3)


def test_tiny_layout_counts_and_reader(tiny):
    summary = json.loads((tiny / "summary.json").read_text())
    assert summary["counts"]["train"]["all"] == 9 and summary["counts"]["test"]["all"] == 6
    assert set(summary["counts"]["train"]) == {*TINY_FAMILIES, "all"}
    for fam in TINY_FAMILIES:
        assert (tiny / fam / f"{fam}_train.txt").is_file()
        assert summary["counts"]["train"][fam] == 3
    for split, n in (("train", 9), ("test", 6)):
        ds = IHarmony4Dataset(tiny, split)
        assert len(ds) == n and ds.subsets == sorted(TINY_FAMILIES)
        item = ds[0]
        assert item["composite"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert -1 <= float(item["real"].min()) and float(item["real"].max()) <= 1
    assert Image.open(tiny / "preview.png").size[1] > 0


def test_background_equals_real_foreground_differs(tiny):
    for split in ("train", "test"):
        for name, comp, mask, real in _triplets(tiny, split):
            diff = np.abs(comp - real)
            # Background: identical pixels before JPEG encoding; quality 95 leaves small noise
            # (mostly near the object's edge, where the changed block content bleeds).
            assert diff[~mask].mean() < 1.5, name
            assert diff[mask].mean() > 3 * diff[~mask].mean(), name


def test_deterministic_under_seed(tmp_path):
    a = make_tiny_dataset(tmp_path / "a", n_train=3, n_test=3, seed=5)
    b = make_tiny_dataset(tmp_path / "b", n_train=3, n_test=3, seed=5)
    c = make_tiny_dataset(tmp_path / "c", n_train=3, n_test=3, seed=6)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    name = (a / "IHD_train.txt").read_text().split()[0]
    assert (c / name).exists() is False or (a / name).read_bytes() != (c / name).read_bytes()


def test_train_and_test_photos_disjoint(tmp_path):
    photos = procedural_photos(10, 32, seed=1)
    summary = synthesize(tmp_path / "o", photos, per_mask=3, n_test_photos=3, seed=0, families=TINY_FAMILIES,
                         identity_fraction=0, progress=False, metrics=False, min_fmse=30, keep_rejected=True)
    sources = {s: {parse_composite_name(n)[0] for n in (tmp_path / "o" / f"IHD_{s}.txt").read_text().split()}
               for s in ("train", "test")}
    assert len(sources["test"]) == 3 and len(sources["train"]) == 7
    assert not sources["train"] & sources["test"]
    assert summary["counts"]["train"]["all"] == 21 and summary["counts"]["test"]["all"] == 9
    # three composites of one photo, one per family, numbered k = 1 in each sub-dataset
    assert (tmp_path / "o" / "retouch" / "composite_images" / f"{photos[0].stem}_1_1.jpg").exists() or \
        photos[0].stem in sources["test"]


def test_rejection_counts_and_failure(tmp_path):
    photos = procedural_photos(4, 32, seed=2)
    # Nothing can reach an fMSE of 1e9: every draw is rejected as too small, nothing written.
    with pytest.raises(InputError, match="no composite was accepted"):
        synthesize(tmp_path / "o", photos, n_test_photos=1, min_fmse=1e8, max_fmse=1e9, identity_fraction=0,
                   families=TINY_FAMILIES,
                   max_tries=3, progress=False, metrics=False)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    for fam, r in summary["rejection"].items():
        assert r["rate"] == 1.0 and r["reasons"] == {"too_small": r["draws"]}
    assert sum(r["failed"] for r in summary["rejection"].values()) == 4


def test_draw_composite_redraws_until_accepted():
    image, mask = procedural_photos(1, 48, seed=4)[0].image / 255.0, procedural_photos(1, 48, seed=4)[0].mask
    rng = np.random.default_rng(0)
    comp, params, reasons = draw_composite("retouch", image, mask, rng, min_fmse=400, max_tries=50)
    assert comp is not None and params["fmse"] >= 400
    assert params["tries"] == 1 + sum(reasons.values())


def test_metrics_in_summary(tmp_path):
    photos = procedural_photos(6, 64, seed=7)
    summary = synthesize(tmp_path / "o", photos, n_test_photos=3, seed=0, progress=False, keep_rejected=True,
                         families=TINY_FAMILIES, identity_fraction=0)
    rows = summary["metrics"]["test"]
    assert set(rows) == {*TINY_FAMILIES, "all"} and rows["all"]["n"] == 3
    # Independent check of one row: published protocol on the 64 px images resized to 256.
    from bargainnet.evaluation.metrics import image_metrics
    from bargainnet.data.transforms import test_transform

    ds = IHarmony4Dataset(tmp_path / "o", "test", transform=test_transform(256))
    fm = [image_metrics(it["composite"], it["real"], it["mask"])["fmse"] for it in (ds[i] for i in range(3))]
    assert rows["all"]["fmse"] == pytest.approx(np.mean(fm), abs=0.01)
    assert rows["all"]["fmse"] > rows["all"]["mse"] > 0


def test_output_guards(tmp_path):
    photos = procedural_photos(3, 32)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(OutputError, match="not empty"):
        synthesize(tmp_path / "full", photos, progress=False)
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for p in photos:
        Image.fromarray(p.image).save(img_dir / f"{p.stem}.png")
    with pytest.raises(OutputError, match="overlap"):
        synthesize(img_dir / "out", img_dir, progress=False)
    with pytest.raises(InputError, match="at least 2 photos"):
        synthesize(tmp_path / "o2", photos[:1], progress=False)


def test_folder_without_masks_uses_segments(tmp_path):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for p in procedural_photos(4, 64, seed=9):
        Image.fromarray(p.image).save(img_dir / f"{p.stem}.png")
    summary = synthesize(tmp_path / "o", img_dir, n_test_photos=1, masks_per_image=2, seed=1,
                         mask_mix={"segment": 1}, progress=False, metrics=False, keep_rejected=True)
    assert summary["mask_kinds"]["train"] == {"segment": 6}
    assert summary["counts"]["train"]["all"] == 6
    for _, _, mask, _ in _triplets(tmp_path / "o", "train"):
        assert 0.02 < mask.mean() < 0.75


@needs_shared(LALONDE)
def test_lalonde_folder_with_masks(tmp_path):
    # A handful of the real photos with their real masks (copied to a temp folder).
    src_i, src_m = tmp_path / "i", tmp_path / "m"
    src_i.mkdir(), src_m.mkdir()
    for stem in sorted(p.stem for p in (LALONDE / "real_images").glob("*.jpg"))[:6]:
        (src_i / f"{stem}.jpg").write_bytes((LALONDE / "real_images" / f"{stem}.jpg").read_bytes())
        (src_m / f"{stem}.png").write_bytes((LALONDE / "real_masks" / f"{stem}.png").read_bytes())
    out = tmp_path / "o"
    summary = synthesize(out, src_i, src_m, n_test_photos=2, seed=0, progress=False, object_mask_prob=1.0)
    assert set(summary["mask_kinds"]["train"]) == {"object"}
    assert summary["counts"]["train"]["all"] + summary["counts"]["test"]["all"] >= 5
    name = (out / "IHD_train.txt").read_text().split()[0]
    sub, _, fname = name.split("/")
    stem = parse_composite_name(fname)[0]
    # the real is the source photo re-encoded (quality 95, 4:4:4); the mask is the source mask binarised
    real, src = _read(out / sub / "real_images" / f"{stem}.jpg"), _read(src_i / f"{stem}.jpg")
    assert real.shape == src.shape and np.abs(real - src).mean() < 2
    src_mask = np.asarray(Image.open(src_m / f"{stem}.png").convert("L")) > 127
    assert np.array_equal(np.asarray(Image.open(out / sub / "masks" / f"{stem}_1.png")) > 127, src_mask)


def test_cutout_alpha_shapes_as_masks(tmp_path):
    img_dir, cut_dir = tmp_path / "imgs", tmp_path / "cutouts"
    img_dir.mkdir(), cut_dir.mkdir()
    for p in procedural_photos(4, 80, seed=12):
        Image.fromarray(p.image).save(img_dir / f"{p.stem}.jpg", quality=95)
    for i, (h, w) in enumerate([(30, 20), (25, 40)]):
        rgba = np.zeros((h + 10, w + 10, 4), np.uint8)
        rgba[5:-5, 5:-5] = (200, 50, 50, 255)  # an opaque rectangle inside a transparent border
        Image.fromarray(rgba, "RGBA").save(cut_dir / f"c{i}.png")
    summary = synthesize(tmp_path / "o", img_dir, cutouts=cut_dir, families=("retouch", "illumination"),
                         n_test_photos=1, mask_ratio=(0.1, 0.3), progress=False, metrics=False,
                         keep_rejected=True, mask_mix={"silhouette": 1}, identity_fraction=0)
    assert set(summary["mask_kinds"]["train"]) == {"silhouette"}
    assert set(summary["counts"]["train"]) == {"retouch", "illumination", "all"}
    for _, _, mask, _ in _triplets(tmp_path / "o", "train"):
        ys, xs = np.nonzero(mask)
        # an axis-aligned rectangle (the cut-out's alpha) of about the requested area
        assert mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()
        assert 0.08 < mask.mean() < 0.32
    with pytest.raises(InputError, match="no cut-outs"):
        synthesize(tmp_path / "o2", img_dir, cutouts=img_dir.parent / "imgs", progress=False)


def test_identity_samples_are_exact_and_in_their_own_subset(tmp_path):
    photos = procedural_photos(6, 32, seed=5)
    summary = synthesize(tmp_path / "o", photos, n_test_photos=2, per_mask=4, identity_fraction=0.5, seed=0,
                         progress=False, metrics=False)
    n_id = summary["counts"]["train"]["identity"] + summary["counts"]["test"]["identity"]
    assert 0 < n_id < 24
    names = [n for s in ("train", "test") for n in (tmp_path / "o" / f"IHD_{s}.txt").read_text().split()]
    for name in names:
        sub, _, fname = name.split("/")
        real = tmp_path / "o" / sub / "real_images" / f"{parse_composite_name(fname)[0]}.jpg"
        same = (tmp_path / "o" / name).read_bytes() == real.read_bytes()
        assert same == (sub == "identity"), name


def test_several_photo_folders_and_reserved_test_photos(tmp_path):
    from bargainnet.data.synthesis import _split_photos

    first, other = tmp_path / "first", tmp_path / "other"
    first.mkdir(), other.mkdir()
    for folder, seed in ((first, 1), (other, 2)):
        for p in procedural_photos(8, 32, seed=seed):
            Image.fromarray(p.image).save(folder / f"{p.stem}.png")
    summary = synthesize(tmp_path / "o", first, photo_dirs=[other], reserve_test=True, val_fraction=0.2,
                         seed=3, progress=False, metrics=False)
    assert summary["photos"]["per_source"] == [8, 8] and summary["photos"]["reserved"] == 1
    used = {parse_composite_name(n.split("/")[-1])[0]
            for s in ("train", "test") for n in (tmp_path / "o" / f"IHD_{s}.txt").read_text().split()}
    # the first folder's test photos of a single-folder run with the same seed are used nowhere
    _, test = _split_photos(8, 0.15, None, 3)
    stems = sorted(p.stem for p in first.iterdir())
    assert not {stems[i] for i in test} & used
    assert any(u.startswith("other__") for u in used)


# Mean pixel value of each composite, from the synthesizer at commit f9f7322 (before the preset
# existed): synthesize(out, procedural_photos(6, 48, seed=21), per_mask=2, n_test_photos=2,
# seed=0) with its defaults. Same draws give the same means (to JPEG-decoder rounding); any
# other draw moves them by whole levels.
V1_MEANS = {
    "transfer/composite_images/p0000_1_1.jpg": 140.52, "transfer/composite_images/p0001_1_1.jpg": 147.05,
    "transfer/composite_images/p0005_1_1.jpg": 145.36, "retouch/composite_images/p0000_1_1.jpg": 142.32,
    "retouch/composite_images/p0004_1_1.jpg": 128.8, "retouch/composite_images/p0005_1_1.jpg": 151.2,
    "illumination/composite_images/p0001_1_1.jpg": 135.04, "illumination/composite_images/p0004_1_1.jpg": 126.61,
    "transfer/composite_images/p0002_1_1.jpg": 135.5, "retouch/composite_images/p0003_1_1.jpg": 107.13,
    "illumination/composite_images/p0002_1_1.jpg": 131.79, "illumination/composite_images/p0003_1_1.jpg": 106.79,
}


def test_preset_v1_reproduces_the_earlier_synthesizer(tmp_path):
    from bargainnet.data.synthesis import PRESETS

    out = tmp_path / "o"
    synthesize(out, procedural_photos(6, 48, seed=21), per_mask=2, n_test_photos=2, seed=0, progress=False,
               metrics=False, **PRESETS["v1"])
    names = [n for s in ("train", "test") for n in (out / f"IHD_{s}.txt").read_text().split()]
    assert names == list(V1_MEANS)
    for n in names:
        assert _read(out / n).mean() == pytest.approx(V1_MEANS[n], abs=0.05), n
