"""``bargainnet analyze`` and ``bargainnet score`` end to end on a tiny synthesized set."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from bargainnet.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bargainnet.data.synthesis import make_tiny_dataset
    from bargainnet.models.bargainnet import BargainNet, BargainNetConfig
    from bargainnet.models.convert import save_weights

    base = tmp_path_factory.mktemp("cmd")
    root = make_tiny_dataset(base / "data", n_train=3, n_test=3, size=64, seed=3)
    weights = base / "tiny.safetensors"
    torch.manual_seed(0)
    save_weights(BargainNet(BargainNetConfig(ngf=4, num_downs=5, code_dim=8)), weights)
    return root, weights


@pytest.mark.slow
def test_analyze_command(tiny, tmp_path, capsys):
    root, weights = tiny
    out = tmp_path / "an"
    assert main(["analyze", "--data", str(root), "--weights", str(weights), "--size", "64", "--device", "cpu",
                 "--batch-size", "2", "--limit", "2", "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "ours, test (n=2)" in text and "ours, train (n=2)" in text and "paper, test" in text
    payload = json.loads((out / "analysis.json").read_text())
    assert [s["split"] for s in payload["splits"]] == ["test", "train"]
    assert len(payload["splits"][0]["rates_percent"]) == 7
    assert main(["analyze", "--data", str(root), "--weights", str(weights), "--splits", "val", "-o", str(out)]) == 3
    assert "--splits" in capsys.readouterr().err
    assert main(["analyze", "--data", str(root), "--weights", str(tmp_path / "no.safetensors"), "-o", str(out)]) == 3
    assert "not found" in capsys.readouterr().err


def _names(root):
    return (root / "IHD_test.txt").read_text().split()


def test_score_single_and_after(tiny, capsys):
    root, weights = tiny
    from bargainnet.data.iharmony4 import triplet_from_name
    from bargainnet.inference import Harmonizer

    t = triplet_from_name(_names(root)[0])
    comp, mask = root / t.composite, root / t.mask
    assert main(["score", str(comp), str(mask), "--weights", str(weights)]) == 0
    line = capsys.readouterr().out
    expected = Harmonizer.from_pretrained(weights).score(comp, mask)
    assert f"inharmony distance {expected.distance:.4f}, score {expected.score:.4f}" in line
    assert main(["score", str(comp), str(mask), "--weights", str(weights), "--after"]) == 0
    line2 = capsys.readouterr().out
    assert f"distance {expected.distance:.4f}" in line2 and "after harmonization: distance" in line2
    assert main(["score", str(comp), "--weights", str(weights)]) == 3


def test_score_folder_modes(tiny, tmp_path, capsys):
    root, weights = tiny
    sub = _names(root)[0].split("/")[0]
    comps, masks = root / sub / "composite_images", root / sub / "masks"
    out = tmp_path / "s.csv"
    # composites + mask folder matched by iHarmony4 names (<real>_<maskid>_<k> -> <real>_<maskid>)
    assert main(["score", str(comps), str(masks), "--weights", str(weights), "--after", "-o", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    n = len(list(comps.iterdir()))
    assert len(rows) == n and [int(r["rank"]) for r in rows] == list(range(1, n + 1))
    d = [float(r["distance"]) for r in rows]
    assert d == sorted(d, reverse=True) and "score_after" in rows[0]
    # harmonize's folder convention (<stem>_mask.png), one item without a mask -> exit 5, others scored
    folder = tmp_path / "f"
    folder.mkdir()
    for i, c in enumerate(sorted(comps.iterdir())[:2]):
        shutil.copy(c, folder / f"c{i}.jpg")
        if i == 0:
            from bargainnet.data.iharmony4 import parse_composite_name

            real, mid, _ = parse_composite_name(c.name)
            shutil.copy(masks / f"{real}_{mid}.png", folder / "c0_mask.png")
    out2 = tmp_path / "s2.csv"
    assert main(["score", str(folder), "--weights", str(weights), "-o", str(out2), "--quiet"]) == 5
    err = capsys.readouterr().err
    assert "c1.jpg: no mask found" in err
    assert [r["name"] for r in csv.DictReader(out2.open())] == ["c0.jpg"]
