"""Flicker of the colour change on clips: frames harmonized one by one (the weights file's
strength, e.g. measured per frame) against ``--sequence`` (one strength for the clip,
``Harmonizer.clip_strength``) and a fixed strength.

Each clip is made from one photo of a collection the bundled default never trained on
(scikit-image's and scikit-learn's bundled photos, the held-out benchmark's evaluation photos):
T frames of a window panning across it, an ellipse (the object) moving and growing across the
window, its inside changed by one perturbation drawn once for the clip (``camera``, ``retouch`` or
``illumination`` at strength 0.7, the same parameters in every frame), and sensor noise (σ = 2
levels) drawn anew for every frame, in the real frame and the composite alike.

Flicker = the mean over consecutive frames of ‖c_t − c_{t−1}‖ (8-bit levels), c_t the mean colour
change (output − composite) over the object in frame t; the same for the needed change (real −
composite) is the clip's own. Also the object's MSE against the real frames (× the composites').

    python benchmarks/sequence_flicker.py -o outputs/flicker [--weights W] [--frames 24] [--clips 3]

Writes ``results.md``, ``per_clip.csv`` and ``clip.png`` (one clip's mean change per frame and
channel, per mode).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

FAMILIES = ("camera", "retouch", "illumination")


def evaluation_photos() -> dict[str, np.ndarray]:
    from skimage import data

    photos = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")}
    try:
        from sklearn.datasets import load_sample_image

        photos.update({name: load_sample_image(f"{name}.jpg") for name in ("china", "flower")})
    except ImportError:
        print("scikit-learn not installed: china/flower left out", file=sys.stderr)
    return photos


def make_clip(photo: np.ndarray, family: str, seed: int, frames: int, size=(240, 320)):
    """``frames`` (real, composite, mask) triplets of ``size`` (H, W), uint8 / bool."""
    from bargainnet.data import perturb

    rng = np.random.default_rng(seed)
    h, w = size
    big_h, big_w = photo.shape[:2]
    if big_h < h + 40 or big_w < w + 40:
        from PIL import Image

        s = max((h + 40) / big_h, (w + 40) / big_w)
        photo = np.asarray(Image.fromarray(photo).resize((round(big_w * s) + 1, round(big_h * s) + 1), Image.LANCZOS))
        big_h, big_w = photo.shape[:2]
    y0, x0 = rng.integers(0, big_h - h - 20), rng.integers(0, big_w - w - 20)
    dy, dx = rng.uniform(-1, 1, 2) * 20 / max(frames - 1, 1)
    cy0, cx0 = rng.uniform(0.35, 0.65) * h, rng.uniform(0.3, 0.45) * w
    yy, xx = np.mgrid[0:h, 0:w]
    pert_seed = int(rng.integers(2**31))
    clip = []
    for t in range(frames):
        top = int(np.clip(round(y0 + 10 + dy * t), 0, big_h - h))
        left = int(np.clip(round(x0 + 10 + dx * t), 0, big_w - w))
        real = photo[top : top + h, left : left + w].astype(np.float64)
        real = np.clip(np.round(real + rng.normal(0, 2.0, real.shape)), 0, 255).astype(np.uint8)
        grow = 1 + 0.2 * t / max(frames - 1, 1)
        mask = ((yy - cy0) / (0.22 * h * grow)) ** 2 + ((xx - cx0 - 0.3 * w * t / max(frames - 1, 1)) / (0.15 * w * grow)) ** 2 < 1
        fn = getattr(perturb, family)
        composite, _ = fn(real / 255.0, mask, np.random.default_rng(pert_seed), strength=0.7)
        clip.append((real, np.clip(np.round(composite * 255.0), 0, 255).astype(np.uint8), mask))
    return clip


def mean_changes(outputs, clip) -> np.ndarray:
    """(T, 3) mean colour change over the object, output − composite."""
    return np.stack([(np.asarray(o, np.float64)[m] - c.astype(np.float64)[m]).mean(0) for o, (_, c, m) in zip(outputs, clip)])


def flicker(changes: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(changes, axis=0), axis=1).mean())


def object_mse(outputs, clip) -> float:
    return float(np.mean([((np.asarray(o, np.float64)[m] - r.astype(np.float64)[m]) ** 2).mean() for o, (r, _, m) in zip(outputs, clip)]))


def run_modes(harmonizer, clip, fixed: float):
    pairs = [(c, m) for _, c, m in clip]
    out = {}
    per_frame = [o.result for o in harmonizer.iter_batch(pairs)]
    out["per frame"] = ([r.image for r in per_frame], [r.strength for r in per_frame])
    s, _ = harmonizer.clip_strength(pairs)
    out["--sequence"] = ([o.result.image for o in harmonizer.iter_batch(pairs, strength=s)], [s] * len(pairs))
    out[f"fixed {fixed:g}"] = ([o.result.image for o in harmonizer.iter_batch(pairs, strength=fixed)], [fixed] * len(pairs))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--weights", default=None, help="weights file (default: the bundled default)")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--clips", type=int, default=3, help="clips per photo (the families in turn)")
    ap.add_argument("--fixed", type=float, default=0.7, help="the fixed strength compared")
    args = ap.parse_args(argv)

    import torch
    from tqdm import tqdm

    from bargainnet.inference import Harmonizer

    torch.set_num_threads(1)
    harmonizer = Harmonizer.from_pretrained(args.weights)
    photos = evaluation_photos()
    rows, example = [], None
    jobs = [(name, k) for name in photos for k in range(args.clips)]
    for name, k in tqdm(jobs, desc="clips", file=sys.stderr):
        family = FAMILIES[k % len(FAMILIES)]
        clip = make_clip(photos[name], family, seed=1000 * k + sum(map(ord, name)), frames=args.frames)
        needed = np.stack([(r.astype(np.float64)[m] - c.astype(np.float64)[m]).mean(0) for r, c, m in clip])
        base = object_mse([c for _, c, _ in clip], clip)
        modes = run_modes(harmonizer, clip, args.fixed)
        row = {"photo": name, "family": family, "needed flicker": flicker(needed), "input object MSE": base}
        for mode, (images, strengths) in modes.items():
            row[f"{mode} flicker"] = flicker(mean_changes(images, clip))
            row[f"{mode} MSE x input"] = object_mse(images, clip) / base
            row[f"{mode} strength range"] = float(np.ptp(strengths))
        rows.append(row)
        if example is None or row["per frame strength range"] > example[0]["per frame strength range"]:
            example = (row, needed, {m: mean_changes(i, clip) for m, (i, _) in modes.items()})
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "per_clip.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    modes = [k[: -len(" flicker")] for k in rows[0] if k.endswith(" flicker") and k != "needed flicker"]
    lines = [
        f"# Flicker on {len(rows)} clips of {args.frames} frames ({harmonizer.describe()})", "",
        "Mean over clips; flicker in 8-bit levels (the needed change's own: "
        f"{np.mean([r['needed flicker'] for r in rows]):.2f}).", "",
        "| mode | flicker | clips with less / more flicker than per frame | object MSE × input | strength range within a clip (mean) |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in modes:
        less = sum(r[f"{mode} flicker"] < r["per frame flicker"] - 1e-6 for r in rows)
        more = sum(r[f"{mode} flicker"] > r["per frame flicker"] + 1e-6 for r in rows)
        lines.append(f"| {mode} | {np.mean([r[f'{mode} flicker'] for r in rows]):.2f} | {less} / {more} of {len(rows)} | "
                     f"{np.mean([r[f'{mode} MSE x input'] for r in rows]):.3f} | "
                     f"{np.mean([r[f'{mode} strength range'] for r in rows]):.2f} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(example, args.out / "clip.png")
    return 0


def _plot(example, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row, needed, changes = example
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
    for c, (ax, channel) in enumerate(zip(axes, "RGB")):
        ax.plot(needed[:, c], "k--", label="needed (real − composite)")
        for mode, ch in changes.items():
            ax.plot(ch[:, c], label=mode)
        ax.set_title(f"{channel}: mean change over the object")
        ax.set_xlabel("frame")
    axes[0].set_ylabel("8-bit levels")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{row['photo']}, {row['family']}: the clip whose per-frame strengths spread most", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
