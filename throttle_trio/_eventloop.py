"""The running event loop: its clock, its checkpoints, and how a task parks in it.

Theory of operation
-------------------
The limiters need five things from the event loop: its clock, its identity (a token), the
current task, the two halves of a checkpoint, and a way for a waiter to *park* (sleep until it
is woken, or until a time) and be *unparked* by another task.  anyio offers all of them, but
each public call looks the running library up again (sniffio, then a dict) and an anyio
``Event`` or ``CancelScope`` is a wrapper around the loop's own.  On the hot path that overhead
was most of the cost, so there is one :class:`Backend` per kind of loop, looked up once per
operation, whose methods are the loop's own primitives:

* **asyncio** (and uvloop, looptime, eager tasks): a parked waiter awaits a bare future; a
  timed wait is one ``loop.call_at`` handle.  Timers are callbacks, so the wait queue can check
  whether its head could go when the timer fires, and wake it only then (``timers``).  The
  cancel-shielded half of the checkpoint yields a future that is already done: anyio delivers
  a cancel scope's cancellation only to a task whose awaited future is not done (the same test
  that makes ``CancelScope(shield=True)`` work), so it is shielded from anyio's cancellation,
  and not from asyncio's own ``task.cancel()``, exactly as anyio's shield is (see
  ``_waitqueue``'s *undo*).  anyio's own ``checkpoint_if_cancelled`` is used, since only anyio
  knows its cancel scopes.
* **trio**: ``trio.lowlevel.wait_task_rescheduled`` and ``reschedule``, as trio's
  ``ParkingLot`` does; a timed wait adds a ``trio.CancelScope`` with the deadline (trio has no
  other timer).  The checkpoints are trio's.
* **anything else anyio runs on**: anyio's public API, an ``anyio.Event`` per parked waiter and
  an ``anyio.CancelScope`` for a deadline.

The running library is found the way anyio finds it (sniffio's thread-local override, its
context variable, then a running asyncio loop), without the calls around it.  anyio's backend
classes come from anyio's private ``get_async_backend``; if a future anyio moves it, the public
functions are used instead.
"""

from __future__ import annotations

import asyncio
import logging
import math
import types
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, final

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

    from .policy.base import RatePolicy

__all__ = [
    "Backend",
    "LoopWatch",
    "Parked",
    "current_backend",
    "running_backend",
    "running_loop",
    "shift_policy_clock",
    "time_for_read",
]

logger = logging.getLogger("throttle_trio")

_lookup: Callable[[str], Any] | None
try:
    from anyio._core._eventloop import get_async_backend as _lookup
except ImportError:  # pragma: no cover - depends on anyio's internals
    _lookup = None

try:
    import sniffio
except ImportError:  # pragma: no cover - anyio runs without it (asyncio only); trio needs it
    _sniffio_local: Any = None
    _sniffio_var: Any = None
else:
    _sniffio_local = sniffio.thread_local
    _sniffio_var = sniffio.current_async_library_cvar

_running_loop: Callable[[], asyncio.AbstractEventLoop | None]
try:
    from asyncio import _get_running_loop as _running_loop  # C, in asyncio.events.__all__
except ImportError:  # pragma: no cover - every CPython since 3.7 has it

    def _running_loop() -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None


#: The running asyncio loop of this thread, or ``None`` (trio, or no loop), without raising.
running_loop = _running_loop


class Parked(Protocol):
    """What a backend keeps in a parked waiter: its wake-up handle and its timer."""

    handle: Any  # asyncio: the future it awaits; trio: its task; anyio: its Event
    timer: Any  # asyncio: the call_at handle of its timed wait

    def abort(self, raise_cancel: object) -> Any:
        """trio's abort function for an untimed park: forget the handle, return
        ``Backend.aborted`` (a bound method is smaller than a closure per waiter)."""


