import numpy as np
import pytest
import torch

from bargainnet.training.losses import BargainNetLoss, LossConfig, bargainnet_loss, reconstruction_loss, triplet_loss


def _reference_triplet(a, p, n, margin):
    """Float64 formula of the paper: mean over the batch of max(‖a−p‖ − ‖a−n‖ + m, 0)."""
    a, p, n = (np.asarray(t, dtype=np.float64) for t in (a, p, n))
    d_ap = np.sqrt(((a - p) ** 2).sum(1))
    d_an = np.sqrt(((a - n) ** 2).sum(1))
    return np.maximum(d_ap - d_an + margin, 0).mean()


def test_triplet_equals_float64_formula():
    g = torch.Generator().manual_seed(1)
    a, p, n = (torch.randn(6, 16, generator=g) for _ in range(3))
    for margin in (0.25, 1.0, 4.0):
        ours = triplet_loss(a, p, n, margin).item()
        assert abs(ours - _reference_triplet(a, p, n, margin)) < 1e-5


def test_published_distance_is_per_dimension():
    a, p, n = torch.zeros(1, 2), torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    # Euclidean: max(3 − 4 + 1, 0) = 0. Per dimension (eps 1e-6 aside): mean(max(3−0+0.1,0), max(0−4+0.1,0)) = 1.55
    assert triplet_loss(a, p, n, 1.0) == 0
    assert abs(triplet_loss(a, p, n, 0.1, "published").item() - 1.55) < 1e-4
    assert LossConfig.published().margin == 0.1


def test_total_combines_terms_with_lambda_and_switches():
    g = torch.Generator().manual_seed(2)
    real = torch.rand(2, 3, 8, 8, generator=g)
    outputs = {"harmonized": torch.rand(2, 3, 8, 8, generator=g)}
    outputs.update({k: torch.randn(2, 16, generator=g) for k in ("z_b", "z_f", "z_f_harm", "z_f_comp")})
    total, parts = bargainnet_loss(outputs, real, LossConfig(margin=1.0, triplet_weight=0.01))
    expected = (
        (outputs["harmonized"] - real).abs().mean()
        + 0.01 * triplet_loss(outputs["z_f_harm"], outputs["z_b"], outputs["z_f_comp"], 1.0)
        + 0.01 * triplet_loss(outputs["z_f"], outputs["z_f_harm"], outputs["z_f_comp"], 1.0)
    )
    assert torch.allclose(total, expected)
    assert torch.allclose(parts["total"], total)
    only_l1, parts = bargainnet_loss(outputs, real, LossConfig(background_triplet=False, foreground_triplet=False))
    assert torch.allclose(only_l1, parts["l1"]) and parts["triplet_background"] == 0
    module_total, _ = BargainNetLoss(margin=1.0)(outputs, real)
    assert torch.allclose(module_total, total)


def test_foreground_reconstruction_is_per_area_mean():
    # float64 reference: sum |out - real| over the foreground / (3 * area), averaged over images
    torch.manual_seed(1)
    out, real = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.rand(2, 3, 16, 16, dtype=torch.float64)
    mask = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    mask[0, :, :8] = 1
    mask[1, :, :1, :1] = 1  # 1 px < 1 % of 256 px: counts as 2.56 px
    ref = [(out[0] - real[0]).abs()[:, :8].sum() / (3 * 128), (out[1] - real[1]).abs()[:, 0, 0].sum() / (3 * 2.56)]
    got = reconstruction_loss(out, real, mask)
    assert torch.allclose(got, (ref[0] + ref[1]) / 2)
    cfg = LossConfig(reconstruction="foreground", background_triplet=False, foreground_triplet=False)
    total, _ = bargainnet_loss({"harmonized": out}, real, cfg, mask)
    assert torch.allclose(total, got)


def test_l2_norm_squares_the_per_area_error():
    # float64 reference: sum (out - real)^2 over the foreground / (3 * area), averaged over images
    torch.manual_seed(1)
    out, real = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.rand(2, 3, 16, 16, dtype=torch.float64)
    mask = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    mask[0, :, 4:] = 1
    mask[1, :, :, :3] = 1
    ref = [((out[0] - real[0]) ** 2)[:, 4:].sum() / (3 * 192), ((out[1] - real[1]) ** 2)[:, :, :3].sum() / (3 * 48)]
    got = reconstruction_loss(out, real, mask, norm="l2")
    assert torch.allclose(got, (ref[0] + ref[1]) / 2)
    assert torch.allclose(reconstruction_loss(out, real, norm="l2"), ((out - real) ** 2).mean())
    cfg = LossConfig(reconstruction="foreground", norm="l2", background_triplet=False, foreground_triplet=False)
    total, _ = bargainnet_loss({"harmonized": out}, real, cfg, mask)
    assert torch.allclose(total, got) and not torch.allclose(got, reconstruction_loss(out, real, mask))
    with pytest.raises(ValueError, match="norm must be one of"):
        LossConfig(norm="l3")


