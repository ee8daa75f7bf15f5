"""``python -m throttle_trio`` runs the ``throttle-trio`` command (as ``python -m
throttle_trio.cli`` does).

The command line is run, not imported: the library never imports it (tests/test_layering.py),
and importing this module does nothing.
"""

from __future__ import annotations

import runpy

__all__: list[str] = []

if __name__ == "__main__":
    runpy.run_module("throttle_trio.cli", run_name="__main__", alter_sys=True)
