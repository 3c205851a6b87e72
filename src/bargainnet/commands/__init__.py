"""Subcommands of the ``bargainnet`` CLI, one module each (see :mod:`bargainnet.cli`)."""
