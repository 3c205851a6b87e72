"""Image/mask reading and writing rules (bargainnet.io), checked against Pillow/numpy directly."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from bargainnet import io as bio
from bargainnet.errors import InputError, OutputError


def _rgb(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def huge_png(path, width=50_000, height=50_000):
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * (width + 1))  # one row only: decoding would fail, opening must not
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


# -- images ------------------------------------------------------------------------------------


def test_rgb_png_exact(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "a.png")
    data = bio.load_image(tmp_path / "a.png")
    assert data.rgb.dtype == np.float32 and data.rgb.shape == (20, 30, 3)
    np.testing.assert_array_equal(data.rgb8, arr)
    np.testing.assert_allclose(data.rgb, arr / 255.0, atol=1e-7)
    assert data.alpha is None and data.size == (30, 20)


def test_rgba_keeps_alpha(tmp_path):
    arr = np.dstack([_rgb(), (np.arange(600) % 256).astype(np.uint8).reshape(20, 30)])
    Image.fromarray(arr).save(tmp_path / "a.png")
    data = bio.load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(data.rgb8, arr[..., :3])
    np.testing.assert_allclose(data.alpha, arr[..., 3] / 255.0, atol=1e-7)


def test_gray_and_la(tmp_path):
    gray = _rgb()[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    data = bio.load_image(tmp_path / "g.png")
    np.testing.assert_array_equal(data.rgb8, np.repeat(gray[..., None], 3, axis=2))
    Image.fromarray(gray).convert("LA").save(tmp_path / "la.png")
    data = bio.load_image(tmp_path / "la.png")
    assert data.alpha is not None and np.all(data.alpha == 1.0)


def test_palette_and_transparency(tmp_path):
    image = Image.fromarray(_rgb()).convert("P", palette=Image.ADAPTIVE, colors=16)
    image.save(tmp_path / "p.png")
    data = bio.load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(data.rgb8, np.asarray(Image.open(tmp_path / "p.png").convert("RGB")))
    assert data.alpha is None
    index = np.asarray(image)[0, 0]
    image.save(tmp_path / "pt.png", transparency=int(index))
    data = bio.load_image(tmp_path / "pt.png")
    expected_alpha = (np.asarray(image) != index).astype(np.float32)
    np.testing.assert_array_equal(data.alpha, expected_alpha)


def test_16bit_gray(tmp_path):
    arr = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    data = bio.load_image(tmp_path / "g16.png")
    np.testing.assert_allclose(data.rgb[..., 0], arr / 65535.0, atol=1e-7)
    np.testing.assert_array_equal(data.rgb[..., 0], data.rgb[..., 2])
    assert data.rgb8 is None


def test_cmyk_converted(tmp_path):
    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    data = bio.load_image(tmp_path / "c.jpg")
    np.testing.assert_array_equal(data.rgb8, np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB")))


def test_exif_orientation(tmp_path):
    arr = _rgb(4, 6)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(arr).save(tmp_path / "o.jpg", exif=exif, quality=100, subsampling=0)
    stored = np.asarray(Image.open(tmp_path / "o.jpg").convert("RGB"))
    data = bio.load_image(tmp_path / "o.jpg")
    assert data.shape == (6, 4)
    np.testing.assert_array_equal(data.rgb8, np.rot90(stored, k=-1))


def test_arrays():
    arr = _rgb()
    np.testing.assert_allclose(bio.load_image(arr).rgb, arr / 255.0, atol=1e-7)
    a16 = (arr.astype(np.uint16) * 257)
    np.testing.assert_allclose(bio.load_image(a16).rgb, arr / 255.0, atol=1e-6)
    gray = bio.load_image(arr[..., 0].astype(np.float32) / 255)
    assert gray.rgb.shape == (20, 30, 3) and gray.rgb8 is None
    rgba = bio.load_image(np.dstack([arr, np.full((20, 30), 128, np.uint8)]))
    np.testing.assert_allclose(rgba.alpha, 128 / 255.0)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        bio.load_image(np.full((4, 4, 3), 2.0))
    with pytest.raises(InputError, match="shape"):
        bio.load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InputError, match="dtype"):
        bio.load_image(np.zeros((4, 4, 3), np.int64))
    with pytest.raises(InputError, match="unsupported image type"):
        bio.load_image(42)


def test_missing_folder_unreadable_truncated(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        bio.load_image(tmp_path / "none.png")
    with pytest.raises(InputError, match="is a folder"):
        bio.load_image(tmp_path)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        bio.load_image(tmp_path / "text.png")
    Image.fromarray(_rgb(200, 200)).save(tmp_path / "full.jpg", quality=95)
    raw = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated"):
        bio.load_image(tmp_path / "cut.jpg")
    Image.fromarray(_rgb(200, 200)).save(tmp_path / "full.png")
    raw = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated"):
        bio.load_image(tmp_path / "cut.png")


def test_pixel_limit(tmp_path, monkeypatch):
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="decompression-bomb"):
        bio.load_image(tmp_path / "a.png", max_pixels=100)
    monkeypatch.setenv("BARGAINNET_MAX_PIXELS", "100")
    with pytest.raises(InputError, match="over the limit of 100 pixels"):
        bio.load_image(tmp_path / "a.png")
    monkeypatch.delenv("BARGAINNET_MAX_PIXELS")
    # A 50000 x 50000 header (2.5 gigapixels) is refused from its header, before decoding.
    with pytest.raises(InputError, match="50000x50000"):
        bio.load_image(huge_png(tmp_path / "bomb.png"))
    with pytest.raises(InputError, match="decompression-bomb"):
        bio.load_mask(huge_png(tmp_path / "bomb.png"))
    with pytest.raises(InputError, match="decompression-bomb"):
        bio.load_image(np.zeros((20, 30, 3), np.uint8), max_pixels=10)


def test_open_image_draft_long_side(tmp_path):
    arr = _rgb(300, 500)
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(arr).save(tmp_path / "a.png")
    assert bio.open_image(tmp_path / "a.jpg").size == (500, 300)
    assert bio.open_image(tmp_path / "a.jpg", draft_long_side=300).size == (500, 300)  # not > 2x: full size
    with Image.open(tmp_path / "a.jpg") as ref:  # Pillow's own DCT scaling to >= 100 px on the long side
        ref.draft("RGB", (100, 60))
        expected = np.asarray(ref.convert("RGB"))
    small = bio.open_image(tmp_path / "a.jpg", draft_long_side=100)
    assert 100 <= max(small.size) < 500
    np.testing.assert_array_equal(np.asarray(small.convert("RGB")), expected)
    assert bio.open_image(tmp_path / "a.png", draft_long_side=100).size == (500, 300)  # JPEG only
    from bargainnet.data.sources import read_rgb

    assert read_rgb(tmp_path / "a.jpg", max_side=100).shape == (60, 100, 3)
    with pytest.raises(InputError, match="decompression-bomb"):
        read_rgb(huge_png(tmp_path / "bomb.png"), max_side=100)


# -- masks -------------------------------------------------------------------------------------


def test_mask_threshold_is_128():
    values = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    mask = bio.load_mask(values)
    np.testing.assert_array_equal(mask, [[False, False, True, True]])
    soft = np.linspace(0, 1, 11, dtype=np.float32)[None]
    np.testing.assert_array_equal(bio.load_mask(soft), soft >= 0.5)
    np.testing.assert_array_equal(bio.load_mask(soft, threshold=0.25), soft >= 0.25)


def test_mask_from_files(tmp_path):
    gray = np.zeros((10, 12), np.uint8)
    gray[2:6, 3:9] = 200
    Image.fromarray(gray).save(tmp_path / "m.png")
    np.testing.assert_array_equal(bio.load_mask(tmp_path / "m.png"), gray >= 128)
    # colour mask: Pillow luma
    Image.fromarray(np.dstack([gray] * 3)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(bio.load_mask(tmp_path / "rgb.png"), gray >= 128)
    # a cut-out's alpha is its mask
    rgba = np.dstack([np.full((10, 12, 3), 255, np.uint8), gray])
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    np.testing.assert_array_equal(bio.load_mask(tmp_path / "cut.png"), gray >= 128)
    # 16-bit mask
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "m16.png")
    np.testing.assert_array_equal(bio.load_mask(tmp_path / "m16.png"), gray >= 128)


def test_mask_size_and_coverage(tmp_path):
    mask = np.zeros((10, 12), np.uint8)
    mask[2:8, 2:8] = 255
    with pytest.raises(InputError, match=r"12x10 but the composite is 24x20.*--resize-mask"):
        bio.load_mask(mask, size=(24, 20))
    resized = bio.load_mask(mask, size=(24, 20), resize=True)
    assert resized.shape == (20, 24)
    expected = np.asarray(Image.fromarray(mask.astype(np.float32) / 255).resize((24, 20), Image.BILINEAR)) >= 0.5
    np.testing.assert_array_equal(resized, expected)
    with pytest.raises(InputError, match="empty"):
        bio.load_mask(np.zeros((5, 5), np.uint8))
    with pytest.raises(InputError, match="whole image"):
        bio.load_mask(np.full((5, 5), 255, np.uint8))
    assert not bio.load_mask(np.zeros((5, 5), np.uint8), check_coverage=False).any()


# -- writing -----------------------------------------------------------------------------------


def test_save_roundtrip_and_atomic(tmp_path):
    arr = _rgb()
    out = bio.save_image(tmp_path / "sub" / "o.png", arr)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), arr)
    alpha = (np.arange(600) % 256).astype(np.uint8).reshape(20, 30)
    out = bio.save_image(tmp_path / "o.webp", arr, alpha, quality=100)
    assert Image.open(out).mode == "RGBA"
    out = bio.save_image(tmp_path / "f.png", arr / 255.0, alpha / 255.0)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.dstack([arr, alpha]))
    out = bio.save_image(tmp_path / "pil.png", Image.fromarray(arr))  # an RGB Pillow image as it is
    np.testing.assert_array_equal(np.asarray(Image.open(out)), arr)
    with pytest.raises(ValueError, match="RGB Pillow image"):
        bio.save_image(tmp_path / "l.png", Image.fromarray(arr[..., 0]))
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith(".")]
    assert leftovers == []


def test_atomic_helpers_write_exact_content_and_leave_no_temporary(tmp_path, monkeypatch):
    out = tmp_path / "sub"
    assert bio.atomic_write_bytes(out / "b.bin", b"\x00\xffab").read_bytes() == b"\x00\xffab"
    assert bio.atomic_write_text(out / "t.txt", "\u00e9\n").read_bytes() == "\u00e9\n".encode("utf-8")
    assert bio.atomic_copy(out / "b.bin", out / "c.bin").read_bytes() == b"\x00\xffab"
    arr = _rgb()
    bio.atomic_save_pil(Image.fromarray(arr), out / "p.png")  # format from the extension
    with Image.open(out / "p.png") as im:
        assert im.format == "PNG"
        np.testing.assert_array_equal(np.asarray(im), arr)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    bio.atomic_write_bytes(out / "s.bin", b"x", fsync=True)
    assert len(synced) == 1 and (out / "s.bin").read_bytes() == b"x"
    bio.atomic_write_bytes(out / "s.bin", b"y")
    assert len(synced) == 1 and (out / "s.bin").read_bytes() == b"y"
    assert [p for p in os.listdir(out) if p.startswith(".")] == []
    # a failing writer leaves the destination as it was, and no temporary file
    with pytest.raises(OutputError, match="cannot write"):
        bio.atomic_write(out / "s.bin", lambda tmp: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(RuntimeError):
        bio.atomic_write(out / "s.bin", lambda tmp: (_ for _ in ()).throw(RuntimeError("bug")))
    assert (out / "s.bin").read_bytes() == b"y"
    assert [p for p in os.listdir(out) if p.startswith(".")] == []
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="cannot create output folder"):
        bio.atomic_write_text(tmp_path / "afile" / "t.txt", "x")


def test_make_folder(tmp_path):
    assert bio.make_folder(tmp_path / "a" / "b", writable=True).is_dir()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=r"cannot create cache folder .*afile.*\(choose another\)$"):
        bio.make_folder(tmp_path / "afile" / "c", "cache folder", hint=" (choose another)")


def test_save_refusals(tmp_path):
    arr = _rgb()
    src = tmp_path / "in.png"
    Image.fromarray(arr).save(src)
    with pytest.raises(OutputError, match="same file as input"):
        bio.save_image(src, arr, inputs=[src])
    with pytest.raises(OutputError, match="same file as input"):
        bio.save_image(tmp_path / "." / "in.png", arr, inputs=[str(src)])
    with pytest.raises(OutputError, match="unknown output extension"):
        bio.save_image(tmp_path / "o.xyz", arr)
    with pytest.raises(OutputError, match="alpha"):
        bio.save_image(tmp_path / "o.jpg", arr, np.zeros((20, 30), np.uint8))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="cannot create output folder"):
        bio.save_image(tmp_path / "afile" / "o.png", arr)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        bio.save_image(tmp_path / "dir.png", arr)


def test_8bit_images_make_their_float_copy_on_first_use(tmp_path):
    from bargainnet.io import ImageData, load_image

    rgb8 = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb8).save(tmp_path / "a.png")
    data = load_image(tmp_path / "a.png")
    assert data._rgb is None and data.size == (7, 6) and data.shape == (6, 7)
    assert np.array_equal(data.rgb, np.multiply(rgb8, np.float32(1 / 255), dtype=np.float32))
    assert data.rgb is data.rgb and data.pixels is data.rgb8
    with pytest.raises(ValueError):
        ImageData(rgb=None, alpha=None, rgb8=None, name="x")
