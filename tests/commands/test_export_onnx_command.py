"""``bargainnet export-onnx`` end to end, then inference from the .onnx file."""

from __future__ import annotations

import pytest

import re

import numpy as np
import torch
from PIL import Image

from bargainnet.cli import main
from bargainnet.models.bargainnet import BargainNet, BargainNetConfig
from bargainnet.models.convert import save_weights


@pytest.mark.slow
def test_export_then_harmonize_with_onnxruntime(tmp_path, capsys):
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_weights(BargainNet(BargainNetConfig(ngf=4, num_downs=5, code_dim=8)).eval(), weights)
    onnx = tmp_path / "tiny.onnx"
    assert main(["export-onnx", "-o", str(onnx), "--weights", str(weights)]) == 0
    out = capsys.readouterr().out
    diff = float(re.search(r"max abs difference (\S+)", out).group(1))
    assert diff <= 1e-4 and "input 64x64, dynamic batch" in out

    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    mask = np.zeros((50, 70), np.uint8)
    mask[10:30, 20:50] = 255
    Image.fromarray(img).save(tmp_path / "c.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    args = ["harmonize", str(tmp_path / "c.png"), str(tmp_path / "m.png")]
    assert main(args + ["-o", str(tmp_path / "a.png"), "--weights", str(onnx)]) == 0
    assert main(args + ["-o", str(tmp_path / "b.png"), "--weights", str(weights)]) == 0
    a, b = np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png"))
    assert np.abs(a.astype(int) - b).max() <= 1


def test_export_errors(tmp_path, capsys):
    assert main(["export-onnx", "-o", str(tmp_path / "m.onnx"), "--weights", str(tmp_path / "none.safetensors")]) == 3
    assert "none.safetensors" in capsys.readouterr().err
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_weights(BargainNet(BargainNetConfig(ngf=4, num_downs=5, code_dim=8)).eval(), weights)
    assert main(["export-onnx", "-o", str(tmp_path / "m.txt"), "--weights", str(weights)]) == 4
    assert ".onnx" in capsys.readouterr().err
