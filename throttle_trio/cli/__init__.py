"""The ``throttle-trio`` command: ``batch``, ``serve`` and ``demo``.

Needs the ``cli`` extra (``pip install "throttle_trio[cli]"``).
"""

from __future__ import annotations

from .._extras import missing_extra as _missing_extra
from .._reexport import fixup_module_metadata as _fixup_module_metadata

try:
    from ._main import main as main
except ModuleNotFoundError as _error:  # pragma: no cover - exercised in a subprocess
    if _error.name != "httpx2":
        raise
    raise _missing_extra("the throttle-trio command", "cli", _error) from _error

__all__ = ["main"]

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata, _missing_extra
