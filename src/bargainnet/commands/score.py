"""``bargainnet score``: the inharmony of composites (paper §4.6).

The inharmony distance is d(z_b, z̃_f), the Euclidean distance between the domain codes of the
background and of the composite's foreground; the bounded harmony score is exp(−0.04212·d)
(1 = harmonious). Both are measured at one scale whatever the model and ``--size``: the image and
mask resized to 256×256 and the domain code extractor alone (an ``.onnx`` model reports its
graph's own numbers at its working size instead).

* one composite: ``bargainnet score COMPOSITE MASK [--after]``;
* a folder, masks as ``bargainnet harmonize --input-dir`` finds them (``<stem>_mask.png`` or
  ``masks/<stem>.png``): ``bargainnet score DIR [-o scores.csv]``
  (default: ``<DIR>_inharmony.csv`` beside the folder);
* a folder of composites and a folder of masks, matched by name (``<stem>.<ext>``, or for
  iHarmony4 names ``<real>_<maskid>_<k>.jpg`` the mask ``<real>_<maskid>.png``):
  ``bargainnet score COMPOSITES_DIR MASKS_DIR -o scores.csv``.

Folder mode writes a CSV sorted from the most to the least inharmonious (rank, name, composite,
mask, distance, score; with ``--after`` also distance_after, score_after, got_worse: the
inharmony of the harmonized image, and whether harmonizing raised it). One bad item never stops the rest; exit code 5 when some failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import SIZE_HELP

HELP = "inharmony distance d(z_b, z~_f) and harmony score exp(-0.04212 d) of composites (one, or a folder -> CSV)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("composite", help="composite image, or a folder of composites")
    parser.add_argument("mask", nargs="?", help="its mask (white = foreground), or a folder of masks")
    parser.add_argument("--after", action="store_true", help="also harmonize and report the inharmony after")
    parser.add_argument("-o", "--output", type=Path,
                        help="CSV to write (folder mode; default <folder>_inharmony.csv beside the folder)")
    parser.add_argument("--weights", help="weights (.safetensors or .onnx); default: the installed default model")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    parser.add_argument("--size", type=int, help=SIZE_HELP + "; only --after uses it")
    parser.add_argument("--batch-size", type=int, default=8, help="images per network call with --after (default 8)")
    parser.add_argument("--resize-mask", action="store_true", help="resize a mask whose size differs from the composite")
    parser.add_argument("--mask-threshold", type=float, default=0.5,
                        help="foreground where mask >= this fraction of full scale (default 0.5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _harmonizer(args):
    from ..inference import Harmonizer

    return Harmonizer.from_pretrained(
        args.weights, device=args.device, size=args.size, batch_size=args.batch_size, threshold=args.mask_threshold
    )


def _fmt_row(row: dict) -> str:
    text = f"inharmony distance {row['distance']:.4f}, score {row['score']:.4f}"
    if "distance_after" in row:
        text += f"; after harmonization: distance {row['distance_after']:.4f}, score {row['score_after']:.4f}"
        if row["got_worse"]:
            text += " (WORSE)"
    return text


def run(args: argparse.Namespace) -> int:
    from ..errors import EXIT_OK, InputError, OutputError, UserError

    composite = Path(args.composite)
    if composite.is_dir():
        return _run_folder(args, composite)
    if args.mask is None:
        raise InputError(f"{composite}: give its mask too (bargainnet score COMPOSITE MASK), or a folder")
    if Path(args.mask).is_dir():
        raise InputError(f"{args.mask} is a folder but {composite} is a single image; give its mask file")
    if args.output is not None:
        raise OutputError("--output is for folder mode; for one image the result is printed")
    harmonizer = _harmonizer(args)
    outcome = next(_outcomes(harmonizer, [(composite, Path(args.mask))], args))
    if not outcome.ok:
        if isinstance(outcome.error, UserError):
            raise outcome.error
        raise InputError(f"{composite}: {outcome.error}") from None
    print(f"{composite}: {_fmt_row(_row(outcome.result))}")
    return EXIT_OK


def _row(result) -> dict:
    row = {"distance": result.before.distance, "score": result.before.score}
    if result.after is not None:
        row.update(distance_after=result.after.distance, score_after=result.after.score, got_worse=result.got_worse)
    return row


def _outcomes(harmonizer, pairs, args):
    output = "scores" if args.after else "inharmony"
    return harmonizer.iter_batch(pairs, output=output, resize_mask=args.resize_mask)


def _run_folder(args, composite_dir: Path) -> int:
    import csv
    import io

    from tqdm import tqdm

    from ..errors import OutputError
    from ..evaluation.analysis import rank_by_inharmony
    from ..io import atomic_write_text, pair_folders
    from .common import report_failures

    pairs = pair_folders(composite_dir, Path(args.mask) if args.mask else None)
    # Beside the inputs, not in the current folder: where the user will look for it.
    resolved = composite_dir.resolve()
    out = args.output or resolved.parent / f"{resolved.name}_inharmony.csv"
    if out.suffix.lower() != ".csv":
        raise OutputError(f"{out}: the output is a CSV file; give a name ending in .csv")
    if out.exists() and out.is_dir():
        raise OutputError(f"{out}: is a folder; give a CSV file name")
    harmonizer = _harmonizer(args)
    rows, failed = [], []
    progress = tqdm(total=len(pairs), desc="score", unit="img", file=sys.stderr, disable=args.quiet)
    for outcome in _outcomes(harmonizer, pairs, args):
        c = outcome.composite
        if outcome.ok:
            rows.append({"name": c.name, "composite": str(c), "mask": str(outcome.mask), **_row(outcome.result)})
        else:
            failed.append((c, outcome.message))
        progress.update(1)
    progress.close()
    ranked = rank_by_inharmony(rows)
    if ranked:
        fields = list(ranked[0])
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for r in ranked:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
        atomic_write_text(out, buf.getvalue())
        worse = sum(bool(r.get("got_worse")) for r in ranked)
        note = f" ({worse} got worse when harmonized)" if worse else ""
        print(f"scored {len(ranked)} of {len(pairs)} composites{note}; most inharmonious first:")
        for r in ranked[:5]:
            print(f"  {r['rank']:>3}. {r['name']}: {_fmt_row(r)}")
        print(f"wrote {out}")
    return report_failures(failed, len(pairs))
