"""The features a learned strength head reads (:mod:`bargainnet.models.strength_head`).

Everything is measured at the working size, on the composite, its mask and the network's output
there (float (S, S, 3) in [0, 1], bool (S, S)). The feature vector, for a model whose domain code
has L numbers (``feature_count(L)`` = 56 + 3L; 104 for the bundled default's L = 16):

- 0–53, colour statistics: mean and spread in RGB and in Lab / 100 (12 numbers each) of the
  foreground, the background, a ring of 6 pixels around the foreground (the background when there
  is none) and the network's output on the foreground; then the mean and spread (RGB) of the
  network's change on the foreground;
- 54 … 54 + 3L − 1, the extractor's codes at the working size: z_b of the background, z̃_f of the
  composite's foreground, ẑ_f of the output's foreground;
- 54 + 3L, the foreground's share of the image;
- 55 + 3L, the strength ``"auto"`` measures (:mod:`bargainnet.inference.calibration`).

The codes and the measured strength cost an extractor call and a network call; they are computed
only when the head reads them (:func:`needs`).
"""

from __future__ import annotations

import numpy as np

from ..models.strength_head import STATS, feature_count

RING = 6  # pixels around the foreground whose colours are the "ring"


def needs(columns, code_length: int) -> tuple[bool, bool]:
    """Whether a head reading ``columns`` needs the codes, and the measured strength."""
    columns = set(columns)
    measured = feature_count(code_length) - 1
    return any(STATS <= c < STATS + 3 * code_length for c in columns), measured in columns


def colour_stats(x: np.ndarray) -> np.ndarray:
    """Mean and spread of colours (N, 3) in [0, 1], in RGB and in Lab / 100 (12 numbers)."""
    from skimage.color import rgb2lab

    lab = rgb2lab(x[None].astype(np.float64))[0] / 100.0
    return np.concatenate([x.mean(0), x.std(0), lab.mean(0), lab.std(0)])


def ring(mask: np.ndarray) -> np.ndarray:
    """The background pixels within :data:`RING` steps (4-connected) of the foreground."""
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=RING) & ~mask


def features(composite: np.ndarray, mask: np.ndarray, output: np.ndarray, code_length: int, *,
             codes: np.ndarray | None = None, measured: float | None = None) -> np.ndarray:
    """The feature vector (float32, ``feature_count(code_length)``) of one image; ``codes``
    (z_b, z̃_f, ẑ_f concatenated, 3L numbers) and ``measured`` are left at 0 when not given."""
    c, m, o = (np.asarray(x) for x in (composite, mask, output))
    around = ring(m)
    f = np.zeros(feature_count(code_length), np.float64)
    f[:STATS] = np.concatenate([
        colour_stats(c[m]), colour_stats(c[~m]), colour_stats(c[around] if around.any() else c[~m]),
        colour_stats(o[m]), (o[m] - c[m]).mean(0), (o[m] - c[m]).std(0),
    ])
    if codes is not None:
        f[STATS : STATS + 3 * code_length] = np.asarray(codes, np.float64).ravel()
    f[-2] = m.mean()
    if measured is not None:
        f[-1] = measured
    return f.astype(np.float32)
