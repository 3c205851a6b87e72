"""``bargainnet data``: check an iHarmony4-layout root, or build its training cache."""

from __future__ import annotations

import argparse

HELP = "check an iHarmony4-layout dataset (data check ROOT) or build its training cache (data cache ROOT)"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("cache", help="store each triplet once, downscaled, for fast training loading",
                       description="Write <ROOT>/bargainnet_cache (or --out): the listed triplets with their short "
                       "side at most --short-side, JPEG q95 4:4:4 + PNG masks, and index.json. The dataset reader "
                       "uses it automatically. Re-running adds missing items.")
    c.add_argument("root", help="dataset root (iHarmony4 layout)")
    c.add_argument("--out", help="cache folder (default ROOT/bargainnet_cache; pass cache=OUT to the dataset)")
    c.add_argument("--short-side", type=int, default=512, help="short side of the cached images in px (default 512)")
    c.add_argument("--split", choices=["train", "test", "all"], default="train",
                   help="which split to cache (default train: evaluation resizes the originals)")
    c.add_argument("--subsets", help="comma-separated sub-datasets (default all)")
    c.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    c.add_argument("--workers", type=int, default=1, help="decoding threads (default 1)")
    c.add_argument("--skip-bad", action="store_true", help="skip bad items instead of stopping")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    k = sub.add_parser("check", help="check a root: list files, missing files, sizes, empty masks",
                       description="Open each split like the dataset reader does (full check) and report.")
    k.add_argument("root", help="dataset root (iHarmony4 layout)")
    k.add_argument("--split", choices=["train", "test", "all"], default="all")
    k.add_argument("--subsets", help="comma-separated sub-datasets (default all)")
    k.add_argument("--level", choices=["full", "sizes", "files"], default="full", help="how deep to check (default full)")


def _subsets(text):
    return None if not text else [s.strip() for s in text.split(",") if s.strip()]


def run(args: argparse.Namespace) -> int:
    from ..errors import EXIT_BAD_INPUT, InputError

    splits = ("train", "test") if args.split == "all" else (args.split,)
    if args.action == "cache":
        from ..data.cache import build_cache

        result = build_cache(args.root, args.out, args.short_side, splits, _subsets(args.subsets),
                             args.quality, args.workers, args.skip_bad, not args.quiet)
        print(f"cache {result['cache']}: {result['items']} items (short side {result['short_side']} px), "
              f"{result['added']} added, {len(result['skipped'])} skipped")
        for name, why in result["skipped"][:10]:
            print(f"  skipped {name}: {why}")
        return 0

    import warnings

    from ..data.iharmony4 import IHarmony4Dataset

    status = 0
    for split in splits:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = IHarmony4Dataset(args.root, split, _subsets(args.subsets), check=args.level, skip_bad=True)
        except InputError as err:
            print(f"{split}: {err}")
            status = EXIT_BAD_INPUT
            continue
        counts = {s: len(v) for s, v in ds.subset_indices().items()}
        cache = f"; cache {ds.cache.path} ({len(ds.cache.items)} items)" if ds.cache is not None else ""
        print(f"{split}: {len(ds)} usable items {counts}{cache}")
        if ds.skipped:
            status = EXIT_BAD_INPUT
            kinds: dict[str, list[str]] = {}
            for name, kind in ds.skipped:
                kinds.setdefault(kind, []).append(name)
            for kind, names in kinds.items():
                print(f"  {len(names)} {kind}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}")
    return status
