import numpy as np
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