class Backend:
    """What the limiters need from the running event loop (one instance per kind of loop).

    Attributes:
        name: the library's name, as sniffio says it.
        timers: whether :meth:`arm` can run a callback at a time without waking anyone.
        current_time: the loop's clock (seconds), the one ``anyio.current_time()`` reads.
        current_token: an object that identifies the running loop.
        current_task: anyio's ``TaskInfo`` of the current task (a ``CapacityLimiter`` borrower).
        checkpoint_if_cancelled: raise the cancellation if the task is cancelled, else nothing.
        cancel_shielded_checkpoint: let other tasks run; a cancel scope's cancellation is not
            delivered here (asyncio's ``task.cancel()`` is: see ``_waitqueue``).
        clock: the running loop's own clock function, which reads what :attr:`current_time`
            reads with fewer calls while the loop runs (see :class:`LoopWatch`).
    """

    __slots__ = (
        "cancel_shielded_checkpoint",
        "checkpoint_if_cancelled",
        "clock",
        "current_task",
        "current_time",
        "current_token",
        "name",
    )

    timers: ClassVar[bool] = False
    #: What :meth:`Parked.abort` returns (trio's ``Abort.SUCCEEDED``).
    aborted: ClassVar[Any] = None
    name: str
    current_time: Callable[[], float]
    current_token: Callable[[], object]
    current_task: Callable[[], object]
    checkpoint_if_cancelled: Callable[[], Awaitable[None]]
    cancel_shielded_checkpoint: Callable[[], Awaitable[None]]
    clock: Callable[[], Callable[[], float]]

    def park(
        self, waiter: Parked, wake_at: float, on_timer: Callable[[Any], None]
    ) -> Awaitable[bool]:
        """Park ``waiter``: awaiting the result sleeps until :meth:`unpark` (then it returns
        ``value``) or until ``wake_at`` (``False``).

        Cancellable like any wait.  Where the loop has :attr:`timers`, ``on_timer(waiter)``
        runs at ``wake_at`` instead, and decides whether to unpark; elsewhere the waiter wakes
        by itself.  The caller cancels ``waiter.timer`` (if any) when it stops waiting.
        """
        raise NotImplementedError  # pragma: no cover

    def unpark(self, waiter: Parked, value: bool) -> bool:
        """Wake ``waiter`` if it is parked and not already woken; return whether it was."""
        raise NotImplementedError  # pragma: no cover

    def parked_time(self, waiter: Parked) -> float | None:
        """The loop's time if ``waiter`` is parked and its timer can be moved, else ``None``."""
        return None

    def arm(self, waiter: Parked, when: float, on_timer: Callable[[Any], None]) -> None:
        """Move a parked ``waiter``'s timer to ``when`` (``math.inf``: no timer)."""
        raise NotImplementedError  # pragma: no cover

    def __repr__(self) -> str:
        return f"<throttle_trio backend {self.name}>"


def _anyio_backend_class(name: str) -> Any:
    """anyio's backend class for ``name``, or ``None`` if anyio no longer exposes it."""
    if _lookup is None:  # pragma: no cover - depends on anyio's internals
        return None
    try:
        return _lookup(name)
    except ImportError:  # pragma: no cover - anyio without that backend
        return None


# The current task's anyio TaskInfo (a CapacityLimiter borrower), kept in the task's own
# context: anyio builds a new one on every call, which costs more than an uncontended acquire's
# own work.  A task spawned from this one inherits the value, hence the check of the task's id.
_task_info: ContextVar[Any] = ContextVar("throttle_trio_task_info", default=None)


def _cached_task_info(
    current_task: Callable[[], object], make: Callable[[], Any]
) -> Callable[[], object]:
    def current_task_info() -> object:
        info = _task_info.get()
        if info is None or info.id != id(current_task()):
            info = make()
            _task_info.set(info)
        return info

    return current_task_info


# --------------------------------------------------------------------------------- asyncio


@types.coroutine
def _yield_shielded() -> Generator[Any, None, None]:
    """Let the other tasks run, shielded from anyio's cancel scopes (see the module docstring)."""
    loop = _running_loop()
    assert loop is not None
    done = loop.create_future()
    done.set_result(None)
    done._asyncio_future_blocking = True  # the Future protocol: "the task waits on this"
    yield done


