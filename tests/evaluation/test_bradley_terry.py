"""Bradley–Terry fit: recovery of known strengths, hand-computed two-item case, an independent
maximum-likelihood reference (scipy.optimize), and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import spearmanr

from bargainnet.evaluation import bradley_terry as bt
from bargainnet.errors import InputError


def test_recovers_known_ranking_from_2000_pairs():
    truth = np.linspace(-1.5, 1.5, 10)
    names = [f"m{i}" for i in range(10)]
    res = bt.fit(bt.simulate(truth, 2000, seed=1, names=names))
    est = np.array([res.log_strength[res.items.index(n)] for n in names])
    rho = spearmanr(est, truth).statistic
    assert rho >= 0.9
    assert res.converged
    # standard errors are honest: most true (centred) values lie inside the 95 % intervals
    se = np.array([res.std_error[res.items.index(n)] for n in names])
    inside = np.abs(est - (truth - truth.mean())) < 1.96 * se
    assert inside.sum() >= 8


def test_two_items_closed_form():
    # a beats b 30 times out of 40: t_a - t_b = log(30/10); var(t_a - t_b) = 1/(n p (1-p))
    pairs = [("a", "b")] * 30 + [("b", "a")] * 10
    res = bt.fit(pairs)
    assert res.log_strength[0] - res.log_strength[1] == pytest.approx(math.log(3), abs=1e-8)
    se_diff = 1 / math.sqrt(40 * 0.75 * 0.25)
    assert res.std_error[0] == pytest.approx(se_diff / 2, rel=1e-6)  # centred: t_a = diff / 2
    assert res.win_probability("a", "b") == pytest.approx(0.75, abs=1e-8)
    assert res.rows()[0]["item"] == "a" and res.rows()[0]["wins"] == 30


def test_matches_direct_likelihood_maximisation():
    truth = np.array([0.0, 0.4, -0.8, 1.2, 0.3])
    pairs = bt.simulate(truth, 300, seed=3)
    res = bt.fit(pairs)
    idx = {n: i for i, n in enumerate(res.items)}
    w = np.array([idx[a] for a, _ in pairs])
    l = np.array([idx[b] for _, b in pairs])

    def nll(t):
        t = np.concatenate([[0.0], t])
        return np.sum(np.logaddexp(0, t[l] - t[w]))

    opt = minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-10})
    t = np.concatenate([[0.0], opt.x])
    np.testing.assert_allclose(res.log_strength, t - t.mean(), atol=1e-5)


def test_disconnected_needs_prior():
    pairs = [("a", "b"), ("a", "c"), ("b", "c"), ("c", "b")]  # a never loses
    with pytest.raises(InputError, match="never lost: a"):
        bt.fit(pairs)
    res = bt.fit(pairs, prior=0.5)
    assert res.rows()[0]["item"] == "a"
    assert np.isfinite(res.std_error).all()


def test_read_pairs(tmp_path):
    p = tmp_path / "pairs.csv"
    p.write_text("user,winner,loser,count\nu1,ours,dovenet,3\n# a comment\n\nu2,dovenet,ours,1\n")
    assert bt.read_pairs(p) == [("ours", "dovenet")] * 3 + [("dovenet", "ours")]
    q = tmp_path / "plain.csv"
    q.write_text("x,y\ny,x\n")
    assert bt.read_pairs(q) == [("x", "y"), ("y", "x")]
    with pytest.raises(InputError, match="not found"):
        bt.read_pairs(tmp_path / "missing.csv")
    r = tmp_path / "bad.csv"
    r.write_text("x\n")
    with pytest.raises(InputError, match="winner and a loser"):
        bt.read_pairs(r)
    with pytest.raises(InputError, match="itself"):
        bt.fit([("a", "a")])