def test_unperturbed_samples_leave_the_triplets():
    torch.manual_seed(2)
    real = torch.rand(3, 3, 8, 8)
    composite = real.clone()
    composite[1] += 0.1  # only sample 1 was perturbed
    codes = {k: torch.randn(3, 4) for k in ("z_b", "z_f", "z_f_harm", "z_f_comp")}
    outputs = {"harmonized": real.clone(), **codes}
    cfg = LossConfig(margin=100.0)
    _, with_all = bargainnet_loss(outputs, real, cfg)
    _, weighted = bargainnet_loss(outputs, real, cfg, composite=composite)
    one = {k: v[1:2] for k, v in outputs.items()}
    _, only_perturbed = bargainnet_loss(one, real[1:2], cfg)
    for key in ("triplet_background", "triplet_foreground"):
        assert torch.allclose(weighted[key], only_perturbed[key])
        assert not torch.allclose(weighted[key], with_all[key])
    for distance in ("euclidean", "published"):  # weights of ones = the plain mean
        args = (codes["z_f_harm"], codes["z_b"], codes["z_f_comp"], 0.5, distance)
        assert torch.allclose(triplet_loss(*args), triplet_loss(*args, weight=torch.ones(3)))


def test_discriminative_encoder_objective():
    g = torch.Generator().manual_seed(3)
    real = torch.rand(4, 3, 8, 8, generator=g)
    outputs = {"harmonized": torch.rand(4, 3, 8, 8, generator=g)}
    outputs.update({k: torch.randn(4, 16, generator=g, requires_grad=True) for k in ("z_b", "z_f", "z_f_harm", "z_f_comp")})
    outputs["z_f_harm_frozen"] = outputs["z_f_harm"].detach().clone().requires_grad_()
    _, parts = bargainnet_loss(outputs, real, LossConfig(margin=2.0))
    assert "triplet_real" not in parts and not LossConfig(background_triplet=False, foreground_triplet=False).uses_codes
    cfg = LossConfig(margin=2.0, triplet_weight=0.05, encoder_objective="discriminative")
    total, parts = bargainnet_loss(outputs, real, cfg)
    # float64 reference of max(‖z_b − z_f‖ − ‖z_b − z̃_f‖ + m, 0), anchored at the background's code
    ref = _reference_triplet(*(outputs[k].detach() for k in ("z_b", "z_f", "z_f_comp")), 2.0)
    assert abs(parts["triplet_real"].item() - ref) < 1e-5
    without, _ = bargainnet_loss(outputs, real, LossConfig(margin=2.0, triplet_weight=0.05))
    assert torch.allclose(total, without + 0.05 * parts["triplet_real"])
    # the background triplet reaches only the frozen-E code of Î: z_b and z̃_f get no gradient from it
    only_bg = LossConfig(foreground_triplet=False, encoder_objective="discriminative", triplet_weight=1.0)
    outputs["z_b"].grad = None
    parts_bg = bargainnet_loss(outputs, real, only_bg)[1]
    t_bg = triplet_loss(outputs["z_f_harm_frozen"], outputs["z_b"].detach(), outputs["z_f_comp"].detach(), 1.0)
    assert torch.allclose(parts_bg["triplet_background"], t_bg)
    grads = torch.autograd.grad(t_bg, [outputs["z_f_harm_frozen"]])
    assert grads[0].abs().sum() > 0
    assert LossConfig(background_triplet=False, foreground_triplet=False, encoder_objective="discriminative").uses_codes
    with pytest.raises(ValueError, match="encoder_objective"):
        LossConfig(encoder_objective="other")


