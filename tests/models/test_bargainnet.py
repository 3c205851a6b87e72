import json

import pytest
import torch

from bargainnet.training.losses import LossConfig, bargainnet_loss
from bargainnet.models.bargainnet import BargainNet, BargainNetConfig

from tests.conftest import FIXTURES

TINY = dict(ngf=4, num_downs=6, code_dim=8)


def _inputs(b=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    composite = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    real = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    mask = torch.zeros(b, 1, size, size)
    mask[:, :, size // 4 : size // 2 + 8, size // 4 : 3 * size // 4] = 1
    return composite, mask, real


def test_full_size_state_dict_matches_published_keys_and_shapes():
    expected = json.loads((FIXTURES / "official_checkpoint_keys.json").read_text())
    g_expected, e_expected = expected.values()
    model = BargainNet()
    assert {k: list(v.shape) for k, v in model.generator.state_dict().items()} == g_expected
    assert {k: list(v.shape) for k, v in model.encoder.state_dict().items()} == e_expected
    # docs/design.md §1 parameter counts
    assert model.num_parameters() == {"generator": 54_776_324, "encoder": 3_919_376}


def test_outputs_have_documented_shapes_and_background_is_bit_identical():
    model = BargainNet(**TINY).eval()
    composite, mask, real = _inputs()
    with torch.no_grad():
        raw = model(composite, mask)
        out = model.harmonize(composite, mask)
        bg = model.harmonize_background(composite, mask)
        code = model.domain_code(composite, mask)
        distance, score = model.inharmony(composite, mask)
    assert raw.shape == out.shape == bg.shape == composite.shape
    assert raw.abs().max() <= 1
    keep = mask.expand_as(composite) == 0
    assert torch.equal(out[keep], composite[keep])
    assert torch.equal(bg[~keep], composite[~keep])  # background harmonization keeps the foreground
    assert code.shape == (2, 8)
    assert distance.shape == score.shape == (2,)
    assert torch.allclose(score, torch.exp(-0.04212 * distance))
    assert torch.allclose(distance, (model.domain_code(composite, 1 - mask) - code).norm(dim=1))


def test_no_leakage_region_code_ignores_pixels_outside_region():
    model = BargainNet(**TINY).eval()
    composite, mask, _ = _inputs(b=1, size=128)
    changed = composite.clone()
    changed[mask.expand_as(composite) == 0] = torch.rand(int((mask == 0).sum()) * 3) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.domain_code(composite, mask), model.domain_code(changed, mask))
        # and the background's code does change: the test would catch a leak
        assert not torch.equal(model.domain_code(composite, 1 - mask), model.domain_code(changed, 1 - mask))


def test_batch_equals_single_images_in_eval_mode():
    model = BargainNet(**TINY).eval()
    composite, mask, _ = _inputs(b=3)
    mask[1] = 0
    mask[1, :, 10:30, 5:50] = 1
    with torch.no_grad():
        batch = model(composite, mask)
        singles = torch.cat([model(composite[i : i + 1], mask[i : i + 1]) for i in range(3)])
    assert torch.allclose(batch, singles, atol=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        dict(),
        dict(use_code=False),  # ablation 1: mask only (DoveNet)
        dict(use_mask=False),  # ablations 6, 7: no mask
        dict(code_source="composite"),  # ablation 8
        dict(output="affine"),
        dict(output="affine_global"),
        dict(encoder_width=8),
        dict(output="affine", hint="stats"),
    ],
)
def test_every_parameter_gets_a_gradient(config):
    model = BargainNet(**TINY, **config).train()
    if config.get("output", "").startswith("affine"):  # away from its zero start, which blocks the inner gradients
        torch.nn.init.normal_(model.generator.output_layer.weight, 0.0, 0.02)
    composite, mask, real = _inputs()
    outputs = model.training_forward(composite, mask, real)
    total, parts = bargainnet_loss(outputs, real, LossConfig(margin=100.0))  # margin keeps both hinges active
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    # E's parameters are reached through the triplet terms; G's through both.
    assert missing == [], missing
    assert set(parts) == {"l1", "triplet_background", "triplet_foreground", "total"}


