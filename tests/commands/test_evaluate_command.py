"""``bargainnet evaluate`` end to end on a tiny synthesized set."""

from __future__ import annotations

import json

import pytest

from bargainnet.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bargainnet.data.synthesis import make_tiny_dataset
    from bargainnet.models.bargainnet import BargainNet, BargainNetConfig
    from bargainnet.models.convert import save_weights

    base = tmp_path_factory.mktemp("evalcmd")
    root = make_tiny_dataset(base / "data", n_train=2, n_test=3, size=64, seed=1)
    weights = base / "tiny.safetensors"
    save_weights(BargainNet(BargainNetConfig(ngf=4, num_downs=5, code_dim=8)), weights)
    return root, weights


def test_evaluate_command(tiny, tmp_path, capsys):
    root, weights = tiny
    out = tmp_path / "eval"
    code = main(["evaluate", "--data", str(root), "--weights", str(weights), "--methods", "composite,reinhard",
                 "--size", "64", "--batch-size", "2", "--device", "cpu", "--protocol", "standard",
                 "-o", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "protocol standard" in text and "| Input composite |" in text and "| tiny |" in text
    payload = json.loads((out / "results.json").read_text())
    assert [m["key"] for m in payload["methods"]] == ["composite", "reinhard", "tiny"]
    assert payload["results"]["tiny"]["subsets"]["All"]["n"] == 3
    assert {p.name for p in out.iterdir()} == {"per_image.csv", "results.json", "results.md", "fmse_vs_ratio.png"}


def test_evaluate_command_errors(tiny, tmp_path, capsys):
    root, weights = tiny
    args = ["evaluate", "--data", str(root), "--size", "64", "-o", str(tmp_path / "o"), "--quiet"]
    assert main(args + ["--methods", "composite,poisson"]) == 3
    assert "unknown method 'poisson'" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path), "--size", "64", "-o", str(tmp_path / "o")]) == 3
    assert "no list file" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_text("hello")
    assert main(args + ["--weights", str(bad)]) == 3
    assert "bad.safetensors" in capsys.readouterr().err
    # a 256-multiple model cannot run at 64 px: said up front, with the size to use
    from bargainnet.models.bargainnet import BargainNet, BargainNetConfig
    from bargainnet.models.convert import save_weights

    deep = tmp_path / "deep.safetensors"
    save_weights(BargainNet(BargainNetConfig(ngf=2, num_downs=8, code_dim=4)), deep)
    assert main(args + ["--weights", str(deep)]) == 3
    assert "multiples of 256" in capsys.readouterr().err
