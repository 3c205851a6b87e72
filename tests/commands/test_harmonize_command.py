"""``bargainnet harmonize`` end to end: every bad-input case gives its exit code and a message that
says what and where, without a traceback; folder mode goes on past bad items."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from bargainnet.cli import main
from bargainnet.io import pair_folder



def photo(h=90, w=130):
    return np.asarray(Image.fromarray(skdata.coffee()).resize((w, h), Image.BILINEAR))


def write_pair(folder, stem="c", h=90, w=130, mask=None, ext=".jpg"):
    img = photo(h, w)
    if mask is None:
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    comp, m = folder / f"{stem}{ext}", folder / f"{stem}_mask.png"
    Image.fromarray(img).save(comp, quality=95)
    Image.fromarray(mask).save(m)
    return comp, m


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def harmonize(weights, *args):
    return ["harmonize", *map(str, args), "--weights", weights]


# -- working cases -------------------------------------------------------------------------------


def test_single_image(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path, ext=".png")
    out = tmp_path / "out" / "o.png"
    code, text, err = run(harmonize(weights, comp, mask, "-o", out, "--figure", tmp_path / "fig.png",
                                    "--strength", "0.5", "--lift-radius", "8", "--method", "lift"), capsys)
    assert code == 0 and "inharmony" in text and "wrote" in text
    assert f"model: {weights} (" in err and "radius 8" in err and "strength 0.5" in err  # the settings used
    result, original = np.asarray(Image.open(out)), np.asarray(Image.open(comp))
    assert result.shape == original.shape
    m = np.asarray(Image.open(mask)) >= 128
    np.testing.assert_array_equal(result[~m], original[~m])
    assert Image.open(tmp_path / "fig.png").format == "PNG"


def test_non_binary_mask_is_thresholded_at_128(weights, tmp_path, capsys):
    ramp = np.tile(np.linspace(0, 255, 130).astype(np.uint8), (90, 1))
    comp, mask = write_pair(tmp_path, mask=ramp, ext=".png")
    out = tmp_path / "o.png"
    code, _, _ = run(harmonize(weights, comp, mask, "-o", out), capsys)
    assert code == 0
    changed = (np.asarray(Image.open(out)) != np.asarray(Image.open(comp))).any(axis=2)
    assert not changed[ramp < 128].any() and changed[ramp >= 128].mean() > 0.5


def test_paste_mode(weights, tmp_path, capsys):
    Image.fromarray(photo(120, 160)).save(tmp_path / "bg.jpg")
    cut = np.zeros((40, 50, 4), np.uint8)
    cut[..., :3] = (30, 200, 30)
    cut[5:35, 5:45, 3] = 255
    Image.fromarray(cut).save(tmp_path / "cut.png")
    for extra in (["--position", "20,30", "--scale", "1.5"], [], ["--position=-10,-5"]):
        code, text, _ = run(harmonize(weights, "--foreground", tmp_path / "cut.png", "--background",
                                      tmp_path / "bg.jpg", "-o", tmp_path / "p.png", *extra), capsys)
        assert code == 0, text
        assert Image.open(tmp_path / "p.png").size == (160, 120)
    code, _, err = run(harmonize(weights, "--foreground", tmp_path / "cut.png", "--background", tmp_path / "bg.jpg",
                                 "--position", "900,900", "-o", tmp_path / "p.png"), capsys)
    assert code == 3 and "outside the background" in err


def test_min_inharmony_leaves_images_untouched(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path, ext=".png")
    code, text, _ = run(harmonize(weights, comp, mask, "-o", tmp_path / "o.png", "--min-inharmony", "1e9"), capsys)
    assert code == 0 and "left untouched" in text
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")), np.asarray(Image.open(comp)))


def test_background_mode_and_onnx_backend(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path, ext=".png")
    code, _, _ = run(harmonize(weights, comp, mask, "-o", tmp_path / "b.png", "--harmonize-background"), capsys)
    assert code == 0
    m = np.asarray(Image.open(mask)) >= 128
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png"))[m], np.asarray(Image.open(comp))[m])
    code, _, _ = run(harmonize(weights, comp, mask, "-o", tmp_path / "x.png", "--backend", "onnxruntime"), capsys)
    assert code == 0
    code, _, _ = run(harmonize(weights, comp, mask, "-o", tmp_path / "y.png", "--method", "upsample"), capsys)
    assert code == 0
    code, _, _ = run(harmonize(weights, comp, mask, "-o", tmp_path / "w.png", "--lift-radius", "64"), capsys)
    assert code == 0
    m = np.asarray(Image.open(mask)) >= 128  # a smoother change, the background as it was
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "w.png"))[~m], np.asarray(Image.open(comp))[~m])
    code, _, err = run(harmonize(weights, comp, mask, "-o", tmp_path / "z.png", "--lift-radius", "0"), capsys)
    assert code != 0 and "lifting radius" in err and "Traceback" not in err
    code, _, _ = run(harmonize(weights, comp, mask, "-o", tmp_path / "s.png", "--strength", "0"), capsys)
    assert code == 0  # none of the change: the input's pixels
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "s.png")), np.asarray(Image.open(comp).convert("RGB")))
    code, _, err = run(harmonize(weights, comp, mask, "-o", tmp_path / "t.png", "--strength", "3"), capsys)
    assert code != 0 and "strength must be a number from 0 to 2" in err and "Traceback" not in err
    assert not (tmp_path / "t.png").exists()


def test_folder_mode_goes_on_past_bad_items(weights, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_pair(src, "a")
    write_pair(src, "b", h=70, w=100)
    (src / "masks").mkdir()
    Image.fromarray(photo()).save(src / "c.png")  # mask in masks/
    mask = np.zeros((90, 130), np.uint8)
    mask[10:50, 10:50] = 255
    Image.fromarray(mask).save(src / "masks" / "c.png")
    Image.fromarray(photo()).save(src / "nomask.jpg")
    write_pair(src, "empty", mask=np.zeros((90, 130), np.uint8))
    comp, _ = write_pair(src, "cut")
    raw = comp.read_bytes()
    comp.write_bytes(raw[: len(raw) // 2])
    (src / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    code, text, err = run(harmonize(weights, "--input-dir", src, "--output-dir", out, "--batch-size", "2",
                                    "--figure", out / "figure.png"), capsys)
    assert code == 5
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.jpg", "c.png", "figure.png"]
    assert "harmonized 3 of 6 images" in text
    assert "3 of 6 failed" in err
    assert "nomask.jpg: no mask found" in err
    assert "empty.jpg" in err and "empty" in err.split("empty.jpg", 1)[1]
    assert "cut.jpg" in err and "truncated" in err
    assert Image.open(out / "b.jpg").size == (100, 70)


def test_folder_mode_all_good_and_refusals(weights, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_pair(src, "a")
    code, text, _ = run(harmonize(weights, "--input-dir", src, "--output-dir", tmp_path / "o"), capsys)
    assert code == 0 and "harmonized 1 of 1" in text
    code, _, err = run(harmonize(weights, "--input-dir", src, "--output-dir", src), capsys)
    assert code == 4 and "overwrite the inputs" in err
    code, _, err = run(harmonize(weights, "--input-dir", tmp_path / "none", "--output-dir", tmp_path / "o"), capsys)
    assert code == 3 and "no such folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(harmonize(weights, "--input-dir", tmp_path / "empty", "--output-dir", tmp_path / "o"), capsys)
    assert code == 3 and "no images found" in err


def test_mask_lookup_rules(tmp_path):
    write_pair(tmp_path, "x")
    (tmp_path / "masks").mkdir()
    Image.fromarray(photo()).save(tmp_path / "y.jpg")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "masks" / "y.png")
    pairs = dict((c.name, m) for c, m in pair_folder(tmp_path))
    assert pairs == {"x.jpg": tmp_path / "x_mask.png", "y.jpg": tmp_path / "masks" / "y.png"}


# -- every bad input of the issue -----------------------------------------------------------------


def test_missing_paths(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path)
    code, _, err = run(harmonize(weights, tmp_path / "none.jpg", mask, "-o", tmp_path / "o.png"), capsys)
    assert code == 3 and "none.jpg: no such file" in err
    code, _, err = run(harmonize(weights, comp, tmp_path / "nomask.png", "-o", tmp_path / "o.png"), capsys)
    assert code == 3 and "nomask.png: no such file" in err
    code, _, err = run(harmonize(str(tmp_path / "none.safetensors"), comp, mask, "-o", tmp_path / "o.png"), capsys)
    assert code == 3 and "none.safetensors" in err


def test_unreadable_and_truncated(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path)
    (tmp_path / "text.jpg").write_text("hello")
    code, _, err = run(harmonize(weights, tmp_path / "text.jpg", mask, "-o", tmp_path / "o.png"), capsys)
    assert code == 3 and "text.jpg: not a readable image" in err
    raw = comp.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 2])
    code, _, err = run(harmonize(weights, tmp_path / "cut.jpg", mask, "-o", tmp_path / "o.png"), capsys)
    assert code == 3 and "cut.jpg: truncated" in err


def test_mask_size_mismatch(weights, tmp_path, capsys):
    comp, _ = write_pair(tmp_path)
    small = np.zeros((45, 65), np.uint8)
    small[10:30, 10:40] = 255
    Image.fromarray(small).save(tmp_path / "small.png")
    code, _, err = run(harmonize(weights, comp, tmp_path / "small.png", "-o", tmp_path / "o.png"), capsys)
    assert code == 3 and "small.png: mask is 65x45 but the composite is 130x90" in err and "--resize-mask" in err
    code, _, _ = run(harmonize(weights, comp, tmp_path / "small.png", "-o", tmp_path / "o.png", "--resize-mask"), capsys)
    assert code == 0 and Image.open(tmp_path / "o.png").size == (130, 90)


@pytest.mark.parametrize("value, message", [(0, "mask is empty"), (255, "covers the whole image")])
def test_empty_and_full_masks(weights, tmp_path, capsys, value, message):
    comp, mask = write_pair(tmp_path, mask=np.full((90, 130), value, np.uint8))
    code, _, err = run(harmonize(weights, comp, mask, "-o", tmp_path / "o.png"), capsys)
    assert code == 3 and message in err and "c_mask.png" in err


def test_pixel_limit(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path)
    code, _, err = run(harmonize(weights, comp, mask, "-o", tmp_path / "o.png", "--max-pixels", "1000"), capsys)
    assert code == 3 and "decompression-bomb" in err and "c.jpg" in err
    # a header claiming 50000 x 50000 pixels, with the default limit
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 50001)) + chunk(b"IEND", b""))
    code, _, err = run(harmonize(weights, bomb, mask, "-o", tmp_path / "o.png"), capsys)
    assert code == 3 and "bomb.png: image is 50000x50000" in err


def test_output_equal_to_input_is_refused(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path, ext=".png")
    before = comp.read_bytes()
    code, _, err = run(harmonize(weights, comp, mask, "-o", comp), capsys)
    assert code == 4 and "refusing to overwrite an input" in err
    assert comp.read_bytes() == before
    code, _, err = run(harmonize(weights, comp, mask, "-o", tmp_path / "o.png", "--figure", mask), capsys)
    assert code == 4 and "refusing to overwrite an input" in err


def test_unwritable_output_folder(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path)
    (tmp_path / "file").write_text("a file, not a folder")
    code, _, err = run(harmonize(weights, comp, mask, "-o", tmp_path / "file" / "o.png"), capsys)
    assert code == 4 and "cannot create the output folder" in err
    code, _, err = run(harmonize(weights, "--input-dir", tmp_path, "--output-dir", tmp_path / "file" / "out"), capsys)
    assert code == 4 and "cannot create the output folder" in err
    code, _, err = run(harmonize(weights, comp, mask, "-o", tmp_path / "o.gif"), capsys)
    assert code == 4 and "unknown output extension" in err


def test_usage_errors_and_no_default_weights(weights, tmp_path, capsys, monkeypatch):
    comp, mask = write_pair(tmp_path)
    code, _, err = run(["harmonize", str(comp), str(mask)], capsys)
    assert code == 2 and "-o/--output" in err
    code, _, err = run(["harmonize", str(comp), str(mask), "--input-dir", str(tmp_path), "-o", "x.png"], capsys)
    assert code == 2
    from bargainnet.inference import harmonizer as inference

    monkeypatch.setattr(inference, "default_weights_path", lambda: tmp_path / "default.safetensors")
    code, _, err = run(["harmonize", str(comp), str(mask), "-o", str(tmp_path / "o.png")], capsys)
    assert code == 3 and "no default weights are installed" in err and "--weights" in err
