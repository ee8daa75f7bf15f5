"""RateLimiter on the clock readings event loops really have (issue #10, item 2).

trio's real clock starts at a random offset (about 1e4 to 1e6 s) and asyncio's is the machine's
uptime, so ``anyio.current_time()`` is a large float whose ulp is around 1e-11 s.  A fresh
``RateLimiter(GCRA(10, burst=1))`` refused ``try_acquire()`` in 18 of 20 runs on trio's real
clock, and ``acquire(1, timeout=0.1)`` failed at once though its own bound was 0.1 s.  Here the
virtual clocks start at such readings (``MockClock`` jumped there, looptime started there), and
the real clocks of both backends are tried too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import looptime
import pytest
import trio.testing

import throttle_trio as tt
from tests.helpers import BACKENDS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

# Readings where GCRA's old fit test rounded the wrong way, up to a long-running machine's uptime
# on trio's MockClock.  looptime stops at about 1e7 s: started at 3e7 s, its own
# `anyio.sleep(0.1)` never returns, with or without a limiter.
STARTS = [0.0, 1.141, 12345.678, 100_000.0, 123456.789, 1e6 + 0.1]
CLOCKS = [(backend, start) for backend in BACKENDS for start in STARTS]
CLOCKS += [("trio", 3e7 + 0.123), ("trio", 1e9 + 0.1)]
BUCKETS = [tt.TokenBucket, tt.GCRA]


def run_at(fn: Callable[[], Awaitable[Any]], backend: str, start: float) -> Any:
    """Run ``fn()`` in a new loop whose virtual clock starts at ``start``."""
    if backend == "trio":
        clock = trio.testing.MockClock(autojump_threshold=0)
        clock.jump(start)
        return anyio.run(fn, backend="trio", backend_options={"clock": clock})
    factory = lambda: looptime.new_event_loop(start=start)  # noqa: E731
    return anyio.run(fn, backend="asyncio", backend_options={"loop_factory": factory})


@pytest.mark.parametrize(("backend", "start"), CLOCKS)
@pytest.mark.parametrize("cls", BUCKETS)
def test_a_fresh_limiter_admits_at_once_on_a_large_clock(
    backend: str, start: float, cls: type[tt.TokenBucket | tt.GCRA]
) -> None:
    async def fresh() -> tuple[bool, bool, float]:
        limiter = tt.RateLimiter(cls(10, burst=1))
        first, second = limiter.try_acquire(), limiter.try_acquire()
        return first, second, limiter.statistics().available

    assert run_at(fresh, backend, start) == (True, False, 0)


@pytest.mark.parametrize(("backend", "start"), CLOCKS)
@pytest.mark.parametrize("cls", BUCKETS)
def test_a_wait_as_long_as_the_timeout_is_not_refused(
    backend: str, start: float, cls: type[tt.TokenBucket | tt.GCRA]
) -> None:
    """Go's ``TestReserveMax`` through the limiter: after a full burst, one more unit needs
    exactly ``timeout=0.1``; it is admitted then (not refused at once), and a second behind it
    is refused at once."""

    async def reserve_max() -> tuple[float, float]:
        limiter = tt.RateLimiter(cls(10, burst=2))
        await limiter.acquire(2)
        arrived = anyio.current_time()
        await limiter.acquire(1, timeout=0.1)
        waited = anyio.current_time() - arrived
        with pytest.raises(tt.RateLimitTimeout):
            await limiter.acquire(2, timeout=0.1)
        assert anyio.current_time() - arrived == waited  # refused without waiting
        return waited, limiter.statistics().timeouts

    waited, timeouts = run_at(reserve_max, backend, start)
    # looptime keeps whole microseconds: it wakes at most 1 µs after the exact 0.1 s.
    assert 0.1 - 1e-9 <= waited <= 0.1 + 1e-6
    assert timeouts == 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", BUCKETS)
def test_a_fresh_limiter_admits_at_once_on_the_real_clock(
    backend: str, cls: type[tt.TokenBucket | tt.GCRA]
) -> None:
    """trio's real clock starts at a random offset, asyncio's is the uptime: 20 fresh loops."""

    async def fresh() -> bool:
        return tt.RateLimiter(cls(10, burst=1)).try_acquire()

    assert [anyio.run(fresh, backend=backend) for _ in range(20)] == [True] * 20