@final
class _AsyncioBackend(Backend):
    __slots__ = ()

    timers: ClassVar[bool] = True

    def __init__(self) -> None:
        cls = _anyio_backend_class("asyncio")
        self.name = "asyncio"
        self.current_time = _asyncio_time
        self.current_token = _running_loop
        if cls is None:  # pragma: no cover - depends on anyio's internals
            self.current_task = anyio.get_current_task
            self.checkpoint_if_cancelled = anyio.lowlevel.checkpoint_if_cancelled
        else:
            self.current_task = _cached_task_info(asyncio.current_task, cls.get_current_task)
            self.checkpoint_if_cancelled = cls.checkpoint_if_cancelled
        self.cancel_shielded_checkpoint = _yield_shielded
        self.clock = _asyncio_clock

    def park(
        self, waiter: Parked, wake_at: float, on_timer: Callable[[Any], None]
    ) -> asyncio.Future[bool]:
        # A bare future: no coroutine of our own around it.  Once done it stays in
        # waiter.handle until the next park (unpark and parked_time ignore a done future).
        loop = _running_loop()
        assert loop is not None
        future: asyncio.Future[bool] = loop.create_future()
        waiter.handle = future
        if wake_at != math.inf:
            waiter.timer = loop.call_at(wake_at, on_timer, waiter)
        return future

    def unpark(self, waiter: Parked, value: bool) -> bool:
        future = waiter.handle
        if future is None or future.done():
            return False
        future.set_result(value)
        timer = waiter.timer
        if timer is not None:
            waiter.timer = None
            timer.cancel()
        return True

    def parked_time(self, waiter: Parked) -> float | None:
        future = waiter.handle
        if future is None or future.done():
            return None
        now: float = future.get_loop().time()
        return now

    def arm(self, waiter: Parked, when: float, on_timer: Callable[[Any], None]) -> None:
        timer = waiter.timer
        if timer is not None:
            timer.cancel()
        if when == math.inf:
            waiter.timer = None
        else:
            waiter.timer = waiter.handle.get_loop().call_at(when, on_timer, waiter)


def _asyncio_time() -> float:
    loop = _running_loop()
    if loop is None:
        raise anyio.NoEventLoopError("no asyncio event loop is running")
    return loop.time()


def _asyncio_clock() -> Callable[[], float]:
    loop = _running_loop()
    if loop is None:
        raise anyio.NoEventLoopError("no asyncio event loop is running")
    return loop.time


# ------------------------------------------------------------------------------------ trio


def _trio_backend() -> Backend:
    import trio
    import trio.lowlevel
    from outcome import Value  # trio's own dependency: what reschedule() sends
    from trio.lowlevel import Abort, current_task, reschedule, wait_task_rescheduled

    cls = _anyio_backend_class("trio")

    @final
    class _TrioBackend(Backend):
        __slots__ = ()

        aborted: ClassVar[Any] = Abort.SUCCEEDED

        def __init__(self) -> None:
            self.name = "trio"
            self.current_time = trio.current_time
            self.current_token = trio.lowlevel.current_trio_token
            self.current_task = _cached_task_info(
                current_task, anyio.get_current_task if cls is None else cls.get_current_task
            )
            self.checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
            self.cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint
            self.clock = _trio_clock

        def park(
            self, waiter: Parked, wake_at: float, on_timer: Callable[[Any], None]
        ) -> Awaitable[bool]:
            task = waiter.handle = current_task()
            if wake_at == math.inf:
                # Returned, not awaited here: the caller awaits it (no coroutine of our own).
                # Cancelled, waiter.abort forgets the task, so nobody may reschedule it.
                woken: Awaitable[bool] = wait_task_rescheduled(waiter.abort)  # noqa: ASYNC105
                return woken
            return _sleep_until(waiter, task, wake_at)

        def unpark(self, waiter: Parked, value: bool) -> bool:
            task = waiter.handle
            if task is None:
                return False
            waiter.handle = None
            reschedule(task, Value(value))
            return True

    def _trio_clock() -> Callable[[], float]:
        return trio.lowlevel.current_clock().current_time

    async def _sleep_until(waiter: Parked, task: trio.lowlevel.Task, wake_at: float) -> bool:
        woken = False  # what the scope means if it ever catches its own cancellation
        with trio.CancelScope(deadline=wake_at) as timer:

            def abort(_: object) -> Abort:
                waiter.handle = None  # nobody may reschedule it any more
                if timer.cancel_called:
                    # Our own deadline: wake it as a timer would, without raising and
                    # catching a Cancelled.  (An outer scope cancelled at the same instant
                    # is delivered at its next checkpoint.)
                    reschedule(task, Value(False))
                    return Abort.FAILED
                return Abort.SUCCEEDED

            woken = await wait_task_rescheduled(abort)
        return woken

    return _TrioBackend()


# ---------------------------------------------------------------------------- other loops


