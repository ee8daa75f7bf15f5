"""The fast path's final yield is shielded from cancel scopes: an admitted acquire stays admitted.

A cancel scope cancelled by another task while an uncontended acquire makes its final yield is
delivered at the caller's next checkpoint, not by undoing the admission (docs/design.md, "the
checkpoint rule").  On asyncio the shield is the wait queue's own (``_eventloop``: a yield on a
future that is already done, which anyio's cancellation skips), so this guards it against a
change in anyio; on trio it is trio's ``cancel_shielded_checkpoint``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest
from anyio.lowlevel import checkpoint

import throttle_trio as tt
from tests.helpers import settle

pytestmark = pytest.mark.anyio

Acquire = Callable[[], Coroutine[Any, Any, object]]


def _rate_limiter() -> tuple[Acquire, Callable[[], int]]:
    limiter = tt.RateLimiter(tt.TokenBucket(1, per=3600.0, burst=1))
    return limiter.acquire, lambda: limiter.statistics().admitted


def _capacity_limiter() -> tuple[Acquire, Callable[[], int]]:
    limiter = tt.CapacityLimiter(1)
    return limiter.acquire, lambda: limiter.statistics().borrowed_tokens


def _throttle() -> tuple[Acquire, Callable[[], int]]:
    throttle = tt.Throttle(requests=tt.TokenBucket(1, per=3600.0, burst=1), max_concurrent=1)

    async def acquire() -> object:
        return await throttle.acquire(requests=1)

    return acquire, lambda: throttle.statistics().in_flight


OWNERS = [
    pytest.param(_rate_limiter, id="RateLimiter"),
    pytest.param(_capacity_limiter, id="CapacityLimiter"),
    pytest.param(_throttle, id="Throttle"),
]


@pytest.mark.parametrize("owner", OWNERS)
async def test_a_scope_cancelled_during_the_final_yield_cancels_the_next_checkpoint(
    owner: Callable[[], tuple[Acquire, Callable[[], int]]], backend_name: str
) -> None:
    acquire, taken = owner()
    scope = anyio.CancelScope()
    returned = anyio.Event()
    steps: list[str] = []

    async def borrower() -> None:
        with scope:
            steps.append("acquiring")
            await acquire()  # admitted at once, then yields (shielded)
            steps.append("admitted")
            returned.set()
            await checkpoint()  # the cancellation lands here
            steps.append("not cancelled")

    async def canceller() -> None:
        if backend_name == "trio":  # trio runs a batch of new tasks in random order
            while not steps:
                await checkpoint()
        assert steps == ["acquiring"] or returned.is_set()
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(borrower)
        tg.start_soon(canceller)  # asyncio: runs while the borrower is in its final yield
    await settle()
    assert steps == ["acquiring", "admitted"]
    assert scope.cancelled_caught
    assert taken() == 1  # the admission stands
