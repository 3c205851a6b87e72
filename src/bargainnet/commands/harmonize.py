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
  end and the exit code is 5. With ``--sequence`` the images are the frames of one clip (e.g.
  ``ffmpeg -i clip.mp4 frames/%05d.png`` and its masks): all get one strength, so that the colour
  change does not flicker.

Exit codes: 0 done, 2 bad command line, 3 bad input, 4 output cannot be written (or would
overwrite an input), 5 folder mode finished but some items failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EXIT_OK, EXIT_USAGE, OutputError, UserError
from ..inference.figures import harmonize_figure, thumbnail
from .common import SIZE_HELP, OutputFolder, comma_pair, report_failures, strength_setting

HELP = "harmonize composites at full resolution (one image, a pasted cut-out, or a folder)"


class UsageError(UserError):
    """Options that do not go together."""

    exit_code = EXIT_USAGE


_position = comma_pair(int, "X,Y (two integers)")
#: how a per-image strength setting decides, in a result's line
_PER_IMAGE = {"auto": "measured", "learned": "learned"}


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
    folder.add_argument("--sequence", action="store_true",
                        help="the folder's images are the frames of one clip (in name order): every frame gets one "
                             "strength, the median of what --strength auto/learned gives up to 32 evenly spaced "
                             "frames, so that the colour change does not flicker (refused with --min-inharmony and "
                             "--keep-if-worse, which decide frame by frame)")
    model = parser.add_argument_group("model and processing")
    model.add_argument("--weights", help="weights (.safetensors, or .onnx); default: the installed default model")
    model.add_argument("--backend", choices=("pytorch", "onnxruntime"), default="pytorch")
    model.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    model.add_argument("--batch-size", type=int, default=4, help="images per network call in folder mode (default 4)")
    model.add_argument("--size", type=int, help=SIZE_HELP)
    model.add_argument("--method", choices=("auto", "transform", "lift", "upsample"), default="auto",
                       help="how the result reaches full resolution: transform = apply the model's predicted colour "
                            "transform to every pixel; lift = carry the network's colour change over with a fitted "
                            "local affine transform; upsample = upsample the output; auto (default) = transform "
                            "when the model predicts one, else lift")
    model.add_argument("--lift-radius", type=int, default=None, metavar="R",
                       help="lifting's window radius in working-size pixels (default: the radius the weights file "
                            "recommends, else 4); larger = a smoother colour change (docs/evaluation.md: 64 helped "
                            "the 128 px models on held-out photos)")
    model.add_argument("--strength", type=strength_setting, default=None, metavar="S",
                       help="how much of the model's colour change to apply, 0 to 2: 1 = the model's result, 0.5 = "
                            "half way between the input and it, above 1 = amplified; or 'auto': measured for each "
                            "image on its own background (one more network call per image); or 'learned': predicted "
                            "for each image by the weights file's strength head (default: what the weights file "
                            "recommends, else 1)")
    model.add_argument("--harmonize-background", action="store_true",
                       help="translate the background to the foreground's domain instead (paper §4.6)")
    model.add_argument("--min-inharmony", type=float, metavar="T",
                       help="leave images whose inharmony distance is below T untouched (and say so); the "
                       "distance is measured at 256x256 whatever --size or model, so T means the same everywhere")
    model.add_argument("--keep-if-worse", action="store_true",
                       help="when harmonizing raised an image's inharmony, write the input unchanged instead "
                       "(and say so); without it such results are written and flagged")
    model.add_argument("--resize-mask", action="store_true", help="resize a mask whose size differs from the composite")
    model.add_argument("--mask-threshold", type=float, default=0.5,
                       help="foreground where mask >= this fraction of full scale (default 0.5: >= 128 in 8 bits)")
    model.add_argument("--max-pixels", type=int, help="refuse images with more pixels (default 100,000,000)")
    parser.add_argument("--quality", type=int, default=95, metavar="Q",
                        help="JPEG/WebP quality 1-100 for lossy outputs (default 95; WebP 100 = lossless). "
                        "Background pixels are bit-identical only in lossless outputs (.png .tif .bmp)")
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
        if args.sequence and (args.min_inharmony is not None or args.keep_if_worse):
            raise UsageError("--sequence gives every frame the same treatment; --min-inharmony and --keep-if-worse "
                             "decide frame by frame (frames would flicker between harmonized and untouched)")
        if args.sequence and args.harmonize_background:
            raise UsageError("--sequence is for harmonizing the foreground; --harmonize-background uses a fixed strength")
        return "folder"
    if args.sequence:
        raise UsageError("--sequence is for a folder of frames (--input-dir/--output-dir)")
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


