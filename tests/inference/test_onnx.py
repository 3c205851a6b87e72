"""ONNX export (bargainnet.inference.onnx): onnxruntime matches PyTorch to 1e-4, batch is dynamic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bargainnet.errors import InputError, OutputError
from bargainnet.inference.onnx import InferenceGraph, OnnxRunner, compare_with_torch, export_onnx
from bargainnet.models.bargainnet import BargainNet, BargainNetConfig


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = BargainNet(BargainNetConfig(ngf=4, num_downs=5, code_dim=8)).eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", size=64)
    return model, path


def test_graph_is_the_model_api(exported):
    """The exported graph computes exactly model.harmonize and model.inharmony."""
    model, _ = exported
    c = torch.rand(2, 3, 64, 64) * 2 - 1
    m = torch.zeros(2, 1, 64, 64)
    m[:, :, 10:40, 20:50] = 1
    with torch.no_grad():
        h, d0, d1 = InferenceGraph(model)(c, m)
        torch.testing.assert_close(h, model.harmonize(c, m), atol=1e-6, rtol=0)
        torch.testing.assert_close(d0, model.inharmony(c, m)[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(d1, model.inharmony(h, m)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch(exported, batch):
    model, path = exported
    assert compare_with_torch(model, path, batch=batch, seed=batch) <= 1e-4


def test_runner_metadata_and_errors(exported, tmp_path):
    model, path = exported
    runner = OnnxRunner(path)
    assert runner.size == 64 and runner.config.num_downs == 5
    out = runner.run(np.zeros((2, 3, 64, 64), np.float32), np.ones((2, 1, 64, 64), np.float32))
    assert [tuple(o.shape) for o in out] == [(2, 3, 64, 64), (2,), (2,)]
    with pytest.raises(InputError, match="not found"):
        OnnxRunner(tmp_path / "none.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot load ONNX"):
        OnnxRunner(tmp_path / "bad.onnx")
    with pytest.raises(OutputError, match=".onnx"):
        export_onnx(model, tmp_path / "m.bin")
    with pytest.raises(OutputError, match="same file as input"):
        export_onnx(model, path, inputs=(path,))
    with pytest.raises(InputError, match="multiple of 32"):
        export_onnx(model, tmp_path / "m.onnx", size=80)


@pytest.mark.parametrize("decoder_levels", [0, 3])
def test_colour_transform_family_exports(tmp_path, decoder_levels):
    # its pooling is written as matrix products so that the exporter takes any pair of sizes
    from bargainnet.models.color_transform import ColorTransformNet

    torch.manual_seed(0)
    model = ColorTransformNet(width=4, depth=5, code_dim=4, encoder_width=4, grid=8, curve_knots=4, image_size=128,
                              multiscale=True, decoder_levels=decoder_levels).eval()
    with torch.no_grad():  # not the identity, so that the comparison means something
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = export_onnx(model, tmp_path / "ct.onnx", size=128)
    assert compare_with_torch(model, path, batch=2, seed=1) <= 1e-4


@pytest.mark.parametrize("output, hint, semantic",
                         [("affine", "none", "none"), ("affine_global", "none", "none"), ("affine", "stats", "none"),
                          ("affine", "none", "lite0")])
def test_affine_output_exports(tmp_path, output, hint, semantic):
    torch.manual_seed(0)
    config = BargainNetConfig(ngf=4, num_downs=5, code_dim=8, output=output, hint=hint, semantic=semantic)
    model = BargainNet(config).eval()
    with torch.no_grad():  # not the identity, so that the comparison means something
        torch.nn.init.normal_(model.generator.output_layer.weight, 0.0, 0.05)
    path = export_onnx(model, tmp_path / f"{output}_{hint}_{semantic}.onnx", size=64)
    assert compare_with_torch(model, path, batch=2, seed=1) <= 1e-4
