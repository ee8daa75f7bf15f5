"""``max_concurrent="auto"``: the cap follows rate x latency (``throttle_trio._concurrency``).

The rule on numbers, then a throttle on both backends and virtual time, whose requests take a
known time: the cap it chooses, and that it neither starves the rate nor floods."""

from __future__ import annotations

import math

import anyio
import pytest

import throttle_trio as tt
from throttle_trio import AutoConcurrency


def test_the_cap_is_headroom_times_the_binding_rate_times_the_latency() -> None:
    auto = AutoConcurrency()
    assert auto.cap == 256  # nothing measured yet: the ceiling
    assert math.isnan(auto.latency)
    # 10 requests/s and 1,000 tokens/s at 500 tokens a request: tokens bind at 2 requests/s.
    rates = [("requests", 10.0), ("tokens", 1000.0)]
    assert auto.observe(2.0, {"requests": 1, "tokens": 500}, rates) == math.ceil(1.5 * 2 * 2)
    assert auto.latency == 2.0
    # Requests alone: 10/s x 2 s x 1.5.
    assert AutoConcurrency().observe(2.0, {"requests": 1}, [("requests", 10.0)]) == 30


def test_the_means_move_a_tenth_of_the_way_per_observation() -> None:
    auto = AutoConcurrency()
    auto.observe(2.0, {"requests": 1}, [("requests", 10.0)])
    auto.observe(12.0, {"requests": 1}, [("requests", 10.0)])
    assert auto.latency == pytest.approx(3.0)
    assert auto.cap == 45


def test_the_cap_stays_between_floor_and_ceiling() -> None:
    small = AutoConcurrency(floor=4, initial=4, ceiling=20)
    assert small.observe(0.01, {"requests": 1}, [("requests", 1.0)]) == 4
    assert small.observe(1000.0, {"requests": 1}, [("requests", 1.0)]) == 20
    # No rate limit (or no cost on a rated metric): nothing to size from, the ceiling.
    assert AutoConcurrency(ceiling=64).observe(1.0, {"requests": 1}, []) == 64
    assert AutoConcurrency(ceiling=64).observe(1.0, {}, [("tokens", 100.0)]) == 64


def test_hostile_readings_are_ignored() -> None:
    auto = AutoConcurrency()
    auto.observe(math.nan, {"requests": 1}, [("requests", math.nan)])
    auto.observe(-5.0, {"requests": 1}, [("requests", 10.0)])
    assert math.isnan(auto.latency)
    assert auto.cap == auto.ceiling


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ceiling": 0}, "ceiling must be >= 1, got 0"),
        ({"ceiling": 2.5}, "ceiling must be an int, got float 2.5"),
        ({"floor": 10, "ceiling": 5, "initial": 5}, "floor must be <= ceiling"),
        ({"initial": 300}, "initial must be between floor"),
        ({"headroom": 0.5}, "headroom must be >= 1, got 0.5"),
        ({"headroom": math.nan}, "headroom"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        AutoConcurrency(**kwargs)  # type: ignore[arg-type]


def test_each_throttle_gets_its_own_controller() -> None:
    settings = AutoConcurrency(ceiling=100)
    a = tt.Throttle(requests=tt.TokenBucket(10), max_concurrent=settings)
    b = tt.Throttle(requests=tt.TokenBucket(10), max_concurrent=settings)
    assert a._auto is not b._auto
    assert a._auto is not settings
    assert "max_concurrent='auto'" in repr(a)


@pytest.mark.anyio
async def test_a_throttle_sizes_its_cap_from_what_it_measures() -> None:
    """100 requests at 10/s, each 2 s in flight: rate x latency is 20 in flight; the cap goes
    to 30 (1.5 x 20) and the rate is never starved: the last is admitted at 9.9 s, as with no
    cap at all."""
    throttle = tt.Throttle(requests=tt.TokenBucket(10, burst=1), max_concurrent="auto")
    admitted: list[float] = []
    peak = 0

    async def request() -> None:
        nonlocal peak
        async with throttle.reserve(requests=1):
            admitted.append(anyio.current_time())
            peak = max(peak, throttle.statistics().in_flight)
            await anyio.sleep(2)

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(request)
    stats = throttle.statistics()
    assert stats.latency == 2.0
    assert stats.max_concurrent == 30
    assert max(admitted) == pytest.approx(9.9)
    # What the rate needs, well under the cap: 20, or 21 when an admission at 2.0 runs
    # before the release at the same instant (trio's scheduler may order them either way).
    assert 20 <= peak <= 21
    assert stats.admitted == 100


@pytest.mark.anyio
async def test_the_cap_binds_while_it_is_learning_and_cancelled_requests_teach_nothing() -> None:
    throttle = tt.Throttle(
        requests=tt.TokenBucket(100, burst=100),
        max_concurrent=AutoConcurrency(initial=2, ceiling=50),
    )
    first = await throttle.acquire(requests=1)
    second = await throttle.acquire(requests=1)
    with pytest.raises(tt.RateLimitTimeout):
        await throttle.acquire(requests=1, timeout=1.0)  # the initial cap of 2 binds
    first.cancel()
    assert throttle.statistics().latency is None  # a cancelled request was never sent
    assert throttle.statistics().max_concurrent == 2
    await anyio.sleep(0.5)
    second.release()
    stats = throttle.statistics()
    assert stats.latency == 1.5  # it was in flight from 0 to 1.5 (the timeout waited 1 s)
    assert stats.max_concurrent == 50  # 1.5 x 100/s x 1.5 s = 225: the ceiling


def test_a_release_outside_the_event_loop_still_measures() -> None:
    """A reservation released after its loop has ended (a body closed late) still releases
    and counts, at the time the throttle last saw (reads work outside a loop)."""
    throttle = tt.Throttle(requests=tt.TokenBucket(10), max_concurrent="auto")

    async def take() -> tt.Reservation:
        slot = await throttle.acquire(requests=1)
        await anyio.sleep(0.25)
        return slot

    slot = anyio.run(take)
    slot.release()
    stats = throttle.statistics()
    assert stats.in_flight == 0
    assert stats.latency is not None
    assert 0 <= stats.latency < 60  # measured, on the last time the throttle saw