def test_training_forward_matches_the_separate_calls():
    model = BargainNet(**TINY).eval()
    composite, mask, real = _inputs()
    with torch.no_grad():
        out = model.training_forward(composite, mask, real)
        assert torch.allclose(out["harmonized"], model(composite, mask), atol=1e-6)
        assert torch.allclose(out["z_b"], model.domain_code(composite, 1 - mask), atol=1e-6)
        assert torch.allclose(out["z_f"], model.domain_code(real, mask), atol=1e-6)
        assert torch.allclose(out["z_f_comp"], model.domain_code(composite, mask), atol=1e-6)
        assert torch.allclose(out["z_f_harm"], model.domain_code(out["harmonized"], mask), atol=1e-6)


@pytest.mark.parametrize(
    "composite_shape, mask_shape, match",
    [
        ((1, 3, 64, 64), (1, 1, 32, 64), "does not match"),
        ((1, 3, 64, 64), (1, 3, 64, 64), "one channel"),
        ((1, 3, 96, 64), (1, 1, 96, 64), "multiples of 64"),
        ((1, 1, 64, 64), (1, 1, 64, 64), r"\(B, 3, H, W\)"),
        ((2, 3, 64, 64), (1, 1, 64, 64), "does not match"),
    ],
)
def test_bad_shapes_raise_value_error_naming_them(composite_shape, mask_shape, match):
    model = BargainNet(**TINY).eval()
    with pytest.raises(ValueError, match=match):
        model(torch.zeros(composite_shape), torch.zeros(mask_shape))


def test_out_of_range_values_are_refused():
    model = BargainNet(**TINY).eval()
    composite, mask, _ = _inputs(b=1)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model(composite * 255, mask)
    with pytest.raises(ValueError, match=r"mask values must lie in \[0, 1\]"):
        model(composite, mask * 255)


def test_config_rejects_unknown_keys_and_values():
    with pytest.raises(ValueError, match="unknown"):
        BargainNetConfig.from_dict({"ngf": 8, "nfg": 8})
    with pytest.raises(ValueError, match="code_source"):
        BargainNetConfig(code_source="foreground")
    with pytest.raises(ValueError, match="output"):
        BargainNetConfig(output="hsv")
    with pytest.raises(ValueError, match="encoder_width"):
        BargainNetConfig(encoder_width=0)
    with pytest.raises(ValueError, match="hint"):
        BargainNetConfig(hint="reinhard")


