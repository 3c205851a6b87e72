"""Training throughput (images / second) of BargainNet configurations, CPU or GPU.

Times the optimiser step that ``bargainnet train`` runs (``BargainNetModule.training_step``:
``training_forward`` with its four E calls, the paper's loss, backward, Adam) on random inputs,
so that data loading is not measured. Prints one Markdown row per case, with the machine.

CPU (this sandbox)::

    python benchmarks/train_speed.py configs/tiny.yaml configs/cpu_small.yaml --batch-sizes 8
    python benchmarks/train_speed.py configs/bargainnet.yaml --batch-sizes 1,4 --precisions 32,bf16-mixed

GPU (bf16 autocast, channels-last, optional torch.compile; anchor: the published classes reach
1,194 img/s at batch 128 bf16 channels-last on an H100, docs/design.md §7)::

    python benchmarks/train_speed.py configs/bargainnet.yaml --device cuda --batch-sizes 128 \\
        --precisions bf16-mixed --channels-last --compile both

``--set key.sub=value`` overrides apply to every configuration (e.g. ``--set model.ngf=32``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from bargainnet.training.config import load_config  # noqa: E402
from bargainnet.training import BargainNetModule  # noqa: E402


def _inputs(b: int, size: int, device: str, channels_last: bool):
    g = torch.Generator().manual_seed(0)
    composite = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    real = (composite + 0.2 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5)).clamp(-1, 1)
    mask = torch.zeros(b, 1, size, size)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    out = [t.to(device) for t in (composite, mask, real)]
    if channels_last:
        out = [t.contiguous(memory_format=torch.channels_last) for t in out]
    return dict(zip(("composite", "mask", "real"), out))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(config, batch: int, precision: str, device: str, channels_last: bool, compile_: bool, steps: int, warmup: int) -> dict:
    config.trainer.channels_last = channels_last
    config.trainer.compile = compile_
    module = BargainNetModule(config).to(device)
    module.configure_model()
    module.train()
    optimizer = torch.optim.Adam(module.model.parameters(), lr=config.optim.lr, betas=tuple(config.optim.betas))
    batch_dict = _inputs(batch, config.data.size, device, channels_last)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    device_type = "cuda" if device.startswith("cuda") else "cpu"

    def step():
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            loss = module.step_loss(batch_dict)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device_type == "cuda" else float("nan")
    best = min(times)
    return {"s_per_step": med, "img_per_s": batch / med, "best_img_per_s": batch / best, "warmup_s": warm_s, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", help="configuration files (configs/*.yaml)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-sizes", default=None, help="comma list; default: each config's data.batch_size")
    parser.add_argument("--precisions", default="32", help="comma list of 32, bf16-mixed, 16-mixed")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", choices=("no", "yes", "both"), default="no")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--set", action="append", default=[], metavar="key.sub=value")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
        machine = torch.cuda.get_device_name(0)
    else:
        machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {machine}, median (and best) of {args.steps} steps after {args.warmup} warm-up")
    print("| config | model | size | batch | precision | layout | compile | s / step | img/s | best img/s |")
    print("|---|---|---:|---:|---|---|---|---:|---:|---:|")
    compiles = {"no": [False], "yes": [True], "both": [False, True]}[args.compile]
    for path in args.configs:
        base = load_config(path, args.set)
        batches = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else [base.data.batch_size]
        for batch in batches:
            for precision in args.precisions.split(","):
                for comp in compiles:
                    config = load_config(path, args.set)
                    torch.manual_seed(0)
                    r = measure(config, batch, precision, args.device, args.channels_last, comp, args.steps, args.warmup)
                    m = config.model
                    print(
                        f"| {Path(path).name} | ngf {m.ngf}, {m.num_downs} levels, L {m.code_dim} | {config.data.size} "
                        f"| {batch} | {precision} | {'NHWC' if args.channels_last else 'NCHW'} | {'yes' if comp else 'no'} "
                        f"| {r['s_per_step']:.3f} | {r['img_per_s']:.1f} | {r['best_img_per_s']:.1f} |",
                        flush=True,
                    )
                    del r
                    if args.device.startswith("cuda"):
                        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
