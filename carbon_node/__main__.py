"""``python -m carbon_node``: the ``carbon-node`` command line."""

import sys

from carbon_node.service.cli import main

if __name__ == "__main__":
    sys.exit(main())
