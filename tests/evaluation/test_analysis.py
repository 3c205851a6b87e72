"""Domain-code analysis on constructed codes with known answers, on a tiny model (against direct
calls of the extractor), inharmony helpers, and background harmonization through the model API."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from bargainnet.evaluation import analysis
from bargainnet.errors import InputError


def test_requirements_on_constructed_codes():
    # 1-D codes on a line: b = 0, f = 1, f~ = 5; three harmonized positions with known answers
    b, f, fc = [[0.0, 0.0]] * 3, [[1.0, 0.0]] * 3, [[5.0, 0.0]] * 3
    fh = [[2.0, 0.0],  # between b and f~, near f: every requirement holds
          [5.0, 0.0],  # unchanged composite: 2-5 fail (ties are not "<")
          [-4.0, 0.0]]  # overshoot beyond b: d(f, f^) = 5 > d(f, f~) = 4 fails requirement 3
    flags = analysis.requirement_flags(b, f, fh, fc)
    assert flags.tolist() == [
        [True, True, True, True, True, True],
        [True, False, False, False, False, True],
        [True, True, False, True, True, True],
    ]
    rates = analysis.requirement_rates(flags)
    assert rates == pytest.approx([100, 200 / 3, 100 / 3, 200 / 3, 200 / 3, 100, 100 / 3])
    # torch tensors and the published (B, L, 1, 1) layout are accepted
    t = lambda x: torch.tensor(x)[:, :, None, None]  # noqa: E731
    assert (analysis.requirement_flags(t(b), t(f), t(fh), t(fc)) == flags).all()
    with pytest.raises(InputError, match="one shape"):
        analysis.requirement_flags(b, f, fh, [[1.0, 2.0, 3.0]])


def test_random_codes_against_loop_reference():
    rng = np.random.default_rng(0)
    z = [rng.normal(size=(50, 16)) for _ in range(4)]
    flags = analysis.requirement_flags(*z)
    names = dict(zip(("b", "f", "f^", "f~"), z))
    for k, (_, (a, near, far)) in enumerate(analysis.REQUIREMENTS):
        for i in range(50):
            dn = math.dist(names[a][i], names[near][i])
            df = math.dist(names[a][i], names[far][i])
            assert flags[i, k] == (dn < df)


def test_helpers():
    assert analysis.harmony_score(0.0) == 1.0
    assert analysis.harmony_score(10.0) == pytest.approx(math.exp(-0.4212))
    np.testing.assert_allclose(analysis.harmony_score(np.array([0.0, 1.0])), [1.0, math.exp(-0.04212)])
    x, y = np.random.default_rng(1).normal(size=(2, 40))
    assert analysis.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert analysis.subsample_indices(10, None) == list(range(10))
    assert analysis.subsample_indices(10, 3) == [0, 4, 9]  # spread, first and last included
    rows = [{"name": "a", "distance": 1.0}, {"name": "b", "distance": float("nan")}, {"name": "c", "distance": 3.0}]
    assert [(r["rank"], r["name"]) for r in analysis.rank_by_inharmony(rows)] == [(1, "c"), (2, "a"), (3, "b")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bargainnet.data.synthesis import make_tiny_dataset
    from bargainnet.evaluation import load_dataset
    from bargainnet.models.bargainnet import BargainNet, BargainNetConfig

    torch.manual_seed(0)
    model = BargainNet(BargainNetConfig(ngf=4, num_downs=5, code_dim=8)).eval()
    root = make_tiny_dataset(tmp_path_factory.mktemp("an") / "d", n_train=2, n_test=5, size=64, seed=2)
    return model, load_dataset(root, "test", size=64)


@pytest.mark.slow
def test_collect_codes_matches_direct_extractor_calls(tiny, tmp_path):
    from bargainnet.evaluation.metrics import image_metrics

    model, data = tiny
    res = analysis.collect_codes(model, data, batch_size=2, progress=False)
    assert len(res.names) == len(data) == 5 and res.flags.shape == (5, 6)
    with torch.no_grad():
        for i in range(len(data)):
            item = data[i]
            c, m, r = item["composite"][None], item["mask"][None], item["real"][None]
            z_b = model.domain_code(c, 1 - m)
            z_f = model.domain_code(r, m)
            z_c = model.domain_code(c, m)
            z_h = model.domain_code(model(c, m), m)
            ref = analysis.requirement_flags(z_b, z_f, z_h, z_c)[0]
            assert (res.flags[i] == ref).all()
            d, _ = model.inharmony(c, m)
            assert res.inharmony_before[i] == pytest.approx(float(d[0]), rel=1e-4)
            assert res.inharmony_after[i] == pytest.approx(float((z_b - z_h).norm()), rel=1e-4)
            assert res.composite_fmse[i] == pytest.approx(image_metrics(c[0], r[0], m[0], "published")["fmse"])
    paths = analysis.analysis_report([res], tmp_path / "a", weights="tiny", data_root="d")
    md = paths["markdown"].read_text()
    assert "| d(b,f) < d(b,f̃) |" in md and "| all six |" in md and "90.28" in md and "81.36" in md
    payload = json.loads(paths["json"].read_text())
    assert payload["splits"][0]["rates_percent"] == pytest.approx(res.rates)
    assert len(paths["csv"].read_text().splitlines()) == 6
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


def test_background_harmonization_keeps_foreground(tiny):
    # Paper §4.6: G(Ĩ, 1−M, z̃_f) — the background moves, the foreground stays bit-identical.
    model, data = tiny
    item = data[0]
    c, m = item["composite"][None], item["mask"][None]
    with torch.no_grad():
        out = model.harmonize_background(c, m)
    fg = m.expand_as(c) > 0.5
    assert torch.equal(out[fg], c[fg])
    assert not torch.equal(out[~fg], c[~fg])
