"""``bargainnet train``: train BargainNet with PyTorch Lightning (bf16, multi-GPU, exact resume).

Single GPU (bf16)::

    bargainnet train --config configs/bargainnet.yaml --data /data/iHarmony4 --out runs/paper \\
        --accelerator gpu --devices 1 --precision bf16-mixed data.batch_size=32 optim.lr=2e-4

Several GPUs on one machine (Lightning launches one process per GPU)::

    bargainnet train --config configs/bargainnet.yaml --data /data/iHarmony4 --out runs/paper \\
        --accelerator gpu --devices 4 --strategy ddp --precision bf16-mixed

torchrun (the same, launched by torchrun; add --nnodes/--rdzv-* for several machines)::

    torchrun --nproc_per_node 4 -m bargainnet.cli train --config configs/bargainnet.yaml \\
        --data /data/iHarmony4 --out runs/paper --accelerator gpu --devices 4 --strategy ddp

SLURM (2 nodes x 4 GPUs; one task per GPU, Lightning reads the SLURM environment; ``--resume
auto`` starts fresh the first time and lets a requeued job continue)::

    #SBATCH --nodes=2 --ntasks-per-node=4 --gres=gpu:4
    srun bargainnet train --config configs/bargainnet.yaml --data /data/iHarmony4 --out runs/paper \\
        --accelerator gpu --devices 4 --num-nodes 2 --strategy ddp --precision bf16-mixed --resume auto

CPU (this is how the bundled default model is trained; ~1 h on 2 cores)::

    bargainnet train --config configs/cpu_small.yaml --data data_local/lalonde_synth --out runs/cpu_small

On-the-fly composites from photos and masks (validation on --data's test split when given)::

    bargainnet train --config configs/bargainnet.yaml --stream-images photos/ --stream-masks masks/ \\
        --data data_local/lalonde_synth --out runs/stream

Resume a run where it stopped (same step, same data order): ``--resume`` (= ``auto``: the run's
``last.ckpt``) or ``--resume path/to/step00001000.ckpt``. Overrides are ``key.sub=value``
(``loss.margin=0.25 loss.triplet_weight=1e-3 model.code_dim=8 trainer.max_steps=5000``).
Export the weights: ``bargainnet export-weights runs/NAME -o model.safetensors``.
"""

from __future__ import annotations

import argparse

HELP = "train BargainNet (PyTorch Lightning: CPU/GPU, bf16, DDP, exact resume) from a YAML configuration"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--config", help="YAML configuration (configs/*.yaml); on --resume, default: the checkpoint's")
    parser.add_argument("--data", help="dataset root in iHarmony4 layout (train split trains, test split validates)")
    parser.add_argument("--stream-images", help="folder of photos: train on composites synthesized on the fly")
    parser.add_argument("--stream-masks", help="folder of object masks (same stems) for --stream-images")
    parser.add_argument("--out", help="run folder for checkpoints, logs and images (default: runs/<config name>)")
    parser.add_argument(
        "--resume", nargs="?", const="auto", default=None, metavar="CKPT|auto",
        help="continue from a checkpoint; 'auto' (the default when given without a value) = the run's last.ckpt",
    )
    parser.add_argument("--devices", help="devices per node: a number, 'auto' or a list like 0,1 (trainer.devices)")
    parser.add_argument("--accelerator", help="cpu, gpu, cuda, mps or auto (trainer.accelerator)")
    parser.add_argument("--precision", help="32 or bf16-mixed (also 16-mixed, bf16-true) (trainer.precision)")
    parser.add_argument("--strategy", help="auto, ddp, ddp_spawn, fsdp ... (trainer.strategy)")
    parser.add_argument("--num-nodes", type=int, help="machines taking part (trainer.num_nodes)")
    parser.add_argument("--init-weights", metavar="W", help="start a new run from these weights (.safetensors of the "
                        "same architecture, e.g. to fine-tune the default model on your own composites)")
    parser.add_argument("--teacher", metavar="W", help="distil from this model (weights file): loss.distill and "
                        "loss.distill_codes compare with its outputs and codes; give it again on --resume")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in batch jobs)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="configuration overrides")


def _devices(text: str):
    text = text.strip()
    if text.isdigit() or (text.startswith("-") and text[1:].isdigit()):
        return int(text)
    if "," in text:
        return [int(t) for t in text.split(",") if t.strip()]
    return text


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ..errors import InputError
    from ..training.config import load_config

    flag_overrides = []
    if args.devices is not None:
        devices = _devices(args.devices)
        flag_overrides.append(f"trainer.devices={devices!r}" if isinstance(devices, str) else f"trainer.devices={devices}")
    for flag, key in (("accelerator", "accelerator"), ("precision", "precision"), ("strategy", "strategy"), ("num_nodes", "num_nodes")):
        value = getattr(args, flag)
        if value is not None:
            flag_overrides.append(f"trainer.{key}={value}")
    if args.resume not in (None, "auto") and "=" in args.resume and not Path(args.resume).exists():
        # `--resume key=value ...`: argparse took the first override as the checkpoint
        args.overrides.insert(0, args.resume)
        args.resume = "auto"
    overrides = list(args.overrides) + flag_overrides

    if args.out is not None:
        out = Path(args.out)
    elif args.resume not in (None, "auto") and Path(args.resume).exists():
        resume_path = Path(args.resume)
        out = resume_path if resume_path.is_dir() else resume_path.parent
    else:
        out = Path("runs") / (Path(args.config).stem if args.config else "train")

    from ..errors import require_extra

    require_extra("train", "lightning")
    from ..training import LAST, checkpoint_config, resolve_resume, train

    resume_path = resolve_resume(args.resume, out) if args.resume is not None else None
    if args.config is not None:
        config = load_config(args.config, overrides)
    elif resume_path is not None:
        from ..training.config import TrainConfig, apply_overrides

        stored = checkpoint_config(resume_path)
        config = TrainConfig.from_dict(apply_overrides(stored.to_dict(), overrides), f"{resume_path} + overrides")
    else:
        if args.resume == "auto":
            raise InputError(f"nothing to resume in {out} (no {LAST}) and no --config given")
        print("bargainnet train: no --config: using the built-in defaults (published optimiser, 256 px)", file=sys.stderr)
        config = load_config(None, overrides)
    if args.data is None and args.stream_images is None:
        raise InputError("no training data: pass --data ROOT (iHarmony4 layout) and/or --stream-images DIR")

    result = train(
        config,
        out,
        data_root=args.data,
        stream_images=args.stream_images,
        stream_masks=args.stream_masks,
        resume=str(resume_path) if resume_path is not None else None,
        init_weights=args.init_weights,
        teacher=args.teacher,
        progress_bar=not args.no_progress,
        command=["bargainnet", *sys.argv[1:]],
    )
    import os

    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0:
        m = result.metrics
        val = (
            f"; validation MSE {m['val/mse']:.2f} (input composites {m['val/input_mse']:.2f})"
            if "val/mse" in m and "val/input_mse" in m else ""
        )
        if val and "val/mse_composited" in m and "val/input_mse_composited" in m:
            # The raw output's background is the model's too (a colour-transform output recolours
            # it); harmonize pastes the composite's back, as the composited figures do.
            val += (f", with the background pasted back {m['val/mse_composited']:.2f} "
                    f"(input composites {m['val/input_mse_composited']:.2f})")
        print(f"trained to step {result.global_step}{val}; run folder {out}")
        if result.last_checkpoint is not None:
            print(f"export the weights with: bargainnet export-weights {out} -o model.safetensors")
    return 0
