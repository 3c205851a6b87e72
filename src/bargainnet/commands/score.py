"""``bargainnet score``: the inharmony of composites (paper §4.6).

The inharmony distance is d(z_b, z̃_f), the Euclidean distance between the domain codes of the
background and of the composite's foreground; the bounded harmony score is exp(−0.04212·d)
(1 = harmonious). Both are computed at the model's working size (the image and mask are resized).

* one composite: ``bargainnet score COMPOSITE MASK [--after]``;
* a folder, masks as ``bargainnet harmonize --input-dir`` finds them (``<stem>_mask.png`` or
  ``masks/<stem>.png``): ``bargainnet score DIR -o scores.csv``;
* a folder of composites and a folder of masks, matched by name (``<stem>.<ext>``, or for
  iHarmony4 names ``<real>_<maskid>_<k>.jpg`` the mask ``<real>_<maskid>.png``):
  ``bargainnet score COMPOSITES_DIR MASKS_DIR -o scores.csv``.

Folder mode writes a CSV sorted from the most to the least inharmonious (rank, name, composite,
mask, distance, score; with ``--after`` also distance_after, score_after: the inharmony of the
harmonized image). One bad item never stops the rest; exit code 5 when some failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "inharmony distance d(z_b, z~_f) and harmony score exp(-0.04212 d) of composites (one, or a folder -> CSV)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("composite", help="composite image, or a folder of composites")
    parser.add_argument("mask", nargs="?", help="its mask (white = foreground), or a folder of masks")
    parser.add_argument("--after", action="store_true", help="also harmonize and report the inharmony after")
    parser.add_argument("-o", "--output", type=Path, help="CSV to write (folder mode; default outputs/inharmony-<folder>.csv)")
    parser.add_argument("--weights", help="weights (.safetensors or .onnx); default: the installed default model")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    parser.add_argument("--size", type=int, help="working size (default: the model's, 256 for the paper's)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per network call with --after (default 8)")
    parser.add_argument("--resize-mask", action="store_true", help="resize a mask whose size differs from the composite")
    parser.add_argument("--mask-threshold", type=float, default=0.5,
                        help="foreground where mask >= this fraction of full scale (default 0.5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _mask_for(composite: Path, mask_dir: Path) -> Path | None:
    """The mask of ``composite`` in ``mask_dir``: same stem, or the iHarmony4 ``<real>_<maskid>``."""
    from .harmonize import find_image

    stems = [composite.stem]
    parts = composite.stem.rsplit("_", 2)
    if len(parts) == 3 and all(parts):
        stems.append(f"{parts[0]}_{parts[1]}")
    return find_image((mask_dir, stem) for stem in stems)


def list_pairs(composite_dir: Path, mask_dir: Path | None) -> list[tuple[Path, Path | None]]:
    """(composite, mask or None) pairs of folder mode, sorted by composite name."""
    from ..errors import InputError
    from .harmonize import list_folder, list_images

    if mask_dir is None:
        return list_folder(composite_dir)
    if not mask_dir.is_dir():
        raise InputError(f"{mask_dir}: the composite argument is a folder, so the mask argument must be a folder of masks")
    return [(p, _mask_for(p, mask_dir)) for p in list_images(composite_dir)]


def _harmonizer(args):
    from ..inference import Harmonizer

    return Harmonizer.from_pretrained(
        args.weights, device=args.device, size=args.size, batch_size=args.batch_size, threshold=args.mask_threshold
    )


def _fmt_row(row: dict) -> str:
    text = f"inharmony distance {row['distance']:.4f}, score {row['score']:.4f}"
    if "distance_after" in row:
        text += f"; after harmonization: distance {row['distance_after']:.4f}, score {row['score_after']:.4f}"
    return text


def run(args: argparse.Namespace) -> int:
    from ..errors import EXIT_OK, InputError, OutputError

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
    row = _score_items(harmonizer, [(composite, Path(args.mask))], args)[0]
    if isinstance(row, Exception):
        raise row
    print(f"{composite}: {_fmt_row(row)}")
    return EXIT_OK


def _score_items(harmonizer, pairs, args) -> list:
    """Rows (dicts) or the exception of each item, in order."""
    from ..errors import InputError, UserError
    from ..models.bargainnet import harmony_score

    results: list = [None] * len(pairs)
    prepared = []
    for i, (c, m) in enumerate(pairs):
        try:
            if args.after:
                prepared.append((i, harmonizer.prepare(c, m, resize_mask=args.resize_mask)))
            else:  # the domain code extractor only
                inh = harmonizer.score(c, m, resize_mask=args.resize_mask)
                results[i] = {"distance": inh.distance, "score": inh.score}
        except (UserError, OSError, ValueError) as err:
            results[i] = err if isinstance(err, UserError) else InputError(f"{c}: {err}")
    for start in range(0, len(prepared), harmonizer.batch_size):
        chunk = prepared[start : start + harmonizer.batch_size]
        _, before, after = harmonizer.run_network([item for _, item in chunk])
        for (i, _), b, a in zip(chunk, before, after):
            results[i] = {
                "distance": float(b), "score": float(harmony_score(float(b))),
                "distance_after": float(a), "score_after": float(harmony_score(float(a))),
            }
    return results


def _run_folder(args, composite_dir: Path) -> int:
    import csv
    import io

    from tqdm import tqdm

    from ..errors import OutputError
    from ..evaluation.analysis import rank_by_inharmony
    from ..io import atomic_write_text
    from .harmonize import report_failures

    mask_dir = Path(args.mask) if args.mask else None
    pairs = list_pairs(composite_dir, mask_dir)
    out = args.output or Path("outputs") / f"inharmony-{composite_dir.resolve().name}.csv"
    if out.suffix.lower() != ".csv":
        raise OutputError(f"{out}: the output is a CSV file; give a name ending in .csv")
    if out.exists() and out.is_dir():
        raise OutputError(f"{out}: is a folder; give a CSV file name")
    harmonizer = _harmonizer(args)
    rows, failed = [], []
    step = max(1, harmonizer.batch_size)
    progress = tqdm(total=len(pairs), desc="score", unit="img", file=sys.stderr, disable=args.quiet)
    for start in range(0, len(pairs), step):
        chunk = pairs[start : start + step]
        todo = [(c, m) for c, m in chunk if m is not None]
        for c, m in chunk:
            if m is None:
                where = f"in {mask_dir}" if mask_dir else f"({c.stem}_mask.png or masks/{c.stem}.png)"
                failed.append((c, f"no mask found {where}"))
        for (c, m), res in zip(todo, _score_items(harmonizer, todo, args)):
            if isinstance(res, Exception):
                failed.append((c, str(res)))
            else:
                rows.append({"name": c.name, "composite": str(c), "mask": str(m), **res})
        progress.update(len(chunk))
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
        print(f"scored {len(ranked)} of {len(pairs)} composites; most inharmonious first:")
        for r in ranked[:5]:
            print(f"  {r['rank']:>3}. {r['name']}: {_fmt_row(r)}")
        print(f"wrote {out}")
    return report_failures(failed, len(pairs))