def test_encoder_width_narrows_every_extractor_layer_and_is_stored_in_weights(tmp_path):
    from bargainnet.models.convert import load_weights, save_weights

    model = BargainNet(**TINY, encoder_width=16).eval()
    widths = [m.out_channels for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [16, 32, 64, 128, 128, 8]  # the paper's 64, 128, 256, 512, 512, L at width 64
    assert BargainNet(**TINY).encoder.conv1f.out_channels == 64  # the default stays the paper's
    save_weights(model, tmp_path / "w.safetensors")
    loaded = load_weights(tmp_path / "w.safetensors")
    assert loaded.config.encoder_width == 16
    composite, mask, _ = _inputs()
    with torch.no_grad():
        assert torch.allclose(loaded.harmonize(composite, mask), model.harmonize(composite, mask), atol=1e-6)


def test_affine_output_starts_as_the_identity_and_applies_a_transform_per_pixel():
    model = BargainNet(**TINY, output="affine").eval()
    composite, mask, _ = _inputs()
    with torch.no_grad():
        assert torch.equal(model(composite, mask), composite)
        torch.nn.init.normal_(model.generator.output_layer.weight, 0.0, 0.05)
        torch.nn.init.normal_(model.generator.output_layer.bias, 0.0, 0.05)
        code = model.guide_code(composite, mask)
        offsets = model.generator(torch.cat([composite, mask], 1), code).double()
        out = model(composite, mask)
    # float64 reference: out[c] = x[c] + sum_j A[c, j] x[j] + b[c], A = offsets[:9] row by row
    x = composite.double()
    a = offsets[:, :9].reshape(2, 3, 3, 64, 64)
    expected = (x + torch.einsum("bcjhw,bjhw->bchw", a, x) + offsets[:, 9:]).clamp(-1, 1)
    assert (out.double() - expected).abs().max() < 1e-5
    assert (out - composite).abs().max() > 1e-3  # the transform is not the identity any more


def test_global_affine_output_is_one_transform_per_image():
    model = BargainNet(**TINY, output="affine_global").eval()
    composite, mask, _ = _inputs()
    with torch.no_grad():
        assert torch.equal(model(composite, mask), composite)  # the identity at the start
        torch.nn.init.normal_(model.generator.output_layer.weight, 0.0, 0.05)
        torch.nn.init.normal_(model.generator.output_layer.bias, 0.0, 0.05)
        code = model.guide_code(composite, mask)
        offsets = model.generator(torch.cat([composite, mask], 1), code).double()
        out = model(composite, mask).double()
    # float64 reference: the offsets' mean over the mask, applied as one 3x4 transform
    m = mask.double()
    mean = (offsets * m).sum((2, 3)) / m.sum((2, 3))  # (B, 12)
    x = composite.double()
    a = mean[:, :9].reshape(2, 3, 3)
    expected = (x + torch.einsum("bcj,bjhw->bchw", a, x) + mean[:, 9:, None, None]).clamp(-1, 1)
    assert (out - expected).abs().max() < 1e-5
    assert (out - composite).abs().max() > 1e-3


def test_statistics_hint_matches_a_float64_reference_and_reaches_the_generator():
    import numpy as np

    from bargainnet.models.bargainnet import statistics_transfer

    composite, mask, _ = _inputs()
    composite[1, :, :8] = 0.3  # a flat strip in the second image's background
    hint = statistics_transfer(composite, mask).double().numpy()
    x, m = composite.double().numpy(), mask.numpy()[:, 0] > 0
    for b in range(2):
        inside, outside = x[b][:, m[b]], x[b][:, ~m[b]]  # (3, N)
        gain = np.clip(outside.std(1) / inside.std(1), 0.25, 4.0)
        expected = np.clip((inside - inside.mean(1, keepdims=True)) * gain[:, None] + outside.mean(1, keepdims=True), -1, 1)
        np.testing.assert_allclose(hint[b][:, m[b]], expected, atol=1e-5)
        np.testing.assert_array_equal(hint[b][:, ~m[b]], x[b][:, ~m[b]])  # the rest as it was
        moved = hint[b][:, m[b]]
        np.testing.assert_allclose(moved.mean(1), outside.mean(1), atol=0.05)  # the statistics now match (up to clipping)
    # a flat region cannot blow up: the gain stops at 4
    flat = torch.full_like(composite, 0.1)
    flat[:, :, 40:] = torch.rand(2, 3, 24, 64) * 2 - 1
    region = torch.zeros_like(mask)
    region[:, :, :20] = 1
    assert torch.isfinite(statistics_transfer(flat, region)).all()
    # G reads it: three more input channels, and the output depends on them
    model = BargainNet(**TINY, output="affine", hint="stats").eval()
    assert model.generator.first_layer.in_channels == 3 + 1 + 3 + TINY["code_dim"]
    torch.nn.init.normal_(model.generator.output_layer.weight, 0.0, 0.05)
    with torch.no_grad():
        before = model(composite, mask)
        model.generator.first_layer.weight[:, 4:7].mul_(10)
        assert (model(composite, mask) - before).abs().max() > 1e-4


def test_generator_reads_the_code_maps_as_the_concatenated_input_would():
    """G's first convolution of the constant code maps is computed on a small tile: the output and
    the gradients equal those of the published form, conv(cat[x, code maps]) (float64)."""
    from bargainnet.models.generator import AttentionUNet

    torch.manual_seed(0)
    for size, levels in [(64, 6), (128, 7)]:
        g = AttentionUNet(input_nc=4 + 16, ngf=8, num_downs=levels, code_dim=16).double().eval()
        x = torch.randn(2, 4, size, size, dtype=torch.float64)
        code = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)
        got = g(x, code)
        maps = code[:, :, None, None].expand(-1, -1, size, size) * g.weight.clamp(min=0.001)
        want = g.model(torch.cat([x, maps], 1))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        grads = torch.autograd.grad(got.square().sum(), [code, g.first_layer.weight])
        wanted = torch.autograd.grad(want.square().sum(), [code, g.first_layer.weight])
        for a, b in zip(grads, wanted):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
