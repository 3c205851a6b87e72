"""The colour-transform family: identity at initialisation, exact transforms against numpy
float64 formulas, resolution/crop consistency, gradients, weights and training-config round trips."""

import numpy as np
import pytest
import torch
from torch import nn

from bargainnet.models.color_transform import ColorTransformConfig, ColorTransformNet, apply_params
from bargainnet.models.convert import load_weights, save_weights

TINY = dict(color_stats=True, width=8, depth=4, code_dim=8, encoder_width=8, grid=4, curve_knots=5, image_size=64)


def _inputs(b=2, size=64):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    m = torch.zeros(b, 1, size, size)
    m[:, :, size // 4 : size // 2, size // 4 : 3 * size // 4] = 1
    return x, m


def test_new_model_is_the_identity():
    model = ColorTransformNet(**TINY).eval()
    x, m = _inputs()
    with torch.no_grad():
        assert torch.allclose(model.harmonize(x, m), x, atol=1e-6)
        assert torch.allclose(model.harmonize_background(x, m), x, atol=1e-6)


def test_global_transform_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, 5, 7))
    offsets = rng.normal(0, 0.05, (1, 3, 4))
    affine = rng.normal(0, 0.1, (1, 3, 4))
    params = {"curve": torch.from_numpy(offsets), "affine": torch.from_numpy(affine)}
    got = apply_params(torch.from_numpy(x), params).numpy()
    knots = np.linspace(0, 1, 4)
    curved = np.stack([x[0, c] + np.interp(x[0, c], knots, offsets[0, c]) for c in range(3)])
    ref = np.einsum("ij,jhw->ihw", np.eye(3) + affine[0, :, :3], curved) + affine[0, :, 3, None, None]
    assert np.abs(got[0] - np.clip(ref, 0, 1)).max() < 1e-12


def test_local_grid_is_resolution_free_and_crop_consistent():
    torch.manual_seed(0)
    params = {"affine": torch.zeros(1, 3, 4, dtype=torch.float64), "grid": 0.2 * torch.randn(1, 12, 4, 4, dtype=torch.float64)}
    big = torch.rand(1, 3, 96, 128, dtype=torch.float64)
    full = apply_params(big, params)
    crop = apply_params(big[:, :, 24:72, 40:104], params, (24 / 96, 40 / 128, 48 / 96, 64 / 128))
    assert torch.allclose(full[:, :, 24:72, 40:104], crop, atol=1e-12)
    # a constant lattice is a global affine transform, whatever the size
    const = {"affine": torch.zeros(1, 3, 4, dtype=torch.float64), "grid": torch.zeros(1, 12, 4, 4, dtype=torch.float64)}
    const["grid"][:, 9] = 0.1
    assert torch.allclose(apply_params(big, const)[:, 0], (big[:, 0] + 0.1).clamp(0, 1))


def test_gradients_reach_every_parameter():
    model = ColorTransformNet(**TINY).train()
    for head in (model.generator.global_head, model.generator.local_head):
        torch.nn.init.normal_(head[-1].weight, 0, 0.01)  # leave the identity so every layer gets a gradient
    x, m = _inputs()
    out = model.training_forward(x, m, x.flip(0))
    (out["harmonized"].sum() + sum(out[k].sum() for k in ("z_b", "z_f", "z_f_harm", "z_f_comp"))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_weights_round_trip_names_the_architecture(tmp_path):
    from bargainnet.models.convert import read_metadata

    model = ColorTransformNet(**TINY).eval()
    path = save_weights(model, tmp_path / "ct.safetensors")
    assert read_metadata(path)["architecture"] == "color_transform"
    loaded = load_weights(path)
    assert isinstance(loaded, ColorTransformNet) and loaded.config == model.config
    x, m = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded(x, m), model(x, m))


def test_training_config_selects_the_family():
    from bargainnet.training.config import TrainConfig

    cfg = TrainConfig.from_dict({"architecture": "color_transform", "model": {"grid": 0}})
    assert isinstance(cfg.model, ColorTransformConfig) and cfg.model.grid == 0
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again.model == cfg.model


def test_config_file_of_another_family_replaces_the_base_model_section():
    from pathlib import Path

    from bargainnet.training.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "color_transform.yaml")
    assert cfg.architecture == "color_transform" and isinstance(cfg.model, ColorTransformConfig)
    assert cfg.data.size == cfg.model.image_size == 128


