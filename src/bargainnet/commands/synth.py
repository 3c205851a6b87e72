"""``bargainnet synth``: an iHarmony4-layout dataset of synthetic composites from any photos."""

from __future__ import annotations

import argparse

from .common import comma_pair

HELP = "make an iHarmony4-layout harmonization dataset from photos (with or without masks)"

EPILOG = """examples:
  bargainnet synth --out data_local/lalonde_synth \\
      --images ../shared/data/lalonde-efros-2007/real_images \\
      --masks ../shared/data/lalonde-efros-2007/real_masks --per-mask 2 --preview 12
  bargainnet synth --out data_local/my_synth --images my_photos/            # masks from segments
  bargainnet synth --out data_local/cutout_synth --images photos/ --cutouts stamps/   # alpha shapes
  # the training set synth_v2 (docs/data.md): Lalonde-Efros photos without the benchmark's test
  # photos, the registry photos and the even half of the Tux Paint stamps
  bargainnet synth --out /work/data_local/synth_v2 \
      --images ../shared/data/lalonde-efros-2007/real_images \
      --masks ../shared/data/lalonde-efros-2007/real_masks --reserve-test --val-fraction 0.05 \
      --photos /work/data_local/train_photos/opencv-doc --photos /work/data_local/train_photos/mate-backgrounds \
      --cutouts /work/data_local/train_photos/tuxpaint-stamps-default --cutout-half even \
      --photos /work/data_local/train_photos/lomiri-wallpapers-16.04 \
      --masks-per-image 5 --photo-masks-per-image 30 --test-masks-per-image 2 --per-mask 2 \
      --short-side 256 --preview 24
"""


_pair = comma_pair(float, "MIN,MAX")


def _mix(text: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(",") if part.strip())}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KIND=WEIGHT,..., got {text!r}") from None


