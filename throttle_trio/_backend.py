"""The running event loop's anyio backend, looked up once per operation.

``anyio.lowlevel.checkpoint_if_cancelled()``, ``anyio.current_time()`` and friends each look
the backend up again (which library is running, then a dict).  On the hot path of an
uncontended acquire that lookup costs as much as the work, so the limiters look it up once
and call the backend's class methods directly, as anyio's own primitives do.  anyio does not
export the lookup; if a future release moves it, the public functions are used instead.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Protocol, final

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Callable

    from .policy.base import RatePolicy

__all__ = [
    "Backend",
    "LoopWatch",
    "current_backend",
    "running_backend",
    "shift_policy_clock",
    "time_for_read",
]

logger = logging.getLogger("throttle_trio")


class Backend(Protocol):
    """What the limiters need from the running event loop."""

    def current_time(self) -> float: ...
    def current_token(self) -> object: ...
    async def checkpoint_if_cancelled(self) -> None: ...
    async def cancel_shielded_checkpoint(self) -> None: ...


class _Public:
    """The public functions, for an anyio that no longer has the private lookup."""

    current_time = staticmethod(anyio.current_time)
    current_token = staticmethod(lambda: None)  # no way to tell loops apart: never "moved"
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


def running_backend() -> Backend | None:
    """The running loop's backend, or ``None`` outside any event loop (for reads)."""
    try:
        backend: Backend = _lookup()
    except anyio.NoEventLoopError:
        return None
    return backend


@final
class LoopWatch:
    """Notices that its owner is used from another event loop than before.

    Each loop's clock has its own origin: trio's starts at a random offset, a ``MockClock``
    and looptime at 0.  A limiter created at module level and used by two ``anyio.run`` calls
    in turn would otherwise keep the first loop's times, and on a clock that starts lower wait
    for it to catch up (hours).  Its owner shifts what it remembers by :meth:`moved`'s answer,
    carrying on where it was, as if no time passed between the loops (the safe choice: a
    loop's clock says nothing about the time between loops).
    """

    __slots__ = ("_last", "_token")

    def __init__(self) -> None:
        self._token: object = None
        self._last = math.nan

    @property
    def last(self) -> float:
        """The last time seen (NaN before the first use): outside any loop, reads use it."""
        return self._last

    def moved(self, backend: Backend, now: float) -> float:
        """The shift (seconds) to add to remembered times: 0.0 while in the same loop."""
        token = backend.current_token()
        last, self._last = self._last, now
        if token is self._token:
            return 0.0
        first = self._token is None
        self._token = token  # holding it keeps the old loop's token from being reused
        return 0.0 if first else now - last


def time_for_read(watch: LoopWatch, now: Callable[[Backend], float]) -> float:
    """The time a read uses: the running loop's (``now(backend)``), or outside any event loop
    the last time ``watch`` saw (0.0 if none).

    No time passes for a limiter while no loop runs (see :class:`LoopWatch`), so a read from
    plain code or another thread shows it as it was when last used, and changes nothing.
    """
    backend = running_backend()
    if backend is not None:
        return now(backend)
    last = watch.last
    return 0.0 if math.isnan(last) else last


def shift_policy_clock(policy: RatePolicy, delta: float, owner: object) -> None:
    """Shift ``policy``'s times after ``owner`` moved to another event loop (see above)."""
    try:
        policy.shift_clock(delta)
    except NotImplementedError:
        logger.warning(
            "%r is used from another event loop, whose clock has another origin, but %r "
            "cannot shift its times: it may wait for the new clock to catch up",
            owner,
            policy,
        )
