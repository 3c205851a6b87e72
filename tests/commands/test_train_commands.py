"""``bargainnet train`` and ``bargainnet export-weights`` through the CLI, and DDP on 2 CPU processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from bargainnet.cli import main
from bargainnet.models.convert import load_weights, read_metadata
from bargainnet.training import model_from_checkpoint, read_checkpoint
from tests.conftest import REPO

TINY = str(REPO / "configs" / "tiny.yaml")
FAST = ["--no-progress", "trainer.val_every_n_steps=0", "data.batch_size=2"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from bargainnet.data.synthesis import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), n_train=8, n_test=4, size=64, seed=0)


@pytest.fixture(scope="module")
def cli_run(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--config", TINY, "--data", str(tiny_root), "--out", str(out), *FAST, "trainer.max_steps=2"]) == 0
    return out


@pytest.mark.slow
def test_train_then_resume_without_config(cli_run, tiny_root):
    assert read_checkpoint(cli_run / "last.ckpt")["global_step"] == 2
    # `--resume` takes the configuration from the checkpoint; a following override is not a path
    assert main(["train", "--out", str(cli_run), "--data", str(tiny_root), "--no-progress", "--resume", "trainer.max_steps=3"]) == 0
    assert read_checkpoint(cli_run / "last.ckpt")["global_step"] == 3


@pytest.mark.slow
def test_export_weights_round_trip(cli_run, tmp_path):
    out = tmp_path / "model.safetensors"
    assert main(["export-weights", str(cli_run), "-o", str(out)]) == 0
    exported = load_weights(out)
    reference = model_from_checkpoint(cli_run / "last.ckpt")
    meta = read_metadata(out)
    assert meta["training_step"] == str(read_checkpoint(cli_run / "last.ckpt")["global_step"])
    assert "trained_on" in meta
    assert exported.config.image_size == 64  # the tiny configuration's training size: inference runs there
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    m = (torch.rand(2, 1, 64, 64, generator=g) > 0.5).float()
    with torch.no_grad():
        assert torch.equal(exported(x, m), reference(x, m))
    half = tmp_path / "half.safetensors"
    assert main(["export-weights", str(cli_run / "last.ckpt"), "-o", str(half), "--fp16"]) == 0
    assert half.stat().st_size < 0.6 * out.stat().st_size
    with torch.no_grad():
        assert torch.allclose(load_weights(half)(x, m), reference(x, m), atol=2e-2)
    assert load_weights(out).inference_settings == {}
    wide = tmp_path / "wide.safetensors"
    assert main(["export-weights", str(cli_run), "-o", str(wide), "--lift-radius", "32"]) == 0
    assert load_weights(wide).inference_settings == {"lift_radius": 32}
    soft = tmp_path / "soft.safetensors"
    assert main(["export-weights", str(cli_run), "-o", str(soft), "--lift-radius", "16", "--strength", "0.8"]) == 0
    assert load_weights(soft).inference_settings == {"lift_radius": 16, "strength": 0.8}
    measured = tmp_path / "auto.safetensors"
    assert main(["export-weights", str(cli_run), "-o", str(measured), "--strength", "auto",
                 "--calibration", "scale=0.9,placements=1,null_ratio=2.5"]) == 0
    assert load_weights(measured).inference_settings == {
        "strength": "auto", "calibration": {"scale": 0.9, "max_strength": 0.9, "placements": 1, "fallback": 0.7,
                                            "min_strength": 0.4, "size": 0, "null_ratio": 2.5}}
    assert main(["export-weights", str(cli_run), "-o", str(tmp_path / "x.safetensors"), "--calibration", "scale=1"]) != 0
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.slow
def test_export_weights_averages_runs(cli_run, tiny_root, tmp_path, capsys):
    other = tmp_path / "seed1"
    assert main(["train", "--config", TINY, "--data", str(tiny_root), "--out", str(other), *FAST,
                 "trainer.max_steps=2", "trainer.seed=1"]) == 0
    a, b = (model_from_checkpoint(run / "last.ckpt").state_dict() for run in (cli_run, other))
    soup = tmp_path / "soup.safetensors"
    assert main(["export-weights", str(cli_run), str(other / "last.ckpt"), "-o", str(soup)]) == 0
    averaged = load_weights(soup).state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())  # two different models
    for key, value in averaged.items():
        if value.is_floating_point():
            assert torch.allclose(value, (a[key].double() + b[key].double()).div(2).float(), atol=1e-7), key
        else:
            assert torch.equal(value, a[key]), key
    meta = read_metadata(soup)
    assert meta["source"].startswith("uniform average of 2 checkpoints") and "seed1" in meta["source"]
    # one model averaged with itself is that model
    same = tmp_path / "same.safetensors"
    assert main(["export-weights", str(other), str(other), "-o", str(same)]) == 0
    assert all(torch.equal(v, b[k]) for k, v in load_weights(same).state_dict().items())
    # a different architecture cannot be averaged in: a clear error, nothing written
    narrow = tmp_path / "narrow"
    assert main(["train", "--config", TINY, "--data", str(tiny_root), "--out", str(narrow), *FAST,
                 "trainer.max_steps=1", "model.ngf=4"]) == 0
    capsys.readouterr()
    assert main(["export-weights", str(cli_run), str(narrow), "-o", str(tmp_path / "bad.safetensors")]) == 3
    assert "model configuration differs" in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists()


def test_cli_errors(cli_run, tiny_root, tmp_path, capsys):
    assert main(["train", "--config", TINY, "--out", str(tmp_path / "x"), *FAST]) == 3
    assert "no training data" in capsys.readouterr().err
    assert main(["train", "--config", TINY, "--data", str(tiny_root), "--out", str(cli_run), *FAST]) == 4
    assert "--resume auto" in capsys.readouterr().err
    assert main(["train", "--config", TINY, "--data", str(tiny_root), "--out", str(tmp_path / "y"), "loss.margn=2"]) == 3
    assert "did you mean 'loss.margin'" in capsys.readouterr().err
    assert main(["train", "--config", TINY, "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "z"), *FAST]) == 3
    assert "not found" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "empty"), "--data", str(tiny_root), "--resume", "auto"]) == 3
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "--config", TINY, "--data", str(tiny_root), "--out", str(tmp_path / "d"), *FAST,
                 "loss.distill=0.5"]) == 3
    assert "pass --teacher" in capsys.readouterr().err
    assert main(["train", "--config", TINY, "--data", str(tiny_root), "--out", str(tmp_path / "d"), *FAST,
                 "loss.distill=0.5", "--teacher", str(tmp_path / "none.safetensors")]) == 3
    assert "--teacher: file not found" in capsys.readouterr().err
    assert main(["export-weights", str(tmp_path), "-o", str(tmp_path / "w.safetensors")]) == 3
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["export-weights", str(cli_run), "-o", str(tmp_path / "w.bin")]) == 4
    assert main(["export-weights", str(cli_run), "-o", str(tmp_path / "w.safetensors"), "--lift-radius", "0"]) == 3
    assert "lift_radius must be a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "w.safetensors").exists()


def _expected_input_mse(root) -> float:
    from bargainnet.data.iharmony4 import IHarmony4Dataset
    from bargainnet.data.transforms import test_transform
    from bargainnet.evaluation.metrics import image_metrics

    ds = IHarmony4Dataset(root, "test", transform=test_transform(64), cache=None)
    return float(np.mean([image_metrics(it["composite"], it["real"], it["mask"], "published")["mse"] for it in ds]))


@pytest.mark.slow
def test_ddp_two_cpu_processes(tiny_root, tmp_path):
    """Lightning DDP (gloo) with 2 CPU processes: the launcher re-runs the command per rank; the
    validation metrics are reduced over both ranks' halves of the test split (~10 s here)."""
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    cmd = [sys.executable, "-m", "bargainnet.cli", "train", "--config", TINY, "--data", str(tiny_root),
           "--out", str(out), "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--no-progress",
           "trainer.max_steps=2", "trainer.val_every_n_steps=2", "trainer.ckpt_every_n_steps=2", "data.batch_size=2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = read_checkpoint(out / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert "world_size: 2" in (out / "run.yaml").read_text()
    rows = [r for r in csv.DictReader(open(out / "logs" / "version_0" / "metrics.csv")) if r.get("val/input_mse")]
    assert float(rows[-1]["val/input_mse"]) == pytest.approx(_expected_input_mse(tiny_root), rel=1e-5)


@pytest.mark.slow
def test_the_last_line_gives_the_validation_mse_raw_and_with_the_background_pasted_back(tiny_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--config", TINY, "--data", str(tiny_root), "--out", str(out), "--no-progress",
            "data.batch_size=2", "trainer.max_steps=1", "trainer.val_every_n_steps=1"]
    assert main(args) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("trained to step")][-1]
    assert "validation MSE" in line and "with the background pasted back" in line
    rows = list(csv.DictReader(open(next(out.glob("logs/version_*/metrics.csv")))))
    pasted = [float(r["val/mse_composited"]) for r in rows if r.get("val/mse_composited")][-1]
    assert f"with the background pasted back {pasted:.2f}" in line
