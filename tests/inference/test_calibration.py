"""The per-image strength measured on the image's own background (``strength="auto"``,
bargainnet.inference.calibration): its parts against hand-computed answers, then through the
Harmonizer, a weights file's recommendation and the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from bargainnet.cli import main
from bargainnet.errors import InputError
from bargainnet.inference import Harmonizer
from bargainnet.inference.calibration import (
    colour_map,
    downsized,
    inverse_map,
    measured_strength,
    measured_strengths,
    placements,
)
from bargainnet.models.bargainnet import BargainNet, BargainNetConfig
from bargainnet.models.base import Calibration
from bargainnet.models.convert import load_weights, save_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(BargainNet(BargainNetConfig(ngf=4, num_downs=5, code_dim=8)).eval(), path)
    return path


def scene(size=64):
    photo = np.asarray(Image.fromarray(skdata.chelsea()).resize((size, size), Image.BILINEAR)).astype(np.float32) / 255
    mask = np.zeros((size, size), bool)
    mask[8:28, 10:30] = True
    return photo, mask


# -- the parts -------------------------------------------------------------------------------


def test_placements_move_the_mask_where_it_overlaps_the_object_least():
    _, mask = scene()
    moved = placements(mask, count=3)
    assert len(moved) == 3
    for m in moved:
        assert m.sum() == mask.sum()  # a cyclic shift keeps the shape and area
        assert not (m & mask).any()  # a 20x20 box fits beside itself
    assert len({m.tobytes() for m in moved}) == 3
    big = np.ones((64, 64), bool)
    big[:4] = False
    assert placements(big) == []  # no room left: nothing to measure


def test_colour_map_and_its_inverse():
    rng = np.random.default_rng(0)
    x = rng.random((500, 3))
    w = np.array([[0.9, 0.1, 0.0], [0.0, 1.1, 0.05], [0.02, 0.0, 0.8], [0.05, -0.03, 0.1]])
    fitted = colour_map(x, np.c_[x, np.ones(500)] @ w)
    np.testing.assert_allclose(fitted, w, atol=1e-10)
    back = np.c_[np.c_[x, np.ones(500)] @ w, np.ones(500)] @ inverse_map(fitted)
    np.testing.assert_allclose(back, x, atol=1e-10)
    flat = np.zeros((4, 3))
    flat[3] = 0.5  # everything to one grey: no inverse
    assert inverse_map(flat) is None


def corrected_by(fraction, photo, calls):
    """A stand-in network that moves each pseudo-composite ``fraction`` of the way back to the photo."""

    def network(comps, masks):
        calls.append(len(comps))
        return comps + fraction * (photo[None] - comps)

    return network


def test_the_measured_factor_is_how_much_of_the_right_change_the_network_makes():
    photo, mask = scene()
    output = photo.copy()
    output[mask] = np.clip(photo[mask] * 0.8 + 0.1, 0, 1)  # the network's change on the real foreground
    calls = []
    settings = Calibration(scale=1.0, min_strength=0.0, max_strength=2.0, placements=2, fallback=0.7)
    # a network that undoes the perturbation fully measures 1, half-way measures 2
    assert measured_strength(photo, mask, output, corrected_by(1.0, photo, calls), settings) == pytest.approx(1.0)
    assert measured_strength(photo, mask, output, corrected_by(0.5, photo, calls), settings) == pytest.approx(2.0)
    assert calls == [2, 2]  # one network call per image, all placements in its batch
    # scaled and clipped
    clipped = Calibration(scale=0.8, min_strength=0.0, max_strength=1.2, placements=2)
    assert measured_strength(photo, mask, output, corrected_by(0.5, photo, []), clipped) == pytest.approx(1.2)
    assert measured_strength(photo, mask, output, corrected_by(1.0, photo, []), clipped) == pytest.approx(0.8)
    # a network that moves away from the photo measures a negative factor: strength 0
    assert measured_strength(photo, mask, output, corrected_by(-0.5, photo, []), settings) == 0.0
    floored = Calibration(scale=1.0, min_strength=0.3, max_strength=2.0, placements=2)
    assert measured_strength(photo, mask, output, corrected_by(-0.5, photo, []), floored) == 0.3


def test_the_fallback_when_nothing_can_be_measured():
    photo, mask = scene()
    output = photo.copy()
    output[mask] = photo[mask] * 0.8 + 0.1
    settings = Calibration(fallback=0.55)
    calls = []
    assert measured_strength(photo, mask, output, corrected_by(0.0, photo, calls), settings) == 0.55  # no change
    flat = photo.copy()
    flat[mask] = 0.5  # the network's change cannot be inverted
    assert measured_strength(photo, mask, flat, corrected_by(1.0, photo, calls), settings) == 0.55
    big = np.ones_like(mask)
    big[:4] = False
    assert measured_strength(photo, big, output, corrected_by(1.0, photo, calls), settings) == 0.55
    assert calls == [3]  # only the first case reached the network


def test_a_foreground_changed_little_more_than_its_unperturbed_background_gets_less():
    photo, mask = scene()
    output = photo.copy()
    output[mask] = np.clip(photo[mask] * 0.8 + 0.1, 0, 1)
    calls = []

    def network(comps, masks):  # undoes any perturbation, and moves every pixel by 0.02
        calls.append(len(comps))
        return comps + (photo[None] - comps) + 0.02

    base = dict(scale=1.0, min_strength=0.0, max_strength=2.0, placements=2)
    plain = measured_strength(photo, mask, output, network, Calibration(**base))
    rho = float(np.sqrt(np.mean((output[mask] - photo[mask]) ** 2))) / 0.02  # foreground change / unperturbed patches' change
    assert measured_strength(photo, mask, output, network, Calibration(**base, null_ratio=rho / 2)) == pytest.approx(plain)
    assert measured_strength(photo, mask, output, network, Calibration(**base, null_ratio=rho * 4)) == pytest.approx(plain / 4)
    assert calls == [2, 4, 4]  # the unperturbed patches share the perturbed ones' batch


def test_measuring_at_a_smaller_size():
    photo, mask = scene()
    output = photo.copy()
    output[mask] = photo[mask] * 0.8 + 0.1
    small, small_mask, small_out = downsized(photo, mask, output, 32)
    assert small.shape == (32, 32, 3) and small_mask.shape == (32, 32) and small_out.shape == (32, 32, 3)
    np.testing.assert_allclose(small[3, 5], photo[6:8, 10:12].mean(axis=(0, 1)), rtol=1e-6)  # 2x2 box average
    np.testing.assert_array_equal(small_mask, mask[::2, ::2])  # the box is even-aligned: wholly in or out
    assert downsized(photo, mask, output, 0)[0] is photo and downsized(photo, mask, output, 64)[0] is photo
    with pytest.raises(ValueError, match="must divide"):
        downsized(photo, mask, output, 48)
    sizes = []

    def network(comps, masks):  # undoes the perturbation fully, at whatever size it is given
        sizes.append(comps.shape[1])
        return comps + (small[None] - comps)

    settings = Calibration(scale=1.0, min_strength=0.0, max_strength=2.0, placements=2, size=32)
    assert measured_strength(photo, mask, output, network, settings) == pytest.approx(1.0)
    assert sizes == [32]


def test_several_images_are_measured_in_one_network_call():
    photo, mask = scene()
    images = []
    for gain in (0.8, 0.6):
        output = photo.copy()
        output[mask] = np.clip(photo[mask] * gain + 0.1, 0, 1)
        images.append((photo, mask, output))
    big = np.ones_like(mask)
    big[:4] = False
    images.insert(1, (photo, big, images[0][2]))  # no room for a patch: the fallback, no patch
    settings = Calibration(scale=1.0, min_strength=0.0, max_strength=2.0, placements=2, fallback=0.55, null_ratio=0.5)

    def network(comps, masks):  # a different answer per image: moves each patch by a share of the way
        calls.append(len(comps))
        share = np.array([0.5 + 0.1 * k for k in range(len(comps))])[:, None, None, None]
        return comps + share * (photo[None] - comps) + 0.01

    calls = []
    together = measured_strengths(images, network, settings)
    assert calls == [4 + 4]  # two images measured, two patches each, perturbed and unperturbed
    one_by_one = []
    for image in images:  # the same pseudo-composites at the same positions of their own batches
        calls = []
        one_by_one.append(measured_strength(*image, network, settings))
    assert together[1] == 0.55
    assert together[0] == pytest.approx(one_by_one[0]) and together[0] > 0
    assert together[2] != pytest.approx(one_by_one[2])  # its patches took the next rows' shares ...

    def same_share(comps, masks):  # ... while a network that treats every row alike gives the same
        return comps + 0.7 * (photo[None] - comps) + 0.01

    assert measured_strengths(images, same_share, settings) == pytest.approx(
        [measured_strength(*image, same_share, settings) for image in images])
    assert measured_strengths([], network, settings) == []


def test_calibration_settings_are_checked():
    assert Calibration.from_dict({}).to_dict() == {"scale": 0.6, "max_strength": 0.9, "placements": 3, "fallback": 0.7,
                                                "min_strength": 0.4, "size": 0, "null_ratio": 0.0}
    for bad, match in (({"scale": 0}, "scale"), ({"max_strength": 3}, "max_strength"), ({"max_strength": 0.2}, "above max_strength"), ({"placements": 0}, "placements"),
                       ({"placements": 2.0}, "placements"), ({"fallback": -1}, "fallback"), ({"width": 3}, "unknown"), ({"size": -64}, "size"),
                       ({"min_strength": 0.5, "max_strength": 0.4}, "above max_strength"), ({"null_ratio": -1}, "null_ratio"),
                       ({"null_ratio": True}, "null_ratio")):
        with pytest.raises(InputError, match=match):
            Calibration.from_dict(bad)


# -- through the Harmonizer, a weights file and the command line ---------------------------------


def test_auto_strength_through_the_harmonizer(weights, tmp_path):
    photo = np.asarray(Image.fromarray(skdata.coffee()).resize((120, 90), Image.BILINEAR))
    mask = np.zeros((90, 120), bool)
    mask[20:60, 25:70] = True
    comp = photo.copy()
    comp[mask] = np.clip(photo[mask] * [1.2, 0.9, 0.8], 0, 255).astype(np.uint8)
    calibration = {"max_strength": 2.0, "min_strength": 0.0, "scale": 1.5}
    h = Harmonizer.from_pretrained(weights, strength="auto", calibration=calibration)
    assert "strength auto (measured per image on 3 background patches: 1.5 x the factor, from 0 to 2" in h.describe()
    result = h.harmonize(comp, mask)
    assert 0 <= result.strength <= 2.0
    # the measured strength is applied like a fixed one
    fixed = Harmonizer.from_pretrained(weights, strength=result.strength)
    np.testing.assert_array_equal(np.asarray(result.image), np.asarray(fixed(comp, mask)))
    assert h.harmonize(comp, mask, strength=0.3).strength == 0.3  # a per-call number wins
    assert Harmonizer.from_pretrained(weights, calibration=calibration).harmonize(comp, mask, strength="auto").strength \
        == result.strength
    assert 0.4 <= Harmonizer.from_pretrained(weights).harmonize(comp, mask, strength="auto").strength <= 0.9  # defaults
    # a batch measures all its images in one more network call, with the same strengths as one by one
    other = np.clip(photo * [0.8, 1.0, 1.2], 0, 255).astype(np.uint8)
    other_mask = np.zeros_like(mask)
    other_mask[40:80, 60:110] = True
    pairs = [(comp, mask), (other, other_mask), (comp, mask)]
    batched = list(Harmonizer.from_pretrained(weights, strength="auto", calibration=calibration, batch_size=3).iter_batch(pairs))
    single = list(Harmonizer.from_pretrained(weights, strength="auto", calibration=calibration, batch_size=1).iter_batch(pairs))
    assert [b.result.strength for b in batched] == pytest.approx([s.result.strength for s in single], abs=1e-4)
    assert batched[0].result.strength == pytest.approx(result.strength, abs=1e-4)
    assert [r.strength for r in h.process([h.prepare(*p) for p in pairs])] == pytest.approx(
        [b.result.strength for b in batched], abs=1e-4)
    # background harmonization has no measurement: the fallback
    assert h.process([h.prepare(comp, mask)], target="background")[0].strength == 0.7
    # a weights file may recommend it; the ONNX backend measures the same
    model = load_weights(weights)
    model.inference_settings = {"strength": "auto", "calibration": calibration}
    auto = save_weights(model, tmp_path / "auto.safetensors")
    assert Harmonizer.from_pretrained(auto).harmonize(comp, mask).strength == result.strength
    onnx = Harmonizer.from_pretrained(auto, backend="onnxruntime").harmonize(comp, mask)
    assert onnx.strength == pytest.approx(result.strength, abs=1e-3)
    for bad, match in (({"strength": "guess"}, "strength must be a number from 0 to 2, 'auto' or 'learned'"),
                       ({"strength": "auto", "calibration": {"scale": -1}}, "calibration scale")):
        model.inference_settings = bad
        with pytest.raises(InputError, match=match):
            save_weights(model, tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="'auto' or 'learned'"):
        Harmonizer.from_pretrained(weights, strength="strong")
    # measured at half the working size (128 -> 64 px), through PyTorch and onnxruntime alike
    half = {**calibration, "size": 64}
    small = Harmonizer.from_pretrained(weights, size=128, strength="auto", calibration=half).harmonize(comp, mask)
    assert 0 <= small.strength <= 2.0
    onnx_small = Harmonizer.from_pretrained(weights, size=128, backend="onnxruntime", strength="auto", calibration=half)
    assert onnx_small.harmonize(comp, mask).strength == pytest.approx(small.strength, abs=1e-3)
    with pytest.raises(InputError, match="calibration size 48 must divide the working size 64"):
        Harmonizer.from_pretrained(weights, calibration={"size": 48})
    with pytest.raises(InputError, match="calibration size 32 must be a multiple of 32 and at least 64"):
        Harmonizer.from_pretrained(weights, calibration={"size": 32})  # the tiny model's smallest size is 64


def test_auto_strength_on_the_command_line(weights, tmp_path, capsys):
    photo = np.asarray(Image.fromarray(skdata.coffee()).resize((120, 90), Image.BILINEAR))
    mask = np.zeros((90, 120), np.uint8)
    mask[20:60, 25:70] = 255
    Image.fromarray(photo).save(tmp_path / "c.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    base = ["harmonize", str(tmp_path / "c.png"), str(tmp_path / "m.png"), "--weights", str(weights)]
    assert main([*base, "-o", str(tmp_path / "o.png"), "--strength", "auto"]) == 0
    out, err = capsys.readouterr()
    assert "strength auto (measured per image" in err and "(measured); wrote" in out
    with pytest.raises(SystemExit) as stop:
        main([*base, "-o", str(tmp_path / "p.png"), "--strength", "much"])
    assert stop.value.code == 2
    assert "expected a number from 0 to 2, 'auto' or 'learned', got 'much'" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_a_strength_that_fails_for_one_item_fails_it_alone_in_folder_mode(weights, tmp_path, monkeypatch):
    photo = np.asarray(Image.fromarray(skdata.coffee()).resize((120, 90), Image.BILINEAR))
    mask = np.zeros((90, 120), np.uint8)
    mask[20:60, 25:70] = 255
    for name in ("a", "bad", "c"):
        Image.fromarray(photo).save(tmp_path / f"{name}.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    measure = Harmonizer.measure_strengths

    def fussy(self, items, outputs, target="foreground"):
        if any(item.name.endswith("bad.png") for item in items):
            raise FloatingPointError("cannot measure bad.png")
        return measure(self, items, outputs, target)

    monkeypatch.setattr(Harmonizer, "measure_strengths", fussy)
    h = Harmonizer.from_pretrained(weights, strength="auto", batch_size=3)
    outcomes = list(h.iter_batch([(tmp_path / f"{n}.png", tmp_path / "m.png") for n in ("a", "bad", "c")]))
    assert [o.ok for o in outcomes] == [True, False, True]
    assert "cannot measure bad.png" in outcomes[1].message
    alone = Harmonizer.from_pretrained(weights, strength="auto").harmonize(tmp_path / "a.png", tmp_path / "m.png")
    assert outcomes[0].result.strength == pytest.approx(alone.strength, abs=1e-4)


def _clip(folder, frames=5):
    """A clip: the object moves right and its tint grows from frame to frame (with the bundled
    default, the strengths measured frame by frame jump: 0.40, 0.74, 0.50, 0.67, 0.90)."""
    photo = np.asarray(Image.fromarray(skdata.chelsea()).resize((120, 90), Image.BILINEAR))
    pairs = []
    for t in range(frames):
        mask = np.zeros((90, 120), np.uint8)
        mask[30:52, 10 + 6 * t : 36 + 6 * t] = 255
        comp = photo.copy()
        tint = 1 + np.array([-0.3, 0.0, 0.3]) * (0.3 + 0.2 * t)
        comp[mask > 0] = np.clip(photo[mask > 0] * tint, 0, 255).astype(np.uint8)
        Image.fromarray(comp).save(folder / f"f{t:02d}.png")
        Image.fromarray(mask).save(folder / f"f{t:02d}_mask.png")
        pairs.append((folder / f"f{t:02d}.png", folder / f"f{t:02d}_mask.png"))
    return pairs


def test_one_strength_for_the_frames_of_a_clip(tmp_path):
    pairs = _clip(tmp_path)
    h = Harmonizer.from_pretrained(batch_size=2)  # the bundled default: strength measured per image
    per_frame = [o.result.strength for o in h.iter_batch(pairs)]
    assert np.ptp(per_frame) > 0.01  # frame by frame, the strength moves
    strength, measured = h.clip_strength(pairs)
    assert measured == pytest.approx(per_frame, abs=1e-4)
    assert strength == pytest.approx(float(np.median(per_frame)), abs=1e-4)
    assert {o.result.strength for o in h.iter_batch(pairs, strength=strength)} == {strength}
    assert h.clip_strength(pairs, frames=2)[1] == pytest.approx([per_frame[0], per_frame[-1]], abs=1e-4)
    # a frame that cannot be read is left out of the decision (and fails when it is harmonized)
    assert h.clip_strength([*pairs, (tmp_path / "f00.png", None)])[1] == pytest.approx(per_frame, abs=1e-4)
    with pytest.raises(InputError, match="no frame of the clip could be read"):
        h.clip_strength([(tmp_path / "f00.png", None)])
    # a fixed strength is already one for the clip
    assert Harmonizer.from_pretrained(strength=0.6).clip_strength(pairs) == (0.6, [])


def test_sequence_on_the_command_line(tmp_path, capsys):
    src = tmp_path / "frames"
    src.mkdir()
    _clip(src)
    base = ["harmonize", "--input-dir", str(src)]
    assert main([*base, "--output-dir", str(tmp_path / "out"), "--sequence"]) == 0
    out, err = capsys.readouterr()
    assert "clip strength" in err and "the median of 5 frames' measured strengths" in err
    assert "harmonized 5 of 5 images" in out
    for extra, words in ((["--keep-if-worse"], "decide frame by frame"), (["--min-inharmony", "1"], "decide frame by frame"),
                         (["--harmonize-background"], "--harmonize-background")):
        assert main([*base, "--output-dir", str(tmp_path / "no"), "--sequence", *extra]) == 2
        assert words in capsys.readouterr().err
    assert main(["harmonize", str(src / "f00.png"), str(src / "f00_mask.png"), "-o", str(tmp_path / "x.png"), "--sequence",
                 "--weights", str(weights)]) == 2
    assert "--sequence is for a folder of frames" in capsys.readouterr().err
    assert not (tmp_path / "no").exists() and not (tmp_path / "x.png").exists()
