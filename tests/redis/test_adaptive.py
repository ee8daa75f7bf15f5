"""The adaptive rate (AIMD) shared through Redis: one process's overload slows the whole fleet.

Several RedisThrottle objects with the same name stand for several processes (the multi-process
file runs a real one).  Rates are measured on Redis's clock, from the instants the script
booked: when every process books its next request at once, consecutive bookings of a drained
bucket with a burst of one are exactly one emission interval apart (per / rate at the shared
rate), to the microsecond (``booking_gaps``).  Under load, admissions are checked against the bound
``burst + rate*T`` over every window, at the rate in force.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from tests.redis import booking_gaps as gaps
from tests.redis import rate_violations, us
from throttle_trio._redis._script import RATE_ONE
from throttle_trio.redis import GCRALimit, RedisThrottle

if TYPE_CHECKING:
    import coredis

pytestmark = pytest.mark.anyio


def fleet(client: coredis.Redis[bytes], name: str, rate: float, size: int) -> list[RedisThrottle]:
    """``size`` "processes" sharing one adaptive limit of ``rate`` per second, burst 1."""
    return [
        RedisThrottle(client, name, requests=GCRALimit(rate, burst=1), adaptive=True)
        for _ in range(size)
    ]


def rate_seen(throttle: RedisThrottle) -> float:
    return throttle.statistics().limits["requests"].rate


def piecewise_violations(
    admissions: list[tuple[float, float]],
    rates: list[tuple[float, float]],
    burst: float,
    slack: float,
) -> list[tuple[float, float]]:
    """:func:`rate_violations` for a rate that changes: ``rates`` is ``(from time, rate)``, sorted.

    The replayed bucket refills at the rate in force at each moment, so a bucket that gained
    units when the rate changed (instead of keeping its level) shows as a breach.
    """

    def refill(start: float, end: float) -> float:
        total = 0.0
        for i, (since, rate) in enumerate(rates):
            until = rates[i + 1][0] if i + 1 < len(rates) else float("inf")
            low, high = max(start, since), min(end, until)
            if high > low:
                total += (high - low) * rate
        return total

    capacity = burst + slack
    level = capacity
    last: float | None = None
    breaches: list[tuple[float, float]] = []
    for time, cost in sorted(admissions):
        if last is not None:
            level = min(capacity, level + refill(last, time))
        last = time
        level -= cost
        if level < -1e-9:
            breaches.append((time, level))
    return breaches


async def stored_rate(client: coredis.Redis[bytes], throttle: RedisThrottle) -> int:
    """The limit's adaptive rate as Redis holds it (millionths of the configured rate)."""
    stored = await client.hgetall(throttle.keys["requests"])
    return int(stored.get(b"r", RATE_ONE))


async def test_overload_in_one_process_halves_the_rate_of_all(
    client: coredis.Redis[bytes], name: str
) -> None:
    """A records an overload; B, C, D, which never saw a 429, book at half the rate at once."""
    a, b, c, d = fleet(client, name, 50, 4)  # 20 ms per request
    assert await gaps([a, b, c, d]) == [20_000] * 3
    await a.record_overload()
    assert (a.statistics().rate_cuts, rate_seen(a), rate_seen(b)) == (1, 25, 50)
    assert await gaps([b, c, d, a]) == [40_000] * 3  # 40 ms: half the rate, for every process
    for throttle in (a, b, c, d):
        stats = throttle.statistics().limits["requests"]
        assert (stats.rate, stats.configured_rate) == (25, 50)  # from the booking's reply
    assert (await d.state()).rates == {"requests": 25}
    assert await stored_rate(client, a) == RATE_ONE // 2


