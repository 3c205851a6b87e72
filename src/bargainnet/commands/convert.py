"""``bargainnet convert``: published checkpoints -> one self-describing safetensors file."""

from __future__ import annotations

import argparse

HELP = "convert published BargainNet/DoveNet checkpoints (latest_net_G.pth, latest_net_E.pth) to a .safetensors weights file"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--netG", required=True, help="published generator checkpoint (latest_net_G.pth)")
    parser.add_argument("--netE", help="published domain code extractor checkpoint (latest_net_E.pth)")
    parser.add_argument("-o", "--output", required=True, help="output .safetensors file")
    parser.add_argument("--fp16", action="store_true", help="store weights in float16 (half the size)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..errors import OutputError
    from ..models.convert import load_published, save_weights

    out = Path(args.output)
    for source in (args.netG, args.netE):
        if source and out.resolve() == Path(source).resolve():
            raise OutputError(f"output {out} would overwrite the input checkpoint {source}")
    model = load_published(args.netG, args.netE)
    save_weights(
        model,
        out,
        dtype=torch.float16 if args.fp16 else None,
        source=f"converted from {Path(args.netG).name}" + (f" + {Path(args.netE).name}" if args.netE else ""),
    )
    counts = model.num_parameters()
    print(f"wrote {out} ({model.config.to_dict()}; G {counts['generator']:,} + E {counts['encoder']:,} parameters)")
    return 0
