"""Full-resolution lifting vs plain upsampling, with an oracle low-resolution harmonization.

What it isolates: how well the colour change made at the working size (256x256) is carried to
the full-resolution foreground. For each high-resolution photo (>= 1024 px) an object-like mask is
drawn (``bargainnet.data.sources.object_mask``) and the object is perturbed by the data
synthesizer's families (``bargainnet.data.perturb``: retouch, illumination, transfer), giving a
composite whose ground truth is the photo. The "network output" is the *real* image at 256x256
(an oracle harmonization), composited over the low-res composite with the low-res mask; optionally
with Gaussian noise (``--noise``) to mimic an imperfect network. Two full-resolution results are
compared with the real photo inside the foreground (PSNR, peak 1):

* upsample: the low-res output upsampled bilinearly, pasted with the full-res mask;
* lift: ``bargainnet.inference.lifting.lift`` (local affine colour transform), pasted with the full-res mask.

Photos: ``--photos DIR`` (every .jpg/.png of at least 1024 px on its long side). The figures in
docs/benchmarks.md use the 12 photos of Debian's ``mate-backgrounds`` package::

    apt-get download mate-backgrounds && dpkg -x mate-backgrounds_*.deb /tmp/mate
    python benchmarks/lifting_quality.py --photos /tmp/mate/usr/share/backgrounds/mate/nature

Without ``--photos`` it uses /usr/share/backgrounds/mate/nature when present, else scikit-image's
photos upscaled x2 (which have little detail at that size: a weaker test).
``--scan`` also sweeps the lifting radius and eps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bargainnet import lifting
from bargainnet.data import perturb
from bargainnet.data.sources import object_mask

SIZE = 256


def load_photos(folder: Path | None, min_side: int = 1024) -> tuple[list[tuple[str, np.ndarray]], str]:
    if folder is None and Path("/usr/share/backgrounds/mate/nature").is_dir():
        folder = Path("/usr/share/backgrounds/mate/nature")
    if folder is not None:
        photos = []
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                image = Image.open(path).convert("RGB")
                if max(image.size) >= min_side:
                    photos.append((path.name, np.asarray(image)))
        return photos, str(folder)
    from skimage import data

    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        image = Image.fromarray(getattr(data, name)())
        scale = int(np.ceil(min_side / max(image.size)))
        photos.append((name, np.asarray(image.resize((image.width * scale, image.height * scale), Image.LANCZOS))))
    return photos, "scikit-image photos upscaled (LANCZOS) to >= 1024 px"


def psnr(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    mse = float(np.mean((x[mask].astype(np.float64) - y[mask]) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def make_cases(photos, seed: int):
    """(name, family, real float, composite float, mask bool) for each photo and family."""
    rng = np.random.default_rng(seed)
    cases = []
    for i, (name, image) in enumerate(photos):
        real = image.astype(np.float32) / 255
        mask = object_mask(image, rng, ratio=(0.1, 0.4))
        for family in perturb.FAMILIES:
            if family == "transfer":
                ref = photos[(i + 1) % len(photos)][1]
                small = np.asarray(Image.fromarray(ref).resize((256, 256), Image.BILINEAR)).astype(np.float32) / 255
                composite, _ = perturb.transfer(real, mask, rng, small)
            else:
                composite, _ = getattr(perturb, family)(real, mask, rng)
            cases.append((name, family, real, composite.astype(np.float32), mask))
    return cases


def evaluate(case, noise: float, rng, radius: int, eps: float, with_upsample: bool = True):
    name, family, real, composite, mask = case
    h, w = mask.shape
    comp_low = np.clip(lifting.resize_float(composite, (SIZE, SIZE)), 0, 1)
    real_low = np.clip(lifting.resize_float(real, (SIZE, SIZE)), 0, 1)
    cover = np.clip(lifting.resize_float(mask.astype(np.float32), (SIZE, SIZE), Image.BOX), 0, 1)
    mask_low = cover >= 0.5
    target = real_low + (rng.normal(0, noise, real_low.shape).astype(np.float32) if noise else 0)
    out_low = np.where(mask_low[..., None], np.clip(target, 0, 1), comp_low)
    t0 = time.perf_counter()
    lifted = lifting.lift(comp_low, out_low, np.where(mask_low, cover, 0), composite, radius=radius, eps=eps)
    lifted = lifting.composite_foreground(lifted, composite, mask)
    seconds = time.perf_counter() - t0
    row = {"photo": name, "family": family, "size": f"{w}x{h}", "fg": float(mask.mean()),
           "composite": psnr(composite, real, mask), "lift": psnr(lifted, real, mask), "seconds": seconds}
    if with_upsample:
        up = lifting.composite_foreground(lifting.upsample(out_low, (w, h)), composite, mask)
        row["upsample"] = psnr(up, real, mask)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, nargs="*", default=[0.0, 0.02],
                        help="std of Gaussian noise added to the oracle output (one run each)")
    parser.add_argument("--radius", type=int, default=lifting.DEFAULT_RADIUS)
    parser.add_argument("--eps", type=float, default=lifting.DEFAULT_EPS)
    parser.add_argument("--scan", action="store_true", help="also sweep radius x eps (on the first 4 photos)")
    args = parser.parse_args(argv)

    photos, source = load_photos(args.photos)
    if not photos:
        print(f"no photos >= 1024 px found in {source}", file=sys.stderr)
        return 1
    cases = make_cases(photos, args.seed)
    sizes = sorted({f"{p.shape[1]}x{p.shape[0]}" for _, p in photos})
    print(f"photos: {len(photos)} from {source} ({', '.join(sizes)}); {len(cases)} composites; working size {SIZE}")
    print(f"lifting radius {args.radius}, eps {args.eps:g}\n")
    for noise in args.noise:
        rng = np.random.default_rng(args.seed + 1)
        rows = [evaluate(c, noise, rng, args.radius, args.eps) for c in cases]
        print(f"### Oracle output{'' if not noise else f' + Gaussian noise σ={noise:g}'}\n")
        print("| family | n | composite PSNR | upsample PSNR | lift PSNR | lift − upsample | lift wins |")
        print("|---|---|---|---|---|---|---|")
        for family in list(perturb.FAMILIES) + ["all"]:
            sel = [r for r in rows if family in ("all", r["family"])]
            c, u, li = (np.mean([r[k] for r in sel]) for k in ("composite", "upsample", "lift"))
            wins = sum(r["lift"] > r["upsample"] for r in sel)
            print(f"| {family} | {len(sel)} | {c:.2f} | {u:.2f} | {li:.2f} | {li - u:+.2f} dB | {wins}/{len(sel)} |")
        worst = min(rows, key=lambda r: r["lift"] - r["upsample"])
        print(f"\nsmallest gain: {worst['photo']} / {worst['family']} {worst['lift'] - worst['upsample']:+.2f} dB; "
              f"lifting time per image {np.mean([r['seconds'] for r in rows]):.2f} s (mean)\n")
    if args.scan:
        sub = [c for c in cases if c[0] in {n for n, _ in photos[:4]}]
        print("### Radius x eps (mean lift PSNR over the first 4 photos' composites; oracle / oracle + noise 0.02)\n")
        print("| radius | eps | oracle | + noise 0.02 |")
        print("|---|---|---|---|")
        for radius in (2, 4, 8):
            for eps in (1e-4, 1e-3, 1e-2):
                vals = []
                for noise in (0.0, 0.02):
                    rng = np.random.default_rng(args.seed + 1)
                    vals.append(np.mean([evaluate(c, noise, rng, radius, eps, False)["lift"] for c in sub]))
                print(f"| {radius} | {eps:g} | {vals[0]:.2f} | {vals[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
