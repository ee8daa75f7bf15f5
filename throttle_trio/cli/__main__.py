"""``python -m throttle_trio.cli`` runs the ``throttle-trio`` command."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
