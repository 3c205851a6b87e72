"""The web app's handlers (bargainnet.web.app) without a server, with a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bargainnet import io as bio
from bargainnet.errors import InputError
from bargainnet.web import app as webapp

from .conftest import EXAMPLES, read_mask, read_rgb

COMPOSITE = EXAMPLES / "meadow_squirrel.jpg"
MASK = EXAMPLES / "meadow_squirrel_mask.png"


def test_harmonize_is_the_library_result_at_full_resolution(app, tiny_harmonizer):
    outcome = app.harmonize(str(COMPOSITE), str(MASK))
    expected = tiny_harmonizer.harmonize(str(COMPOSITE), str(MASK))
    got = read_rgb(outcome.png)
    np.testing.assert_array_equal(got, np.asarray(expected.image))
    original = bio.load_image(str(COMPOSITE)).rgb8
    mask = read_mask(MASK)
    assert got.shape == original.shape
    np.testing.assert_array_equal(got[~mask], original[~mask])  # background bit for bit
    assert (got[mask] != original[mask]).any()
    info = outcome.info
    assert (info["width"], info["height"], info["target"]) == (640, 512, "foreground")
    assert info["before"]["distance"] == pytest.approx(expected.before.distance, abs=1e-4)
    assert info["after"]["distance"] == pytest.approx(expected.after.distance, abs=1e-4)
    assert info["got_worse"] == (expected.after.distance > expected.before.distance)
    assert outcome.png.name == "meadow_squirrel_harmonized.png"
    for preview in (outcome.before_preview, outcome.after_preview):
        assert Image.open(preview).size == (640, 512)  # small images are shown as they are


def test_strength_scales_the_change(app, tiny_harmonizer):
    original = bio.load_image(str(COMPOSITE)).rgb8
    np.testing.assert_array_equal(read_rgb(app.harmonize(str(COMPOSITE), str(MASK), strength=0).png), original)
    half = read_rgb(app.harmonize(str(COMPOSITE), str(MASK), strength=0.5).png)
    expected = tiny_harmonizer.harmonize(str(COMPOSITE), str(MASK), strength=0.5)
    np.testing.assert_array_equal(half, np.asarray(expected.image))
    assert app.harmonize(str(COMPOSITE), str(MASK), strength=0.5).info["strength"] == 0.5
    measured = app.harmonize(str(COMPOSITE), str(MASK), strength="auto")  # the page's "measure it" box
    expected = tiny_harmonizer.harmonize(str(COMPOSITE), str(MASK), strength="auto")
    assert measured.info["strength"] == round(expected.strength, 3)
    np.testing.assert_array_equal(read_rgb(measured.png), np.asarray(expected.image))
    assert f"strength {expected.strength:.2f}" in webapp.scores_markdown(measured.info)
    with pytest.raises(InputError, match="strength must be a number from 0 to 2"):
        app.harmonize(str(COMPOSITE), str(MASK), strength=5)


def test_background_switch_keeps_the_foreground(app):
    outcome = app.harmonize(str(COMPOSITE), str(MASK), background=True)
    got, original, mask = read_rgb(outcome.png), bio.load_image(str(COMPOSITE)).rgb8, read_mask(MASK)
    np.testing.assert_array_equal(got[mask], original[mask])
    assert (got[~mask] != original[~mask]).any()
    assert outcome.info["target"] == "background"
    assert "background harmonized" in webapp.scores_markdown(outcome.info)


def test_previews_are_bounded_and_the_download_is_not(app, tmp_path, monkeypatch):
    monkeypatch.setattr(webapp, "PREVIEW_SIDE", 200)
    outcome = app.harmonize(str(COMPOSITE), str(MASK))
    assert Image.open(outcome.png).size == (640, 512)
    assert max(Image.open(outcome.after_preview).size) == 200


def test_paste_matches_the_library_and_centres(app, tiny_harmonizer, tmp_path):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., :3] = (200, 40, 40)
    rgba[5:35, 10:50, 3] = 255
    cutout = tmp_path / "cut.png"
    Image.fromarray(rgba).save(cutout)
    x, y = app.paste_position(str(cutout), str(COMPOSITE), 50, 50, 2.0)
    assert (x, y) == (320 - 60, 256 - 40)
    outcome = app.paste(str(cutout), str(COMPOSITE), position=(x, y), scale=2.0)
    expected = tiny_harmonizer.paste(str(cutout), str(COMPOSITE), position=(x, y), scale=2.0)
    np.testing.assert_array_equal(read_rgb(outcome.png), np.asarray(expected.image))
    assert outcome.png.name == "cut_on_meadow_squirrel_harmonized.png"
    preview = app.paste_preview(str(cutout), str(COMPOSITE), 50, 50, 2.0)
    assert preview.shape == (512, 640, 3) and preview.dtype == np.uint8
    assert tuple(preview[256, 320]) == (200, 40, 40)  # the cut-out sits in the middle
    with pytest.raises(InputError, match="no alpha channel"):
        app.paste_preview(str(COMPOSITE), str(COMPOSITE), 50, 50, 1.0)


def test_painted_strokes_become_a_full_resolution_mask(app):
    assert app.painted_mask(None, str(COMPOSITE)) is None
    layer = np.zeros((256, 320, 4), np.uint8)  # the painter shows the composite at half size
    assert app.painted_mask({"background": None, "layers": [layer], "composite": None}, str(COMPOSITE)) is None
    layer[100:150, 200:300, 3] = 255
    mask = app.painted_mask({"background": None, "layers": [layer], "composite": None}, str(COMPOSITE))
    assert mask.shape == (512, 640) and mask.dtype == np.uint8
    assert mask[250, 500] == 255 and mask[10, 10] == 0
    assert abs(int((mask > 0).sum()) - 100 * 200) < 1000
    outcome = app.harmonize(str(COMPOSITE), mask)
    got, original = read_rgb(outcome.png), bio.load_image(str(COMPOSITE)).rgb8
    np.testing.assert_array_equal(got[mask == 0], original[mask == 0])


def test_editor_value_is_a_bounded_copy(app, monkeypatch):
    monkeypatch.setattr(webapp, "EDITOR_SIDE", 320)
    value = app.editor_value(str(COMPOSITE))
    assert value["layers"] == [] and Image.open(value["background"]).size == (320, 256)
    assert app.editor_value(None) is None


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "mask is empty"),
        ("wrong_size", "tick \u201cresize a mask of another size\u201d"),
        ("unreadable", "meadow_squirrel.jpg"),
        ("no_mask", "no mask: upload a mask"),
    ],
)
def test_bad_input_gives_a_clear_message(app, tmp_path, case, message):
    composite, mask = str(COMPOSITE), str(MASK)
    if case == "empty":
        mask = str(tmp_path / "empty.png")
        Image.new("L", (640, 512), 0).save(mask)
    elif case == "wrong_size":
        mask = str(EXAMPLES / "shelf_item_mask.png")
    elif case == "unreadable":
        folder = tmp_path / "upload-5f2a"
        folder.mkdir()
        composite = str(folder / "meadow_squirrel.jpg")
        with open(composite, "wb") as f:
            f.write(b"not an image at all")
    else:
        mask = None
    with pytest.raises(InputError) as err:
        app.harmonize(composite, mask)
    text = webapp.user_message(err.value, {"composite": composite, "mask": mask})
    assert message in text
    assert "upload-5f2a" not in text and "Traceback" not in text


def test_wrong_size_mask_can_be_resized(app):
    mask = Image.open(EXAMPLES / "meadow_squirrel_mask.png").resize((320, 256), Image.NEAREST)
    outcome = app.harmonize(str(COMPOSITE), np.asarray(mask), resize_mask=True)
    assert outcome.info["width"] == 640


def test_huge_image_is_refused_from_its_header(tiny_weights, tmp_path):
    from bargainnet.inference import Harmonizer

    small_limit = Harmonizer.from_pretrained(tiny_weights, max_pixels=100_000)
    app = webapp.WebApp(small_limit, weights=tiny_weights, workdir=tmp_path / "w", examples=None)
    with pytest.raises(InputError) as err:
        app.harmonize(str(COMPOSITE), str(MASK))
    assert "pixel" in webapp.user_message(err.value)


def test_bugs_do_not_leak_details():
    text = webapp.user_message(RuntimeError("secret /internal/path"))
    assert text == "internal error (RuntimeError); the server log has the details"
    assert "out of memory" in webapp.user_message(MemoryError())


def test_scores_markdown_flags_got_worse():
    info = {"name": "a.jpg", "width": 10, "height": 8, "target": "foreground", "seconds": 0.5, "skipped": False, "strength": 1.0,
            "before": {"distance": 1.0, "score": 0.96}, "after": {"distance": 2.0, "score": 0.92}, "got_worse": True}
    assert "Got worse" in webapp.scores_markdown(info)
    info.update(after={"distance": 0.5, "score": 0.98}, got_worse=False)
    assert "Got worse" not in webapp.scores_markdown(info)


def test_weights_panel(app):
    info = app.weights_info()
    assert info["architecture"] == "BargainNet, ngf 4, 5 levels, code length 8"
    assert info["working size"] == "64\u00d764"
    assert info["training data"] == "nothing (random init)"
    assert info["processing"].startswith("lifted to full resolution with radius 4; strength 1 ")
    assert "model card" in app.weights_markdown()


@pytest.mark.parametrize("step, shown", [("14000", "synth (14000 steps)"),
                                         ("averaged", "synth (weights averaged over several runs)")])
def test_weights_panel_names_the_training_steps(tiny_harmonizer, tmp_path, step, shown):
    from bargainnet.models.convert import save_weights

    weights = save_weights(tiny_harmonizer.runner.model, tmp_path / "w.safetensors", trained_on="synth", training_step=step)
    web = webapp.WebApp(tiny_harmonizer, weights=weights, workdir=tmp_path / "work", examples=None)
    assert web.weights_info()["training data"] == shown


def test_examples_are_found():
    pairs = webapp.example_pairs(EXAMPLES)
    assert [p[0].rsplit("/", 1)[1] for p in pairs] == ["cafeteria_person.jpg", "meadow_squirrel.jpg", "shelf_item.jpg"]
    assert webapp.example_pairs(None) == []


def test_cutout_example(tmp_path):
    rows = webapp.make_cutout_example(EXAMPLES, tmp_path)
    image = Image.open(rows[0][0])
    assert image.mode == "RGBA" and np.asarray(image)[..., 3].min() == 0


def test_the_page_builds_with_its_api(app):
    pytest.importorskip("gradio")
    demo = webapp.build_blocks(app)
    names = {fn.api_name for fn in demo.fns.values()}
    assert {"harmonize", "paste"} <= names


def test_the_strength_box_follows_the_models_per_image_setting(app, tiny_weights, tmp_path):
    pytest.importorskip("gradio")
    from bargainnet.inference import Harmonizer
    from bargainnet.models.convert import load_weights, save_weights
    from bargainnet.models.strength_head import StrengthHead, StrengthHeadConfig, feature_count

    def boxes(web):
        config = webapp.build_blocks(web).config
        return [c["props"]["label"] for c in config["components"] if c["props"].get("label", "").startswith("Decide")]

    assert boxes(app) == ["Decide it for each image (auto; ignores the slider)"] * 2  # a model recommending a number
    model = load_weights(tiny_weights)
    count = feature_count(model.config.code_dim)
    model.strength_head = StrengthHead(StrengthHeadConfig(columns=tuple(range(54)), features=count, heads=1))
    model.inference_settings = {"strength": "learned"}
    learned = webapp.WebApp(Harmonizer.from_pretrained(save_weights(model, tmp_path / "learned.safetensors")),
                            workdir=tmp_path / "w2", examples=None)
    try:
        assert boxes(learned) == ["Decide it for each image (learned, by the model's strength head; ignores the slider)"] * 2
        outcome = learned.harmonize(str(EXAMPLES / "meadow_squirrel.jpg"), str(EXAMPLES / "meadow_squirrel_mask.png"),
                                    strength="learned")
        assert 0 <= outcome.info["strength"] <= 1.5
    finally:
        learned.close()


def test_image_uploads_reach_the_handler_undecoded(tmp_path):
    gr = pytest.importorskip("gradio")
    from gradio.data_classes import ImageData

    junk = tmp_path / "photo.jpg"
    junk.write_bytes(b"not an image")
    image_file = webapp.raw_upload(gr.Image(type="filepath", image_mode=None, render=False), gr)
    assert image_file.preprocess(ImageData(path=str(junk), orig_name="photo.jpg")) == str(junk)
    assert image_file.preprocess(None) is None
