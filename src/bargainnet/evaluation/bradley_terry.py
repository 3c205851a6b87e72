"""Bradley–Terry scores from pairwise preferences (user studies such as the paper's Table 3).

Model: item ``i`` beats item ``j`` with probability ``p_i / (p_i + p_j) = sigmoid(t_i - t_j)``,
``t = log p``. The maximum-likelihood strengths are found with the minorise–maximise iteration of
Hunter ("MM algorithms for generalized Bradley–Terry models", Ann. Statist. 2004):
``p_i <- W_i / sum_j n_ij / (p_i + p_j)``, where ``W_i`` counts the wins of ``i`` and ``n_ij``
the comparisons between ``i`` and ``j``. Log-strengths are reported centred (mean 0) with
standard errors from the observed Fisher information (its pseudo-inverse, which is the
covariance under the sum-to-zero constraint).

The maximum-likelihood estimate exists only when the comparison graph is strongly connected
(every item has beaten, through some chain, every other one). Otherwise the fit refuses, unless a
``prior`` is given: each item then also gets ``prior`` virtual wins and ``prior`` virtual losses
against a fixed reference item of strength 1 (a mild shrinkage toward equal strengths).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["BradleyTerryResult", "fit", "read_pairs", "simulate"]


@dataclass
class BradleyTerryResult:
    """A fitted Bradley–Terry model; arrays are indexed like ``items``."""

    items: list[str]
    log_strength: np.ndarray  # (K,) centred: mean 0
    std_error: np.ndarray  # (K,) standard errors of log_strength
    wins: np.ndarray  # (K,) int
    losses: np.ndarray  # (K,) int
    iterations: int
    prior: float
    converged: bool
    covariance: np.ndarray = field(repr=False)  # (K, K)

    @property
    def strength(self) -> np.ndarray:
        """``exp(log_strength)`` normalised to sum 1 (the share of "votes" each item attracts)."""
        p = np.exp(self.log_strength - self.log_strength.max())
        return p / p.sum()

    def win_probability(self, a: str, b: str) -> float:
        """Fitted probability that item ``a`` is preferred to item ``b``."""
        i, j = self.items.index(a), self.items.index(b)
        return float(1.0 / (1.0 + math.exp(self.log_strength[j] - self.log_strength[i])))

    def rows(self) -> list[dict[str, object]]:
        """One dict per item, best first: item, score (BT log-strength), se, 95 % CI, strength, wins, losses."""
        order = np.argsort(-self.log_strength, kind="stable")
        out = []
        for rank, i in enumerate(order, 1):
            t, se = float(self.log_strength[i]), float(self.std_error[i])
            out.append(
                {
                    "rank": rank,
                    "item": self.items[i],
                    "score": t,
                    "se": se,
                    "ci_low": t - 1.96 * se,
                    "ci_high": t + 1.96 * se,
                    "strength": float(self.strength[i]),
                    "wins": int(self.wins[i]),
                    "losses": int(self.losses[i]),
                }
            )
        return out

    def to_markdown(self) -> str:
        lines = [
            "| rank | item | B-T score (log-strength) | s.e. | 95 % CI | strength | wins | losses |",
            "|---:|---|---:|---:|---|---:|---:|---:|",
        ]
        for r in self.rows():
            lines.append(
                f"| {r['rank']} | {r['item']} | {r['score']:.3f} | {r['se']:.3f} | "
                f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['strength']:.3f} | "
                f"{r['wins']} | {r['losses']} |"
            )
        return "\n".join(lines) + "\n"


def _strongly_connected(wins: np.ndarray) -> bool:
    """Whether the directed graph i -> j (i beat j at least once) is strongly connected."""
    k = wins.shape[0]
    adj = wins > 0

    def reach(a: np.ndarray) -> int:
        seen = np.zeros(k, bool)
        seen[0] = True
        frontier = seen.copy()
        while frontier.any():
            nxt = a[frontier].any(axis=0) & ~seen
            seen |= nxt
            frontier = nxt
        return int(seen.sum())

    return reach(adj) == k and reach(adj.T) == k


def fit(
    pairs: Iterable[tuple[str, str]] | Sequence[Sequence[str]],
    prior: float = 0.0,
    max_iter: int = 100_000,
    tol: float = 1e-10,
) -> BradleyTerryResult:
    """Fit Bradley–Terry strengths to ``(winner, loser)`` pairs by minorise–maximise.

    ``pairs``: an iterable of (winner, loser) item names (any hashable printed with ``str``).
    ``prior``: virtual wins and losses of every item against a reference of strength 1
    (0 = plain maximum likelihood, which needs a strongly connected comparison graph).
    Convergence: the largest change of a log-strength below ``tol``.
    """
    pairs = [(str(w), str(l)) for w, l in pairs]
    if not pairs:
        raise InputError("no comparisons given")
    for w, l in pairs:
        if w == l:
            raise InputError(f"a comparison of an item with itself: ({w!r}, {l!r})")
    if prior < 0 or not math.isfinite(prior):
        raise InputError(f"prior must be >= 0, got {prior}")
    items = sorted({x for p in pairs for x in p})
    if len(items) < 2:
        raise InputError("need at least two different items")
    index = {name: i for i, name in enumerate(items)}
    k = len(items)
    w_mat = np.zeros((k, k))  # w_mat[i, j] = times i beat j
    for w, l in pairs:
        w_mat[index[w], index[l]] += 1
    wins = w_mat.sum(1)
    losses = w_mat.sum(0)
    if prior == 0 and not _strongly_connected(w_mat):
        never_lost = [items[i] for i in range(k) if losses[i] == 0]
        never_won = [items[i] for i in range(k) if wins[i] == 0]
        detail = []
        if never_won:
            detail.append(f"never won: {', '.join(never_won[:5])}")
        if never_lost:
            detail.append(f"never lost: {', '.join(never_lost[:5])}")
        raise InputError(
            "the comparisons do not connect every item in both directions"
            + (f" ({'; '.join(detail)})" if detail else "")
            + ", so the maximum-likelihood scores do not exist (they diverge); "
            "give a prior (e.g. prior=0.5 / --prior 0.5) to shrink toward equal strengths"
        )
    n_mat = w_mat + w_mat.T
    p = np.ones(k)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        denom = (n_mat / (p[:, None] + p[None, :])).sum(1)
        numer = wins.copy()
        if prior > 0:  # virtual games against the reference (strength 1)
            denom = denom + 2 * prior / (p + 1.0)
            numer = numer + prior
        new = numer / denom
        if prior == 0:
            new = new / np.exp(np.mean(np.log(new)))  # fix the scale: geometric mean 1
        delta = np.max(np.abs(np.log(new) - np.log(p)))
        p = new
        if delta < tol:
            converged = True
            break
    t = np.log(p)
    # observed information of t: I_ii = sum_j n_ij q_ij, I_ij = -n_ij q_ij, q = p_i p_j/(p_i+p_j)^2
    q = (p[:, None] * p[None, :]) / (p[:, None] + p[None, :]) ** 2
    info = -n_mat * q
    np.fill_diagonal(info, 0.0)
    np.fill_diagonal(info, -info.sum(1))
    centre = np.eye(k) - 1.0 / k
    if prior > 0:
        info = info + np.diag(2 * prior * p / (p + 1.0) ** 2)
        cov = centre @ np.linalg.inv(info) @ centre.T
    else:
        cov = np.linalg.pinv(info, hermitian=True)
    t = t - t.mean()
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    return BradleyTerryResult(
        items=items,
        log_strength=t,
        std_error=se,
        wins=wins.astype(int),
        losses=losses.astype(int),
        iterations=it,
        prior=float(prior),
        converged=converged,
        covariance=cov,
    )


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Read ``(winner, loser)`` rows from a CSV file.

    With a header naming ``winner`` and ``loser`` columns those are used (any other columns are
    ignored; an optional ``count`` column repeats a row); without one, the first two columns are
    winner, loser. Blank lines and lines starting with ``#`` are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"comparisons file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read comparisons file {path}: {err}") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    rows = list(csv.reader(lines))
    if not rows:
        raise InputError(f"{path}: no comparisons")
    header = [c.strip().lower() for c in rows[0]]
    w_col, l_col, c_col = 0, 1, None
    if "winner" in header and "loser" in header:
        w_col, l_col = header.index("winner"), header.index("loser")
        c_col = header.index("count") if "count" in header else None
        rows = rows[1:]
    pairs: list[tuple[str, str]] = []
    for row in rows:
        if len(row) <= max(w_col, l_col):
            raise InputError(f"{path}: row {row!r} needs a winner and a loser column")
        w, l = row[w_col].strip(), row[l_col].strip()
        if not w or not l:
            raise InputError(f"{path}: row {row!r} has an empty winner or loser")
        count = 1
        if c_col is not None:
            try:
                count = int(row[c_col])
            except (ValueError, IndexError):
                raise InputError(f"{path}: row {row!r}: count must be a whole number") from None
            if count < 0:
                raise InputError(f"{path}: row {row!r}: count must be >= 0")
        pairs.extend([(w, l)] * count)
    if not pairs:
        raise InputError(f"{path}: no comparisons")
    return pairs


def simulate(
    log_strength: Sequence[float], n_pairs: int, seed: int = 0, names: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """``n_pairs`` simulated comparisons between random distinct items of known log-strengths."""
    rng = np.random.default_rng(seed)
    t = np.asarray(log_strength, dtype=np.float64)
    k = len(t)
    names = [f"item{i}" for i in range(k)] if names is None else list(names)
    a = rng.integers(0, k, n_pairs)
    b = (a + rng.integers(1, k, n_pairs)) % k  # a different item, uniformly
    a_wins = rng.random(n_pairs) < 1.0 / (1.0 + np.exp(t[b] - t[a]))
    return [(names[i], names[j]) if aw else (names[j], names[i]) for i, j, aw in zip(a, b, a_wins)]
