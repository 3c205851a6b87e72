"""``bargainnet export-onnx``: export the inference graph to ONNX (dynamic batch; images run at the
recorded working size, other sizes serve strength "auto"'s calibration patches).

The graph takes ``composite`` (B, 3, S, S) in [-1, 1] and ``mask`` (B, 1, S, S) and returns
``harmonized``, ``inharmony_before`` and ``inharmony_after`` (see :mod:`bargainnet.inference.onnx`). Use it
with ``bargainnet harmonize --weights model.onnx`` (onnxruntime), or any ONNX runtime.
"""

from __future__ import annotations

import argparse

from .common import SIZE_HELP

HELP = "export a model to ONNX (dynamic batch) for onnxruntime inference"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, help="output .onnx file")
    parser.add_argument("--weights", help="bargainnet .safetensors weights (default: the installed default model)")
    parser.add_argument("--size", type=int, help=SIZE_HELP)
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs PyTorch comparison")


def run(args) -> int:
    from pathlib import Path

    from ..errors import InputError, require_extra

    require_extra("onnx", "onnx", "onnxscript", *(() if args.no_check else ("onnxruntime",)), purpose="ONNX export")
    from ..inference import default_weights_path
    from ..inference.onnx import compare_with_torch, export_onnx
    from ..models.convert import load_weights

    weights = Path(args.weights) if args.weights else default_weights_path()
    if args.weights is None and not weights.is_file():
        raise InputError(f"no default weights are installed (expected {weights}); pass --weights model.safetensors")
    model = load_weights(weights)
    size = args.size or model.config.default_size
    path = export_onnx(model, args.output, size=size, opset=args.opset, inputs=(weights,))
    print(f"wrote {path} (input {size}x{size}, dynamic batch, opset {args.opset})")
    if not args.no_check:
        diff = compare_with_torch(model, path)
        print(f"onnxruntime vs PyTorch: max abs difference {diff:.3g}")
    return 0
