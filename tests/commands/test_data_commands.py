"""``bargainnet synth`` and ``bargainnet data`` on small folders."""

from __future__ import annotations

import json

from PIL import Image

from bargainnet.cli import main
from bargainnet.data.sources import procedural_photos
from bargainnet.data.synthesis import make_tiny_dataset


def test_synth_command(tmp_path, capsys):
    imgs, masks = tmp_path / "i", tmp_path / "m"
    imgs.mkdir(), masks.mkdir()
    for p in procedural_photos(5, 64, seed=3):
        Image.fromarray(p.image).save(imgs / f"{p.stem}.jpg", quality=95)
        Image.fromarray(p.mask.astype("uint8") * 255).save(masks / f"{p.stem}.png")
    out = tmp_path / "o"
    code = main(["synth", "--out", str(out), "--images", str(imgs), "--masks", str(masks),
                 "--test-photos", "2", "--per-mask", "3", "--preview", "3", "--quiet", "--min-fmse", "30"])
    assert code == 0
    text = capsys.readouterr().out
    assert "train" in text and "fMSE" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["photos"] == {"train": 3, "test": 2, "reserved": 0, "per_source": [5], "skipped": []}
    assert (out / "preview.png").is_file()
    # a second run into the same folder is refused with the output exit code
    assert main(["synth", "--out", str(out), "--images", str(imgs), "--quiet"]) == 4
    assert "not empty" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "x"), "--images", str(tmp_path / "none"), "--quiet"]) == 3


def test_data_cache_and_check(tmp_path, capsys):
    root = make_tiny_dataset(tmp_path / "ds", n_train=3, n_test=2, size=96)
    assert main(["data", "cache", str(root), "--short-side", "64", "--quiet"]) == 0
    assert "3 items" in capsys.readouterr().out
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: 3 usable items" in out and "bargainnet_cache" in out
    name = (root / "IHD_test.txt").read_text().split()[0]
    (root / name).unlink()
    assert main(["data", "check", str(root)]) == 3
    assert "1 missing" in capsys.readouterr().out
