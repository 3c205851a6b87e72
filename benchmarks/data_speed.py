"""Training-data loading speed: raw iHarmony4-layout files vs the training cache.

Writes a small iHarmony4-layout set of large synthetic photos (default 6 triplets of 4000×3000:
JPEG quality 95 composite and real, PNG mask — the sizes of HAdobe5k), then measures samples/s of
``IHarmony4Dataset`` with the published training augmentation (RandomResizedCrop 256, scale
0.5–1, flip) reading the raw files, builds the cache (``bargainnet data cache``, short side 512)
and measures again. Single process (no DataLoader workers), so the figure is per CPU core.

    python benchmarks/data_speed.py                      # 6 images, 4000x3000
    python benchmarks/data_speed.py --n 4 --json out.json

The photos are procedural (gradients, shapes, smooth and fine noise), so nothing external is
needed; the fine noise gives them a JPEG size close to real photos' (~4-6 MB at quality 95).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, features

from bargainnet.data.cache import build_cache
from bargainnet.data.iharmony4 import IHarmony4Dataset
from bargainnet.data.sources import ellipse_mask
from bargainnet.data.transforms import train_transform


def make_large_set(root: Path, n: int, width: int, height: int, seed: int = 0) -> int:
    """``n`` triplets of ``width``×``height`` in the iHarmony4 layout; returns bytes written."""
    rng = np.random.default_rng(seed)
    sub = root / "Large"
    for d in ("composite_images", "masks", "real_images"):
        (sub / d).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        top, bottom = rng.uniform(0.2, 0.9, 3).astype(np.float32), rng.uniform(0.1, 0.8, 3).astype(np.float32)
        coarse = Image.fromarray(rng.random((12, 16)).astype(np.float32), mode="F").resize((width, height), Image.BICUBIC)
        img = top * (1 - t) + bottom * t + 0.15 * (np.asarray(coarse)[..., None] - 0.5)
        img = img * 255.0 + rng.normal(0, 7.0, (height, width, 3)).astype(np.float32)  # sensor-like noise
        real = np.clip(img, 0, 255).astype(np.uint8)
        del img
        mask = ellipse_mask((height, width), rng, (0.1, 0.4))
        comp = real.copy()
        gain = rng.uniform(0.6, 1.4, 3).astype(np.float32)
        comp[mask] = np.clip(comp[mask].astype(np.float32) * gain, 0, 255).astype(np.uint8)
        stem = f"big{i:03d}"
        Image.fromarray(real).save(sub / "real_images" / f"{stem}.jpg", quality=95)
        Image.fromarray(comp).save(sub / "composite_images" / f"{stem}_1_1.jpg", quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(sub / "masks" / f"{stem}_1.png")
        names.append(f"Large/composite_images/{stem}_1_1.jpg")
    (root / "IHD_train.txt").write_text("".join(x + "\n" for x in names))
    (root / "IHD_test.txt").write_text(names[0] + "\n")
    return sum(p.stat().st_size for p in sub.rglob("*") if p.is_file())


def samples_per_second(ds: IHarmony4Dataset, min_samples: int, min_seconds: float) -> tuple[float, int]:
    ds[0]  # warm the file cache and lazy imports
    count, start = 0, time.perf_counter()
    while count < min_samples or time.perf_counter() - start < min_seconds:
        item = ds[count % len(ds)]
        assert item["composite"].shape[1:] == (256, 256)
        count += 1
    return count / (time.perf_counter() - start), count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=6, help="number of triplets (default 6)")
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--short-side", type=int, default=512, help="cache short side (default 512)")
    parser.add_argument("--root", help="working folder (default: a temporary folder, removed)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp) / "large"
        t0 = time.perf_counter()
        raw_bytes = make_large_set(root, args.n, args.width, args.height)
        t_make = time.perf_counter() - t0
        tf = train_transform(256, scale=(0.5, 1.0))
        raw = IHarmony4Dataset(root, "train", transform=tf, cache=None)
        raw_sps, raw_n = samples_per_second(raw, 2 * args.n, 5.0)
        t0 = time.perf_counter()
        build_cache(root, short_side=args.short_side, progress=False)
        t_cache = time.perf_counter() - t0
        cache_bytes = sum(p.stat().st_size for p in (root / "bargainnet_cache").rglob("*") if p.is_file())
        cached = IHarmony4Dataset(root, "train", transform=tf)
        assert cached.cache is not None
        cached_sps, cached_n = samples_per_second(cached, 20 * args.n, 5.0)
    result = {
        "images": f"{args.n} triplets of {args.width}x{args.height} (JPEG q95 composite + real, PNG mask)",
        "raw_mb": round(raw_bytes / 1e6, 1),
        "cache_mb": round(cache_bytes / 1e6, 2),
        "cache_short_side": args.short_side,
        "make_s": round(t_make, 1),
        "cache_build_s": round(t_cache, 2),
        "cache_build_s_per_item": round(t_cache / args.n, 3),
        "raw_samples_per_s": round(raw_sps, 2),
        "raw_samples_timed": raw_n,
        "cached_samples_per_s": round(cached_sps, 1),
        "cached_samples_timed": cached_n,
        "speedup": round(cached_sps / raw_sps, 1),
        "transform": repr(tf),
        "machine": {
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pillow": Image.__version__,
            "libjpeg_turbo": bool(features.check_feature("libjpeg_turbo")),
            "threads": 1,
        },
        "command": "python benchmarks/data_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
