"""The ``carbon-node`` command line: ``run``, ``send-task``, ``estimate``, ``doctor``, ``health``, ``config``,
``demo``, ``make-model``, ``results``, ``report``.

:mod:`.parser` declares the commands and their options, :mod:`.flags` turns settings into flags and
loads them, :mod:`.commands` holds the bodies (``estimate``'s in :mod:`.estimate`). This package is the
top of the layers: it may import every room, and no room imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from carbon_node.base import CarbonNodeError, version
from carbon_node.cli.commands import COMMANDS
from carbon_node.cli.flags import EXIT_USAGE, PROG
from carbon_node.cli.parser import build_parser
from carbon_node.service.settings import SettingsError

__all__ = ["build_parser", "main", "version"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``carbon-node``, ``python -m carbon_node`` and ``carbon_node.py``; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SettingsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CarbonNodeError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
