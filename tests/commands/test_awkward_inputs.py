"""A battery of bad or awkward inputs through ``bargainnet harmonize``, one table row each.

Every row asserts the exit code, a message that says what is wrong, no traceback, inputs left
byte-for-byte unchanged, and nothing else left in the folder: no partial output, no temporary
file, no empty output folder (errors), or exactly the expected outputs (awkward inputs that work).
A tiny model (64 px) keeps the whole battery to a few seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from skimage import data as skdata

from bargainnet.cli import main

H, W = 90, 130



def photo(h=H, w=W):
    return np.asarray(Image.fromarray(skdata.coffee()).resize((w, h), Image.BILINEAR))


def box(h=H, w=W, value=255):
    m = np.zeros((h, w), np.uint8)
    m[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = value
    return m


def save(path: Path, array, **kw) -> Path:
    Image.fromarray(array).save(path, **kw)
    return path


def png_bytes(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def bomb_png(width=40_000, height=40_000) -> bytes:
    """A PNG whose header claims 1.6 gigapixels (a decompression bomb) with almost no data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@dataclass
class Case:
    """``build(tmp, weights)`` writes the inputs and returns the command line after "harmonize";
    ``outputs``: paths (relative to tmp) a successful run must leave, nothing else new."""

    name: str
    build: Callable[[Path, Path], list]
    code: int
    message: str  # a regular expression the output (stderr for errors) must match
    outputs: tuple = field(default_factory=tuple)


def pair(tmp, comp=None, mask=None, comp_name="c.jpg", mask_name="c_mask.png"):
    c = save(tmp / comp_name, photo() if comp is None else comp, **({"quality": 95} if comp_name.endswith(".jpg") else {}))
    m = save(tmp / mask_name, box() if mask is None else mask)
    return c, m


def single(comp_name="c.jpg", mask_name="c_mask.png", out="out/o.png", comp=None, mask=None, extra=()):
    def build(tmp, w):
        c, m = pair(tmp, comp, mask, comp_name, mask_name)
        return [c, m, "-o", tmp / out, *extra]
    return build


def raw(files: dict, argv: Callable):
    """Write ``files`` (name -> bytes or array) and build ``argv(tmp)``."""
    def build(tmp, w):
        for name, content in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                save(path, content)
        return argv(tmp)
    return build


def with_weights(make):
    """A case whose weights file is built from the tiny one."""
    def build(tmp, w):
        c, m = pair(tmp)
        return [c, m, "-o", tmp / "o.png", "--weights", make(tmp, w)]
    return build


def garbage_weights(tmp, w):
    (tmp / "bad.safetensors").write_bytes(b"not a weights file at all")
    return tmp / "bad.safetensors"


def wrong_architecture(tmp, w):
    """The tiny model's tensors under a configuration of another shape (ngf 8)."""
    with safe_open(str(w), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata())
    config = json.loads(meta["config"])
    config["ngf"] = 8
    meta["config"] = json.dumps(config)
    save_file(tensors, str(tmp / "wrong.safetensors"), metadata=meta)
    return tmp / "wrong.safetensors"


def garbage_onnx(tmp, w):
    (tmp / "bad.onnx").write_bytes(b"\x00\x01 not protobuf")
    return tmp / "bad.onnx"


