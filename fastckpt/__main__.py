"""``python -m fastckpt``: the ``fastckpt`` command line (see :mod:`fastckpt.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