def configure(parser: argparse.ArgumentParser) -> None:
    from ..data.perturb import FAMILIES

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--out", required=True, help="output dataset folder (must be empty or new)")
    parser.add_argument("--images", help="folder of photos (with --masks: their object masks)")
    parser.add_argument("--masks", help="folder of object masks with the photos' stems (0/255; > 127 = object)")
    parser.add_argument("--photos", action="append", default=[], metavar="DIR",
                        help="another folder of photos without masks (repeatable)")
    parser.add_argument("--cutouts", help="folder of RGBA cut-outs whose alpha shapes become 'silhouette' masks")
    parser.add_argument("--cutout-half", choices=("even", "odd"),
                        help="only the cut-outs whose relative path's CRC-32 is even/odd (Tux Paint stamps: even)")
    parser.add_argument("--preset", choices=("v1",),
                        help="v1: the synthesizer up to commit f9f7322 (three families at fixed strength, fMSE floor "
                        "100, object masks only, reals copied); it sets --families, --identity-fraction, "
                        "--object-mask-prob and --min-fmse, and rebuilds a set made then byte for byte")
    parser.add_argument("--identity-fraction", type=float, default=0.15,
                        help="share of unchanged samples (composite == real; sub-dataset 'identity'; default 0.15)")
    parser.add_argument("--mask-mix", type=_mix, default=None, metavar="KIND=W,...",
                        help="weights of the generated mask kinds (default segment=0.4,shape=0.25,silhouette=0.35; "
                        "silhouette needs --cutouts)")
    parser.add_argument("--object-mask-prob", type=float, default=0.5,
                        help="probability that a photo with an object mask uses it for a mask (default 0.5)")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma-separated perturbation families = sub-datasets (default {','.join(FAMILIES)})")
    parser.add_argument("--per-mask", type=int, default=1, help="composites per photo and mask (default 1)")
    parser.add_argument("--masks-per-image", type=int, default=1,
                        help="masks per photo of --images (default 1)")
    parser.add_argument("--photo-masks-per-image", type=int,
                        help="masks per photo of the --photos folders (default: --masks-per-image)")
    parser.add_argument("--test-masks-per-image", type=int,
                        help="masks per test photo, all sources (default: as for train photos)")
    parser.add_argument("--test-fraction", type=float, default=0.15,
                        help="share of the photos held out for the test split (default 0.15)")
    parser.add_argument("--test-photos", type=int, help="number of test photos of --images (overrides --test-fraction)")
    parser.add_argument("--reserve-test", action="store_true",
                        help="use the test photos of --images nowhere (a benchmark evaluates on them); the test "
                        "split takes --val-fraction of its train photos instead")
    parser.add_argument("--val-fraction", type=float, default=0.05,
                        help="with --reserve-test: share of the train photos of --images for the test split (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the output is deterministic in it (default 0)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of composites, 95-100 (default 95)")
    parser.add_argument("--max-side", type=int, help="downscale photos whose long side exceeds this (default: keep)")
    parser.add_argument("--short-side", type=int, help="downscale photos whose short side exceeds this (default: keep)")
    parser.add_argument("--mask-ratio", type=_pair, default=(0.05, 0.6),
                        help="object area range of generated masks, MIN,MAX (default 0.05,0.6)")
    parser.add_argument("--min-fmse", type=float, default=0.0,
                        help="redraw composites whose foreground MSE ([0,255]) is below this (default 0: no floor)")
    parser.add_argument("--max-fmse", type=float, default=8000.0,
                        help="redraw composites whose foreground MSE is above this (default 8000)")
    parser.add_argument("--max-tries", type=int, default=10, help="draws per composite before giving up (default 10)")
    parser.add_argument("--preview", type=int, default=0, metavar="N",
                        help="write preview.png with N rows of real | composite | mask")
    parser.add_argument("--no-metrics", action="store_true", help="skip the input MSE/fMSE/PSNR table in summary.json")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json

    from ..data.synthesis import PRESETS, synthesize
    from ..errors import InputError

    families = tuple(f.strip() for f in args.families.split(",") if f.strip())
    if args.images is None and not args.photos:
        raise InputError("no photos: give --images and/or --photos")
    preset = PRESETS[args.preset] if args.preset else {}
    if preset:
        families = preset["families"]
    summary = synthesize(
        args.out,
        args.images,
        args.masks,
        photo_dirs=args.photos,
        cutouts=args.cutouts,
        cutout_half=args.cutout_half,
        families=families,
        identity_fraction=preset.get("identity_fraction", args.identity_fraction),
        mask_mix=args.mask_mix,
        object_mask_prob=preset.get("object_mask_prob", args.object_mask_prob),
        family_options=preset.get("family_options"),
        copy_reals=preset.get("copy_reals", False),
        per_mask=args.per_mask,
        masks_per_image=args.masks_per_image,
        photo_masks_per_image=args.photo_masks_per_image,
        test_masks_per_image=args.test_masks_per_image,
        test_fraction=args.test_fraction,
        n_test_photos=args.test_photos,
        reserve_test=args.reserve_test,
        val_fraction=args.val_fraction,
        seed=args.seed,
        quality=args.quality,
        max_side=args.max_side,
        short_side=args.short_side,
        mask_ratio=args.mask_ratio,
        min_fmse=preset.get("min_fmse", args.min_fmse),
        max_fmse=args.max_fmse,
        max_tries=args.max_tries,
        preview=args.preview,
        metrics=not args.no_metrics,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    c = summary["counts"]
    print(f"wrote {args.out}: {c['train']['all']} train and {c['test']['all']} test composites "
          f"from {summary['photos']['train']} + {summary['photos']['test']} photos "
          f"({summary['photos']['reserved']} reserved)")
    print(f"  mask kinds: train {json.dumps(summary['mask_kinds']['train'])}  test {json.dumps(summary['mask_kinds']['test'])}")
    for fam, r in summary["rejection"].items():
        print(f"  {fam:13s} train {c['train'][fam]:6d}  test {c['test'][fam]:5d}  "
              f"rejected {r['rate'] * 100:5.1f}% of {r['draws']} draws {json.dumps(r['reasons'])}  failed {r['failed']}")
    if "metrics" in summary and "test" in summary["metrics"]:
        print("  input composites, test split (published protocol):")
        for sub, row in summary["metrics"]["test"].items():
            psnr = "   inf" if row["psnr"] is None else f"{row['psnr']:6.2f}"
            print(f"    {sub:13s} n {row['n']:5d}  MSE {row['mse']:8.2f}  fMSE {row['fmse']:8.2f}  PSNR {psnr}")
    return 0
