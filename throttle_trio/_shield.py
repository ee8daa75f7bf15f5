"""A shield that also holds against asyncio's own cancellation, for calls that must finish.

``anyio.CancelScope(shield=True)`` keeps anyio's (and trio's) cancellation out, but on asyncio a
plain ``task.cancel()`` (what ``asyncio.TaskGroup``, ``asyncio.timeout()`` and ``wait_for()``
use) goes through it.  A Redis round trip interrupted that way may still have run on the server
(a booking made, a settle applied) while its caller never learns the outcome, so nothing can be
given back.  :func:`finish_then_cancel` runs such a call in a child task and waits for it
whatever happens; a cancellation that arrives meanwhile is taken back and delivered again once
the call is done, at the caller's next checkpoint, where the caller can undo what the call did.
Nothing outlives the caller: it always waits for the child.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["finish_then_cancel"]

T = TypeVar("T")


async def finish_then_cancel(call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call()`` to its end, even if the calling task is cancelled meanwhile.

    On asyncio a ``task.cancel()`` that arrives during the call is deferred: the call finishes
    (its result is returned, or its error raised) and the cancellation is requested again, to
    be delivered at the caller's next ``await``.  Elsewhere (trio), the caller's
    ``anyio.CancelScope(shield=True)`` is enough and the call is awaited directly.
    """
    try:
        current = asyncio.current_task()
    except RuntimeError:  # no asyncio loop in this thread: trio, where the shield holds
        return await call()

    async def run() -> T:
        return await call()

    inner = asyncio.ensure_future(run())
    deferred = False
    try:
        while True:
            try:
                return await asyncio.shield(inner)
            except asyncio.CancelledError:
                if inner.done() and inner.cancelled():
                    raise  # the call itself was cancelled (the loop is closing): nothing to wait
                if current is None or not current.cancelling():
                    raise
                current.uncancel()  # taken back until the call is done
                deferred = True
    finally:
        if deferred and current is not None:
            current.cancel()  # delivered at the caller's next checkpoint
