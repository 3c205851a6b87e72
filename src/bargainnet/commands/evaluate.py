"""``bargainnet evaluate``: the paper's tables (MSE/PSNR per sub-dataset, fMSE, foreground-ratio
bins) for models and classical baselines, under a named protocol."""

from __future__ import annotations

import argparse

from ..evaluation.protocols import PROTOCOL_NAMES

HELP = "evaluate models and classical baselines on an iHarmony4-layout dataset (paper Table 1, supplement Table 1)"

METHOD_HELP = (
    "comma-separated methods: composite (the input itself), reinhard, histogram, covariance, "
    "and/or paths of .safetensors weights files (default: composite plus every --weights; "
    "composite,reinhard,histogram,covariance without --weights)"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        HELP + ". Writes per_image.csv, results.json, results.md (every table names the protocol) "
        "and fmse_vs_ratio.png to --output-dir. Protocol 'published' reproduces the published "
        "test.py (raw generator output, uint8 truncation, PSNR range = output max - min, fMSE with "
        "the nearest-resized mask); 'standard' scores the composited output as floats with PSNR "
        "peak 255."
    )
    parser.add_argument("--data", required=True, metavar="ROOT", help="dataset root (IHD_test.txt or <Sub>/<Sub>_test.txt lists)")
    parser.add_argument("--weights", action="append", default=[], metavar="W",
                        help="BargainNet .safetensors weights to evaluate (repeatable)")
    parser.add_argument("--methods", default=None, help=METHOD_HELP)
    parser.add_argument("--protocol", choices=PROTOCOL_NAMES, default="published",
                        help="how outputs are scored (default: published)")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--subsets", default=None, help="comma-separated sub-datasets to keep (default: all)")
    parser.add_argument("--size", type=int, default=256, help="test resize, pixels (default 256, as published)")
    parser.add_argument("--model-size", type=int, default=None, metavar="S",
                        help="run models at SxS and lift their colour change to --size, as 'bargainnet harmonize' "
                        "does (default: the resolution the weights were trained at when they say so, else --size, "
                        "the published way)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default: cuda when available)")
    parser.add_argument("--model-mode", choices=("eval", "train"), default="eval",
                        help="eval (deterministic, default) or train (as the published test.py: dropout on, "
                        "per-image BatchNorm statistics)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only N images, spread over the list")
    parser.add_argument("--workers", type=int, default=0, help="data loading worker processes (default 0)")
    parser.add_argument("-o", "--output-dir", default=None,
                        help="where to write the results (default: outputs/evaluate-<split>-<protocol>)")
    parser.add_argument("--no-plot", action="store_true", help="skip the fMSE-vs-ratio plot")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import InputError, OutputError
    from ..evaluation import evaluate, load_dataset, resolve_methods, write_report
    from ..evaluation.metrics import get_protocol
    from ..inference import resolve_device

    protocol = get_protocol(args.protocol)
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.size < 32:
        raise InputError(f"--size must be at least 32 pixels, got {args.size}")
    if args.methods is None:
        specs = ["composite"] + list(args.weights) if args.weights else ["composite", "reinhard", "histogram", "covariance"]
    else:
        specs = [s for s in args.methods.split(",") if s.strip()] + list(args.weights)
    device = resolve_device(args.device)
    out_dir = Path(args.output_dir or f"outputs/evaluate-{args.split}-{protocol.name}")
    data_root = Path(args.data)
    if out_dir.exists() and data_root.exists() and out_dir.resolve() == data_root.resolve():
        raise OutputError(f"output folder {out_dir} is the dataset root; choose another --output-dir")
    methods = resolve_methods(specs, device=device, mode=args.model_mode, working_size=args.model_size)  # fails fast on bad weights
    subsets = [s.strip() for s in args.subsets.split(",")] if args.subsets else None
    dataset = load_dataset(data_root, args.split, subsets=subsets, size=args.size)
    print(f"{len(dataset)} {args.split} images from {data_root}; methods: {', '.join(m.key for m in methods)}; "
          f"protocol {protocol.name}; device {device}")
    result = evaluate(dataset, methods, protocol.name, batch_size=args.batch_size, progress=not args.quiet,
                      limit=args.limit, num_workers=args.workers)
    paths = write_report(result, out_dir, plot=not args.no_plot)
    from ..evaluation import comparison_table

    print(f"\nprotocol {protocol.name}:\n")
    print(comparison_table(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
