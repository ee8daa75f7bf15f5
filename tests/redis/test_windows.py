"""Sliding windows shared through Redis (``WindowLimit``): at most ``limit`` in any window.

Several RedisThrottle objects with the same name stand for several processes.  Instants are
Redis's (``server_admitted_at``, whole microseconds): a request that waits for a window is
booked exactly when the oldest entry it waits for leaves.  Real I/O: counts, order, bounds and
instants on Redis's clock, never durations of the test.
"""

from __future__ import annotations

import random
from functools import partial
from typing import TYPE_CHECKING

import anyio
import pytest

import throttle_trio as tt
from throttle_trio.redis import (
    GCRALimit,
    LocalFallback,
    RedisBackendError,
    RedisRateLimiter,
    RedisThrottle,
    WindowLimit,
)

if TYPE_CHECKING:
    import coredis

pytestmark = pytest.mark.anyio


def us(seconds: float) -> int:
    """A Redis instant (Unix seconds, from whole microseconds) as microseconds (within 1 µs: a
    float of Unix seconds holds about a quarter of a microsecond)."""
    return round(seconds * 1e6)


def gap(later: int, earlier: int) -> int:
    """``later - earlier`` in microseconds, to the microsecond that ``us`` may lose (the
    windows here are exact in binary, so their lengths are exact in microseconds)."""
    return later - earlier


async def test_a_window_admits_its_limit_then_the_next_when_the_oldest_leaves(
    client: coredis.Redis[bytes], name: str
) -> None:
    throttle = RedisThrottle(client, name, requests=WindowLimit(3, window=0.25))
    instants = []
    with anyio.fail_after(10):
        for _ in range(5):
            async with throttle.reserve(requests=1) as slot:
                instants.append(us(slot.server_admitted_at))
    # Three at once; the fourth when the first leaves the window; the fifth, asked once the
    # fourth was in, not before the second leaves.
    assert abs(gap(instants[3], instants[0]) - 250_000) <= 1
    assert gap(instants[4], instants[1]) >= 250_000 - 1
    assert instants[2] - instants[0] < 200_000


async def test_a_fleet_never_holds_more_than_the_limit_in_any_window(
    client: coredis.Redis[bytes], name: str
) -> None:
    """Three processes, weighted requests: every window of 0.25 s holds at most 20 units."""
    limit, window = 20, 0.25
    fleet = [
        RedisThrottle(client, name, tokens=WindowLimit(limit, window=window)) for _ in range(3)
    ]
    rng = random.Random(7)
    booked: list[tuple[int, int]] = []

    async def worker(throttle: RedisThrottle, costs: list[int]) -> None:
        for cost in costs:
            async with throttle.reserve(tokens=cost) as slot:
                booked.append((us(slot.server_admitted_at), cost))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for throttle in fleet:
                for _ in range(4):
                    tg.start_soon(worker, throttle, [rng.randint(1, 6) for _ in range(6)])
    booked.sort()
    width = us(window)
    for at, _ in booked:
        held = sum(cost for t, cost in booked if at - width < t <= at)
        assert held <= limit, (at, held)
    assert len(booked) == 3 * 4 * 6


async def test_a_window_and_a_bucket_bind_together(client: coredis.Redis[bytes], name: str) -> None:
    throttle = RedisThrottle(
        client,
        name,
        requests=WindowLimit(2, window=0.375),
        tokens=GCRALimit(100, per=0.1, burst=100),  # 1,000 tokens/s, never binding here
    )
    instants = []
    with anyio.fail_after(10):
        for _ in range(3):
            async with throttle.reserve(requests=1, tokens=10) as slot:
                instants.append(us(slot.server_admitted_at))
    assert abs(gap(instants[2], instants[0]) - 375_000) <= 1


async def test_a_booking_given_back_leaves_the_window(
    client: coredis.Redis[bytes], name: str
) -> None:
    """One per 0.5 s: the second request books at +0.5 s and is cancelled while it sleeps; the
    third takes its place at +0.5 s, not +1 s."""
    throttle = RedisThrottle(client, name, requests=WindowLimit(1, window=0.5))
    with anyio.fail_after(10):
        first = await throttle.acquire(requests=1)
        first.release()
        with anyio.move_on_after(0.05):
            await throttle.acquire(requests=1)  # booked at +0.5 s, then cancelled
        assert throttle.statistics().unbooked == 1
        third = await throttle.acquire(requests=1)
        third.release()
    assert abs(gap(us(third.server_admitted_at), us(first.server_admitted_at)) - 500_000) <= 1


