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
"""


_pair = comma_pair(float, "MIN,MAX")


def configure(parser: argparse.ArgumentParser) -> None:
    from ..data.perturb import FAMILIES

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--out", required=True, help="output dataset folder (must be empty or new)")
    parser.add_argument("--images", required=True, help="folder of photos")
    parser.add_argument("--masks", help="folder of object masks with the photos' stems (0/255; > 127 = object)")
    parser.add_argument("--cutouts", help="folder of RGBA cut-outs whose alpha shapes become masks (photos without masks)")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma-separated perturbation families = sub-datasets (default {','.join(FAMILIES)})")
    parser.add_argument("--per-mask", type=int, default=1, help="composites per photo and mask (default 1)")
    parser.add_argument("--masks-per-image", type=int, default=1,
                        help="generated masks per photo when --masks is not given (default 1)")
    parser.add_argument("--test-fraction", type=float, default=0.15,
                        help="share of the photos held out for the test split (default 0.15)")
    parser.add_argument("--test-photos", type=int, help="number of test photos (overrides --test-fraction)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the output is deterministic in it (default 0)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of composites, 95-100 (default 95)")
    parser.add_argument("--max-side", type=int, help="downscale photos whose long side exceeds this (default: keep)")
    parser.add_argument("--mask-ratio", type=_pair, default=(0.05, 0.6),
                        help="object area range of generated masks, MIN,MAX (default 0.05,0.6)")
    parser.add_argument("--min-fmse", type=float, default=100.0,
                        help="redraw composites whose foreground MSE ([0,255]) is below this (default 100)")
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

    from ..data.synthesis import synthesize

    families = tuple(f.strip() for f in args.families.split(",") if f.strip())
    summary = synthesize(
        args.out,
        args.images,
        args.masks,
        cutouts=args.cutouts,
        families=families,
        per_mask=args.per_mask,
        masks_per_image=args.masks_per_image,
        test_fraction=args.test_fraction,
        n_test_photos=args.test_photos,
        seed=args.seed,
        quality=args.quality,
        max_side=args.max_side,
        mask_ratio=args.mask_ratio,
        min_fmse=args.min_fmse,
        max_fmse=args.max_fmse,
        max_tries=args.max_tries,
        preview=args.preview,
        metrics=not args.no_metrics,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    c = summary["counts"]
    print(f"wrote {args.out}: {c['train']['all']} train and {c['test']['all']} test composites "
          f"from {summary['photos']['train']} + {summary['photos']['test']} photos")
    for fam, r in summary["rejection"].items():
        print(f"  {fam:13s} train {c['train'][fam]:6d}  test {c['test'][fam]:5d}  "
              f"rejected {r['rate'] * 100:5.1f}% of {r['draws']} draws {json.dumps(r['reasons'])}  failed {r['failed']}")
    if "metrics" in summary and "test" in summary["metrics"]:
        print("  input composites, test split (published protocol):")
        for sub, row in summary["metrics"]["test"].items():
            print(f"    {sub:13s} n {row['n']:5d}  MSE {row['mse']:8.2f}  fMSE {row['fmse']:8.2f}  PSNR {row['psnr']:6.2f}")
    return 0
