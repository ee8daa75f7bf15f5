"""RedisRateLimiter: the shared counterpart of RateLimiter."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import throttle_trio as tt
from tests.redis import rate_violations
from throttle_trio.redis import GCRALimit, RedisRateLimiter

if TYPE_CHECKING:
    import coredis

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("max_batch", [1, 3])
async def test_acquire_and_async_with_share_one_bucket(
    client: coredis.Redis[bytes], name: str, max_batch: int
) -> None:
    """Two limiters with one name (two processes) stay within one rate bound together, plus
    the booking overshoot on the local clock: ``max_batch`` booked costs per "process"."""
    limiters = [
        RedisRateLimiter(client, name, GCRALimit(300, burst=6), max_batch=max_batch)
        for _ in range(2)
    ]
    booked: list[tuple[float, float]] = []

    async def use(limiter: RedisRateLimiter, weighted: bool) -> None:
        for _ in range(15):
            if weighted:
                await limiter.acquire(2)
                booked.append((anyio.current_time(), 2.0))
            else:
                async with limiter:
                    booked.append((anyio.current_time(), 1.0))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for index, limiter in enumerate(limiters):
                for _ in range(3):
                    tg.start_soon(use, limiter, index == 0)
    assert len(booked) == 90
    # Costs 2 in one "process", 1 in the other: max_batch of each may leave late.
    assert rate_violations(booked, 300, 6, slack=max_batch * (2 + 1) + 0.05) == []
    assert limiters[0].statistics().limits["rate"].admitted_cost == 90


async def test_try_acquire_never_books(client: coredis.Redis[bytes], name: str) -> None:
    """try_acquire takes what fits now and nothing more; it books no future instant."""
    limiter = RedisRateLimiter(client, name, tt.GCRA(10, per=3600, burst=5))
    results = [await limiter.try_acquire() for _ in range(7)]
    assert results == [True] * 5 + [False] * 2
    state = await limiter.throttle.state()
    assert state.booked_for is None
    assert state.available["rate"] == pytest.approx(0, abs=0.01)
    assert limiter.statistics().timeouts == 0
    with pytest.raises(tt.CostExceedsCapacity, match=r"^cost must be <= the capacity 5, got 6$"):
        await limiter.try_acquire(6)


async def test_refund_is_capped_at_the_burst(client: coredis.Redis[bytes], name: str) -> None:
    """A refund credits at most what was used; the rest is dropped and returned."""
    limiter = RedisRateLimiter(client, name, GCRALimit(10, per=3600, burst=5))
    await limiter.acquire(3)
    assert await limiter.refund(2) == 0
    assert await limiter.refund(4) == pytest.approx(3, abs=0.001)
    assert (await limiter.throttle.state()).available["rate"] == pytest.approx(5, abs=0.01)
    stats = limiter.statistics().limits["rate"]
    assert stats.refunded == pytest.approx(3, abs=0.001)
    assert stats.dropped == pytest.approx(3, abs=0.001)
