"""What several commands print the same way."""

from __future__ import annotations

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
