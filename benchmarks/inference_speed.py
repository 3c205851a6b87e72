"""End-to-end CPU time and peak memory of ``Harmonizer`` (read, network, lifting, write), and
PyTorch vs onnxruntime network latency at 256x256.

Each measurement runs in a fresh Python process so that its peak resident memory (ru_maxrss) is
its own; the model is the paper's architecture (ngf 64, 8 levels, L = 16; random weights: speed
does not depend on their values) unless ``--ngf`` or ``--weights`` says otherwise::

    python benchmarks/inference_speed.py                 # 256x256 and 4000x3000, both backends
    python benchmarks/inference_speed.py --ngf 32        # the narrower default-model width

Inputs: a JPEG composite made from a photo (the largest of /usr/share/backgrounds/mate/nature or
``--photo``, else scikit-image's astronaut) resized to the case's size, with an ellipse mask.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CASES = {"256x256": (256, 256), "4000x3000": (4000, 3000)}


def _source_photo(photo: Path | None) -> np.ndarray:
    candidates = [photo] if photo else sorted(Path("/usr/share/backgrounds/mate/nature").glob("*.jpg"))
    candidates = [c for c in candidates if c and c.is_file()]
    if candidates:
        best = max(candidates, key=lambda p: Image.open(p).size[0] * Image.open(p).size[1])
        return np.asarray(Image.open(best).convert("RGB"))
    from skimage import data

    return data.astronaut()


def make_inputs(folder: Path, photo: Path | None) -> None:
    source = Image.fromarray(_source_photo(photo))
    for name, (w, h) in CASES.items():
        source.resize((w, h), Image.LANCZOS).save(folder / f"{name}.jpg", quality=92)
        yy, xx = np.mgrid[0:h, 0:w]
        mask = ((yy - 0.55 * h) / (0.25 * h)) ** 2 + ((xx - 0.45 * w) / (0.2 * w)) ** 2 < 1
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{name}_mask.png")


def _peak_mib() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the parent across fork + exec, VmHWM belongs to the process's own address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _model(args):
    import torch

    from bargainnet.models.bargainnet import BargainNet, BargainNetConfig
    from bargainnet.models.convert import load_weights

    torch.manual_seed(0)
    if args.weights:
        return load_weights(args.weights)
    return BargainNet(BargainNetConfig(ngf=args.ngf)).eval()


def child_end_to_end(args) -> dict:
    """Load the model, then time read -> harmonize -> write for one case."""
    import torch

    from bargainnet.inference import Harmonizer
    from bargainnet.io import save_image

    torch.set_num_threads(args.threads)
    if args.backend == "pytorch":
        harmonizer = Harmonizer(_model(args))
    else:  # exported once by the parent process
        from bargainnet.inference.onnx import OnnxRunner

        harmonizer = Harmonizer(runner=OnnxRunner(Path(args.tmp) / "model.onnx", threads=args.threads))
    rss_model = _peak_mib()
    comp, mask = Path(args.tmp) / f"{args.case}.jpg", Path(args.tmp) / f"{args.case}_mask.png"
    times, stages = [], []
    for i in range(args.repeats + 1):  # the first run warms up and is not counted
        t0 = time.perf_counter()
        item = harmonizer.prepare(comp, mask)
        t1 = time.perf_counter()
        outs, before, after = harmonizer.run_network([item])
        t2 = time.perf_counter()
        result = harmonizer.finish(item, outs[0], float(before[0]), float(after[0]))
        t3 = time.perf_counter()
        save_image(Path(args.tmp) / f"out_{args.case}.jpg", result.rgb8, inputs=(comp, mask))
        t4 = time.perf_counter()
        if i:
            times.append(t4 - t0)
            stages.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    med = [statistics.median(s[k] for s in stages) for k in range(4)]
    return {"case": args.case, "backend": args.backend, "seconds": statistics.median(times),
            "read": med[0], "network": med[1], "lift": med[2], "write": med[3],
            "peak_mib": _peak_mib(), "model_mib": rss_model}


def child_network(args) -> dict:
    """Network-only latency at the working size, batch 1: PyTorch eval vs onnxruntime."""
    import torch

    from bargainnet.inference.onnx import InferenceGraph, OnnxRunner

    torch.set_num_threads(args.threads)
    c = torch.rand(1, 3, 256, 256) * 2 - 1
    m = torch.zeros(1, 1, 256, 256)
    m[:, :, 64:192, 64:160] = 1
    if args.backend == "pytorch":
        graph = InferenceGraph(_model(args)).eval()

        def call():
            with torch.inference_mode():
                graph(c, m)
    else:
        runner = OnnxRunner(Path(args.tmp) / "model.onnx", threads=args.threads)

        def call():
            runner.run(c, m)
    for _ in range(3):
        call()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return {"backend": args.backend, "ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times),
            "peak_mib": _peak_mib()}


def _spawn(extra: list[str], args) -> dict:
    cmd = [sys.executable, __file__, "--threads", str(args.threads), "--ngf", str(args.ngf), "--tmp", args.tmp]
    if args.weights:
        cmd += ["--weights", args.weights]
    out = subprocess.run(cmd + extra, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--net-repeats", type=int, default=20)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("e2e", "net"), help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="pytorch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child_end_to_end(args) if args.child == "e2e" else child_network(args)
        print(json.dumps(result))
        return 0

    import onnxruntime
    import torch

    with tempfile.TemporaryDirectory(prefix="bargainnet-bench-") as tmp:
        args.tmp = tmp
        make_inputs(Path(tmp), args.photo)
        from bargainnet.inference.onnx import export_onnx

        export_onnx(_model(args), Path(tmp) / "model.onnx")
        print(f"machine: {platform.machine()} {os.cpu_count()} CPUs ({args.threads} threads), "
              f"Python {platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
        print(f"model: {'weights ' + args.weights if args.weights else f'BargainNet(ngf={args.ngf}) random init'}; "
              f"load average at start {os.getloadavg()[0]:.2f} (other processes share these cores)\n")
        print("| composite | backend | end to end (s) | read | network | lifting | write | peak RSS (MiB) | RSS after model load |")
        print("|---|---|---|---|---|---|---|---|---|")
        for case in CASES:
            for backend in ("pytorch", "onnxruntime"):
                r = _spawn(["--child", "e2e", "--case", case, "--backend", backend, "--repeats", str(args.repeats)], args)
                print(f"| {case} | {backend} | {r['seconds']:.3f} | {r['read']:.3f} | {r['network']:.3f} | "
                      f"{r['lift']:.3f} | {r['write']:.3f} | {r['peak_mib']:.0f} | {r['model_mib']:.0f} |", flush=True)
        print("\n| network only, 256x256, batch 1 | median (ms) | min (ms) |")
        print("|---|---|---|")
        for backend in ("pytorch", "onnxruntime"):
            r = _spawn(["--child", "net", "--backend", backend, "--repeats", str(args.net_repeats)], args)
            print(f"| {backend} | {r['ms']:.1f} | {r['min_ms']:.1f} |", flush=True)
        print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
