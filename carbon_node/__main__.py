"""``python -m carbon_node`` and the ``carbon-node`` command (its entry point is :func:`main`).

The command line is imported inside :func:`main`, not here: the measurement worker is a ``spawn``-ed
process, and ``spawn`` re-imports the module that started the program before the worker runs. For the
``carbon-node`` console script that is a file importing this module; a module-level import of the
command line would cost every worker the DDS and settings libraries (about 0.25 s of its start-up).
"""

import sys


def main() -> int:
    """Run the ``carbon-node`` command line with ``sys.argv``; the exit status."""
    from carbon_node.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
