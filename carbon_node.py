#!/usr/bin/env python3
"""Run the Carbon Footprint node, as upstream's ``python3 carbon_footprint_node.py`` does.

``python3 carbon_node.py [RUN OPTIONS]`` is ``carbon-node run [RUN OPTIONS]``: configure it with the
upstream environment variables (SUSTAINML_DOMAIN_ID, SUSTAINML_GRID_CI, CT_TARGET_SECONDS) or any
``carbon-node run`` flag. Python resolves ``import carbon_node`` below to the package directory next
to this file (a package takes precedence over a module of the same name). The import is inside the
``__main__`` block: the measurement worker's ``spawn`` re-imports this file, and must not pay for the
command line's libraries.
"""

import sys

if __name__ == "__main__":
    from carbon_node.cli import main

    sys.exit(main(["run", *sys.argv[1:]]))