def _describe(result, per_image: str | None = None) -> str:
    """One line on a result; ``per_image``: how its strength was decided for it ("measured", "learned")."""
    b, a = result.before, result.after
    if result.skipped:
        return f"inharmony {b.distance:.4g} (score {b.score:.3f}): below --min-inharmony, left untouched"
    text = f"inharmony {b.distance:.4g} -> {a.distance:.4g} (score {b.score:.3f} -> {a.score:.3f})"
    if per_image:
        text += f", strength {result.strength:.2f} ({per_image})"
    if result.kept:
        return text + "; WORSE, so the input was kept unchanged (--keep-if-worse)"
    if result.got_worse:
        return text + "; WORSE: harmonizing raised the inharmony (--keep-if-worse keeps the input instead)"
    return text


def _save(result, path: Path, inputs, quality: int = 95) -> Path:
    from ..io import save_image

    from PIL import Image

    if isinstance(result.image, Image.Image) and result.image.mode == "RGB":
        return save_image(path, result.image, inputs=inputs, quality=quality)  # no conversion back
    rgb8 = result.rgb8
    if rgb8 is None:
        import numpy as np

        rgb8 = np.asarray(result.image.convert("RGB"))
    return save_image(path, rgb8, result.alpha, inputs=inputs, quality=quality)


def _check_figure(path: Path | None, inputs) -> OutputFolder | None:
    if path is None:
        return
    from ..io import check_output_path

    if path.suffix.lower() != ".png":
        raise OutputError(f"{path}: the figure is written as PNG; give a .png path")
    check_output_path(path, inputs)
    return OutputFolder(path.parent, "the figure folder")


def run(args) -> int:
    mode = _mode(args)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0 < args.mask_threshold <= 1:
        raise UsageError(f"--mask-threshold must be in (0, 1], got {args.mask_threshold}")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise UsageError(f"--max-pixels must be positive, got {args.max_pixels}")
    if not 1 <= args.quality <= 100:
        raise UsageError(f"--quality must be in 1..100, got {args.quality}")

    from ..io import check_output_path

    if mode == "single":
        inputs = (args.composite, args.mask)
    elif mode == "paste":
        inputs = (args.foreground, args.background)
    else:
        inputs = ()
    if mode != "folder":
        check_output_path(args.output, inputs)
        out_folder = OutputFolder(Path(args.output).parent)
    figure_folder = _check_figure(args.figure, inputs)
    if mode == "folder":
        return _run_folder(args, figure_folder)

    harmonizer = _harmonizer(args)
    target = "background" if args.harmonize_background else "foreground"
    if mode == "single":
        item = harmonizer.prepare(args.composite, args.mask, resize_mask=args.resize_mask)
    else:
        item = harmonizer.prepare_paste(args.foreground, args.background, args.position, args.scale)
    result = harmonizer.process([item], target=target, min_inharmony=args.min_inharmony,
                                keep_if_worse=args.keep_if_worse)[0]
    out_folder.ensure()
    written = _save(result, Path(args.output), inputs, args.quality)
    _announce(harmonizer, args)
    print(f"{item.name}: {_describe(result, _PER_IMAGE.get(harmonizer.strength))}; wrote {written}")
    if args.figure is not None:
        figure_folder.ensure()
        print(f"figure: {harmonize_figure([thumbnail(result)], args.figure)}")
    return EXIT_OK