async def test_overloads_within_the_cooldown_cut_once(
    client: coredis.Redis[bytes], name: str
) -> None:
    """A wave of 429s seen by two processes (20 reports at once, then 10 more) cuts once; a
    report after the cooldown (1 s on Redis's clock) cuts again."""
    a, b, c = fleet(client, name, 50, 3)
    before = (await a.state()).server_time
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(a.record_overload)
                tg.start_soon(b.record_overload)
        for _ in range(5):
            await a.record_overload()
            await b.record_overload()
    after = (await a.state()).server_time
    if after - before >= 1.0:  # the precondition of this test, not an assertion on durations
        pytest.skip("30 round trips took a whole cooldown: the machine is too slow")
    assert a.statistics().rate_cuts + b.statistics().rate_cuts == 1
    assert await stored_rate(client, a) == RATE_ONE // 2
    assert await gaps([a, b, c]) == [40_000] * 2
    cut_at = int((await client.hgetall(a.keys["requests"]))[b"d"])
    with anyio.fail_after(10):
        while us((await a.state()).server_time) < cut_at + 1_000_000:
            await anyio.sleep(0.05)
    await b.record_overload()
    assert a.statistics().rate_cuts + b.statistics().rate_cuts == 2
    assert await gaps([a, b, c]) == [80_000] * 2  # a quarter of the configured rate


async def test_successes_recover_up_to_the_configured_rate_never_above(
    client: coredis.Redis[bytes], name: str
) -> None:
    """After a cut to half, 50 successes (from two processes) bring the shared rate back to the
    configured one, one hundredth at a time; more successes never raise it above."""
    a, b, c = fleet(client, name, 50, 3)
    await a.record_overload()
    assert await gaps([a, b, c]) == [40_000] * 2  # every process has seen the cut
    for i in range(49):
        await (a if i % 2 else b).record_success()
    assert await stored_rate(client, a) == RATE_ONE * 99 // 100
    assert (await c.state()).rates["requests"] == pytest.approx(49.5)
    await a.record_success()
    assert await stored_rate(client, a) == RATE_ONE
    for _ in range(20):
        await a.record_success()
        await b.record_success()
    assert await stored_rate(client, a) == RATE_ONE
    assert (await c.state()).rates == {"requests": 50}
    assert await gaps([a, b, c]) == [20_000] * 2
    # Once a process has seen the configured rate, its successes cost no round trip.
    trips = a.statistics().round_trips
    for _ in range(10):
        await a.record_success()
    assert a.statistics().round_trips == trips


async def test_recovery_never_overshoots_the_configured_rate(
    client: coredis.Redis[bytes], name: str
) -> None:
    """From 1/8 of the rate (three cuts), steps of 1/100 pass the configured rate on the 88th
    success: it stops there."""
    (a,) = fleet(client, name, 100, 1)
    a._cooldown_us = 0
    for _ in range(3):
        await a.record_overload()
    assert await stored_rate(client, a) == RATE_ONE // 8
    for _ in range(87):
        await a.record_success()
    assert await stored_rate(client, a) == RATE_ONE // 8 + 87 * RATE_ONE // 100
    await a.record_success()
    assert await stored_rate(client, a) == RATE_ONE
    assert rate_seen(a) == 100
    assert (await a.state()).rates == {"requests": 100}


async def test_the_floor_holds(client: coredis.Redis[bytes], name: str) -> None:
    """Ten cuts in a row (no cooldown, for the test) stop at 1/100 of the configured rate."""
    a, b, c = fleet(client, name, 1000, 3)
    a._cooldown_us = 0
    for _ in range(10):
        await a.record_overload()
    assert a.statistics().rate_cuts == 10
    assert await stored_rate(client, a) == RATE_ONE // 100
    assert await gaps([a, b, c]) == [100_000] * 2  # 10 per second, not less
    assert rate_seen(b) == rate_seen(c) == 10
    await b.record_success()
    assert await stored_rate(client, a) == RATE_ONE // 50  # the floor plus one step


