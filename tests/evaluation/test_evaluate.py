"""Batched evaluation: per-image numbers against an independent re-implementation of the published
steps, summaries, reports, and bad-input messages."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio

from bargainnet import evaluation
from bargainnet.errors import InputError
from bargainnet.evaluation.metrics import ratio_bin

SIZE = 64


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from bargainnet.data.synthesis import make_tiny_dataset

    # native 80 px, evaluated at 64 px: the test resize (and the nearest fMSE mask) matter
    return make_tiny_dataset(tmp_path_factory.mktemp("ihd") / "tiny", n_train=3, n_test=6, size=80, seed=0)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from bargainnet.models.bargainnet import BargainNet, BargainNetConfig
    from bargainnet.models.convert import save_weights

    torch.manual_seed(0)
    model = BargainNet(BargainNetConfig(ngf=4, num_downs=5, code_dim=8))
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(model, path)
    return path


def _reference_published(root, name, output_hwc_float=None):
    """The published steps written out independently: PIL bilinear resize of composite/real,
    mode-"1" mask resized (PIL forces nearest), uint8 truncation, skimage metrics."""
    comp_p = root / name
    sub, _, fname = name.split("/")
    stem = fname.rsplit("_", 1)[0]
    real_p = root / sub / "real_images" / (stem.rsplit("_", 1)[0] + ".jpg")
    mask_p = root / sub / "masks" / (stem + ".png")
    to_t = lambda im: np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0 * 2 - 1  # noqa: E731
    comp = to_t(Image.open(comp_p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
    real = to_t(Image.open(real_p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
    mask = np.asarray(Image.open(mask_p).convert("1").resize((SIZE, SIZE), Image.BILINEAR), np.float32)
    out = comp if output_hwc_float is None else output_hwc_float
    o = ((np.transpose(out, (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)
    r = ((np.transpose(real, (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)
    m = mask[..., None]
    return {
        "mse": mean_squared_error(o, r),
        "psnr": peak_signal_noise_ratio(r, o, data_range=o.max() - o.min()),
        "fmse": mean_squared_error(o * m, r * m) * SIZE * SIZE / m.sum(),
        "fg_ratio": 100 * m.mean(),
    }


def test_published_composite_matches_independent_pipeline(tiny_root):
    data = evaluation.load_dataset(tiny_root, "test", size=SIZE)
    result = evaluation.evaluate(data, evaluation.resolve_methods(["composite"]), "published", batch_size=4, progress=False)
    assert len(result.records) == len(data) == 6
    for rec in result.records:
        ref = _reference_published(tiny_root, rec["name"])
        for key in ("mse", "psnr", "fmse", "fg_ratio"):
            assert rec[key] == pytest.approx(ref[key], rel=1e-9), (rec["name"], key)
    # the nearest-resized fMSE mask differs from the model's (bilinear + threshold) mask somewhere
    masks = [data[i]["mask"] for i in range(len(data))]
    nearest = [evaluation.NearestMasks(data)[i]["fmse_mask"] for i in range(len(data))]
    assert any(not torch.equal(a, b) for a, b in zip(masks, nearest))


def test_several_methods_summaries_and_report(tiny_root, tiny_weights, tmp_path):
    data = evaluation.load_dataset(tiny_root, "test", size=SIZE)
    methods = evaluation.resolve_methods(["composite", "reinhard", "histogram", "covariance", str(tiny_weights)])
    result = evaluation.evaluate(data, methods, "standard", batch_size=4, progress=False)
    assert len(result.records) == 5 * 6
    summary = result.summary()
    for key in ("composite", "reinhard", "tiny"):
        rows = [r for r in result.records if r["method"] == key]
        s = summary[key]
        assert list(s["subsets"]) == ["illumination", "retouch", "transfer", "All"]
        assert s["subsets"]["All"]["n"] == 6
        assert s["subsets"]["All"]["mse"] == pytest.approx(np.mean([r["mse"] for r in rows]))
        assert s["subsets"]["retouch"]["fmse"] == pytest.approx(np.mean([r["fmse"] for r in rows if r["subset"] == "retouch"]))
        assert sum(s["ratio_bins"][b]["n"] for b in ("0-5%", "5-15%", "15-100%")) == 6
        for b in ("0-5%", "5-15%", "15-100%"):
            sel = [r["mse"] for r in rows if ratio_bin(r["fg_ratio"]) == b]
            if sel:
                assert s["ratio_bins"][b]["mse"] == pytest.approx(np.mean(sel))
    # the baselines touch only the foreground: with a composited output the background is exact
    for key in ("reinhard", "histogram", "covariance"):
        assert summary[key]["subsets"]["All"]["fmse"] != summary["composite"]["subsets"]["All"]["fmse"]
    paths = evaluation.write_report(result, tmp_path / "eval")
    md = paths["markdown"].read_text()
    assert "protocol `standard`" in md and "| Input composite |" in md and "| tiny |" in md
    assert md.count("protocol `standard`") >= 3  # every table names the protocol
    assert "0-5% MSE↓" in md and "transfer MSE↓" in md and "All fMSE↓" in md
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 30 and set(rows[0]) == {"method", "name", "subset", "fg_ratio", "mse", "psnr", "fmse"}
    payload = json.loads(paths["json"].read_text())
    assert payload["protocol"] == "standard" and payload["results"]["tiny"]["subsets"]["All"]["n"] == 6
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_raw_output_scored_under_published(tiny_root, tiny_weights):
    from bargainnet.models.convert import load_weights

    data = evaluation.load_dataset(tiny_root, "test", size=SIZE)
    result = evaluation.evaluate(data, evaluation.resolve_methods([str(tiny_weights)]), "published", batch_size=3, progress=False)
    model = load_weights(tiny_weights).eval()
    item = evaluation.NearestMasks(data)[0]
    # the published test feeds the model its nearest-resized mode-"1" mask
    with torch.no_grad():
        raw = model(item["composite"][None], item["fmse_mask"][None])[0].numpy()
    ref = _reference_published(tiny_root, item["name"], raw)
    rec = result.records[0]
    assert rec["name"] == item["name"]
    assert rec["mse"] == pytest.approx(ref["mse"], rel=1e-6)
    assert rec["fmse"] == pytest.approx(ref["fmse"], rel=1e-6)


def test_bad_inputs(tiny_root, tmp_path):
    with pytest.raises(InputError, match="unknown method 'dovenet'"):
        evaluation.resolve_methods(["composite", "dovenet"])
    with pytest.raises(InputError, match="weights file not found"):
        evaluation.resolve_methods([str(tmp_path / "missing.safetensors")])
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="junk.safetensors"):
        evaluation.resolve_methods([str(junk)])
    # a safetensors file of the wrong shape/content
    from safetensors.torch import save_file

    wrong = tmp_path / "wrong.safetensors"
    save_file({"generator.model.0.weight": torch.zeros(3, 3)}, str(wrong))
    with pytest.raises(InputError, match="wrong.safetensors"):
        evaluation.resolve_methods([str(wrong)])
    empty_root = tmp_path / "nolists"
    empty_root.mkdir()
    with pytest.raises(InputError, match="no list file"):
        evaluation.load_dataset(empty_root, "test")
    with pytest.raises(InputError, match="not found"):
        evaluation.load_dataset(tmp_path / "nowhere", "test")


def test_summarize_bins_and_non_finite_values():
    recs = [
        {"method": "m", "name": "a", "subset": "HFlickr", "fg_ratio": 1.0, "mse": 1.0, "psnr": 40.0, "fmse": 10.0},
        {"method": "m", "name": "b", "subset": "HCOCO", "fg_ratio": 5.0, "mse": 3.0, "psnr": float("inf"), "fmse": 20.0},
        {"method": "m", "name": "c", "subset": "HCOCO", "fg_ratio": 50.0, "mse": 5.0, "psnr": 30.0, "fmse": float("nan")},
        {"method": "m", "name": "d", "subset": "extra", "fg_ratio": 14.9, "mse": 7.0, "psnr": float("-inf"), "fmse": 40.0},
    ]
    s = evaluation.summarize(recs)["m"]
    assert list(s["subsets"]) == ["HCOCO", "HFlickr", "extra", "All"]  # iHarmony4 order first
    assert s["subsets"]["All"] == {"n": 4, "mse": 4.0, "psnr": 35.0, "fmse": pytest.approx(70 / 3),
                                   "psnr_pos_inf": 1, "psnr_neg_inf": 1, "fmse_nan": 1}
    assert s["ratio_bins"]["0-5%"]["n"] == 1 and s["ratio_bins"]["5-15%"]["n"] == 2
    assert s["ratio_bins"]["5-15%"]["mse"] == 5.0 and s["ratio_bins"]["15-100%"]["n"] == 1


def test_train_mode_runs_each_image_with_its_own_batchnorm_statistics(tiny_root):
    # --model-mode train reproduces the published test.py: BatchNorm in train mode sees one image
    from bargainnet.models.bargainnet import BargainNet, BargainNetConfig

    torch.manual_seed(0)
    model = BargainNet(BargainNetConfig(ngf=4, num_downs=5, code_dim=8, use_dropout=False))
    data = evaluation.load_dataset(tiny_root, "test", size=SIZE)
    comp = torch.stack([data[i]["composite"] for i in range(3)])
    mask = torch.stack([data[i]["mask"] for i in range(3)])
    method = evaluation.model_method(model, mode="train")
    out = method.run(comp, mask)
    model.train()
    with torch.no_grad():
        ref = model(comp[1:2], mask[1:2])
    torch.testing.assert_close(out[1:2], ref)
    eval_out = evaluation.model_method(model, mode="eval").run(comp, mask)
    assert not torch.allclose(out, eval_out)


def test_model_run_at_a_working_size_is_lifted_and_keeps_the_background(tmp_path):
    """--model-size: the network runs at 64 px, its colour change is lifted to 128 px."""
    import torch

    from bargainnet.evaluation import model_method
    from bargainnet.models.bargainnet import BargainNet

    model = BargainNet(ngf=4, num_downs=6, code_dim=8).eval()
    method = model_method(model, working_size=64)
    composite = torch.rand(2, 3, 128, 128) * 2 - 1
    mask = torch.zeros(2, 1, 128, 128)
    mask[:, :, 30:90, 40:100] = 1
    out = method.run(composite, mask)
    assert out.shape == composite.shape
    background = mask.expand_as(composite) == 0
    assert torch.allclose(out[background], composite[background], atol=1e-6)
    assert not torch.allclose(out[~background], composite[~background], atol=1e-3)
    assert method.info["working_size"] == 64
