"""Virtual clocks on both event loops: trio's ``MockClock`` and asyncio's ``looptime``.

Time jumps to the next deadline as soon as every task waits, so an hour of traffic runs in
milliseconds, and instants can be compared with ``==``.  trio keeps plain floats; looptime
keeps whole microseconds (an instant between two is reached at the next one).

trio and looptime are imported when a clock is made, not before: ``throttle_trio.testing``
imports without them (the ``testing`` extra installs both).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, TypeVar, TypeVarTuple, Unpack

import anyio

from ..._extras import missing_extra

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["BACKENDS", "Backend", "run_virtual", "virtual_backend"]

Backend: TypeAlias = Literal["asyncio", "trio"]
"""The name of an event loop that throttle_trio runs on."""

BACKENDS: Final[tuple[Backend, ...]] = ("asyncio", "trio")
"""Both event loops, in the order the pytest plugin runs them."""

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def virtual_backend(backend: str, *, start: float = 0.0) -> tuple[str, dict[str, Any]]:
    """The ``(backend, options)`` pair that runs ``backend`` on a fresh virtual clock.

    Pass it to ``anyio.run(fn, backend=..., backend_options=...)``, or return it from an
    ``anyio_backend`` fixture.  Each call makes a new clock (trio) or a factory of new loops
    (asyncio): one per test, or per Hypothesis example.

    Args:
        backend: ``"asyncio"`` or ``"trio"``.
        start: the clock's reading when the loop starts, in seconds (>= 0).

    Raises:
        ValueError: an unknown backend or a bad ``start``.
        ImportError: trio or looptime is not installed (the ``testing`` extra installs them).
    """
    if isinstance(start, bool) or not isinstance(start, int | float) or not math.isfinite(start):
        raise ValueError(f"start must be a finite number >= 0, got {start!r}")
    if start < 0:
        raise ValueError(f"start must be a finite number >= 0, got {start!r}")
    if backend == "trio":
        try:
            import trio.testing
        except ImportError as error:
            raise missing_extra("a virtual clock on trio", "testing", error) from error
        clock = trio.testing.MockClock(autojump_threshold=0)
        if start:
            clock.jump(start)
        return "trio", {"clock": clock}
    if backend == "asyncio":
        try:
            import looptime
        except ImportError as error:
            raise missing_extra("a virtual clock on asyncio", "testing", error) from error

        def new_loop() -> Any:
            loop = looptime.new_event_loop(start=start)
            setattr(loop, "shutdown_default_executor", _joining(loop.shutdown_default_executor))  # noqa: B010
            return loop

        return "asyncio", {"loop_factory": new_loop}
    raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")


def _joining(shutdown: Callable[[], Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """``loop.shutdown_default_executor`` for a looptime loop: wait for the threads, no timer.

    ``asyncio.run()`` and anyio's runner close a loop with
    ``loop.shutdown_default_executor(300)``.  From Python 3.13 that bound is a loop timer
    (``asyncio.timeout(300)``; 3.12 joined the thread with a real-time ``join(300)``), and the
    executor's threads exit in real time, on their own: a loop on virtual time sees nothing to
    do but a timer, jumps 300 s ahead and warns "The executor did not finish joining its
    threads within 300 seconds" (an error under ``-W error``) whenever a thread is slower to
    exit than looptime's few no-op cycles, which is why it came and went between runs.
    Waiting without the virtual timer lets the threads take the real time they need (what
    Python 3.11 did); a thread that never exits is a hang, which a test's timeout reports.
    """

    async def shutdown_default_executor(timeout: float | None = None) -> None:  # noqa: ASYNC109
        await shutdown()

    return shutdown_default_executor


def run_virtual(
    fn: Callable[[Unpack[Ts]], Awaitable[T]],
    *args: *Ts,
    backend: str = "trio",
    start: float = 0.0,
) -> T:
    """Run ``fn(*args)`` in a new event loop of ``backend`` on a fresh virtual clock.

    The synchronous twin of the pytest plugin's marker, for Hypothesis: call it once per
    example, so that every example starts on a new loop at ``start``.

    Args:
        fn: the async function to run.
        *args: its positional arguments.
        backend: ``"asyncio"`` or ``"trio"``.
        start: the clock's reading when the loop starts, in seconds.

    Returns:
        What ``fn`` returned.
    """
    name, options = virtual_backend(backend, start=start)
    return anyio.run(fn, *args, backend=name, backend_options=options)
