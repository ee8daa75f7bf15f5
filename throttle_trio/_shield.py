"""A shield that also holds against asyncio's own cancellation, for calls that must finish.

``anyio.CancelScope(shield=True)`` keeps anyio's (and trio's) cancellation out, but on asyncio a
plain ``task.cancel()`` (what ``asyncio.TaskGroup``, ``asyncio.timeout()`` and ``wait_for()``
use) goes through it.  A Redis round trip interrupted that way may still have run on the server
(a booking made, a settle applied) while its caller never learns the outcome, so nothing can be
given back.  :func:`finish_then_cancel` runs such a call to its end; a cancellation that
arrives meanwhile is held back and delivered once the call is done, at the caller's next
checkpoint, where the caller can undo what the call did.

On asyncio the call runs in the calling task itself, not in a child task: the calling task
waits on each future the call waits on through a stand-in (:class:`_Uncancellable`) whose
``cancel()`` refuses, so ``task.cancel()`` only marks the task, and asyncio throws the
``CancelledError`` in once that future is done; the driver (:func:`_drive`) takes it, resumes
the call as if nothing happened, and requests the cancellation again at the end.  A child task
and ``asyncio.shield`` cost three passes of the event loop more per round trip, a third of an
uncontended admission's time through Redis.  The call's own deadline cancels the future the
call waits on, which the call sees as a cancellation where it waits, as it would from a cancel
scope.
"""

from __future__ import annotations

import asyncio
import math
import types
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._eventloop import running_loop

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Generator

__all__ = ["DeadlinePassed", "finish_then_cancel"]

T = TypeVar("T")


class DeadlinePassed(Exception):
    """The call was still running at its deadline, and was cancelled there."""


async def finish_then_cancel(call: Callable[[], Awaitable[T]], deadline: float = math.inf) -> T:
    """Await ``call()`` to its end, shielded, even if the calling task is cancelled meanwhile.

    Shielded from cancel scopes (``anyio.CancelScope(shield=True)``).  On asyncio a
    ``task.cancel()`` that arrives during the call is held back too: the call finishes (its
    result is returned, or its error raised) and the cancellation is requested again, to be
    delivered at the caller's next ``await``.

    At ``deadline`` (the loop's clock) the call is cancelled where it waits, and
    :class:`DeadlinePassed` is raised once it has unwound.
    """
    loop = running_loop()
    task = None if loop is None else asyncio.current_task(loop)
    if task is None:  # trio (or another loop anyio runs on), where the shield holds
        with anyio.CancelScope(shield=True, deadline=deadline):
            return await call()
        raise DeadlinePassed
    coro = call()
    if not isinstance(coro, types.CoroutineType):  # an awaitable of another kind
        coro = _as_coroutine(coro)
    with anyio.CancelScope(shield=True):
        return await _drive(coro, task, deadline)
    # A shielded scope that nobody cancels catches nothing: the call returned or raised.
    raise AssertionError("unreachable")  # pragma: no cover


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


class _Uncancellable:
    """What the task waits on in place of the call's ``future``: the same future for the
    task, except that ``cancel()`` refuses (asyncio's Future protocol, duck-typed)."""

    __slots__ = ("_asyncio_future_blocking", "future")

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future
        self._asyncio_future_blocking = True

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.future.get_loop()

    def add_done_callback(self, fn: Callable[[Any], object], *, context: Any = None) -> None:
        # The task's own wake-up, on the future itself: no extra pass of the loop.
        self.future.add_done_callback(fn, context=context)

    def cancel(self, msg: Any = None) -> bool:
        # Refused: task.cancel() then sets the task's "must cancel" mark, and asyncio throws
        # the CancelledError in when the future is done (see _drive).
        return False

    def done(self) -> bool:
        return self.future.done()

    def result(self) -> Any:
        return self.future.result()

    def __repr__(self) -> str:
        return f"<uncancellable {self.future!r}>"


@types.coroutine
def _drive(
    coro: Coroutine[Any, Any, T], task: asyncio.Task[Any], deadline: float
) -> Generator[Any, None, T]:
    """Run ``coro`` inside ``task`` to its end, holding back the task's cancellation."""
    cancelling = task.cancelling()
    waiting: asyncio.Future[Any] | None = None  # the future the call waits on, if any
    expired = False
    timer = None
    if deadline != math.inf:

        def expire() -> None:
            nonlocal expired
            expired = True
            if waiting is not None:
                waiting.cancel()  # the call sees it where it waits

        timer = task.get_loop().call_at(deadline, expire)
    error: BaseException | None = None
    try:
        while True:
            try:
                if error is None:
                    yielded = coro.send(None)
                else:
                    yielded, error = coro.throw(error), None
            except StopIteration as stop:
                value: T = stop.value
                return value
            except asyncio.CancelledError:
                if expired:
                    raise DeadlinePassed from None
                raise
            if yielded is None:  # a bare yield: one pass of the loop
                waiting = None
                try:  # noqa: SIM105 - the hot path: no context manager per pass
                    yield None
                except asyncio.CancelledError:
                    pass  # held back (the task's count of requests keeps it)
                if expired:  # nothing to cancel when it passed: the call sees it now
                    error = asyncio.CancelledError()
                continue
            if getattr(yielded, "_asyncio_future_blocking", None) is not True:
                error = RuntimeError(f"a call shielded by finish_then_cancel yielded {yielded!r}")
                continue
            yielded._asyncio_future_blocking = False
            waiting = yielded
            try:  # noqa: SIM105 - as above
                yield _Uncancellable(yielded)
            except (Exception, asyncio.CancelledError):
                # Thrown in once the future is done: the future's own error, the task's
                # held-back cancellation (the future holds the call's outcome) or the
                # deadline's, which cancelled the future.  The call reads the future itself.
                pass
            waiting = None
    finally:
        if timer is not None:
            timer.cancel()
        coro.close()  # a no-op once it has finished; unwinds it if this driver is closed
        if task.cancelling() > cancelling:  # cancelled meanwhile: delivered at the next await
            task.uncancel()
            task.cancel()
