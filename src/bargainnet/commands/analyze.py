"""``bargainnet analyze``: the domain-code analysis of the paper's Table 2 and the inharmony
score's agreement with the composites' real error."""

from __future__ import annotations

import argparse

HELP = "domain-code analysis (paper Table 2: six requirements and all six) and inharmony-score checks of a model"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        HELP + ". For every (composite, real, harmonized) triplet the codes of the background (b), "
        "real foreground (f), harmonized foreground (f^) and composite foreground (f~) are compared; "
        "the report gives the share of triplets meeting each requirement beside the paper's numbers, "
        "the mean inharmony before/after harmonization, and the Spearman correlation between the "
        "composite's harmony score and its fMSE (published protocol). Writes analysis.md, "
        "analysis.json, per_image.csv and score_vs_fmse.png to --output-dir."
    )
    parser.add_argument("--data", required=True, metavar="ROOT", help="dataset root (iHarmony4 layout)")
    parser.add_argument("--weights", required=True, metavar="W", help="BargainNet .safetensors weights")
    parser.add_argument("--splits", default="test,train", help="comma-separated splits to analyse (default test,train)")
    parser.add_argument("--subsets", default=None, help="comma-separated sub-datasets to keep (default: all)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most N triplets per split, spread over the list (iHarmony4's train split has 65,742)")
    parser.add_argument("--size", type=int, default=256, help="test resize, pixels (default 256)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("-o", "--output-dir", default="outputs/analyze", help="where to write (default outputs/analyze)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import InputError
    from ..evaluation import load_dataset, model_method
    from ..evaluation.analysis import analysis_report, collect_codes
    from ..inference import resolve_device
    from ..models.base import check_size

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    bad = [s for s in splits if s not in ("train", "test")]
    if bad or not splits:
        raise InputError(f"--splits must name train and/or test, got {args.splits!r}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = resolve_device(args.device)
    method = model_method(args.weights, device=device)  # validates the weights file
    model = method.model
    check_size(model.config, args.size, what="--size")
    subsets = [s.strip() for s in args.subsets.split(",")] if args.subsets else None
    analyses = []
    for split in splits:
        dataset = load_dataset(args.data, split, subsets=subsets, size=args.size)
        analyses.append(collect_codes(model, dataset, split=split, batch_size=args.batch_size, device=device,
                                      limit=args.limit, progress=not args.quiet))
    paths = analysis_report(analyses, Path(args.output_dir), weights=str(args.weights), data_root=str(args.data))
    print(paths["markdown"].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
