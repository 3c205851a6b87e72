"""End-to-end CPU time and peak memory of ``bargainnet harmonize``'s path (read; harmonize = network,
inharmony before and after, back to full resolution; write) for several models in one run, and the
network's latency at the working size. The last column times the Python API's image-only call,
``harmonizer(path, mask_path)``, which measures no inharmony unless asked to. A third table times
folder mode: 16 composites of 256×256 (the photo with 16 masks and foreground tints) through
``Harmonizer.iter_batch`` at ``--batch-size`` (what ``bargainnet harmonize`` does with a folder,
less the writing), per image.

Each measurement runs in a fresh Python process so that its peak resident memory is its own.
Models are ``NAME=SPEC`` where SPEC is a weights file or ``paper`` (the paper's architecture,
ngf 64, 8 levels, 256 px, random weights: speed does not depend on their values)::

    python benchmarks/inference_speed.py --model paper=paper \
        --model old_default=old.safetensors --model default=src/bargainnet/weights/default.safetensors
    python benchmarks/inference_speed.py --model default=... --backends pytorch,onnxruntime

``NAME=SPEC@SRC`` runs that model with the package from another checkout's ``src`` folder, e.g. the
code and default model of an earlier commit in the same run (``git worktree add /tmp/before REV``)::

    python benchmarks/inference_speed.py --model before=/tmp/before/src/bargainnet/weights/default.safetensors@/tmp/before/src \
        --model default=src/bargainnet/weights/default.safetensors

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


FOLDER = 16  # composites in the folder-mode case


def make_folder_inputs(folder: Path) -> list[tuple[Path, Path]]:
    """FOLDER composites of 256×256: the 256×256 case's photo with an ellipse mask at 16 places,
    each foreground tinted differently (so that each measures its own strength)."""
    photo = np.asarray(Image.open(folder / "256x256.jpg").convert("RGB")).astype(np.float32)
    yy, xx = np.mgrid[0:256, 0:256]
    pairs = []
    for k in range(FOLDER):
        cy, cx = 64 + 128 * ((k // 4) / 3), 64 + 128 * ((k % 4) / 3)
        mask = ((yy - cy) / 48) ** 2 + ((xx - cx) / 40) ** 2 < 1
        tint = np.array([1 + 0.05 * (k % 5 - 2), 1 - 0.04 * (k % 3 - 1), 1 + 0.06 * (k % 4 - 1.5)], np.float32)
        comp = photo.copy()
        comp[mask] = np.clip(comp[mask] * tint, 0, 255)
        pairs.append((folder / f"folder_{k:02d}.png", folder / f"folder_{k:02d}_mask.png"))
        Image.fromarray(comp.astype(np.uint8)).save(pairs[-1][0])
        Image.fromarray(mask.astype(np.uint8) * 255).save(pairs[-1][1])
    return pairs


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


def _model(spec: str):
    import torch

    from bargainnet.models.convert import load_weights
    from bargainnet.models.registry import create_model

    torch.manual_seed(0)
    if spec == "paper":
        return create_model("bargainnet").eval()
    return load_weights(spec)


def _onnx_path(tmp: str, name: str) -> Path:
    """Where the parent process exports model NAME for the onnxruntime children."""
    return Path(tmp) / f"{name}.onnx"


def child_end_to_end(args) -> dict:
    """Load the model, then time what ``bargainnet harmonize`` does for one case: read, harmonize
    (network, inharmony before and after, back to full resolution), write."""
    import torch

    from bargainnet.commands.harmonize import _save
    from bargainnet.inference import Harmonizer

    torch.set_num_threads(args.threads)
    if args.backend == "pytorch":
        harmonizer = Harmonizer(_model(args.spec))
    else:  # exported once by the parent process
        from bargainnet.inference.onnx import OnnxRunner

        harmonizer = Harmonizer(runner=OnnxRunner(_onnx_path(args.tmp, args.name), threads=args.threads))
    rss_model = _peak_mib()
    comp, mask = Path(args.tmp) / f"{args.case}.jpg", Path(args.tmp) / f"{args.case}_mask.png"
    times, stages = [], []
    for i in range(args.repeats + 1):  # the first run warms up and is not counted
        t0 = time.perf_counter()
        item = harmonizer.prepare(comp, mask)
        t1 = time.perf_counter()
        result = harmonizer.process([item])[0]
        t2 = time.perf_counter()
        _save(result, Path(args.tmp) / f"out_{args.case}.jpg", (comp, mask))
        t3 = time.perf_counter()
        if i:
            times.append(t3 - t0)
            stages.append((t1 - t0, t2 - t1, t3 - t2))
    med = [statistics.median(s[k] for s in stages) for k in range(3)]
    calls = []  # the Python API's image-only call: harmonizer(path, mask_path) -> PIL image
    for i in range(args.repeats + 1):
        t0 = time.perf_counter()
        harmonizer(comp, mask)
        if i:
            calls.append(time.perf_counter() - t0)
    return {"case": args.case, "backend": args.backend, "seconds": statistics.median(times),
            "read": med[0], "harmonize": med[1], "write": med[2], "call": statistics.median(calls),
            "peak_mib": _peak_mib(), "model_mib": rss_model}


def child_folder(args) -> dict:
    """Folder mode: the FOLDER composites through ``iter_batch`` (read + harmonize, no writing), per image."""
    import torch

    from bargainnet.inference import Harmonizer

    torch.set_num_threads(args.threads)
    harmonizer = Harmonizer(_model(args.spec), batch_size=args.batch_size)
    pairs = make_folder_inputs(Path(args.tmp))
    times = []
    for i in range(args.repeats + 1):  # the first run warms up and is not counted
        t0 = time.perf_counter()
        outcomes = list(harmonizer.iter_batch(pairs))
        if i:
            times.append((time.perf_counter() - t0) / len(pairs))
        assert all(o.ok for o in outcomes), [o.message for o in outcomes if not o.ok]
    return {"per_image": statistics.median(times), "batch_size": args.batch_size, "peak_mib": _peak_mib()}


def child_network(args) -> dict:
    """Network-only latency at the model's working size, batch 1 (harmonize + both inharmony codes)."""
    import torch

    from bargainnet.inference.onnx import OnnxRunner

    torch.set_num_threads(args.threads)
    model = _model(args.spec)
    size = model.config.default_size
    c = torch.rand(1, 3, size, size) * 2 - 1
    m = torch.zeros(1, 1, size, size)
    m[:, :, size // 4 : 3 * size // 4, size // 4 : 5 * size // 8] = 1
    if args.backend == "pytorch":

        def call():
            with torch.inference_mode():
                model.harmonize_with_inharmony(c, m)
    else:
        runner = OnnxRunner(_onnx_path(args.tmp, args.name), threads=args.threads)

        def call():
            runner.run(c, m)
    for _ in range(3):
        call()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return {"backend": args.backend, "size": size, "ms": 1000 * statistics.median(times),
            "min_ms": 1000 * min(times), "peak_mib": _peak_mib()}


def _spawn(extra: list[str], args, name: str, spec: str) -> dict:
    spec, _, src = spec.partition("@")
    env = {**os.environ, "PYTHONPATH": src} if src else None
    cmd = [sys.executable, __file__, "--threads", str(args.threads), "--tmp", args.tmp, "--name", name, "--spec", spec]
    out = subprocess.run(cmd + extra, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path)
    parser.add_argument("--model", action="append", metavar="NAME=SPEC",
                        help="a model to time: NAME=weights.safetensors or NAME=paper, optionally @SRC: "
                             "run it with the package in another checkout's src folder (repeatable)")
    parser.add_argument("--backends", default="pytorch", help="pytorch and/or onnxruntime, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--net-repeats", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4, help="images per network call in the folder-mode case")
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("e2e", "net", "folder"), help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="pytorch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = {"e2e": child_end_to_end, "net": child_network, "folder": child_folder}[args.child](args)
        print(json.dumps(result))
        return 0

    import torch

    models = [m.split("=", 1) for m in (args.model or ["paper=paper"])]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with tempfile.TemporaryDirectory(prefix="bargainnet-bench-") as tmp:
        args.tmp = tmp
        make_inputs(Path(tmp), args.photo)
        if "onnxruntime" in backends:
            from bargainnet.inference.onnx import export_onnx

            for name, spec in models:
                export_onnx(_model(spec.partition("@")[0]), _onnx_path(tmp, name))
        print(f"machine: {platform.machine()} {os.cpu_count()} CPUs ({args.threads} threads), "
              f"Python {platform.python_version()}, torch {torch.__version__}; "
              f"load average at start {os.getloadavg()[0]:.2f} (other processes share these cores)")
        print("models: " + ", ".join(f"{n} = {s}" for n, s in models) + "\n")
        print("| model | composite | backend | end to end (s) | read | harmonize | write "
              "| peak RSS (MiB) | RSS after model load | `harmonizer(path, mask)` (s) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, spec in models:
            for case in CASES:
                for backend in backends:
                    r = _spawn(["--child", "e2e", "--case", case, "--backend", backend, "--repeats", str(args.repeats)],
                               args, name, spec)
                    print(f"| {name} | {case} | {backend} | {r['seconds']:.3f} | {r['read']:.3f} | {r['harmonize']:.3f} | "
                          f"{r['write']:.3f} | {r['peak_mib']:.0f} | {r['model_mib']:.0f} | {r['call']:.3f} |",
                          flush=True)
        print("\n| network only (harmonize + inharmony), batch 1 | working size | backend | median (ms) | min (ms) |")
        print("|---|---|---|---|---|")
        for name, spec in models:
            for backend in backends:
                r = _spawn(["--child", "net", "--backend", backend, "--repeats", str(args.net_repeats)], args, name, spec)
                print(f"| {name} | {r['size']} | {backend} | {r['ms']:.1f} | {r['min_ms']:.1f} |", flush=True)
        print(f"\n| folder mode: {FOLDER} composites of 256×256, `iter_batch` | batch size | seconds per image | peak RSS (MiB) |")
        print("|---|---|---|---|")
        for name, spec in models:
            r = _spawn(["--child", "folder", "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)],
                       args, name, spec)
            print(f"| {name} | {r['batch_size']} | {r['per_image']:.4f} | {r['peak_mib']:.0f} |", flush=True)
        print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
