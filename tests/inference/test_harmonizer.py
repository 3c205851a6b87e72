"""The Harmonizer API (bargainnet.inference) with a tiny model at 64 px."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from bargainnet.inference import harmonizer as inference
from bargainnet.errors import InputError
from bargainnet.inference import Harmonizer
from bargainnet.models.bargainnet import BargainNet, BargainNetConfig
from bargainnet.models.convert import save_weights

TINY = dict(ngf=4, num_downs=5, code_dim=8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(BargainNet(BargainNetConfig(**TINY)).eval(), path)
    return path


@pytest.fixture(scope="module")
def harmonizer(weights):
    return Harmonizer.from_pretrained(weights)


def photo(h=90, w=130):
    return np.asarray(Image.fromarray(skdata.chelsea()).resize((w, h), Image.BILINEAR))


def box_mask(h=90, w=130, y=(20, 60), x=(30, 90)):
    mask = np.zeros((h, w), bool)
    mask[y[0] : y[1], x[0] : x[1]] = True
    return mask


def test_default_weights_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(inference, "default_weights_path", lambda: tmp_path / "default.safetensors")
    with pytest.raises(InputError, match="no default weights are installed.*from_pretrained"):
        Harmonizer.from_pretrained()


def test_bad_construction(weights):
    with pytest.raises(InputError, match="not found"):
        Harmonizer.from_pretrained(weights.parent / "none.safetensors")
    with pytest.raises(InputError, match="multiple of 32"):
        Harmonizer.from_pretrained(weights, size=80)
    with pytest.raises(InputError, match="backend"):
        Harmonizer.from_pretrained(weights, backend="tensorrt")
    with pytest.raises(InputError, match="lifting radius"):
        Harmonizer.from_pretrained(weights, radius=0)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            Harmonizer.from_pretrained(weights, device="cuda")


def test_size_comes_from_the_config(harmonizer, weights):
    assert harmonizer.size == 64  # 2**5 = 32 is below the extractor's 64 px minimum
    assert Harmonizer.from_pretrained(weights, size=128).size == 128
    from bargainnet.models.base import default_size

    assert default_size(BargainNetConfig()) == 256


@pytest.mark.parametrize("shape", [(90, 130), (37, 101), (200, 64)])
def test_output_has_input_size_and_background_is_bit_identical(harmonizer, shape):
    h, w = shape
    img = photo(h, w)
    mask = box_mask(h, w, (h // 4, 3 * h // 4), (w // 4, 3 * w // 4))
    out = harmonizer(img, mask)
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~mask], img[~mask])
    assert np.abs(out[mask].astype(int) - img[mask]).mean() > 1  # the random model changes it


def test_input_kinds(harmonizer, tmp_path):
    img, mask = photo(), box_mask()
    Image.fromarray(img).save(tmp_path / "c.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    from_path = harmonizer(tmp_path / "c.png", tmp_path / "m.png")
    from_pil = harmonizer(Image.open(tmp_path / "c.png"), Image.open(tmp_path / "m.png"))
    from_array = harmonizer(img, mask)
    assert isinstance(from_path, Image.Image) and from_path.size == (130, 90) and from_path.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(from_path), from_array)
    np.testing.assert_array_equal(np.asarray(from_pil), from_array)
    as_float = harmonizer(img.astype(np.float32) / 255, mask)
    assert as_float.dtype == np.float32 and as_float.shape == img.shape
    np.testing.assert_allclose(as_float[~mask], img[~mask] / 255.0, atol=1e-7)
    gray = harmonizer(img[..., 0], mask)
    assert gray.shape == (90, 130, 3)


def test_alpha_is_kept(harmonizer, tmp_path):
    img, mask = photo(), box_mask()
    alpha = np.tile(np.linspace(0, 255, 130).astype(np.uint8), (90, 1))
    Image.fromarray(np.dstack([img, alpha])).save(tmp_path / "rgba.png")
    out = harmonizer(tmp_path / "rgba.png", mask)
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[..., 3], alpha)
    out = harmonizer(np.dstack([img, alpha]), mask)
    assert out.shape == (90, 130, 4)
    np.testing.assert_array_equal(out[..., 3], alpha)


def _reference_low(img, mask, size=64):
    """The network input built independently with Pillow: bilinear composite, BOX coverage >= 0.5."""
    comp = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
    cover = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((size, size), Image.BOX))
    c = torch.from_numpy(comp).permute(2, 0, 1)[None] * 2 - 1
    m = torch.from_numpy((cover >= 0.5).astype(np.float32))[None, None]
    return c, m


def test_score_matches_the_model_at_the_canonical_size(harmonizer):
    # The score is measured at 256x256 whatever the working size (64 here).
    img, mask = photo(), box_mask()
    score = harmonizer.score(img, mask)
    c, m = _reference_low(img, mask, size=256)
    with torch.no_grad():
        distance, bounded = harmonizer.runner.model.inharmony(c, m)
    assert score.distance == pytest.approx(float(distance), rel=1e-4)
    assert score.score == pytest.approx(float(bounded), abs=1e-5)
    assert score.score == pytest.approx(np.exp(-0.04212 * score.distance))


def test_after_score_matches_the_model_on_the_whole_result(harmonizer, tmp_path):
    # after = d(z_b, ẑ_f): the composite's background code, the foreground code of the full-resolution
    # result resized to 256 with the composite's mask; here built independently (Pillow on the whole
    # result), from a file as the command line reads it
    img, mask = photo(300, 420), box_mask(300, 420, (40, 200), (100, 300))
    Image.fromarray(img).save(tmp_path / "c.png")
    result = harmonizer.harmonize(tmp_path / "c.png", mask)
    assert isinstance(result.image, Image.Image)
    np.testing.assert_array_equal(np.asarray(result.composite), img)
    out, _ = _reference_low(np.asarray(result.image), mask, size=256)
    c, m = _reference_low(img, mask, size=256)
    model = harmonizer.runner.model
    with torch.no_grad():
        distance = (model.domain_code(c, 1 - m) - model.domain_code(out, m)).norm()
    assert result.after.distance == pytest.approx(float(distance), rel=1e-4)
    # the harmonization itself does not depend on whether the network also scores
    item = harmonizer.prepare(img, mask)
    c, m = harmonizer._tensors([item.composite_low], [item.mask_low])
    scored, unscored = harmonizer.runner.run(c, m), harmonizer.runner.run(c, m, scores=False)
    torch.testing.assert_close(scored[0], unscored[0], atol=1e-5, rtol=0)  # E batched with z_f or alone
    assert torch.isnan(unscored[1]).all() and torch.isfinite(scored[1]).all()


def test_upsample_method_matches_a_manual_pipeline(weights):
    h = Harmonizer.from_pretrained(weights, method="upsample")
    img, mask = photo(), box_mask()
    out = h(img, mask)
    c, m = _reference_low(img, mask)
    with torch.no_grad():
        low = h.runner.model.harmonize(c, m)
    low01 = ((low[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    up = np.stack([np.asarray(Image.fromarray(low01[..., k]).resize((130, 90), Image.BILINEAR)) for k in range(3)], -1)
    expected = np.where(mask[..., None], np.round(np.clip(up, 0, 1) * 255), img)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_harmonize_result_and_min_inharmony(harmonizer):
    img, mask = photo(), box_mask()
    result = harmonizer.harmonize(img, mask)
    assert not result.skipped and result.before.distance > 0
    assert result.after.score == pytest.approx(np.exp(-0.04212 * result.after.distance))
    kept = harmonizer.harmonize(img, mask, min_inharmony=result.before.distance + 1)
    assert kept.skipped
    np.testing.assert_array_equal(kept.image, img)
    done = harmonizer.harmonize(img, mask, min_inharmony=result.before.distance / 2)
    assert not done.skipped
    np.testing.assert_array_equal(done.image, result.image)


def test_background_harmonization_keeps_the_foreground(harmonizer):
    img, mask = photo(), box_mask()
    out = harmonizer.harmonize_background(img, mask)
    np.testing.assert_array_equal(out[mask], img[mask])
    assert np.abs(out[~mask].astype(int) - img[~mask]).mean() > 1


def test_batches_give_the_same_results(weights):
    pairs = [(photo(90, 130), box_mask()), (photo(64, 64), box_mask(64, 64, (10, 40), (5, 30))),
             (photo(120, 80), box_mask(120, 80, (50, 110), (10, 70)))]
    one = Harmonizer.from_pretrained(weights, batch_size=1).harmonize_many(pairs)
    two = Harmonizer.from_pretrained(weights, batch_size=2).harmonize_many(pairs)
    for a, b in zip(one, two):
        assert np.abs(a.image.astype(int) - b.image).max() <= 1
        assert a.before.distance == pytest.approx(b.before.distance, abs=1e-5)


def test_tiny_and_huge_foregrounds(harmonizer):
    img = photo(400, 500)
    tiny = np.zeros((400, 500), bool)
    tiny[200:202, 300:302] = True  # 4 px: below half a working pixel
    out = harmonizer(img, tiny)
    np.testing.assert_array_equal(out[~tiny], img[~tiny])
    huge = ~tiny
    out = harmonizer(img, huge)
    np.testing.assert_array_equal(out[tiny], img[tiny])


def test_bad_inputs_raise_input_error(harmonizer, tmp_path):
    img = photo()
    with pytest.raises(InputError, match="no such file"):
        harmonizer(tmp_path / "none.jpg", box_mask())
    with pytest.raises(InputError, match="empty"):
        harmonizer(img, np.zeros((90, 130), bool))
    with pytest.raises(InputError, match="whole image"):
        harmonizer(img, np.ones((90, 130), bool))
    with pytest.raises(InputError, match="--resize-mask"):
        harmonizer(img, box_mask(45, 65, (5, 30), (5, 30)))
    out = harmonizer(img, box_mask(45, 65, (10, 30), (15, 45)), resize_mask=True)
    assert out.shape == img.shape


def test_paste(harmonizer):
    bg = photo(120, 160)
    cut = np.zeros((40, 50, 4), np.uint8)
    cut[..., :3] = (200, 30, 30)
    cut[5:35, 5:45, 3] = 255
    cut[5:35, 5, 3] = 100  # a soft edge
    result = harmonizer.paste(cut, bg, position=(130, 100))  # partly outside: cut off
    out = result.image
    assert out.shape == bg.shape
    alpha = np.zeros((120, 160))
    alpha[100:120, 130:160] = cut[:20, :30, 3]
    np.testing.assert_array_equal(out[alpha == 0], bg[alpha == 0])
    assert (out[alpha == 255] != bg[alpha == 255]).any()
    np.testing.assert_array_equal(result.mask, alpha >= 128)
    scaled = harmonizer.paste(cut, bg, position=(10, 10), scale=2.0)
    assert scaled.mask.sum() == pytest.approx(4 * 30 * 40, rel=0.1)
    with pytest.raises(InputError, match="outside the background"):
        harmonizer.paste(cut, bg, position=(500, 500))
    with pytest.raises(InputError, match="no alpha channel"):
        harmonizer.paste(cut[..., :3], bg)


def test_onnxruntime_backend_matches_pytorch(weights, harmonizer):
    onnx = Harmonizer.from_pretrained(weights, backend="onnxruntime")
    assert onnx.backend == "onnxruntime" and onnx.size == 64
    img, mask = photo(), box_mask()
    a, b = harmonizer.harmonize(img, mask), onnx.harmonize(img, mask)
    assert np.abs(a.image.astype(int) - b.image).max() <= 1
    # The ONNX graph scores at its working size (no separate extractor at 256).
    assert not onnx.scores_canonically and harmonizer.scores_canonically
    item = harmonizer.prepare(img, mask)
    working_before = harmonizer.runner.run(*harmonizer._tensors([item.composite_low], [item.mask_low]))[1][0]
    assert working_before == pytest.approx(b.before.distance, abs=1e-4)
    with pytest.raises(InputError, match="PyTorch backend"):
        onnx.harmonize_background(img, mask)


def test_working_size_images_get_the_network_output(harmonizer):
    img, mask = photo(64, 64), box_mask(64, 64, (10, 40), (20, 50))
    out = harmonizer(img, mask)
    c, m = _reference_low(img, mask)
    with torch.no_grad():
        low = harmonizer.runner.model.harmonize(c, m)
    expected = np.round(((low[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy() * 255)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_16bit_gray_input(harmonizer, tmp_path):
    gray = (np.asarray(Image.fromarray(photo()).convert("L")).astype(np.uint16) * 257 + 100).clip(0, 65535)
    Image.fromarray(gray.astype(np.uint16)).save(tmp_path / "g16.png")
    mask = box_mask()
    out = harmonizer(tmp_path / "g16.png", mask)
    assert out.mode == "RGB" and out.size == (130, 90)
    expected = np.round(gray / 65535 * 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(out)[~mask], np.repeat(expected[..., None], 3, 2)[~mask])


def test_iter_batch_yields_a_result_or_an_error_per_item(harmonizer, tmp_path):
    from PIL import Image

    img = photo(70, 90)
    mask = box_mask(70, 90, (20, 50), (20, 60))
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "a_mask.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    pairs = [(tmp_path / "a.png", tmp_path / "a_mask.png"), (tmp_path / "broken.png", tmp_path / "a_mask.png"),
             (tmp_path / "a.png", None)]
    outcomes = list(harmonizer.iter_batch(pairs))
    assert [o.index for o in outcomes if o.ok] == [0] and len(outcomes) == 3
    assert {o.index for o in outcomes if not o.ok} == {1, 2}
    assert "no mask found" in next(o.message for o in outcomes if o.index == 2)
    scores = list(harmonizer.iter_batch(pairs[:1], output="scores"))[0].result
    only = list(harmonizer.iter_batch(pairs[:1], output="inharmony"))[0].result
    full = outcomes[0].result
    assert scores.image is None and only.after is None
    assert scores.before.distance == pytest.approx(full.before.distance, abs=1e-5)
    assert scores.after.distance == pytest.approx(full.after.distance, abs=1e-5)
    assert only.before.distance == pytest.approx(full.before.distance, abs=1e-4)


def test_a_weights_file_recommends_its_lifting_radius(weights, tmp_path):
    from bargainnet.models.convert import load_weights, read_metadata

    assert Harmonizer.from_pretrained(weights).radius == 4  # no recommendation: the library's default
    model = load_weights(weights)
    assert model.inference_settings == {}
    model.inference_settings = {"lift_radius": 64}
    wide = save_weights(model, tmp_path / "wide.safetensors")
    assert read_metadata(wide)["inference"] == '{"lift_radius": 64}'
    assert load_weights(wide).inference_settings == {"lift_radius": 64}
    assert Harmonizer.from_pretrained(wide).radius == 64
    assert Harmonizer(load_weights(wide)).radius == 64
    assert Harmonizer.from_pretrained(wide, radius=8).radius == 8  # the caller's choice wins
    assert Harmonizer.from_pretrained(wide).describe().endswith("with radius 64, strength 1")
    assert "the output upsampled" in Harmonizer.from_pretrained(wide, method="upsample").describe()
    from bargainnet.models.color_transform import ColorTransformNet

    transform = ColorTransformNet(width=4, depth=5, code_dim=4, encoder_width=4, grid=8, curve_knots=4, image_size=128)
    assert "colour transform applied at full resolution" in Harmonizer(transform).describe()
    # the recommendation travels into an ONNX export
    assert Harmonizer.from_pretrained(wide, backend="onnxruntime").radius == 64
    for bad, match in (({"lift_radius": 0}, "lift_radius must be"), ({"lift_radius": 2.5}, "lift_radius must be"),
                       ({"radius": 3}, "unknown inference settings")):
        model.inference_settings = bad
        with pytest.raises(InputError, match=match):
            save_weights(model, tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


def test_strength_blends_the_input_and_the_full_change(weights, tmp_path):
    from bargainnet.models.convert import load_weights

    rng = np.random.default_rng(3)
    comp = (rng.random((90, 120, 3)) * 255).astype(np.uint8)  # not the working size: lifting runs
    mask = np.zeros((90, 120), bool)
    mask[20:70, 30:90] = True
    full = np.asarray(Harmonizer.from_pretrained(weights)(comp, mask)).astype(float)
    assert np.abs(full - comp)[mask].mean() > 1  # the tiny model changes something
    same = Harmonizer.from_pretrained(weights, strength=0)(comp, mask)
    np.testing.assert_array_equal(same, comp)
    half = np.asarray(Harmonizer.from_pretrained(weights, strength=0.5)(comp, mask)).astype(float)
    np.testing.assert_array_equal(half[~mask], comp[~mask])
    np.testing.assert_allclose(half, (comp + full) / 2, atol=1.0)  # rounding of each 8-bit result
    more = np.asarray(Harmonizer.from_pretrained(weights, strength=1.5)(comp, mask)).astype(float)
    expected = np.clip(comp + 1.5 * (full - comp), 0, 255)
    assert np.abs(more - expected)[mask].max() <= 1.5
    h = Harmonizer.from_pretrained(weights)  # per call, without changing the Harmonizer
    np.testing.assert_array_equal(h(comp, mask, strength=0.5), half.astype(np.uint8))
    np.testing.assert_array_equal(h.harmonize_many([(comp, mask)], strength=0)[0].image, comp)
    np.testing.assert_array_equal(h.harmonize_background(comp, mask, strength=0), comp)
    assert h.strength == 1.0
    model = load_weights(weights)
    model.inference_settings = {"strength": 0.5}  # the file's recommendation; the caller's wins
    soft = save_weights(model, tmp_path / "soft.safetensors")
    assert Harmonizer.from_pretrained(soft).strength == 0.5
    assert Harmonizer.from_pretrained(soft, strength=1).strength == 1.0
    assert Harmonizer.from_pretrained(soft, backend="onnxruntime").strength == 0.5
    for bad in (-0.1, 2.5, "strong", True):
        with pytest.raises(InputError, match="strength must be a number from 0 to 2"):
            Harmonizer.from_pretrained(weights, strength=bad)
        model.inference_settings = {"strength": bad}
        with pytest.raises(InputError, match="strength must be a number from 0 to 2"):
            save_weights(model, tmp_path / "bad.safetensors")


def test_a_broken_inference_setting_in_a_file_is_a_clear_error(weights, tmp_path):
    from safetensors.torch import load_file, save_file

    from bargainnet.models.convert import read_metadata

    meta = {**read_metadata(weights), "inference": '{"lift_radius": "wide"}'}
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(weights)), str(bad), metadata=meta)
    with pytest.raises(InputError, match="bad.safetensors: lift_radius must be"):
        Harmonizer.from_pretrained(bad)
    save_file(load_file(str(weights)), str(bad), metadata={**meta, "inference": "{wide"})
    with pytest.raises(InputError, match="invalid inference settings"):
        Harmonizer.from_pretrained(bad)


def test_the_call_gives_harmonizes_image_without_measuring_inharmony(weights, monkeypatch):
    h = Harmonizer.from_pretrained(weights)
    img, mask = photo(), box_mask()
    full = h.harmonize(img, mask)
    calls = []
    real_codes = h.runner.codes
    monkeypatch.setattr(h.runner, "codes", lambda *a, **k: calls.append(1) or real_codes(*a, **k))
    assert np.array_equal(h(img, mask), full.image)
    assert calls == []  # nothing asked for a score: no extractor call at INHARMONY_SIZE
    threshold = full.before.distance + 1  # above the composite's: the image comes back untouched
    assert np.array_equal(h(img, mask, min_inharmony=threshold), img) and calls
    with pytest.raises(ValueError, match="need the scores"):
        h.process([h.prepare(img, mask)], min_inharmony=0.1, scores=False)
