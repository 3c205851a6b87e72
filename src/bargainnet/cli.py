"""The ``bargainnet`` command.

Subcommands live in :mod:`bargainnet.commands`, one module each, and are imported at start-up
without their heavy dependencies: a command module imports torch, Lightning etc. inside ``run``,
so ``bargainnet --help`` is instant. Each command module defines ``HELP`` (one line), ``configure(parser)`` and
``run(args) -> int``.

Exit codes: 0 success; 1 unexpected error (a bug, traceback shown); 2 bad command line;
3 bad input; 4 output cannot be written; 5 batch finished but some items failed.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import EXIT_FAILURE, UserError

# name -> module under bargainnet.commands. Keep sorted by how often users need them.
COMMANDS: dict[str, str] = {
    "harmonize": "harmonize",
    "score": "score",
    "serve": "serve",
    "evaluate": "evaluate",
    "analyze": "analyze",
    "train": "train",
    "export-weights": "export_weights",
    "convert": "convert",
    "export-onnx": "export_onnx",
    "synth": "synth",
    "data": "data",
    "bradley-terry": "bradley_terry",
}


def _load(name: str):
    return importlib.import_module(f"bargainnet.commands.{COMMANDS[name]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``only`` command's options are built (all when None)."""
    parser = argparse.ArgumentParser(
        prog="bargainnet",
        description="BargainNet image harmonization: harmonize, score, evaluate, train.",
        epilog="Run 'bargainnet COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"bargainnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _load(name)
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        if only is None or name == only:
            module.configure(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen not in COMMANDS:
        chosen = None
    parser = build_parser(only=chosen)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(_load(args.command).run(args) or 0)
    except UserError as err:
        print(f"bargainnet {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
