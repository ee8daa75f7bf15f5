"""The ``throttle-trio`` command: ``batch``, ``serve`` and ``demo``.

Needs the ``cli`` extra (``pip install "throttle_trio[cli]"``).
"""

from __future__ import annotations

from .._reexport import fixup_module_metadata as _fixup_module_metadata
from ._main import main as main

__all__ = ["main"]

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