def _harmonizer(args):
    from ..inference import Harmonizer

    return Harmonizer.from_pretrained(
        args.weights, backend=args.backend, device=args.device, size=args.size, batch_size=args.batch_size,
        method=args.method, threshold=args.mask_threshold, max_pixels=args.max_pixels,
        **({} if args.lift_radius is None else {"radius": args.lift_radius}),
        **({} if args.strength is None else {"strength": args.strength}),
    )


def _announce(harmonizer, args) -> None:
    """The model and its settings, once, on stderr (after the inputs were found good, so that an
    input error stays a one-line message)."""
    print(f"model: {args.weights or 'the default model'} ({harmonizer.describe()})", file=sys.stderr)


def _run_folder(args, figure_folder: OutputFolder | None) -> int:
    from tqdm import tqdm

    from ..io import pair_folder

    input_dir, output_dir = args.input_dir, args.output_dir
    pairs = pair_folder(input_dir)
    if output_dir.resolve() == input_dir.resolve():
        raise OutputError(f"{output_dir}: the output folder is the input folder; results would overwrite the inputs")
    out_folder = OutputFolder(output_dir)
    harmonizer = _harmonizer(args)
    _announce(harmonizer, args)
    target = "background" if args.harmonize_background else "foreground"
    strength = None
    if args.sequence:
        strength, measured = harmonizer.clip_strength(pairs, resize_mask=args.resize_mask)
        how = (f"the median of {len(measured)} frames' {_PER_IMAGE[harmonizer.strength]} strengths, "
               f"{min(measured):.2f}-{max(measured):.2f}") if measured else "fixed"
        print(f"clip strength {strength:.2f} ({how}), for all {len(pairs)} frames", file=sys.stderr)
    failed: list[tuple[Path, str]] = []
    done, skipped, thumbnails = 0, 0, []
    progress = tqdm(total=len(pairs), desc="harmonize", unit="img", file=sys.stderr)
    worse: list[str] = []
    kept = 0
    outcomes = harmonizer.iter_batch(pairs, target=target, resize_mask=args.resize_mask, min_inharmony=args.min_inharmony,
                                     keep_if_worse=args.keep_if_worse, strength=strength)
    for outcome in outcomes:
        composite, result = outcome.composite, outcome.result
        try:
            if not outcome.ok:
                raise outcome.error
            out_folder.ensure(lambda text: tqdm.write(text, file=sys.stderr))
            _save(result, output_dir / composite.name, (composite, outcome.mask), args.quality)
            done += 1
            skipped += result.skipped
            kept += result.kept
            if result.got_worse:
                worse.append(composite.name)
            if result.skipped or result.got_worse:
                tqdm.write(f"{composite.name}: {_describe(result)}", file=sys.stderr)
            if args.figure is not None:
                thumbnails.append(thumbnail(result))
        except Exception as err:  # noqa: BLE001 - one bad item never stops the rest
            outcome.error = err
            failed.append((composite, outcome.message))
        progress.update(1)
    progress.close()
    notes = []
    if skipped:
        notes.append(f"{skipped} left untouched: below --min-inharmony {args.min_inharmony:g}")
    if worse:
        what = "input kept (--keep-if-worse)" if kept else "written anyway; --keep-if-worse keeps the input"
        notes.append(f"{len(worse)} got worse, {what}: {', '.join(worse)}")
    note = f" ({'; '.join(notes)})" if notes else ""
    print(f"harmonized {done} of {len(pairs)} images into {output_dir}{note}")
    if args.figure is not None and thumbnails:
        figure_folder.ensure()
        print(f"figure: {harmonize_figure(thumbnails, args.figure)}")
    return report_failures(failed, len(pairs))
