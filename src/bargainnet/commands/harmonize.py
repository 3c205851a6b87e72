"""``bargainnet harmonize``: harmonize composites at their own resolution.

Three ways to give the input:

* one composite and its mask: ``bargainnet harmonize COMPOSITE MASK -o OUT``;
* a cut-out pasted on a background (the cut-out's alpha is the mask):
  ``bargainnet harmonize --foreground CUTOUT.png --background BG.jpg --position X,Y [--scale S] -o OUT``
  (X,Y: where the cut-out's top-left corner goes, in background pixels, after scaling; default:
  centred);
* a folder: ``bargainnet harmonize --input-dir DIR --output-dir OUT_DIR``. Every image in DIR
  (.png .jpg .jpeg .tif .tiff .webp .bmp) whose name does not end in ``_mask`` is a composite; its
  mask is ``DIR/<stem>_mask.<ext>`` or else ``DIR/masks/<stem>.<ext>`` (PNG preferred). Results go
  to ``OUT_DIR/<stem><ext>``. One bad item never stops the rest; the failures are listed at the
  end and the exit code is 5.

Exit codes: 0 done, 2 bad command line, 3 bad input, 4 output cannot be written (or would
overwrite an input), 5 folder mode finished but some items failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, OutputError, UserError

HELP = "harmonize composites at full resolution (one image, a pasted cut-out, or a folder)"


class UsageError(UserError):
    """Options that do not go together."""

    exit_code = EXIT_USAGE


def _position(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (two integers), got {text!r}") from None
    return x, y


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("composite", nargs="?", help="composite image")
    parser.add_argument("mask", nargs="?", help="foreground mask (white = foreground; binarised at 50%%)")
    parser.add_argument("-o", "--output", help="output image (.png .jpg .tif .webp .bmp)")
    paste = parser.add_argument_group("paste a cut-out")
    paste.add_argument("--foreground", metavar="CUTOUT", help="cut-out with alpha (RGBA PNG); its alpha is the mask")
    paste.add_argument("--background", metavar="BG", help="background image to paste the cut-out on")
    paste.add_argument("--position", type=_position, metavar="X,Y",
                       help="top-left corner of the cut-out in background pixels (default: centred); "
                       "negative values as --position=-10,20")
    paste.add_argument("--scale", type=float, default=1.0, help="scale the cut-out first (default 1)")
    folder = parser.add_argument_group("folder mode")
    folder.add_argument("--input-dir", type=Path, help="folder of composites with <stem>_mask.png or masks/<stem>.png")
    folder.add_argument("--output-dir", type=Path, help="where results go (<stem><ext>)")
    model = parser.add_argument_group("model and processing")
    model.add_argument("--weights", help="weights (.safetensors, or .onnx); default: the installed default model")
    model.add_argument("--backend", choices=("pytorch", "onnxruntime"), default="pytorch")
    model.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    model.add_argument("--batch-size", type=int, default=4, help="images per network call in folder mode (default 4)")
    model.add_argument("--size", type=int, help="working resolution (default: the model's, 256 for the paper's)")
    model.add_argument("--method", choices=("lift", "upsample"), default="lift",
                       help="lift: carry the colour change to full resolution (default); upsample: upsample the output")
    model.add_argument("--harmonize-background", action="store_true",
                       help="translate the background to the foreground's domain instead (paper §4.6)")
    model.add_argument("--min-inharmony", type=float, metavar="T",
                       help="leave images whose inharmony distance is below T untouched (and say so)")
    model.add_argument("--resize-mask", action="store_true", help="resize a mask whose size differs from the composite")
    model.add_argument("--mask-threshold", type=float, default=0.5,
                       help="foreground where mask >= this fraction of full scale (default 0.5: >= 128 in 8 bits)")
    model.add_argument("--max-pixels", type=int, help="refuse images with more pixels (default 100,000,000)")
    parser.add_argument("--figure", type=Path, metavar="PNG", help="also write a composite | harmonized | mask figure")


def _mode(args) -> str:
    paste = args.foreground is not None or args.background is not None
    folder = args.input_dir is not None or args.output_dir is not None
    single = args.composite is not None or args.mask is not None
    if sum((paste, folder, single)) > 1:
        raise UsageError("give either COMPOSITE MASK, or --foreground/--background, or --input-dir/--output-dir")
    if folder:
        if args.input_dir is None or args.output_dir is None:
            raise UsageError("folder mode needs both --input-dir and --output-dir")
        if args.output is not None:
            raise UsageError("-o/--output is for one image; folder mode writes into --output-dir")
        return "folder"
    if args.output is None:
        raise UsageError("give the output path with -o/--output")
    if paste:
        if args.foreground is None or args.background is None:
            raise UsageError("paste mode needs both --foreground CUTOUT and --background BG")
        if args.harmonize_background:
            raise UsageError("--harmonize-background is not available in paste mode")
        return "paste"
    if args.composite is None or args.mask is None:
        raise UsageError("give COMPOSITE and MASK (or --foreground/--background, or --input-dir)")
    return "single"


def _describe(result) -> str:
    b, a = result.before, result.after
    if result.skipped:
        return f"inharmony {b.distance:.4g} (score {b.score:.3f}): below --min-inharmony, left untouched"
    return f"inharmony {b.distance:.4g} -> {a.distance:.4g} (score {b.score:.3f} -> {a.score:.3f})"


def _save(result, path: Path, inputs) -> Path:
    from ..io import save_image

    rgb8 = result.rgb8
    if rgb8 is None:
        import numpy as np

        rgb8 = np.asarray(result.image.convert("RGB"))
    return save_image(path, rgb8, result.alpha, inputs=inputs)


def _check_figure(path: Path | None, inputs) -> None:
    if path is None:
        return
    from ..io import check_output_path

    if path.suffix.lower() != ".png":
        raise OutputError(f"{path}: the figure is written as PNG; give a .png path")
    check_output_path(path, inputs)


def find_image(places) -> Path | None:
    """The first existing ``<folder>/<stem><ext>`` over ``places`` ((folder, stem) pairs, in
    order), trying .png first, then the other image extensions, each in lower then upper case."""
    from ..io import IMAGE_EXTENSIONS

    exts = (".png",) + tuple(e for e in IMAGE_EXTENSIONS if e != ".png")
    for folder, stem in places:
        for ext in exts:
            for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def _find_mask(composite: Path) -> Path | None:
    return find_image(((composite.parent, composite.stem + "_mask"), (composite.parent / "masks", composite.stem)))


def list_images(folder: Path, *, skip_masks: bool = False) -> list[Path]:
    """The image files of ``folder`` (by extension; hidden files and, with ``skip_masks``, names
    ending in ``_mask`` left out), sorted; :class:`InputError` when there is none."""
    from ..errors import InputError
    from ..io import IMAGE_EXTENSIONS

    images = sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        and not (skip_masks and p.stem.endswith("_mask")) and not p.name.startswith(".")
    )
    if not images:
        raise InputError(f"{folder}: no images found ({' '.join(IMAGE_EXTENSIONS)})")
    return images


def list_folder(input_dir: Path) -> list[tuple[Path, Path | None]]:
    """(composite, mask or None) pairs of a folder, sorted by name (see the module docstring)."""
    from ..errors import InputError

    if not input_dir.exists():
        raise InputError(f"{input_dir}: no such folder")
    if not input_dir.is_dir():
        raise InputError(f"{input_dir}: not a folder")
    return [(p, _find_mask(p)) for p in list_images(input_dir, skip_masks=True)]


def report_failures(failed: list[tuple[Path, str]], total: int) -> int:
    """Folder modes' ending: list the failed items on stderr; EXIT_PARTIAL when any failed, else EXIT_OK."""
    if not failed:
        return EXIT_OK
    print(f"{len(failed)} of {total} failed:", file=sys.stderr)
    for path, message in failed:
        print(f"  {path}: {message}", file=sys.stderr)
    return EXIT_PARTIAL


