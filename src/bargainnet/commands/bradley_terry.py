"""``bargainnet bradley-terry``: Bradley–Terry scores from a CSV of (winner, loser) rows."""

from __future__ import annotations

import argparse

HELP = "Bradley-Terry scores with standard errors from pairwise preferences (CSV rows: winner, loser)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        HELP + ". The CSV has a header with 'winner' and 'loser' columns (and optionally 'count'), "
        "or no header and the winner, loser in the first two columns. Scores are centred "
        "log-strengths (minorise-maximise maximum-likelihood fit, Hunter 2004); P(a beats b) = "
        "1 / (1 + exp(score_b - score_a))."
    )
    parser.add_argument("pairs", metavar="PAIRS.csv", help="comparisons, one (winner, loser) per row")
    parser.add_argument(
        "--prior",
        type=float,
        default=0.0,
        help="virtual wins and losses of each item against an average one (shrinkage; needed when "
        "some item never won or never lost); default 0 = plain maximum likelihood",
    )
    parser.add_argument("-o", "--output", help="also write the table as CSV (or .md / .json by extension)")


def run(args: argparse.Namespace) -> int:
    import csv
    import io
    import json
    from pathlib import Path

    from ..errors import OutputError
    from ..evaluation.bradley_terry import fit, read_pairs
    from ..io import atomic_write_text

    out = Path(args.output) if args.output else None
    if out is not None and out.exists() and out.resolve() == Path(args.pairs).resolve():
        raise OutputError(f"output {out} would overwrite the input {args.pairs}")
    pairs = read_pairs(args.pairs)
    result = fit(pairs, prior=args.prior)
    print(f"{len(pairs)} comparisons between {len(result.items)} items"
          + (f", prior {args.prior}" if args.prior else "") + "\n")
    print(result.to_markdown(), end="")
    if not result.converged:
        print(f"warning: the fit did not converge in {result.iterations} iterations")
    if out is not None:
        rows = result.rows()
        if out.suffix.lower() == ".md":
            text = result.to_markdown()
        elif out.suffix.lower() == ".json":
            text = json.dumps({"n_comparisons": len(pairs), "prior": args.prior, "items": rows}, indent=2)
        else:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            text = buf.getvalue()
        atomic_write_text(out, text)
        print(f"wrote {out}")
    return 0
