"""The working-resolution path shared by the Harmonizer and evaluation's --model-size."""

from __future__ import annotations

import numpy as np
import pytest

from bargainnet.errors import InputError
from bargainnet.inference import lifting
from bargainnet.inference.resolution import (
    back_to_full_resolution, fit_weight, resize_changed, resize_image, to_working_size,
)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def test_tiny_object_and_tiny_background_fallbacks():
    mask = np.zeros((512, 512), bool)
    mask[100:103, 200:203] = True  # 3 px: under half a working pixel at 64
    working = to_working_size(_image(512, 512), mask, 64)
    assert working.mask.any() and working.composite.shape == (64, 64, 3)
    assert not to_working_size(_image(512, 512), ~mask, 64).mask.all()
    with pytest.raises(InputError, match="no foreground or no background"):
        to_working_size(_image(64, 64), np.zeros((64, 64), bool), 64, name="x")
    assert not to_working_size(_image(64, 64), np.zeros((64, 64), bool), 64, require_both=False).mask.any()


def test_8bit_input_is_resized_on_its_8bit_pixels():
    rgb8 = (np.random.default_rng(1).random((100, 80, 3)) * 255).astype(np.uint8)
    mask = np.zeros((100, 80), bool)
    mask[20:60, 10:50] = True
    working = to_working_size(rgb8 / 255.0, mask, 64, rgb8=rgb8)
    assert working.composite.max() <= 1 and np.allclose(working.composite * 255, np.round(working.composite * 255))


@pytest.mark.parametrize("method", ["lift", "upsample"])
def test_back_to_full_resolution_stays_in_the_region_box(method):
    full = _image(130, 90)
    mask = np.zeros((130, 90), bool)
    mask[30:80, 20:70] = True
    working = to_working_size(full, mask, 64)
    output = np.clip(working.composite * 0.8 + 0.1, 0, 1)
    new, box = back_to_full_resolution(working, output, full, mask, method=method)
    assert box == (30, 80, 20, 70) and new.shape == (50, 50, 3)
    if method == "lift":  # the same as lifting.lift over the whole image, inside the box
        whole = lifting.lift(working.composite, output, fit_weight(working), full)
        assert np.allclose(new, whole[30:80, 20:70], atol=1e-6)


def test_at_the_working_size_the_network_output_is_used_as_is():
    full = _image(64, 64)
    mask = np.zeros((64, 64), bool)
    mask[10:30, 10:30] = True
    working = to_working_size(full, mask, 64)
    output = _image(64, 64, seed=3)
    new, (r0, r1, c0, c1) = back_to_full_resolution(working, output, full, mask)
    assert np.array_equal(new, output[r0:r1, c0:c1])


def test_mask_coverage_counts_the_cells_pillows_box_filter_averages():
    from PIL import Image

    from bargainnet.inference.resolution import mask_coverage

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:301, :437]
    masks = [
        rng.random((301, 437)) < 0.4,  # noise
        ((yy - 150) / 90.0) ** 2 + ((xx - 200) / 130.0) ** 2 < 1,  # ellipse
        (yy > 64) & (yy < 200) & (xx > 17) & (xx < 300),  # rectangle
    ]
    for mask in masks:
        for size in (16, 64, 128, 256, 301):
            ref = np.clip(lifting.resize_float(mask.astype(np.float32), (size, size), Image.BOX), 0, 1)
            got = mask_coverage(mask, size)
            assert got.dtype == np.float32 and got.shape == (size, size)
            assert np.abs(got - ref).max() < 1e-6
            assert np.array_equal(got >= 0.5, ref >= 0.5)
    square = rng.random((64, 64)) < 0.5  # the working size itself: each cell is one pixel
    assert np.array_equal(mask_coverage(square, 64), lifting.resize_float(square.astype(np.float32), (64, 64), Image.BOX))
    small = np.zeros((40, 50), bool)
    small[10:30, 5:20] = True  # enlarging goes through Pillow itself
    assert np.array_equal(mask_coverage(small, 64), np.clip(lifting.resize_float(small.astype(np.float32), (64, 64), Image.BOX), 0, 1))


def test_resizing_only_the_changed_cells_equals_the_whole_resize():
    from PIL import Image

    rng = np.random.default_rng(3)
    for _ in range(30):  # shrinking and enlarging, boxes anywhere (edges included)
        h, w = (int(v) for v in rng.integers(40, 1500, 2))
        size = int(rng.choice([64, 256]))
        before8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        r0, r1 = sorted(int(v) for v in rng.integers(0, h, 2))
        c0, c1 = sorted(int(v) for v in rng.integers(0, w, 2))
        after8 = before8.copy()
        after8[r0 : r1 + 1, c0 : c1 + 1] = rng.integers(0, 256, (r1 + 1 - r0, c1 + 1 - c0, 3))
        got = resize_changed(resize_image(None, size, rgb8=before8), Image.fromarray(after8), (r0, r1 + 1, c0, c1 + 1))
        np.testing.assert_array_equal(got, resize_image(None, size, rgb8=after8))
