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


def leaves(later: int, earlier: int, window: float) -> bool:
    """Whether ``later`` is when ``earlier`` leaves a window of ``window`` seconds: exactly
    then, give or take the microsecond ``us`` may lose, or up to one cell later (the log keeps
    instants rounded up to cells of ``window / 2048``).  The windows here are exact in binary.

    It holds for a request asked before ``earlier`` left, which the tests make sure of by
    asking within a fraction of the window (a bound on the machine, not a duration measured).
    """
    width = round(window * 1e6)
    return width - 1 <= later - earlier <= width + width // 2048 + 1


async def test_a_window_admits_its_limit_then_the_next_when_the_oldest_leaves(
    client: coredis.Redis[bytes], name: str
) -> None:
    throttle = RedisThrottle(client, name, requests=WindowLimit(3, window=1.0))
    instants = []
    with anyio.fail_after(10):
        for _ in range(5):
            async with throttle.reserve(requests=1) as slot:
                instants.append(us(slot.server_admitted_at))
    # Three at once; the fourth when the first leaves the window; the fifth, asked once the
    # fourth was in, not before the second leaves.
    assert leaves(instants[3], instants[0], 1.0)
    assert instants[4] - instants[1] >= 1_000_000 - 1


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
        requests=WindowLimit(2, window=1.0),
        tokens=GCRALimit(100, per=0.1, burst=100),  # 1,000 tokens/s, never binding here
    )
    instants = []
    with anyio.fail_after(10):
        for _ in range(3):
            async with throttle.reserve(requests=1, tokens=10) as slot:
                instants.append(us(slot.server_admitted_at))
    assert leaves(instants[2], instants[0], 1.0)


async def test_a_booking_given_back_leaves_the_window(
    client: coredis.Redis[bytes], name: str
) -> None:
    """One a second: the second request books at +1 s and is cancelled while it sleeps; the
    third takes its place at +1 s, not +2 s."""
    throttle = RedisThrottle(client, name, requests=WindowLimit(1, window=1.0))
    with anyio.fail_after(10):
        first = await throttle.acquire(requests=1)
        first.release()
        with anyio.move_on_after(0.05):
            await throttle.acquire(requests=1)  # booked at +0.5 s, then cancelled
        assert throttle.statistics().unbooked == 1
        third = await throttle.acquire(requests=1)
        third.release()
    assert leaves(us(third.server_admitted_at), us(first.server_admitted_at), 1.0)


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
    """Halved rate: the same 2 requests over 1 s instead of 0.5 s."""
    throttle = RedisThrottle(client, name, requests=WindowLimit(2, window=0.5), adaptive=True)
    await throttle.record_overload()
    instants = []
    with anyio.fail_after(10):
        for _ in range(3):
            async with throttle.reserve(requests=1) as slot:
                instants.append(us(slot.server_admitted_at))
    assert 1_000_000 - 1 <= instants[2] - instants[0] <= 1_000_000 + 500_000 // 2048 + 1
    assert throttle.statistics().limits["requests"].rate == pytest.approx(2.0)


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
    with pytest.raises(ValueError, match=r"^limit must be >= 0.001 .*got 0.0005$"):
        WindowLimit(0.0005)
    with pytest.raises(ValueError, match="MAX_SPAN"):
        WindowLimit(10, window=1e9)
    with pytest.raises(TypeError, match="a RedisRateLimiter is a bucket"):
        RedisRateLimiter(None, "x", WindowLimit(10))  # type: ignore[arg-type]


async def logged(client: coredis.Redis[bytes], key: str) -> list[tuple[int, int]]:
    """A window's log as Redis holds it: (instant µs, amount in thousandths) pairs."""
    raw = await client.hget(key, "e")
    numbers = [int(x) for x in (raw or b"").split()]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