async def test_rate_bound_holds_at_the_effective_rate(
    client: coredis.Redis[bytes], name: str
) -> None:
    """I1: 3 "processes" x 10 tasks run at 200/s (burst 10); one records an overload midway.

    * Windows after the cut: within burst + (rate / 2)*T, exactly, on Redis's clock.
    * The whole run: within a bucket of 10 that refills at 200/s until the cut and at 100/s
      after it (so the cut kept the bucket's level instead of granting units), plus
      ``max_batch`` requests per process: the requests booked before the cut keep their
      instants (documented).
    * The moments ``reserve()`` returned: the same plus the booking overshoot after a stall.
    * The fleet did run at the new rate: the bound is tight."""
    rate, burst, processes, tasks, total, batch = 200.0, 10.0, 3, 10, 150, 2
    throttles = [
        RedisThrottle(
            client, name, requests=GCRALimit(rate, burst=burst), adaptive=True, max_batch=batch
        )
        for _ in range(processes)
    ]
    booked: list[tuple[float, float]] = []
    local: list[tuple[float, float]] = []
    state = {"left": total}

    async def worker(throttle: RedisThrottle) -> None:
        while state["left"] > 0:
            state["left"] -= 1
            async with throttle.reserve(requests=1) as slot:
                local.append((anyio.current_time(), 1.0))
                booked.append((slot.server_admitted_at, 1.0))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for throttle in throttles:
                for _ in range(tasks):
                    tg.start_soon(worker, throttle)
            while len(booked) < 40:
                await anyio.sleep(0.001)
            await throttles[1].record_overload()
            cut_local = anyio.current_time()
    assert len(booked) == total
    cut_at = int((await client.hgetall(throttles[0].keys["requests"]))[b"d"]) / 1e6
    after = [(t, c) for t, c in booked if t >= cut_at]
    assert rate_violations(after, rate / 2, burst, slack=0.01) == []
    rates = [(0.0, rate), (cut_at, rate / 2)]
    assert piecewise_violations(booked, rates, burst, slack=processes * batch + 0.01) == []
    # The local clock: the cut happened before record_overload returned, so switching the
    # replay's rate then is generous by that round trip (never strict).
    local_rates = [(-float("inf"), rate), (cut_local, rate / 2)]
    slack = 2 * processes * batch + 0.05
    assert piecewise_violations(local, local_rates, burst, slack=slack) == []
    # Tight: the admissions after the cut needed (n - burst) / (rate / 2) seconds of Redis time
    # (less the bookings made before the cut at the old rate, max_batch per process).
    times = sorted(t for t, _ in after)
    assert times[-1] - times[0] >= (len(after) - burst - processes * batch) / (rate / 2) - 1e-6
    assert len(after) > 2 * burst  # the run went on well after the cut
    for throttle in throttles:
        assert throttle.statistics().limits["requests"].rate == rate / 2


async def test_without_adaptive_reports_change_nothing(
    client: coredis.Redis[bytes], name: str
) -> None:
    """adaptive=False (the default): record_overload and record_success make no round trip,
    even when another process of the fleet is adaptive and has cut the shared rate (which then
    applies to every process: the rate is shared, the reports are not)."""
    plain = RedisThrottle(client, name, requests=GCRALimit(50, burst=1))
    for _ in range(3):
        await plain.record_overload()
        await plain.record_success()
    assert plain.statistics().round_trips == 0
    assert plain.statistics().rate_cuts == 0
    (adaptive,) = fleet(client, name, 50, 1)
    await adaptive.record_overload()
    assert await gaps([plain, adaptive]) == [40_000]
    await plain.record_success()
    assert await stored_rate(client, plain) == RATE_ONE // 2


async def test_a_cancelled_report_makes_no_round_trip(
    client: coredis.Redis[bytes], name: str
) -> None:
    """I5: the reports are checkpoints; a caller cancelled before one sends nothing."""
    (throttle,) = fleet(client, name, 50, 1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await throttle.record_overload()
    assert throttle.statistics().round_trips == 0
    assert await stored_rate(client, throttle) == RATE_ONE


async def test_a_lowered_rate_keeps_its_key(client: coredis.Redis[bytes], name: str) -> None:
    """A key whose bucket is full again but whose rate is lowered does not expire with the
    bucket: the rate is kept (for an hour without reports), then forgotten with the key."""
    (throttle,) = fleet(client, name, 50, 1)
    await throttle.record_overload()
    ttl = await client.pttl(throttle.keys["requests"])
    assert 3_590_000 < ttl <= 3_600_001