async def test_a_booking_given_back_behind_a_later_one_leaves_the_log_too(
    client: coredis.Redis[bytes], name: str
) -> None:
    """Two processes book ahead (+0.25 s, then +0.5 s); the first of them is cancelled while
    the other stays booked: its entry leaves the log all the same (the window it frees holds
    no later booking that relied on it)."""
    one, other = (
        RedisThrottle(client, name, requests=WindowLimit(1, window=0.25)) for _ in range(2)
    )
    key = one.keys["requests"]

    async def logged() -> int:
        log = await client.hget(key, "e")
        return 0 if log is None else len(log.split()) // 2

    with anyio.fail_after(10):
        (await one.acquire(requests=1)).release()
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def booked_then_cancelled() -> None:
                with scope:
                    await one.acquire(requests=1)

            tg.start_soon(booked_then_cancelled)
            while one.statistics().booked != 1:
                await anyio.sleep(0.001)
            tg.start_soon(partial(other.acquire, requests=1))
            while other.statistics().booked != 1:
                await anyio.sleep(0.001)
            assert await logged() == 3
            scope.cancel()
        assert one.statistics().unbooked == 1
        assert await logged() == 2  # the other's, and the first one's (still in its window)


async def test_an_overdraft_is_logged_and_a_refund_is_dropped(
    client: coredis.Redis[bytes], name: str
) -> None:
    throttle = RedisThrottle(client, name, tokens=WindowLimit(10, window=60.0))
    async with throttle.reserve(tokens=2) as slot:
        await slot.settle(tokens=9)  # 7 more
    assert 1 - 0.01 <= (await throttle.state()).available["tokens"] <= 1 + 0.01
    async with throttle.reserve(tokens=1) as slot:
        await slot.settle(tokens=0)  # a window keeps what it logged
    stats = throttle.statistics().limits["tokens"]
    assert (stats.overdraft, stats.refunded, stats.dropped) == (7, 0, 1)
    assert -0.01 <= (await throttle.state()).available["tokens"] <= 0.01


async def test_header_feedback_lowers_a_window(client: coredis.Redis[bytes], name: str) -> None:
    throttle = RedisThrottle(client, name, requests=WindowLimit(10, window=60.0))
    report = tt.RateLimitHeaders(
        limits={"requests": tt.LimitReport(limit=10, remaining=4, reset_after=30.0)}
    )
    await throttle.observe(report)  # first report, nothing charged yet: taken as it is
    assert 4 - 0.01 <= (await throttle.state()).available["requests"] <= 4 + 0.01


async def test_an_overload_makes_the_window_longer(client: coredis.Redis[bytes], name: str) -> None:
    """Halved rate: the same 2 requests over 0.5 s instead of 0.25 s."""
    throttle = RedisThrottle(client, name, requests=WindowLimit(2, window=0.25), adaptive=True)
    await throttle.record_overload()
    instants = []
    with anyio.fail_after(10):
        for _ in range(3):
            async with throttle.reserve(requests=1) as slot:
                instants.append(us(slot.server_admitted_at))
    assert abs(gap(instants[2], instants[0]) - 500_000) <= 1
    assert throttle.statistics().limits["requests"].rate == pytest.approx(4.0)


async def test_a_bucket_and_a_window_under_one_name_is_a_clear_error(
    client: coredis.Redis[bytes], name: str
) -> None:
    bucket = RedisThrottle(client, name, requests=GCRALimit(10, burst=1))
    window = RedisThrottle(client, name, requests=WindowLimit(10))
    await bucket.acquire(requests=1)
    with pytest.raises(RedisBackendError, match="holds data throttle_trio did not write"):
        await window.acquire(requests=1)
    await window.acquire(requests=0)  # no key touched: fine
    other = f"{name}-w"
    await RedisThrottle(client, other, requests=WindowLimit(10)).acquire(requests=1)
    with pytest.raises(RedisBackendError, match="holds data throttle_trio did not write"):
        await RedisThrottle(client, other, requests=GCRALimit(10)).acquire(requests=1)


async def test_a_sliding_window_policy_is_read_as_a_window_and_the_fallback_keeps_it(
    client: coredis.Redis[bytes], name: str
) -> None:
    throttle = RedisThrottle(
        client,
        name,
        requests=tt.SlidingWindow(8, window=2.0),
        on_unavailable=LocalFallback(fraction=0.25),
    )
    fallback = throttle.statistics().fallback
    assert fallback is not None
    assert fallback.limits["requests"].capacity == 2
    with anyio.fail_after(10):
        for _ in range(8):
            await throttle.acquire(requests=1)
    state = await throttle.state()
    assert -0.01 <= state.available["requests"] <= 0.01
    assert state.rates["requests"] == 4.0


def test_window_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="window"):
        WindowLimit(10, window=0)
    with pytest.raises(ValueError, match="limit"):
        WindowLimit(-1)
    with pytest.raises(ValueError, match="MAX_SPAN"):
        WindowLimit(10, window=1e9)
    with pytest.raises(TypeError, match="a RedisRateLimiter is a bucket"):
        RedisRateLimiter(None, "x", WindowLimit(10))  # type: ignore[arg-type]
