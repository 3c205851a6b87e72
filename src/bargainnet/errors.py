"""Errors a user can fix, and the exit codes the CLI maps them to.

Every command raises :class:`UserError` (or a subclass) for bad input; the CLI prints its message
without a traceback and exits with ``exit_code``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # an unexpected error (a bug): traceback printed
EXIT_USAGE = 2  # bad command line (argparse's own code)
EXIT_BAD_INPUT = 3  # an input file or folder is missing, unreadable or inconsistent
EXIT_BAD_OUTPUT = 4  # an output cannot be written, or would overwrite an input
EXIT_PARTIAL = 5  # batch mode: some items failed, the others were written


class UserError(Exception):
    """An error caused by the user's input; its message says what is wrong and where."""

    exit_code = EXIT_BAD_INPUT


class InputError(UserError, ValueError):
    """A bad input file, image, mask, checkpoint or data root."""

    exit_code = EXIT_BAD_INPUT


class OutputError(UserError):
    """An output that cannot be written or that would overwrite an input."""

    exit_code = EXIT_BAD_OUTPUT


class MissingExtraError(UserError):
    """An optional part of the package is not installed; the message names the pip command."""

    exit_code = EXIT_BAD_INPUT


#: Optional extras (pyproject.toml) and what each one gives.
EXTRAS = {
    "train": "training",
    "onnx": "ONNX export and the onnxruntime backend",
    "web": "the web app",
    "bench": "the known-answer benchmark",
}


def require_extra(extra: str, *modules: str, purpose: str | None = None) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``modules`` imports.

    One helper for every command that needs an optional extra, so all of them say the same
    thing: ``<purpose> needs <module>: pip install "bargainnet[<extra>]"`` (no traceback).
    """
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            what = purpose or EXTRAS.get(extra, extra)
            raise MissingExtraError(f'{what} needs {module}: pip install "bargainnet[{extra}]"') from None
