"""What several commands print the same way."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EXIT_OK, EXIT_PARTIAL

#: One help text for --size wherever a model runs (harmonize, score, serve, export-onnx).
SIZE_HELP = (
    "working resolution S: the network runs at SxS (default: the model's own, 128 for the default model, "
    "256 for the paper's; S must be a multiple of the model's 2^levels, e.g. of 128 for the default model). "
    "The inharmony score does not depend on it (always measured at 256x256)"
)


def failure_line(path, message: str) -> str:
    """``path: message``, naming the path once (most messages already start with it)."""
    text = str(message)
    return text if str(path) in text else f"{path}: {text}"


def report_failures(failed: list[tuple[Path, str]], total: int) -> int:
    """Folder modes' ending: list the failed items on stderr; EXIT_PARTIAL when any failed, else EXIT_OK."""
    if not failed:
        return EXIT_OK
    print(f"{len(failed)} of {total} failed:", file=sys.stderr)
    for path, message in failed:
        print(f"  {failure_line(path, message)}", file=sys.stderr)
    return EXIT_PARTIAL


class OutputFolder:
    """An output folder checked before any work and created, with a note, only when the first
    file goes in: a run that fails on its input leaves nothing behind."""

    def __init__(self, folder, what: str = "the output folder"):
        import os

        from ..errors import OutputError

        self.folder, self.what = Path(folder), what
        self.ready = self.folder.is_dir()
        if self.ready:
            if not os.access(self.folder, os.W_OK):
                raise OutputError(f"{what} {self.folder} is not writable")
            return
        # The nearest existing ancestor must be a writable folder.
        parent = self.folder
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            where = "a file of that name exists" if parent == self.folder else f"{parent} is a file"
            raise OutputError(f"cannot create {what} {self.folder}: {where}")
        if not os.access(parent, os.W_OK):
            raise OutputError(f"cannot create {what} {self.folder}: {parent} is not writable")

    def ensure(self, say=None) -> Path:
        """Create the folder (and say so, through ``say`` when given: e.g. ``tqdm.write`` under a
        progress bar) if it does not exist yet."""
        from ..io import make_folder

        if not self.ready and not self.folder.is_dir():
            make_folder(self.folder, self.what, writable=True)
            (say or (lambda text: print(text, file=sys.stderr)))(f"created {self.what} {self.folder}")
        self.ready = True
        return self.folder


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


def strength_setting(text: str) -> float | str:
    """``--strength``: a number, "auto" or "learned" (argparse reports anything else as a usage error)."""
    from ..models.base import PER_IMAGE_STRENGTHS

    if text.strip().lower() in PER_IMAGE_STRENGTHS:
        return text.strip().lower()
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 2, 'auto' or 'learned', got {text!r}") from None


def calibration_setting(text: str) -> dict:
    """``--calibration``: ``key=value`` pairs separated by commas (the fields of
    :class:`bargainnet.models.base.Calibration`), checked there."""
    from ..errors import InputError
    from ..models.base import Calibration

    settings = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value pairs such as scale=0.8,placements=3, got {part!r}")
        try:
            settings[key.strip()] = int(value) if value.strip().isdigit() else float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{key.strip()} must be a number, got {value!r}") from None
    try:
        return Calibration.from_dict(settings, "--calibration").to_dict()
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
