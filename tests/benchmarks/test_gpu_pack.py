"""The photo pack for a lent GPU machine (benchmarks/gpu_pack.py) and the prepared run that reads
it (benchmarks/gpu_train.sh), on tiny procedural folders laid out like the real ones."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from . import REPO, load_script

from bargainnet.data.sources import list_cutouts, procedural_photo
from bargainnet.data.synthesis import CompositeStream



@pytest.fixture(scope="module")
def gp():
    return load_script("gpu_pack")


@pytest.fixture(scope="module")
def sources(tmp_path_factory, gp):
    """A Lalonde-like folder (40 photos with masks) and a fetch-like folder (three collections of
    two photos, twelve RGBA stamps, four of them in the even half)."""
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    lal = root / "lalonde"
    (lal / "real_images").mkdir(parents=True)
    (lal / "real_masks").mkdir()
    for k in range(40):
        image, mask = procedural_photo(rng, 64)
        Image.fromarray(image).save(lal / "real_images" / f"s{k:03d}.jpg", quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(lal / "real_masks" / f"s{k:03d}.png")
    photos = root / "photos"
    for c in gp.COLLECTIONS:
        (photos / c).mkdir(parents=True)
        for k in range(2):
            image, _ = procedural_photo(rng, (90, 120))
            Image.fromarray(image).save(photos / c / f"{c[:4]}{k}.jpg", quality=95)
    stamps = photos / gp.STAMPS / "animals"
    stamps.mkdir(parents=True)
    for k in range(12):
        _, mask = procedural_photo(rng, 48)
        rgba = np.zeros((48, 48, 4), np.uint8)
        rgba[..., 0] = 200
        rgba[..., 3] = mask * 255
        Image.fromarray(rgba, "RGBA").save(stamps / f"stamp{k}.png")
    return lal, photos


def test_pack_holds_exactly_the_streams_training_photos(gp, sources, tmp_path):
    lal, photos = sources
    out = tmp_path / "pack"
    info = gp.pack(lal, photos, out)
    original = gp.training_photos(lal, photos)
    packed = CompositeStream(
        out / "images", out / "masks", photo_dirs=[out / "photos" / c for c in gp.COLLECTIONS],
        cutouts=out / "cutouts", holdout=False,
    )
    # the same photos (test and validation photos left out), the same split between sources
    assert [p.stem for p in packed.photos] == [p.stem for p in original.photos]
    assert packed.n_first == original.n_first < 40
    assert info["counts"]["lalonde"] == original.n_first
    # the same silhouettes, bit for bit (only the alpha travels)
    before = list_cutouts(photos / gp.STAMPS, half="even")
    after = list_cutouts(out / "cutouts")
    assert len(after) == len(before) == info["counts"]["cutouts"] > 0
    assert all(np.array_equal(a, b) for a, b in zip(after, before))
    # masks exact, photos close (WebP at quality 80)
    for p, q in zip(packed.photos[: packed.n_first], original.photos):
        a = np.asarray(Image.open(p.path).convert("RGB"), np.float64)
        b = np.asarray(Image.open(q.path).convert("RGB"), np.float64)
        assert a.shape == b.shape and np.abs(a - b).mean() < 6
        assert np.array_equal(np.asarray(Image.open(p.mask_path)) > 0, np.asarray(Image.open(q.mask_path)) > 127)
    with pytest.raises(SystemExit, match="not empty"):
        gp.pack(lal, photos, out)


def test_the_prepared_run_trains_and_exports_on_a_cpu(gp, sources, tmp_path):
    lal, photos = sources
    gp.pack(lal, photos, tmp_path / "pack")
    env = dict(os.environ, ACCELERATOR="cpu", PRECISION="32-true", OUT=str(tmp_path / "out"),
               PACK=str(tmp_path / "pack"), RUN=str(tmp_path / "run"), PYTHON=sys.executable)
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_train.sh"), "1", "trainer.max_steps=2", "data.batch_size=2",
         "data.size=64", "WORKERS=0"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:] + (tmp_path / "out" / "train.log").read_text()[-2000:]
    out = tmp_path / "out"
    assert {"candidate.safetensors", "config.yaml", "train.log", "env.json"} <= {p.name for p in out.iterdir()}
    from bargainnet.inference import Harmonizer

    h = Harmonizer.from_pretrained(out / "candidate.safetensors")
    assert h.strength == "auto"
    # without a pack the run stops in its preflight, before training
    env["PACK"] = str(tmp_path / "nothing")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_train.sh"), "1"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no photo pack" in done.stderr