def test_frozen_encoder_code_passes_gradients_to_the_image_only():
    from bargainnet.models.domain_encoder import DomainEncoder
    from bargainnet.training.losses import frozen_encoder_code

    torch.manual_seed(0)
    enc = DomainEncoder(8, width=8).train()
    image = torch.rand(2, 3, 128, 128, requires_grad=True)
    mask = torch.zeros(2, 1, 128, 128)
    mask[:, :, 32:96, 40:100] = 1
    reference = enc(image, mask)  # E itself, train mode (updates its running statistics)
    running = enc.norm2f.running_mean.clone()
    enc.zero_grad()
    frozen = frozen_encoder_code(enc, image, mask)
    assert torch.allclose(frozen, reference, atol=1e-6)
    frozen.sum().backward()
    assert all(p.grad is None for p in enc.parameters()) and image.grad.abs().sum() > 0
    assert torch.equal(enc.norm2f.running_mean, running)


def test_identity_weight_counts_unperturbed_samples_that_many_times():
    # float64 reference: per-image mean |out - real|, the unperturbed image's counted 3 times
    torch.manual_seed(3)
    real = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    composite = real.clone()
    composite[0] += 0.2  # sample 0 perturbed, sample 1 unperturbed
    out = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    per_image = [(out[i] - real[i]).abs().mean() for i in range(2)]
    cfg = LossConfig(identity_weight=3.0, background_triplet=False, foreground_triplet=False)
    total, parts = bargainnet_loss({"harmonized": out}, real, cfg, composite=composite)
    assert torch.allclose(total, (per_image[0] + 3 * per_image[1]) / 2)
    # weight 1 is the paper's loss, bit for bit
    paper, _ = bargainnet_loss({"harmonized": out}, real, LossConfig(background_triplet=False, foreground_triplet=False),
                               composite=composite)
    assert torch.equal(paper, torch.nn.functional.l1_loss(out, real))
    with pytest.raises(ValueError, match="needs the composite"):
        bargainnet_loss({"harmonized": out}, real, cfg)
    with pytest.raises(ValueError, match="identity_weight"):
        LossConfig(identity_weight=-1)


def test_distillation_terms_equal_their_formulas():
    g = torch.Generator().manual_seed(4)
    real, teacher_out, out = (torch.rand(2, 3, 8, 8, generator=g) for _ in range(3))
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1
    outputs = {"harmonized": out, "teacher_output": teacher_out}
    outputs.update({k: torch.randn(2, 16, generator=g) for k in ("z_b", "z_f", "z_f_harm", "z_f_comp")})
    outputs["teacher_codes"] = torch.randn(6, 16, generator=g)
    cfg = LossConfig(reconstruction="foreground", background_triplet=False, foreground_triplet=False,
                     distill=0.8, distill_codes=0.02)
    total, parts = bargainnet_loss(outputs, real, cfg, mask)
    student = torch.cat([outputs["z_b"], outputs["z_f"], outputs["z_f_comp"]]).double()
    code_term = ((student - outputs["teacher_codes"].double()) ** 2).sum(1).mean()
    expected = 0.2 * reconstruction_loss(out, real, mask) + 0.8 * reconstruction_loss(out, teacher_out, mask) + 0.02 * code_term
    assert torch.allclose(total.double(), expected, atol=1e-6)
    assert torch.allclose(parts["distill_codes"].double(), code_term, atol=1e-5)
    assert LossConfig(distill_codes=0.1, background_triplet=False, foreground_triplet=False).uses_codes
    assert not LossConfig().uses_teacher and LossConfig(distill=0.5).uses_teacher
    for bad in (dict(distill=1.5), dict(distill=-0.1), dict(distill_codes=-1.0)):
        with pytest.raises(ValueError):
            LossConfig(**bad)


def test_unperturbed_samples_can_learn_from_the_real_image_alone():
    g = torch.Generator().manual_seed(6)
    real, teacher_out, out = (torch.rand(2, 3, 8, 8, generator=g) for _ in range(3))
    composite = real.clone()
    composite[0] += 0.1  # sample 0 is a composite, sample 1 unperturbed
    outputs = {"harmonized": out, "teacher_output": teacher_out}
    cfg = LossConfig(background_triplet=False, foreground_triplet=False, distill=0.8, distill_unperturbed=False)
    total, _ = bargainnet_loss(outputs, real, cfg, composite=composite)
    per = lambda a, b: (a - b).abs().flatten(1).mean(1).double()  # noqa: E731
    expected = ((0.2 * per(out, real)[0] + 0.8 * per(out, teacher_out)[0]) + per(out, real)[1]) / 2
    assert torch.allclose(total.double(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="composite"):
        bargainnet_loss(outputs, real, cfg)
