"""The ``throttle-trio`` command: ``batch``, ``serve`` and ``demo``.

Needs the ``cli`` extra (``pip install "throttle_trio[cli]"``).
"""

from __future__ import annotations

from ._main import main as main

__all__ = ["main"]
