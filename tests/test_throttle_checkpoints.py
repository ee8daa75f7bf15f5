"""I5 for the Throttle: its acquire is a checkpoint on every call, the fast path included.

The Throttle waits in the shared wait queue through ``WaitQueue.acquire`` (the rate and
capacity limiters inline the same rule), so these guard that path: cancellation is checked
before anything is decided, and other tasks run before an uncontended acquire returns.
"""

from __future__ import annotations

import anyio
import pytest

import throttle_trio as tt

pytestmark = pytest.mark.anyio


def throttle() -> tt.Throttle:
    return tt.Throttle(
        requests=tt.TokenBucket(4, burst=10),
        tokens=tt.TokenBucket(1000, burst=1000),
        max_concurrent=2,
    )


async def test_an_acquire_in_a_cancelled_scope_takes_nothing() -> None:
    limiter = throttle()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire(requests=1, tokens=10)
        pytest.fail("acquire() in a cancelled scope returned")
    assert scope.cancelled_caught

    with anyio.CancelScope() as scope:
        scope.cancel()
        async with limiter.reserve(requests=1, tokens=10):
            pytest.fail("`async with reserve()` in a cancelled scope entered")
    assert scope.cancelled_caught

    stats = limiter.statistics()
    assert (stats.admitted, stats.in_flight, stats.tasks_waiting) == (0, 0, 0)
    assert stats.limits["requests"].available == 10
    assert stats.limits["tokens"].available == 1000


async def test_an_uncontended_acquire_lets_other_tasks_run() -> None:
    limiter = throttle()
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        # trio may run `other` after us within the first batch: two acquires guarantee it ran.
        (await limiter.acquire(requests=1)).release()
        (await limiter.acquire(requests=1)).release()
        assert ran
