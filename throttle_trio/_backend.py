"""The running event loop's anyio backend, looked up once per operation.

``anyio.lowlevel.checkpoint_if_cancelled()``, ``anyio.current_time()`` and friends each look
the backend up again (which library is running, then a dict).  On the hot path of an
uncontended acquire that lookup costs as much as the work, so the limiters look it up once
and call the backend's class methods directly, as anyio's own primitives do.  anyio does not
export the lookup; if a future release moves it, the public functions are used instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Backend", "current_backend"]


class Backend(Protocol):
    """What the limiters need from the running event loop."""

    def current_time(self) -> float: ...
    async def checkpoint_if_cancelled(self) -> None: ...
    async def cancel_shielded_checkpoint(self) -> None: ...


class _Public:
    """The public functions, for an anyio that no longer has the private lookup."""

    current_time = staticmethod(anyio.current_time)
    checkpoint_if_cancelled = staticmethod(anyio.lowlevel.checkpoint_if_cancelled)
    cancel_shielded_checkpoint = staticmethod(anyio.lowlevel.cancel_shielded_checkpoint)


def _public() -> Any:
    return _Public


_lookup: Callable[[], Any]
try:
    from anyio._core._eventloop import get_async_backend as _lookup
except ImportError:  # pragma: no cover - depends on anyio's internals
    _lookup = _public


def current_backend() -> Backend:
    """The running loop's backend (raises anyio's NoEventLoopError outside a loop)."""
    backend: Backend = _lookup()
    return backend
