"""Helpers shared by the tests: virtual clocks on both backends, and letting tasks settle."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anyio

from throttle_trio import RatePolicy
from throttle_trio.testing import virtual_backend as kit_virtual_backend

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

BACKENDS = ["asyncio", "trio"]


def virtual_backend(name: str) -> tuple[str, dict[str, Any]]:
    """The ``(backend, options)`` pair that runs ``name`` on a fresh virtual clock at 0.

    The testing kit's: its looptime loops join asyncio's default executor without a loop
    timer (from Python 3.13 a plain looptime loop may warn that the executor did not finish
    joining within 300 seconds).
    """
    return kit_virtual_backend(name)


def run_virtual(fn: Callable[[], Awaitable[Any]], backend: str) -> Any:
    """Run ``fn()`` in a new event loop of ``backend`` on a fresh virtual clock."""
    name, options = virtual_backend(backend)
    return anyio.run(fn, backend=name, backend_options=options)


async def settle() -> None:
    """Let every runnable task run until it blocks, without moving virtual time.

    (``anyio.wait_all_tasks_blocked()`` sleeps 0.1 s between polls on asyncio, which moves a
    virtual clock; a few checkpoints are enough for tasks that block at their first await.)
    """
    for _ in range(10):
        await anyio.lowlevel.checkpoint()


class DelegatingPolicy(RatePolicy):
    """A RatePolicy that hands every call to ``inner``: subclass it to watch or alter one.

    It does not implement :meth:`RatePolicy.shift_clock` (the default raises), like a user's
    own policy that predates it.
    """

    def __init__(self, inner: RatePolicy) -> None:
        self._inner = inner

    @property
    def capacity(self) -> float:
        return self._inner.capacity

    @property
    def dropped(self) -> float:
        return self._inner.dropped

    def available(self, now: float) -> float:
        return self._inner.available(now)

    def ready_at(self, cost: float, now: float) -> float:
        return self._inner.ready_at(cost, now)

    def consume(self, cost: float, now: float) -> None:
        self._inner.consume(cost, now)

    def refund(self, amount: float, now: float, *, admitted_at: float | None = None) -> float:
        return self._inner.refund(amount, now, admitted_at=admitted_at)

    def reconfigure(self, now: float, **changes: float) -> None:
        self._inner.reconfigure(now, **changes)

    def limit_available(self, tokens: float, now: float) -> None:
        self._inner.limit_available(tokens, now)


async def cancel_after(
    start: Callable[[], Awaitable[Any]],
    steps: int,
    before_step: Callable[[int], Awaitable[None] | None] | None = None,
) -> bool:
    """Run ``start()`` as an asyncio task, let ``steps`` scheduler steps pass, then cancel it
    the way asyncio's own tools do (``task.cancel()``) and wait for it.

    ``before_step(i)`` runs before step ``i`` (to release a holder mid-way, say).  Returns
    whether the task had finished before the cancel: a sweep over ``steps = 0, 1, 2, ...``
    has cancelled at every await point once it returns True.
    """
    task = asyncio.ensure_future(start())
    for step in range(steps):
        if before_step is not None:
            outcome = before_step(step)
            if outcome is not None:
                await outcome
        await asyncio.sleep(0)
    finished_first = task.done()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        assert not finished_first
    return finished_first
