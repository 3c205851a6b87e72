"""What several commands print the same way."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EXIT_OK, EXIT_PARTIAL


def report_failures(failed: list[tuple[Path, str]], total: int) -> int:
    """Folder modes' ending: list the failed items on stderr; EXIT_PARTIAL when any failed, else EXIT_OK."""
    if not failed:
        return EXIT_OK
    print(f"{len(failed)} of {total} failed:", file=sys.stderr)
    for path, message in failed:
        print(f"  {path}: {message}", file=sys.stderr)
    return EXIT_PARTIAL


def comma_pair(convert, expected: str):
    """An argparse ``type`` for "A,B": two values converted by ``convert``; ``expected`` names the
    form in the error (e.g. "X,Y (two integers)")."""

    def parse(text: str) -> tuple:
        try:
            a, b = (convert(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        return a, b

    return parse
