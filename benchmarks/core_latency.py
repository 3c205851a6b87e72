"""CPU latency of one 256×256 image through E + G (issue 2's benchmark).

Compares the published way of running the model (train-mode BatchNorm as published ``test.py``
leaves it, fp32, batch 1) with our eval-mode path and faster CPU paths (channels-last, bf16
autocast). Prints a Markdown table of median latencies and ratios against the published way.

    python benchmarks/core_latency.py --repeats 10 [--ngf 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from bargainnet.models.bargainnet import BargainNet


def _time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = BargainNet(ngf=args.ngf)
    composite = torch.rand(1, 3, 256, 256) * 2 - 1
    mask = torch.zeros(1, 1, 256, 256)
    mask[..., 64:192, 80:176] = 1

    def published():
        model.train()  # published test.py never calls eval(): per-image BatchNorm statistics, dropout on
        with torch.no_grad():
            return model(composite, mask)

    def eval_fp32():
        with torch.inference_mode():
            return model(composite, mask)

    cl_model = BargainNet(ngf=args.ngf).eval().to(memory_format=torch.channels_last)
    cl_composite = composite.contiguous(memory_format=torch.channels_last)
    cl_mask = mask.contiguous(memory_format=torch.channels_last)

    def eval_cl_fp32():
        with torch.inference_mode():
            return cl_model(cl_composite, cl_mask)

    def eval_cl_bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return cl_model(cl_composite, cl_mask)

    cl_model.load_state_dict(model.state_dict())
    model.eval()
    with torch.inference_mode():
        ref = model(composite, mask)
    rows = [
        ("published (train-mode BN, fp32, batch 1)", published),
        ("ours: eval mode, fp32", eval_fp32),
        ("ours: eval, channels-last, fp32", eval_cl_fp32),
        ("ours: eval, channels-last, bf16 autocast", eval_cl_bf16),
    ]
    results = [(name, _time(fn, args.repeats)) for name, fn in rows]
    base = results[0][1]
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={args.threads}, ngf={args.ngf}, 256x256, batch 1, median of {args.repeats}")
    print("| path | ms / image | speed-up vs published |\n|---|---:|---:|")
    for name, t in results:
        print(f"| {name} | {t * 1000:.1f} | {base / t:.2f}x |")
    # accuracy of the bf16 path against fp32 on the same weights (weights are random here)
    with torch.inference_mode():
        out_bf16 = eval_cl_bf16().float()
        out_cl = eval_cl_fp32()
    print(f"\nmax |bf16 - fp32| on the output: {(out_bf16 - out_cl).abs().max().item():.4f}; "
          f"max |channels-last - contiguous| fp32: {(out_cl - ref).abs().max().item():.2e} (outputs in [-1, 1], random weights)")


if __name__ == "__main__":
    main()