def run(args) -> int:
    mode = _mode(args)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0 < args.mask_threshold <= 1:
        raise UsageError(f"--mask-threshold must be in (0, 1], got {args.mask_threshold}")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise UsageError(f"--max-pixels must be positive, got {args.max_pixels}")

    from ..io import check_output_path

    if mode == "single":
        inputs = (args.composite, args.mask)
    elif mode == "paste":
        inputs = (args.foreground, args.background)
    else:
        inputs = ()
    if mode != "folder":
        check_output_path(args.output, inputs)
        _prepare_folder(Path(args.output).parent)
    _check_figure(args.figure, inputs)
    if mode == "folder":
        return _run_folder(args)

    harmonizer = _harmonizer(args)
    target = "background" if args.harmonize_background else "foreground"
    if mode == "single":
        item = harmonizer.prepare(args.composite, args.mask, resize_mask=args.resize_mask)
    else:
        item = harmonizer.prepare_paste(args.foreground, args.background, args.position, args.scale)
    result = harmonizer.process([item], target=target, min_inharmony=args.min_inharmony)[0]
    written = _save(result, Path(args.output), inputs)
    print(f"{item.name}: {_describe(result)}; wrote {written}")
    if args.figure is not None:
        print(f"figure: {harmonize_figure([_thumbnail(result)], args.figure)}")
    return EXIT_OK


def _prepare_folder(folder: Path) -> None:
    """Create the output folder now, so an unwritable place fails before any work."""
    from ..io import make_folder

    make_folder(folder, "the output folder", writable=True)


