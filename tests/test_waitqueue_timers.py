"""The head's timer on asyncio: the queue sets it from the owner's ``ready`` query.

On asyncio the wait queue does not wake a new head that cannot go yet: it asks the owner's pure
``ready(cost, now)`` and sets the head's timer to that time (``_waitqueue._nudge``), so one
admission is one task switch.  A timer may fire a little early (asyncio fires up to its clock
resolution early; looptime's clock is microseconds); the head then finds it cannot go yet and
must sleep again, past the time it was set for, never without a timer.
"""

from __future__ import annotations

import anyio
import pytest

import throttle_trio as tt
from tests.helpers import settle

pytestmark = pytest.mark.anyio


def now() -> float:
    return anyio.current_time()


async def test_a_new_head_sleeps_on_the_time_ready_gives(backend_name: str) -> None:
    """The second waiter becomes the head at 1.0 and is woken once, at 2.0, to go."""
    limiter = tt.RateLimiter(tt.TokenBucket(1, burst=1))
    await limiter.acquire()  # empty: the next unit at 1.0, the one after at 2.0
    queue = limiter._queue
    times: list[float] = []

    async def waiter() -> None:
        await limiter.acquire()
        times.append(now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await settle()
        tg.start_soon(waiter)
        await settle()
        await anyio.sleep(1.5)  # the first went at 1.0; the second is the head
        (head,) = queue._waiters()
        if backend_name == "asyncio":
            assert head.alarm == 2.0  # set by the queue from ready(), the task still asleep
            assert head.wakeups == 0
    assert times == [1.0, 2.0]


async def test_a_head_whose_timer_fires_early_sleeps_again_and_goes(backend_name: str) -> None:
    """The head's timer fires at 1.5 instead of 2.0: it cannot go, sleeps past 2.0, goes."""
    if backend_name != "asyncio":
        pytest.skip("the queue sets a head's timer from ready() on asyncio only")
    limiter = tt.RateLimiter(tt.TokenBucket(1, burst=1))
    await limiter.acquire()
    queue = limiter._queue
    times: list[float] = []

    async def waiter() -> None:
        await limiter.acquire()
        times.append(now())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await settle()
            tg.start_soon(waiter)
            await settle()
            await anyio.sleep(1.5)
            (head,) = queue._waiters()
            assert head.alarm == 2.0
            head.timer.cancel()  # the timer set for 2.0 fires now, at 1.5, instead
            queue._on_timer(head)
            await settle()
            assert times == [1.0]  # woken, it could not go yet
            assert queue._waiters() == [head]
            assert head.timer is not None  # asleep again, with a timer
    assert times[0] == 1.0
    assert times[1] >= 2.0  # not before its time