def test_bad_sizes_are_named():
    model = ColorTransformNet(**TINY)
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.zeros(1, 3, 72, 72), torch.zeros(1, 1, 72, 72))


def test_harmonizer_applies_the_transform_at_full_resolution(monkeypatch):
    """A transform model's prediction, applied to a 300x200 image by the Harmonizer, equals the
    same parameters applied directly (float64 reference), inside the mask; the background is bit-identical."""
    from bargainnet.inference import Harmonizer
    from bargainnet.models.color_transform import apply_params

    torch.manual_seed(3)
    model = ColorTransformNet(**TINY).eval()
    for head in (model.generator.global_head, model.generator.local_head):
        torch.nn.init.normal_(head[-1].weight, 0, 0.05)
        torch.nn.init.normal_(head[-1].bias, 0, 0.05)
    rng = np.random.default_rng(0)
    image = (rng.random((200, 300, 3)) * 255).astype(np.uint8)
    mask = np.zeros((200, 300), bool)
    mask[40:150, 60:220] = True
    from bargainnet.inference import resolution

    monkeypatch.setattr(resolution, "ROWS_PER_CHUNK", 32)  # several bands, each at its place on the grid
    harmonizer = Harmonizer(model)
    result = harmonizer.harmonize(image, mask)
    out = np.asarray(result.image)
    assert np.array_equal(out[~mask], image[~mask])
    item = harmonizer.prepare(image, mask)
    *_, params = harmonizer.run_network([item])
    p64 = {k: v.double() for k, v in params[0].items()}
    ref = apply_params(torch.from_numpy(image / 255.0).permute(2, 0, 1)[None], p64)[0].permute(1, 2, 0).numpy()
    ref8 = np.clip(np.round(ref * 255), 0, 255)
    assert np.abs(out[mask].astype(float) - ref8[mask]).max() <= 1
    assert np.abs(out[mask].astype(float) - image[mask]).mean() > 1  # it did change the foreground
    lifted = np.asarray(Harmonizer(model, method="lift").harmonize(image, mask).image)
    assert np.array_equal(lifted[~mask], image[~mask])


def test_overrides_are_checked_within_the_files_family():
    from pathlib import Path

    from bargainnet.errors import InputError
    from bargainnet.training.config import load_config

    path = Path(__file__).resolve().parents[2] / "configs" / "color_transform.yaml"
    assert load_config(path, ["model.grid=0"]).model.grid == 0
    with pytest.raises(InputError, match="model.ngf"):
        load_config(path, ["model.ngf=8"])


def test_lattice_interpolation_equals_grid_sample():
    # reference: torch's grid_sample (bilinear, border, align_corners=False) at the pixel centres
    import torch.nn.functional as F

    from bargainnet.models.color_transform import _interpolation_weights

    torch.manual_seed(4)
    for cells in ((5, 7), (1, 7), (32, 32)):
        lattice = torch.randn(2, 12, *cells, dtype=torch.float64)
        h, w, window = 33, 20, (0.1, 0.3, 0.6, 0.5)
        ys = (window[0] + (torch.arange(h, dtype=torch.float64) + 0.5) / h * window[2]) * 2 - 1
        xs = (window[1] + (torch.arange(w, dtype=torch.float64) + 0.5) / w * window[3]) * 2 - 1
        where = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).unsqueeze(0).expand(2, -1, -1, -1)
        ref = F.grid_sample(lattice, where, mode="bilinear", padding_mode="border", align_corners=False)
        wy = _interpolation_weights(h, cells[0], window[0], window[2], lattice)
        wx = _interpolation_weights(w, cells[1], window[1], window[3], lattice)
        got = wy @ lattice @ wx.T
        assert torch.allclose(got, ref, atol=1e-12), cells