def _harmonizer(args):
    from ..inference import Harmonizer

    return Harmonizer.from_pretrained(
        args.weights, backend=args.backend, device=args.device, size=args.size, batch_size=args.batch_size,
        method=args.method, threshold=args.mask_threshold, max_pixels=args.max_pixels,
    )


def _run_folder(args) -> int:
    from tqdm import tqdm

    input_dir, output_dir = args.input_dir, args.output_dir
    pairs = list_folder(input_dir)
    if output_dir.resolve() == input_dir.resolve():
        raise OutputError(f"{output_dir}: the output folder is the input folder; results would overwrite the inputs")
    _prepare_folder(output_dir)
    harmonizer = _harmonizer(args)
    target = "background" if args.harmonize_background else "foreground"
    failed: list[tuple[Path, str]] = []
    done, skipped, results = 0, 0, []
    progress = tqdm(total=len(pairs), desc="harmonize", unit="img", file=sys.stderr)
    for start in range(0, len(pairs), harmonizer.batch_size):
        prepared = []
        for composite, mask in pairs[start : start + harmonizer.batch_size]:
            if mask is None:
                failed.append((composite, f"no mask found (looked for {composite.stem}_mask.png and masks/{composite.stem}.png)"))
                progress.update(1)
                continue
            try:
                prepared.append((composite, mask, harmonizer.prepare(composite, mask, resize_mask=args.resize_mask)))
            except Exception as err:  # noqa: BLE001 - one bad item never stops the rest
                failed.append((composite, _message(err)))
                progress.update(1)
        if not prepared:
            continue
        try:
            outs, before, after = harmonizer.run_network([p for _, _, p in prepared], target=target)
        except Exception as err:  # noqa: BLE001
            failed.extend((c, _message(err)) for c, _, _ in prepared)
            progress.update(len(prepared))
            continue
        for (composite, mask, item), out, b, a in zip(prepared, outs, before, after):
            try:
                result = harmonizer.finish(item, out, float(b), float(a), target=target, min_inharmony=args.min_inharmony)
                _save(result, output_dir / composite.name, (composite, mask))
                done += 1
                skipped += result.skipped
                if result.skipped:
                    tqdm.write(f"{composite.name}: {_describe(result)}", file=sys.stderr)
                if args.figure is not None:
                    results.append(_thumbnail(result))
            except Exception as err:  # noqa: BLE001
                failed.append((composite, _message(err)))
            progress.update(1)
    progress.close()
    note = f" ({skipped} left untouched: below --min-inharmony {args.min_inharmony:g})" if skipped else ""
    print(f"harmonized {done} of {len(pairs)} images into {output_dir}{note}")
    if args.figure is not None and results:
        print(f"figure: {harmonize_figure(results, args.figure)}")
    return report_failures(failed, len(pairs))


def _message(err: Exception) -> str:
    if isinstance(err, UserError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def _thumbnail(result, max_side: int = 512):
    """Keep only small copies of what the figure shows (folder mode may hold many images)."""
    import copy

    import numpy as np
    from PIL import Image

    small = copy.copy(result)
    for name in ("image", "composite"):
        value = getattr(result, name)
        if not isinstance(value, Image.Image):
            arr = np.asarray(value)
            value = Image.fromarray(arr if arr.dtype == np.uint8 else np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8))
        image = value
        image = image.copy()
        image.thumbnail((max_side, max_side))
        setattr(small, name, image)
    mask = Image.fromarray(result.mask.astype(np.uint8) * 255)
    mask.thumbnail((max_side, max_side))
    small.mask = np.asarray(mask) >= 128
    small.rgb8 = None
    return small


def harmonize_figure(results, path: Path, *, max_rows: int = 24) -> Path:
    """Write a PNG grid, one row per result: composite | harmonized | mask, with the inharmony
    distance and score before (composite) and after (network output) in the titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..io import atomic_write

    rows = results[:max_rows]
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for ax_row, r in zip(axes, rows):
        b, a = r.before, r.after
        name = Path(str(r.name)).name if r.name else ""
        after = "untouched (below --min-inharmony)" if r.skipped else f"harmonized: inharmony {a.distance:.3g} (score {a.score:.3f})"
        panels = (
            (r.composite, f"{name}\ncomposite: inharmony {b.distance:.3g} (score {b.score:.3f})"),
            (r.image, after if r.target == "foreground" else "background " + after),
            (np.asarray(r.mask, dtype=np.uint8) * 255, "mask"),
        )
        for ax, (image, title) in zip(ax_row, panels):
            ax.imshow(np.asarray(image), cmap="gray" if np.asarray(image).ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    if len(results) > max_rows:
        fig.suptitle(f"first {max_rows} of {len(results)} images", fontsize=9)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