def no_metadata_weights(tmp, w):
    save_file({"x": torch.zeros(2)}, str(tmp / "plain.safetensors"))
    return tmp / "plain.safetensors"


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def jpeg_bytes(array, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", **kw)
    return buf.getvalue()


def rgba_mask(alpha_low, alpha_high=255):
    """A DIH-style mask: the mask in the colour channels, an almost constant alpha."""
    rng = np.random.default_rng(0)
    gray = box()
    alpha = rng.integers(alpha_low, alpha_high + 1, gray.shape).astype(np.uint8)
    return np.dstack([gray, gray, gray, alpha])


def alpha_only_mask():
    """A cut-out-style mask: white everywhere, the region in the alpha channel."""
    return np.dstack([np.full((H, W, 3), 255, np.uint8), box()])


def palette_with_transparency(tmp):
    image = Image.fromarray(photo()).convert("P", palette=Image.ADAPTIVE, colors=64)
    image.info["transparency"] = 0
    image.save(tmp / "pal.png", transparency=0)
    return tmp / "pal.png"


def gray16(tmp):
    gray = (np.asarray(Image.fromarray(photo()).convert("L"), np.uint16) * 257)
    Image.fromarray(gray).save(tmp / "g16.png")
    return tmp / "g16.png"


def symlink_to_input(tmp, w):
    c, m = pair(tmp)
    os.symlink(c, tmp / "link.jpg")
    return [c, m, "-o", tmp / "link.jpg"]


def under_a_file(tmp, w):
    c, m = pair(tmp)
    (tmp / "afile").write_text("a file, not a folder")
    return [c, m, "-o", tmp / "afile" / "o.png"]


def folder_with_bad_item(tmp, w):
    src = tmp / "in"
    src.mkdir()
    pair(src, comp_name="good.jpg", mask_name="good_mask.png")
    pair(src, comp_name="bad.jpg", mask_name="bad_mask.png", mask=np.zeros((H, W), np.uint8))
    return ["--input-dir", src, "--output-dir", tmp / "out"]


def folder_without_images(tmp, w):
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.txt").write_text("no images here")
    return ["--input-dir", tmp / "empty", "--output-dir", tmp / "out"]


def folder_onto_itself(tmp, w):
    (tmp / "in").mkdir()
    pair(tmp / "in")
    return ["--input-dir", tmp / "in", "--output-dir", tmp / "in"]


def paste_without_alpha(tmp, w):
    save(tmp / "cut.png", photo(30, 40))
    save(tmp / "bg.jpg", photo())
    return ["--foreground", tmp / "cut.png", "--background", tmp / "bg.jpg", "-o", tmp / "o.png"]


def paste_outside(tmp, w):
    cut = np.dstack([photo(30, 40), np.full((30, 40), 255, np.uint8)])
    save(tmp / "cut.png", cut)
    save(tmp / "bg.jpg", photo())
    return ["--foreground", tmp / "cut.png", "--background", tmp / "bg.jpg", "--position", "500,500", "-o", tmp / "o.png"]


def cmyk(tmp, w):
    Image.fromarray(photo()).convert("CMYK").save(tmp / "c.jpg")
    save(tmp / "c_mask.png", box())
    return [tmp / "c.jpg", tmp / "c_mask.png", "-o", tmp / "o.png"]


def rgba_composite_to_jpeg(tmp, w):
    save(tmp / "c.png", np.dstack([photo(), np.full((H, W), 255, np.uint8)]))
    save(tmp / "c_mask.png", box())
    return [tmp / "c.png", tmp / "c_mask.png", "-o", tmp / "o.jpg"]


CASES = [
    # -- missing, wrong kind, unreadable -------------------------------------------------------
    Case("missing composite", lambda t, w: [t / "none.jpg", save(t / "m.png", box()), "-o", t / "o.png"], 3, r"none\.jpg: no such file"),
    Case("missing mask", lambda t, w: [save(t / "c.png", photo()), t / "none.png", "-o", t / "o.png"], 3, r"none\.png: no such file"),
    Case("composite is a folder", lambda t, w: [t, save(t / "m.png", box()), "-o", t / "o.png"], 3, r"is a folder"),
    Case("mask is a folder", lambda t, w: [save(t / "c.png", photo()), t, "-o", t / "o.png"], 3, r"is a folder"),
    Case("empty file", raw({"c.jpg": b"", "m.png": box()}, lambda t: [t / "c.jpg", t / "m.png", "-o", t / "o.png"]), 3, r"c\.jpg: not a readable image"),
    Case("text named .jpg", raw({"c.jpg": b"hello, I am text\n" * 20, "m.png": box()}, lambda t: [t / "c.jpg", t / "m.png", "-o", t / "o.png"]), 3, r"c\.jpg: not a readable image"),
    Case("truncated JPEG", raw({"c.jpg": truncated(jpeg_bytes(photo())), "m.png": box()}, lambda t: [t / "c.jpg", t / "m.png", "-o", t / "o.png"]), 3, r"c\.jpg: truncated or corrupt"),
    Case("truncated PNG", raw({"c.png": truncated(png_bytes(photo())), "m.png": box()}, lambda t: [t / "c.png", t / "m.png", "-o", t / "o.png"]), 3, r"c\.png: (truncated or corrupt|cannot read)"),
    Case("decompression-bomb header", raw({"c.png": bomb_png(), "m.png": box()}, lambda t: [t / "c.png", t / "m.png", "-o", t / "o.png"]), 3, r"over the limit.*decompression-bomb"),
    # -- masks ---------------------------------------------------------------------------------
    Case("wrong-size mask", single(mask=box(40, 50)), 3, r"mask is 50x40 but the composite is 130x90.*--resize-mask"),
    Case("empty mask", single(mask=np.zeros((H, W), np.uint8)), 3, r"mask is empty"),
    Case("full mask", single(mask=np.full((H, W), 255, np.uint8)), 3, r"mask covers the whole image"),
    Case("photo as mask", single(mask=photo(), mask_name="c_mask.jpg"), 3, r"looks like a photo.*argument order"),
    Case("arguments swapped", lambda t, w: [save(t / "m.png", box()), save(t / "c.jpg", photo()), "-o", t / "o.png"], 3, r"c\.jpg: this looks like a photo.*composite comes first"),
    Case("1x1 image", raw({"c.png": photo(1, 1), "m.png": np.full((1, 1), 255, np.uint8)}, lambda t: [t / "c.png", t / "m.png", "-o", t / "o.png"]), 3, r"covers the whole image"),
    Case("mask that is a soft gray ramp but no region", single(mask=np.full((H, W), 60, np.uint8)), 3, r"mask is empty"),
    # -- outputs -------------------------------------------------------------------------------
    Case("output = composite", lambda t, w: [*pair(t), "-o", t / "c.jpg"], 4, r"refusing to overwrite an input"),
    Case("output = mask", lambda t, w: [*pair(t), "-o", t / "c_mask.png"], 4, r"refusing to overwrite an input"),
    Case("output is a symlink to an input", symlink_to_input, 4, r"refusing to overwrite an input"),
    Case("output under a file", under_a_file, 4, r"cannot create the output folder .*afile"),
    Case("unsupported output extension", single(out="o.gif"), 4, r"unknown output extension '\.gif'"),
    Case("alpha input to a JPEG output", rgba_composite_to_jpeg, 4, r"alpha channel.*\.jpg cannot keep"),
    Case("output is a folder", lambda t, w: [*pair(t), "-o", t], 4, r"unknown output extension|is a folder"),
    # -- weights -------------------------------------------------------------------------------
    Case("garbage weights", with_weights(garbage_weights), 3, r"not a safetensors file"),
    Case("wrong-architecture weights", with_weights(wrong_architecture), 3, r"wrong\.safetensors.*(shape|mismatch|size)"),
    Case("safetensors without a bargainnet config", with_weights(no_metadata_weights), 3, r"not a bargainnet weights file"),
    Case("garbage ONNX weights", with_weights(garbage_onnx), 3, r"cannot load ONNX model"),
    Case("missing weights", with_weights(lambda t, w: t / "none.safetensors"), 3, r"weights file not found"),
    # -- options and modes ---------------------------------------------------------------------
    Case("quality out of range", single(out="o.jpg", extra=("--quality", "0")), 2, r"--quality must be in 1\.\.100"),
    Case("unknown device", single(extra=("--device", "tpu")), 3, r"unknown device 'tpu'"),
    Case("paste: cut-out without alpha", paste_without_alpha, 3, r"no alpha channel"),
    Case("paste: outside the background", paste_outside, 3, r"falls outside the background"),
    Case("folder with no images", folder_without_images, 3, r"no images found"),
    Case("output folder = input folder", folder_onto_itself, 4, r"output folder is the input folder"),
    Case("folder with a bad item", folder_with_bad_item, 5, r"1 of 2 failed:\n  [^\n]*bad_mask\.png: mask is empty", ("out/good.jpg",)),
    # -- awkward inputs that must work ---------------------------------------------------------
    Case("DIH-style mask, alpha 253..255", single(mask=rgba_mask(253)), 0, r"wrote", ("out/o.png",)),
    Case("DIH-style mask, alpha 217..255", single(mask=rgba_mask(217)), 0, r"wrote", ("out/o.png",)),
    Case("alpha-as-mask (white RGBA)", single(mask=alpha_only_mask()), 0, r"wrote", ("out/o.png",)),
    Case("JPEG mask with compression noise", raw({"c.jpg": photo(), "m.jpg": box()}, lambda t: [t / "c.jpg", t / "m.jpg", "-o", t / "o.png"]), 0, r"wrote", ("o.png",)),
    Case("CMYK composite", cmyk, 0, r"wrote", ("o.png",)),
    Case("gray composite", single(comp=np.asarray(Image.fromarray(photo()).convert("L")), comp_name="g.png"), 0, r"wrote", ("out/o.png",)),
    Case("16-bit gray composite", lambda t, w: [gray16(t), save(t / "m.png", box()), "-o", t / "o.png"], 0, r"wrote", ("o.png",)),
    Case("palette with transparency", lambda t, w: [palette_with_transparency(t), save(t / "m.png", box()), "-o", t / "o.png"], 0, r"wrote", ("o.png",)),
    Case("unicode and space in names", single(comp_name="café au lait.jpg", mask_name="café au lait_mask.png", out="sortie é/o ü.png"), 0, r"café au lait\.jpg.*wrote", ("sortie é/o ü.png",)),
    Case("16-bit gray mask", lambda t, w: [save(t / "c.png", photo()), save(t / "m.png", box().astype(np.uint16) * 257), "-o", t / "o.png"], 0, r"wrote", ("o.png",)),
    Case("mask of another size with --resize-mask", single(mask=box(45, 65), extra=("--resize-mask",)), 0, r"wrote", ("out/o.png",)),
]


def tree(folder: Path) -> dict:
    """Every file and folder under ``folder`` -> a digest (files) or "dir", symlinks by target."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            found[os.path.relpath(os.path.join(root, d), folder)] = "dir"
        for f in files:
            path = os.path.join(root, f)
            if os.path.islink(path):
                found[os.path.relpath(path, folder)] = "link:" + os.readlink(path)
            else:
                found[os.path.relpath(path, folder)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return found


def test_the_battery_is_large_enough():
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_awkward_input(case, weights, tmp_path, capsys):
    argv = [str(a) for a in case.build(tmp_path, weights)]
    if "--weights" not in argv:
        argv += ["--weights", str(weights)]
    before = tree(tmp_path)
    try:
        code = main(["harmonize", *argv])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == case.code, out + err
    import re

    text = err if code else out + err
    assert re.search(case.message, text, re.S), text
    if code not in (0, 5):
        assert len(err.strip().splitlines()) == 1, err  # one line, the path named once
    after = tree(tmp_path)
    # Inputs unchanged, nothing left behind but the expected outputs (and their folders).
    assert {k: v for k, v in after.items() if k in before} == before
    new = set(after) - set(before)
    expected = set(case.outputs)
    for out_path in case.outputs:
        parent = Path(out_path).parent
        while str(parent) != ".":
            expected.add(str(parent))
            parent = parent.parent
    assert new == expected, sorted(new)
    for out_path in case.outputs:
        with Image.open(tmp_path / out_path) as image:
            assert image.size == (W, H) or case.name == "1x1 image"
