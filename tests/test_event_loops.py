"""A limiter used by one event loop after another (module-level limiters, one ``anyio.run``
per test) carries on where it was, on both backends.

Each loop's clock has its own origin: trio's system clock starts at a random offset, a
``MockClock`` and looptime at 0.  Without care a limiter keeps the first loop's times: on a
clock that starts lower it waits for the new clock to catch up (100 s here, hours on trio's
system clock), on one that starts higher it finds its bucket refilled (a second burst at
once).  The rule: no time passes between two loops.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import looptime
import pytest
import trio.testing

import throttle_trio as tt
from tests.helpers import BACKENDS, DelegatingPolicy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

# Where the second loop's clock starts: below the first loop's times, and above them.
STARTS = [0.0, 1000.0]


def run_at(fn: Callable[[], Awaitable[Any]], backend: str, start: float) -> Any:
    """Run ``fn()`` in a new loop whose virtual clock starts at ``start``."""
    if backend == "trio":
        clock = trio.testing.MockClock(autojump_threshold=0)
        clock.jump(start)
        return anyio.run(fn, backend="trio", backend_options={"clock": clock})
    factory = lambda: looptime.new_event_loop(start=start)  # noqa: E731
    return anyio.run(fn, backend="asyncio", backend_options={"loop_factory": factory})


def policies() -> list[tt.RatePolicy]:
    return [tt.TokenBucket(1, burst=2), tt.GCRA(1, burst=2), tt.SlidingWindow(2, window=2.0)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("index", range(3), ids=["TokenBucket", "GCRA", "SlidingWindow"])
def test_a_limiter_carries_on_in_the_next_loop(backend: str, start: float, index: int) -> None:
    limiter = tt.RateLimiter(policies()[index])

    async def first() -> float:
        await anyio.sleep(100)
        await limiter.acquire(2)  # empty at 100 s
        await limiter.acquire()  # waits: the loop ends at its admission
        return anyio.current_time()

    async def second() -> float:
        await limiter.acquire()
        return anyio.current_time()

    # The buckets refill a unit a second; the window frees the two units of 100 s at 102 s.
    assert run_at(first, backend, 0.0) == (102 if index == 2 else 101)
    # The second loop begins where the first ended: no stall until its clock passes 101 s,
    # no refill between the loops.  The window then holds the unit of 102 s only.
    assert run_at(second, backend, start) == start + (0 if index == 2 else 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("start", STARTS)
def test_a_throttle_carries_its_pause_and_adaptive_rate_on(backend: str, start: float) -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(8, burst=1), adaptive=True)

    async def first() -> None:
        await anyio.sleep(100)
        async with throttle.reserve(requests=1):
            pass
        throttle.pause_for(30)  # a 429 at 100 s
        throttle.record_overload()  # the rate is cut to 4/s, next cut after 1 s

    async def second() -> tuple[float, float]:
        async with throttle.reserve(requests=1):
            admitted = anyio.current_time()
        throttle.record_overload()  # 30 s after the first cut: cuts again
        return admitted, throttle.statistics().limits["requests"].rate

    run_at(first, backend, 0.0)
    admitted, rate = run_at(second, backend, start)
    assert admitted == start + 30  # the rest of the pause, neither 130 s nor 0 s
    assert rate == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_throttle_in_the_next_loop_is_not_cut_again_within_the_cooldown(backend: str) -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(8, burst=1), adaptive=True)

    async def overload() -> float:
        throttle.record_overload()
        return throttle.statistics().limits["requests"].rate

    async def first() -> float:
        await anyio.sleep(100)
        return await overload()

    assert run_at(first, backend, 0.0) == 4
    assert run_at(overload, backend, 0.0) == 4  # the same instant for the limiter: same wave


def test_a_policy_that_cannot_shift_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    # A policy of its own that does not implement shift_clock().
    limiter = tt.RateLimiter(DelegatingPolicy(tt.TokenBucket(1, burst=1)))

    async def use() -> None:
        limiter.try_acquire()

    run_at(use, "trio", 5.0)
    with caplog.at_level(logging.WARNING, logger="throttle_trio"):
        run_at(use, "trio", 0.0)
    assert "cannot shift its times" in caplog.text