def test_curve_global_and_local_match_a_two_pass_numpy_reference():
    # reference: curve, then the global affine, then the bilinearly interpolated local affine, in float64 numpy
    rng = np.random.default_rng(5)
    x = rng.random((1, 3, 6, 10))
    params = {
        "curve": torch.from_numpy(rng.normal(0, 0.03, (1, 3, 4))),
        "affine": torch.from_numpy(rng.normal(0, 0.1, (1, 3, 4))),
        "grid": torch.from_numpy(rng.normal(0, 0.1, (1, 12, 3, 2))),
    }
    got = apply_params(torch.from_numpy(x), params).numpy()[0]
    knots = np.linspace(0, 1, 4)
    c = np.stack([x[0, k] + np.interp(x[0, k], knots, params["curve"][0, k].numpy()) for k in range(3)])
    a = params["affine"][0].numpy()
    g = np.einsum("ij,jhw->ihw", np.eye(3) + a[:, :3], c) + a[:, 3, None, None]

    def interp(n, cells):  # pixel centres on the lattice's cell centres, clamped at the border
        pos = np.clip((np.arange(n) + 0.5) / n * cells - 0.5, 0, cells - 1)
        lo = np.minimum(np.floor(pos).astype(int), max(cells - 2, 0))
        w = np.zeros((n, cells))
        w[np.arange(n), lo] = 1 - (pos - lo)
        if cells > 1:
            w[np.arange(n), lo + 1] += pos - lo
        return w

    lat = np.einsum("yh,chw,xw->cyx", interp(6, 3), params["grid"][0].numpy(), interp(10, 2))
    ref = g + np.einsum("ijyx,jyx->iyx", lat[:9].reshape(3, 3, 6, 10), g) + lat[9:]
    assert np.abs(got - np.clip(ref, 0, 1)).max() < 1e-12


@pytest.mark.parametrize("parts", [("curve", "affine", "grid"), ("affine", "grid"), ("curve", "affine")])
def test_8bit_pixels_give_the_float_paths_numbers(parts):
    # the 8-bit path looks the curve up in a 256-entry table; same float32 numbers as on x8 / 255
    g = torch.Generator().manual_seed(7)
    x8 = torch.randint(0, 256, (2, 3, 9, 13), dtype=torch.uint8, generator=g)
    params = {
        "curve": torch.randn(2, 3, 8, generator=g) * 0.05,
        "affine": torch.randn(2, 3, 4, generator=g) * 0.1,
        "grid": torch.randn(2, 12, 4, 4, generator=g) * 0.1,
    }
    params = {k: v for k, v in params.items() if k in parts}
    as_float = torch.from_numpy(np.multiply(x8.numpy(), np.float32(1 / 255), dtype=np.float32))
    window = (0.25, 0.1, 0.5, 0.8)
    assert torch.equal(apply_params(x8, params, window), apply_params(as_float, params, window))


def test_multiscale_pooling_reads_every_stage_and_starts_as_the_identity():
    torch.manual_seed(0)
    model = ColorTransformNet(width=4, depth=3, code_dim=4, encoder_width=4, grid=2, curve_knots=4, image_size=64, multiscale=True)
    assert model.generator.global_head[0].in_features == 2 * (4 + 8 + 16) + 4
    c = torch.rand(2, 3, 64, 64) * 2 - 1
    m = torch.zeros(2, 1, 64, 64)
    m[:, :, 8:30, 10:40] = 1
    with torch.no_grad():
        assert torch.allclose(model.eval()(c, m), c, atol=1e-6)
    # the first stage's pooled features reach the global transform
    nn.init.normal_(model.generator.global_head[-1].weight, std=0.1)
    model.train()
    params = model.predict(c, m)
    params["affine"].sum().backward()
    assert model.generator.stages[0][0].weight.grad.abs().sum() > 0


def test_decoder_predicts_a_dense_lattice_from_identity():
    torch.manual_seed(0)
    model = ColorTransformNet(width=4, depth=4, code_dim=4, encoder_width=4, grid=8, curve_knots=4, image_size=64, decoder_levels=2)
    c = torch.rand(2, 3, 64, 64) * 2 - 1
    m = torch.zeros(2, 1, 64, 64)
    m[:, :, 8:30, 10:40] = 1
    params = model.predict(c, m)
    assert params["grid"].shape == (2, 12, 16, 16)  # 64 / 2**(4 - 2)
    with torch.no_grad():
        assert torch.allclose(model.eval()(c, m), c, atol=1e-6)
    with pytest.raises(ValueError, match="decoder_levels"):
        ColorTransformNet(depth=3, decoder_levels=3)
