"""Pack synth_v2's training photos into one compact folder that can travel to a machine without
``../shared`` (the lent GPU machine takes at most 64 MiB with the working tree), for
``benchmarks/gpu_train.sh``. The tracked files travel too (about 35 MiB, mostly the benchmark's
judge model), so the pack has to stay under about 28 MiB; the script says whether it fits.

It selects exactly the photos that ``bargainnet train --stream-images`` draws from with synth_v2's
options (``docs/data.md``, "Fresh composites on the fly": ``holdout=true reserve_test=true``, the
three registry collections, the even-hash half of the Tux Paint stamps) — so no photo of a test
split or of the held-out benchmark is packed — and writes them so that a stream over the pack with
``holdout=false`` and no ``cutout_half`` draws from the same photos:

- ``images/<stem>.webp`` + ``masks/<stem>.png``: the Lalonde–Efros training photos, re-encoded
  as WebP at ``--quality`` (the only lossy step: at 80, 3.0 levels mean absolute difference from
  the stored JPEGs, 20 MiB for the 1,614 photos where JPEG needs 24 MiB for 3.8 levels), and their
  object masks (1-bit PNG);
- ``photos/<collection>/<stem>.webp``: the registry photos, long side at most 1,024 px (what the
  stream reads them at, ``max_side``), the same quality;
- ``cutouts/<n>.png``: the kept stamps' alpha channels only (LA PNG, long side at most 256 px,
  which is all the stream uses of them);
- ``PACK.json``: counts, bytes and the options used.

    python benchmarks/gpu_pack.py --lalonde ../shared/data/lalonde-efros-2007 \
        --photos data_local/train_photos --out data_local/gpu_pack
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bargainnet.data.sources import list_cutouts, read_mask, read_rgb
from bargainnet.data.synthesis import CompositeStream

COLLECTIONS = ("opencv-doc", "mate-backgrounds", "lomiri-wallpapers-16.04")
STAMPS = "tuxpaint-stamps-default"
CARRY_LIMIT = 64 * 2**20


def training_photos(lalonde: Path, photos: Path) -> CompositeStream:
    """The stream of synth_v2's training distribution (its ``photos`` are the packed ones)."""
    return CompositeStream(
        lalonde / "real_images", lalonde / "real_masks",
        photo_dirs=[photos / c for c in COLLECTIONS], cutouts=photos / STAMPS, cutout_half="even",
        holdout=True, reserve_test=True,
    )


def pack(lalonde: Path, photos: Path, out: Path, quality: int = 80, max_side: int = 1024) -> dict:
    stream = training_photos(lalonde, photos)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"gpu_pack: {out} is not empty; remove it or choose another --out")
    for sub in ("images", "masks", "cutouts"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {"lalonde": 0}
    for i, photo in enumerate(stream.photos):
        image = read_rgb(photo.path, max_side)
        if i < stream.n_first:
            Image.fromarray(image).save(out / "images" / f"{photo.stem}.webp", quality=quality, method=6)
            mask = read_mask(photo.mask_path, (image.shape[1], image.shape[0]))
            Image.fromarray(mask).save(out / "masks" / f"{photo.stem}.png", optimize=True)
            counts["lalonde"] += 1
        else:
            collection = photo.path.parent.name
            (out / "photos" / collection).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(out / "photos" / collection / f"{photo.path.stem}.webp", quality=quality, method=6)
            counts[collection] = counts.get(collection, 0) + 1
    alphas = list_cutouts(photos / STAMPS, half="even")
    for k, alpha in enumerate(alphas):
        la = np.stack([np.zeros_like(alpha), alpha], axis=-1)
        Image.fromarray(la, mode="LA").save(out / "cutouts" / f"{k:04d}.png", optimize=True)
    counts["cutouts"] = len(alphas)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    info = {
        "counts": counts, "bytes": size, "quality": quality, "max_side": max_side,
        "lalonde": str(lalonde), "photos": str(photos), "collections": list(COLLECTIONS),
        "stream": "holdout=true reserve_test=true cutout_half=even (synth_v2's training photos)",
    }
    (out / "PACK.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def tracked_bytes() -> int:
    """Bytes of the repository's tracked files (they travel with every device call)."""
    repo = Path(__file__).resolve().parents[1]
    names = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    return sum((repo / n).stat().st_size for n in names.decode().split("\0") if n and (repo / n).is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lalonde", type=Path, required=True, help="the Lalonde–Efros folder (real_images/, real_masks/)")
    ap.add_argument("--photos", type=Path, required=True, help="python -m bargainnet.data.photos fetch's folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quality", type=int, default=80, help="WebP quality of the re-encoded photos")
    args = ap.parse_args(argv)
    info = pack(args.lalonde, args.photos, args.out, args.quality)
    tracked = tracked_bytes()
    mib, total = info["bytes"] / 2**20, (info["bytes"] + tracked) / 2**20
    print(json.dumps(info["counts"]), f"pack {mib:.1f} MiB, with the tracked files {total:.1f} MiB", file=sys.stderr)
    if info["bytes"] + tracked > CARRY_LIMIT:
        print("gpu_pack: over the 64 MiB a device call carries; lower --quality", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