@final
class _AnyioBackend(Backend):
    """Any other loop anyio runs on: its public API (an Event per wait, a CancelScope timer)."""

    __slots__ = ()

    def __init__(self, name: str, cls: Any) -> None:
        self.name = name
        if cls is None:  # pragma: no cover - depends on anyio's internals
            self.current_time = anyio.current_time
            self.current_token = _no_token
            self.current_task = anyio.get_current_task
            self.checkpoint_if_cancelled = anyio.lowlevel.checkpoint_if_cancelled
            self.cancel_shielded_checkpoint = anyio.lowlevel.cancel_shielded_checkpoint
        else:
            self.current_time = cls.current_time
            self.current_token = cls.current_token
            self.current_task = cls.get_current_task
            self.checkpoint_if_cancelled = cls.checkpoint_if_cancelled
            self.cancel_shielded_checkpoint = cls.cancel_shielded_checkpoint
        self.clock = self._clock

    def _clock(self) -> Callable[[], float]:
        return self.current_time

    def park(
        self, waiter: Parked, wake_at: float, on_timer: Callable[[Any], None]
    ) -> Awaitable[bool]:
        return self._park(waiter, wake_at)

    async def _park(self, waiter: Parked, wake_at: float) -> bool:
        event = waiter.handle = anyio.Event()
        try:
            if wake_at == math.inf:
                await event.wait()
            else:
                with anyio.CancelScope(deadline=wake_at):
                    await event.wait()
        finally:
            waiter.handle = None
        return event.is_set()

    def unpark(self, waiter: Parked, value: bool) -> bool:
        event = waiter.handle
        if event is None or event.is_set():
            return False
        event.set()
        return True


def _no_token() -> object:  # pragma: no cover - no way to tell loops apart: never "moved"
    return None


# ------------------------------------------------------------------------------- look-up

_backends: dict[str | None, Backend] = {}


def _library() -> str | None:
    """The running async library's name, as anyio finds it (sniffio's first steps, inlined
    in :func:`current_backend`)."""
    if _sniffio_local is not None:
        name: str | None = _sniffio_local.name or _sniffio_var.get()
        if name is not None:
            return name
    return "asyncio" if _running_loop() is not None else None


def current_backend() -> Backend:
    """The running loop's backend (raises anyio's NoEventLoopError outside a loop)."""
    name: str | None = None
    if _sniffio_local is not None:
        name = _sniffio_local.name or _sniffio_var.get()
    if name is None and _running_loop() is not None:
        name = "asyncio"
    try:
        return _backends[name]
    except KeyError:
        return _new_backend(name)


def _new_backend(name: str | None) -> Backend:
    if name is None:
        raise anyio.NoEventLoopError(
            "Not currently running on any asynchronous event loop. "
            "Available async backends: asyncio, trio"
        )
    if name == "asyncio":
        backend: Backend = _AsyncioBackend()
    elif name == "trio":
        backend = _trio_backend()
    else:  # pragma: no cover - anyio runs on asyncio and trio today
        backend = _AnyioBackend(name, _anyio_backend_class(name))
    _backends[name] = backend
    return backend


def running_backend() -> Backend | None:
    """The running loop's backend, or ``None`` outside any event loop (for reads)."""
    if _library() is None:
        return None
    return current_backend()


@final
class LoopWatch:
    """Notices that its owner is used from another event loop than before.

    Each loop's clock has its own origin: trio's starts at a random offset, a ``MockClock``
    and looptime at 0.  A limiter created at module level and used by two ``anyio.run`` calls
    in turn would otherwise keep the first loop's times, and on a clock that starts lower wait
    for it to catch up (hours).  Its owner shifts what it remembers by :meth:`moved`'s answer,
    carrying on where it was, as if no time passed between the loops (the safe choice: a
    loop's clock says nothing about the time between loops).

    Attributes:
        token: the loop last seen (``backend.current_token()``), ``None`` before the first use.
        time: that loop's clock (``backend.clock()``): while ``token`` is the running loop's,
            an owner may read the time with it and set :attr:`last` instead of calling
            :meth:`moved` (the hot path).
        last: the last time seen (NaN before the first use): outside any loop, reads use it.
    """

    __slots__ = ("last", "time", "token")

    def __init__(self) -> None:
        self.token: object = None
        self.time: Callable[[], float] = _nan
        self.last = math.nan

    def moved(self, backend: Backend, now: float) -> float:
        """The shift (seconds) to add to remembered times: 0.0 while in the same loop."""
        token = backend.current_token()
        last, self.last = self.last, now
        if token is self.token:
            return 0.0
        first = self.token is None
        self.token = token  # holding it keeps the old loop's token from being reused
        self.time = backend.clock()
        return 0.0 if first else now - last


def _nan() -> float:
    return math.nan


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