async def test_reports_while_a_booking_is_ahead_correct_the_window_once(
    client: coredis.Redis[bytes], name: str
) -> None:
    """Three reports of 8 used, with a booking ahead: the window logs 8 once (counted at the
    report's instant, before the booking), not once per report."""
    throttle = RedisThrottle(client, name, requests=WindowLimit(10, window=60.0))
    report = tt.RateLimitHeaders(
        limits={"requests": tt.LimitReport(limit=10, remaining=2, reset_after=30.0)}
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await throttle.pause_for(5.0)
            tg.start_soon(partial(throttle.acquire, requests=1))  # booked at +5 s
            while throttle.statistics().booked != 1:
                await anyio.sleep(0.001)
            for _ in range(3):
                await throttle.observe(report)
            log = await logged(client, throttle.keys["requests"])
            assert sorted(amount for _, amount in log) == [1_000, 8_000]
            assert log[0][1] == 8_000  # before the booking ahead
            # What it holds, the booking ahead included.
            assert 1 - 0.01 <= (await throttle.state()).available["requests"] <= 1 + 0.01
            tg.cancel_scope.cancel()


async def test_a_long_window_keeps_a_short_log(client: coredis.Redis[bytes], name: str) -> None:
    """3,000 admissions inside a 60 s window: the log adds the amounts of each cell (60 s /
    2,048, about 29 ms) together, so it holds one entry per cell touched, not per request."""
    throttle = RedisThrottle(client, name, requests=WindowLimit(100_000, window=60.0))
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(30):

                async def hundred() -> None:
                    for _ in range(100):
                        (await throttle.acquire(requests=1)).release()

                tg.start_soon(hundred)
    log = await logged(client, throttle.keys["requests"])
    assert sum(amount for _, amount in log) == 3_000 * 1_000
    assert len(log) <= 2_049
    assert len(log) < 1_500  # far fewer than the requests, however slow the machine
    assert [at for at, _ in log] == sorted({at for at, _ in log})


async def test_a_cancelled_booking_keeps_the_fleets_order_when_another_shares_its_window(
    client: coredis.Redis[bytes], name: str
) -> None:
    """A waits on a bucket and is booked +1 s ahead; B (the window only, another process) is
    booked behind it, at the same instant; A is cancelled.  C, asked next, must not go before
    B: the window's log ends with B's amount too, so A's cancel cannot roll the order back."""
    limits: dict[str, GCRALimit | WindowLimit] = {
        "requests": WindowLimit(10, window=5.0),
        "tokens": GCRALimit(1_000, per=1.0, burst=1_000),
    }
    one, other, third = (RedisThrottle(client, name, limits) for _ in range(3))
    booked: list[float] = []
    with anyio.fail_after(10):
        (await one.acquire(requests=1, tokens=1_000)).release()  # drains the bucket
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def a() -> None:
                with scope:
                    await one.acquire(requests=1, tokens=1_000)

            async def b() -> None:
                slot = await other.acquire(requests=1)
                booked.append(slot.server_admitted_at)

            tg.start_soon(a)
            while one.statistics().booked != 1:
                await anyio.sleep(0.001)
            tg.start_soon(b)
            while other.statistics().booked != 1:
                await anyio.sleep(0.001)
            scope.cancel()
            while one.statistics().unbooked != 1:
                await anyio.sleep(0.001)
            c = await third.acquire(requests=1)
    assert us(c.server_admitted_at) >= us(booked[0]) - 1


async def test_a_cost_above_a_windows_thousandths_fails_at_once(
    client: coredis.Redis[bytes], name: str
) -> None:
    """0.3 is a little less than 3/10 in binary: the window holds 299 thousandths, says so,
    and a cost of 0.3 (300 of them) fails at once, before any round trip."""
    throttle = RedisThrottle(client, name, tokens=WindowLimit(0.3))
    assert throttle.statistics().limits["tokens"].capacity == 0.299
    with pytest.raises(tt.CostExceedsCapacity, match="tokens"):
        await throttle.acquire(tokens=0.3)
    assert throttle.statistics().round_trips == 0
    await throttle.acquire(tokens=0.299)


async def test_a_window_that_warms_up_counts_its_first_window_longer(
    client: coredis.Redis[bytes], name: str
) -> None:
    """Two a second, warming up by 0.5 s: the first two (an empty window) are logged 0.5 s
    late, so the third waits 1.5 s; given back, its place goes to the next one."""
    throttle = RedisThrottle(client, name, requests=WindowLimit(2, window=1.0, warmup=0.5))
    instants = []
    with anyio.fail_after(10):
        for _ in range(2):
            instants.append(us((await throttle.acquire(requests=1)).server_admitted_at))
        with anyio.move_on_after(0.05):
            await throttle.acquire(requests=1)  # booked at +1.5 s, then cancelled
        assert throttle.statistics().unbooked == 1
        third = await throttle.acquire(requests=1)
    assert leaves(us(third.server_admitted_at), instants[0], 1.5)
    log = await logged(client, throttle.keys["requests"])
    assert [amount for _, amount in log] == [1_000, 1_000, 1_000]
    cell = 1_000_000 // 2048
    for (at, _), instant in zip(log, [*instants, us(third.server_admitted_at)], strict=True):
        late = 500_000 if instant < instants[0] + 1_000_000 else 0  # in the warm-up's window
        assert late - 1 <= at - instant <= late + cell + 1, (at, instant)


async def test_a_booking_given_back_while_the_window_warms_up_leaves_the_log(
    client: coredis.Redis[bytes], name: str
) -> None:
    throttle = RedisThrottle(client, name, requests=WindowLimit(2, window=1.0, warmup=0.5))
    await throttle.pause_for(0.5)
    with anyio.fail_after(10), anyio.move_on_after(0.1):
        await throttle.acquire(requests=1)  # booked at +0.5 s, logged at +1 s, cancelled
    assert throttle.statistics().unbooked == 1
    assert await logged(client, throttle.keys["requests"]) == []


async def test_the_providers_presets_for_a_fleet_are_their_limits_shared(
    client: coredis.Redis[bytes], name: str
) -> None:
    openai_fleet = RedisThrottle.for_openai(client, name, rpm=50, tpm=40_000)
    limits = openai_fleet.statistics().limits
    assert set(limits) == {"requests", "requests_per_second", "tokens"}
    assert limits["tokens"].capacity == 666.666  # a slice, in whole thousandths
    assert not openai_fleet.refund_unused
    anthropic_fleet = RedisThrottle.for_anthropic(
        client, f"{name}-a", rpm=50, input_tpm=40_000, output_tpm=8_000
    )
    limits = anthropic_fleet.statistics().limits
    assert set(limits) == {"requests", "input_tokens", "output_tokens"}
    assert (limits["input_tokens"].capacity, limits["output_tokens"].capacity) == (39_980, 7_996)
    assert anthropic_fleet.refund_unused
    async with anthropic_fleet.reserve(requests=1, input_tokens=100, output_tokens=50) as slot:
        await slot.settle(input_tokens=80, output_tokens=20)
    assert anthropic_fleet.statistics().limits["output_tokens"].refunded == 30
