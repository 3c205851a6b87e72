"""``bargainnet export-weights``: a training run or checkpoint -> one self-describing .safetensors file.

    bargainnet export-weights runs/cpu_small -o model.safetensors          # the run's last.ckpt
    bargainnet export-weights runs/cpu_small/step00004000.ckpt -o m.safetensors --fp16
    bargainnet export-weights runs/seed0 runs/seed1 -o soup.safetensors   # the average of both runs' weights

The file holds the model configuration in its metadata (``bargainnet.models.convert.load_weights``
needs nothing else), plus the training step, the source checkpoint and the training data folder,
and with ``--lift-radius R`` / ``--strength S`` the lifting radius / strength the Harmonizer uses for it
unless told otherwise (``--strength auto``: measured per image, with ``--calibration``'s settings).
Several sources give the uniform average of their weights (a "model soup"): for runs fine-tuned
from one initialisation with one recipe, e.g. different seeds.
"""

from __future__ import annotations

import argparse

from .common import calibration_setting, strength_setting

HELP = "write a training run's (or checkpoint's) model as a self-describing .safetensors weights file"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", metavar="RUN_OR_CKPT",
                        help="run folder (uses its last.ckpt) or a .ckpt file; several: write the uniform average "
                             "of their weights (same model configuration; runs fine-tuned from one initialisation)")
    parser.add_argument("-o", "--output", required=True, help="output .safetensors file")
    parser.add_argument("--fp16", action="store_true", help="store weights in float16 (half the size)")
    parser.add_argument("--lift-radius", type=int, metavar="R",
                        help="record R as the model's recommended lifting radius (harmonize's default for it)")
    parser.add_argument("--strength", type=strength_setting, metavar="S",
                        help="record S (0 to 2, or 'auto': measured per image) as the model's recommended strength "
                             "(harmonize's default for it)")
    parser.add_argument("--calibration", type=calibration_setting, metavar="K=V,...",
                        help="with --strength auto: how the measurement becomes a strength, e.g. "
                             "scale=0.6,min_strength=0.4,max_strength=0.9,placements=3,size=64,null_ratio=4 "
                             "(omitted fields: the defaults of bargainnet.models.base.Calibration)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..errors import OutputError
    from ..models.convert import save_weights
    from ..errors import require_extra

    require_extra("train", "lightning", purpose="reading a training checkpoint")
    from ..training import average_models, checkpoint_in, trained_model

    ckpts = [checkpoint_in(source) for source in args.sources]
    out = Path(args.output)
    if out.exists() and any(out.resolve() == ckpt.resolve() for ckpt in ckpts):
        raise OutputError(f"output {out} would overwrite an input checkpoint")
    if out.suffix != ".safetensors":
        raise OutputError(f"output {out} should end in .safetensors")
    ckpt = ckpts[0]
    trained = trained_model(ckpt) if len(ckpts) == 1 else average_models([trained_model(c) for c in ckpts])
    model, step = trained.model, trained.step
    model.config.image_size = trained.config.data.size  # inference runs there by default
    if args.calibration is not None and args.strength != "auto":
        from ..errors import InputError

        raise InputError("--calibration only applies with --strength auto")
    settings = {"lift_radius": args.lift_radius, "strength": args.strength, "calibration": args.calibration}
    model.inference_settings = {k: v for k, v in settings.items() if v is not None}  # validated by save_weights
    if len(ckpts) == 1:
        info = {"source": f"{ckpt.name} (training step {step})", "training_step": str(step)}
    else:
        info = {"source": f"uniform average of {len(ckpts)} checkpoints: {step}", "training_step": "averaged"}
    run_record = ckpt.parent / "run.yaml"
    if run_record.is_file():
        import yaml

        try:
            runs = yaml.safe_load(run_record.read_text()) or []
            first = runs[0] if isinstance(runs, list) and runs else {}
            data = first.get("data_root") or first.get("stream_images")
            if data:
                info["trained_on"] = str(data)
        except (yaml.YAMLError, AttributeError):
            pass
    save_weights(model, out, dtype=torch.float16 if args.fp16 else None, **info)
    counts = model.num_parameters()
    print(f"wrote {out} (step {step}; {model.config.to_dict()}; G {counts['generator']:,} + E {counts['encoder']:,} parameters)")
    return 0
