"""RateLimiter on both backends, on virtual time: exact admission instants, FIFO, cancellation,
checkpoints, impossible costs, timeouts, reconfiguration and O(1) wake-ups.

Rates are powers of two per second, so every admission instant is an exact binary fraction of a
second and of a microsecond (looptime's resolution): times are compared with ``==``.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest
import trio
import trio.testing

import throttle_trio as tt
from tests.helpers import settle
from throttle_trio import GCRA, RateLimiter, SlidingWindow, TokenBucket

pytestmark = pytest.mark.anyio


def now() -> float:
    return anyio.current_time()


@pytest.fixture(params=["bucket", "gcra", "window"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def limiter_of(kind: str, rate: float, burst: float) -> RateLimiter[tt.RatePolicy]:
    """A limiter that admits `burst` at once, then `rate` per second (for the window: `burst`
    per `burst / rate` seconds, which paces the same way from an empty start)."""
    if kind == "bucket":
        return RateLimiter(TokenBucket(rate, burst=burst))
    if kind == "gcra":
        return RateLimiter(GCRA(rate, burst=burst))
    return RateLimiter(SlidingWindow(burst, window=burst / rate))


async def run_all(
    limiter: RateLimiter[Any], costs: list[float], gap: float = 0.0
) -> list[tuple[int, float]]:
    """Start one task per cost (in order, `gap` seconds apart); return (index, admitted_at)."""
    log: list[tuple[int, float]] = []

    async def one(i: int, cost: float) -> None:
        await limiter.acquire(cost)
        log.append((i, now()))

    with anyio.fail_after(3600):
        async with anyio.create_task_group() as tg:
            for i, cost in enumerate(costs):
                tg.start_soon(one, i, cost)
                await anyio.sleep(gap)
                await settle()  # let it queue before the next one
    return log


async def test_burst_goes_at_once_then_the_rate(kind: str) -> None:
    limiter = limiter_of(kind, rate=4, burst=2)
    log = await run_all(limiter, [1] * 6)
    times = [t for _, t in log]
    if kind == "window":  # a window admits its whole limit again once it has slid
        assert times == [0, 0, 0.5, 0.5, 1.0, 1.0]
    else:
        assert times == [0, 0, 0.25, 0.5, 0.75, 1.0]
    assert [i for i, _ in log] == list(range(6))


async def test_admitted_at_the_first_instant_the_cost_fits() -> None:
    """I2: no polling slack, including weighted costs and a drained start."""
    limiter = RateLimiter(TokenBucket(8, burst=4, initial_tokens=0))
    log = await run_all(limiter, [1, 3, 4, 1])
    assert [t for _, t in log] == [0.125, 0.5, 1.0, 1.125]
    stats = limiter.statistics()
    assert stats.admitted == 4
    assert stats.admitted_cost == 9
    assert stats.total_wait_time == 0.125 + 0.5 + 1.0 + 1.125


async def test_large_cost_is_not_starved_by_small_ones() -> None:
    """I3: a cost-50 request at the head holds back the stream of cost-1 requests behind it."""
    limiter = RateLimiter(TokenBucket(64, burst=100))
    order: list[str] = []

    async def small(i: int) -> None:
        for _ in range(40):
            await limiter.acquire(1)
            order.append(f"s{i}")

    async def big() -> None:
        await anyio.sleep(0.25)
        for _ in range(3):
            await limiter.acquire(50)
            order.append("BIG")

    with anyio.fail_after(3600):
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(small, i)
            tg.start_soon(big)
    assert order.count("BIG") == 3
    # Once the big request has queued, at most one round of the 5 small workers goes first.
    first_big = order.index("BIG")
    assert first_big <= 100 + 16 + 5


async def test_newcomer_never_overtakes_a_waiter() -> None:
    """I3: tokens for a small cost are there, but the head waits for a large one."""
    limiter = RateLimiter(TokenBucket(4, burst=4))
    await limiter.acquire(3)
    log: list[str] = []

    async def head() -> None:
        await limiter.acquire(4)
        log.append(f"head@{now()}")

    async def newcomer() -> None:
        await limiter.acquire(1)
        log.append(f"new@{now()}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(head)
        await settle()
        assert limiter.statistics().tasks_waiting == 1
        assert not limiter.try_acquire(1)  # 1 token is there, but someone waits
        tg.start_soon(newcomer)
    assert log == ["head@0.75", "new@1.0"]


async def test_newcomer_asks_again_who_waits_after_its_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """I3 on a loop whose checkpoint yields: a request that queued meanwhile goes first.

    Neither anyio nor trio yields in ``checkpoint_if_cancelled`` without raising, so the
    limiter's second look at the queue is tested on a backend whose checkpoint can yield.
    """
    from throttle_trio._eventloop import current_backend

    limiter = RateLimiter(TokenBucket(4, burst=4))
    await limiter.acquire(3)  # 1 token left
    gate = anyio.Event()
    calls = 0

    async def checkpoint_if_cancelled() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the small request's: it found nobody waiting, and yields here
            await gate.wait()

    monkeypatch.setattr(current_backend(), "checkpoint_if_cancelled", checkpoint_if_cancelled)
    log: list[str] = []

    async def one(name: str, cost: float) -> None:
        await limiter.acquire(cost)
        log.append(f"{name}@{now()}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "small", 1)
        await settle()
        tg.start_soon(one, "large", 4)  # it does not fit: it queues while the small one yields
        await settle()
        assert limiter.statistics().tasks_waiting == 1
        gate.set()  # the small one fits, but must go behind the large one
    assert log == ["large@0.75", "small@1.0"]


async def test_cancelled_waiter_takes_nothing() -> None:
    """I4: cancel a queued waiter; the next one is admitted when it would have been anyway."""
    limiter = RateLimiter(TokenBucket(4, burst=1))
    await limiter.acquire()
    times: dict[str, float] = {}

    async def waiter(name: str, cancel_after: float) -> None:
        with anyio.move_on_after(cancel_after):
            await limiter.acquire()
            times[name] = now()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "a", 0.125)  # head, cancelled before its turn at 0.25
        await settle()
        tg.start_soon(waiter, "b", math.inf)
        await settle()
        tg.start_soon(waiter, "c", 0.3)  # cancelled while parked behind b
        await settle()
        tg.start_soon(waiter, "d", math.inf)
    assert times == {"b": 0.25, "d": 0.5}
    assert limiter.statistics().admitted == 3
    assert limiter.statistics().tasks_waiting == 0


async def test_woken_then_cancelled_passes_the_head_role_on() -> None:
    """I4: the head role, not capacity, is handed off.  B is admitted and wakes C; C is
    cancelled before it runs; D must still be admitted at its own time, and C took nothing."""
    limiter = RateLimiter(TokenBucket(4, burst=1))
    await limiter.acquire()
    times: dict[str, float] = {}
    c_scope = anyio.CancelScope()

    async def b() -> None:
        await limiter.acquire()
        times["b"] = now()
        c_scope.cancel()  # C has just been woken as the new head but has not run yet

    async def c() -> None:
        with c_scope:
            await limiter.acquire()
            times["c"] = now()

    async def d() -> None:
        await limiter.acquire()
        times["d"] = now()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for fn in (b, c, d):
                tg.start_soon(fn)
                await settle()
    assert times == {"b": 0.25, "d": 0.5}
    assert limiter.statistics().admitted == 3


async def test_every_acquire_is_a_checkpoint_fast_path_included() -> None:
    """I5: cancellation is seen, and other tasks run, even when tokens are available."""
    limiter = RateLimiter(TokenBucket(4, burst=10))
    with anyio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire()
        pytest.fail("acquire() in a cancelled scope returned")
    assert limiter.statistics().admitted == 0
    assert limiter.statistics().available == 10

    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        # Each fast-path acquire is a schedule point.  trio may run `other` after us within
        # the first batch, so two acquires guarantee that it ran.
        await limiter.acquire()
        await limiter.acquire()
        assert ran


async def test_cost_above_capacity_fails_at_once() -> None:
    """I6: never waits forever."""
    limiter = RateLimiter(TokenBucket(4, burst=2))
    with pytest.raises(tt.CostExceedsCapacity, match=r"^cost must be <= the capacity 2, got 3$"):
        await limiter.acquire(3)
    assert now() == 0
    assert isinstance(tt.CostExceedsCapacity("x"), ValueError)


async def test_lowering_capacity_fails_queued_costs_that_no_longer_fit() -> None:
    """I6: queued waiters whose cost is above the new capacity fail instead of blocking."""
    limiter = RateLimiter(TokenBucket(1, burst=8))
    await limiter.acquire(8)
    outcome: dict[str, object] = {}

    async def waiter(name: str, cost: float) -> None:
        try:
            await limiter.acquire(cost)
            outcome[name] = now()
        except tt.CostExceedsCapacity as exc:
            outcome[name] = str(exc)

    async with anyio.create_task_group() as tg:
        for name, cost in [("a", 6), ("b", 1), ("c", 5), ("d", 2)]:
            tg.start_soon(waiter, name, cost)
            await settle()
        await anyio.sleep(1)
        limiter.reconfigure(burst=4)  # at t=1 the bucket holds 1
    msg = (
        "cost must be <= the capacity 4, got {} (the capacity was lowered while the request waited)"
    )
    assert outcome == {"a": msg.format(6), "b": 1.0, "c": msg.format(5), "d": 3.0}


async def test_raising_the_rate_retimes_the_waiters() -> None:
    limiter = RateLimiter(TokenBucket(1, burst=1))
    await limiter.acquire()
    log = []

    async def waiter() -> None:
        await limiter.acquire()
        log.append(now())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(waiter)
        await anyio.sleep(0.5)  # half a token has accrued at 1/s
        limiter.reconfigure(rate=4)
    assert log == [0.625, 0.875, 1.125]


async def test_timeout_fails_at_once_when_the_wait_is_longer() -> None:
    limiter = RateLimiter(TokenBucket(4, burst=1))
    await limiter.acquire()
    with pytest.raises(
        tt.RateLimitTimeout,
        match=r"^acquire\(cost=1\) could not be admitted within timeout=0.125 seconds$",
    ):
        await limiter.acquire(timeout=0.125)
    assert now() == 0  # failed without waiting
    await limiter.acquire(timeout=0.25)  # exactly enough
    assert now() == 0.25
    assert limiter.statistics().timeouts == 1


async def test_timeout_counts_the_queue_ahead() -> None:
    limiter = RateLimiter(TokenBucket(4, burst=1))
    await limiter.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire, 1)
        await settle()
        with pytest.raises(tt.RateLimitTimeout):
            await limiter.acquire(timeout=0.375)  # needs 0.5: one ahead, then itself
        assert now() == 0
        await limiter.acquire(timeout=0.5)
        assert now() == 0.5


async def test_timeout_expiring_in_the_queue_took_nothing() -> None:
    limiter = RateLimiter(TokenBucket(4, burst=1))
    await limiter.acquire()
    times: list[float] = []
    failures: list[tuple[str, float]] = []

    async def head() -> None:
        await limiter.acquire()
        times.append(now())

    async def impatient() -> None:
        try:
            await limiter.acquire(timeout=0.5)  # enough at the rate when it arrives
        except tt.RateLimitTimeout as exc:
            failures.append((str(exc), now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(head)
        await settle()
        tg.start_soon(impatient)
        await settle()
        limiter.reconfigure(rate=1)  # now the head alone waits until 1.0
    assert failures == [("acquire(cost=1) could not be admitted within timeout=0.5 seconds", 0.5)]
    assert times == [1.0]
    assert limiter.statistics().admitted == 2
    assert limiter.statistics().timeouts == 1
    assert limiter.statistics().available == 0


async def test_refund_wakes_the_head() -> None:
    limiter = RateLimiter(TokenBucket(1, burst=4))
    await limiter.acquire(4)
    log = []

    async def waiter() -> None:
        await limiter.acquire(3)
        log.append(now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(1)
        assert limiter.refund(3) == 0
    assert log == [1.0]
    # At t=1 the waiter left 1 unit; only 3 more fit below the burst of 4.
    assert limiter.refund(10) == 7
    assert limiter.statistics().refunded == 6


async def test_try_acquire() -> None:
    limiter = RateLimiter(GCRA(2, burst=2))
    assert limiter.try_acquire(2)
    assert not limiter.try_acquire()
    await anyio.sleep(0.5)
    assert limiter.try_acquire()
    with pytest.raises(tt.CostExceedsCapacity):
        limiter.try_acquire(3)


async def test_async_with_takes_one_unit() -> None:
    limiter = RateLimiter(TokenBucket(2, burst=1))
    async with limiter:
        pass
    async with limiter:
        assert now() == 0.5


async def test_admitting_one_waiter_wakes_one_task() -> None:
    """I7: with 10,000 waiters each hand-off wakes exactly the next head; no thundering herd."""
    n = 10_000
    limiter = RateLimiter(TokenBucket(1024, burst=1))
    queue = limiter._queue
    woken_when_admitted: list[int] = []

    async def waiter() -> None:
        await limiter.acquire()

    with anyio.fail_after(3600):
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(waiter)
            await anyio.sleep(0.5)  # ~512 admitted; the rest are still parked
            woken_when_admitted.append(queue.total_wakeups)
            per_waiter = queue.wakeups_per_waiter()
            assert len(per_waiter) == limiter.statistics().tasks_waiting > 9000
            assert max(per_waiter[1:]) == 0  # only the head has ever been woken
    assert limiter.statistics().admitted == n
    # One wake-up per hand-off (the first waiter was admitted on the fast path).
    assert queue.total_wakeups <= n
    assert woken_when_admitted[0] <= limiter.statistics().admitted


async def test_module_level_limiter_needs_no_event_loop() -> None:
    assert tt.RateLimiter.__init__ is not None
    limiter = LIMITER_MADE_AT_IMPORT
    await limiter.acquire()
    assert limiter.statistics().admitted >= 1


LIMITER_MADE_AT_IMPORT = RateLimiter(TokenBucket(1_000_000))


async def test_statistics_snapshot() -> None:
    limiter = RateLimiter(TokenBucket(4, burst=2))
    await limiter.acquire(2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire, 2)
        await settle()
        stats = limiter.statistics()
        assert stats == tt.RateLimiterStatistics(
            tasks_waiting=1,
            queued_cost=2,
            admitted=1,
            admitted_cost=2,
            total_wait_time=0,
            timeouts=0,
            available=0,
            capacity=2,
            refunded=0,
        )
    assert repr(limiter) == "RateLimiter(TokenBucket(rate=4, per=1.0, burst=2), waiting=0)"


def test_a_stall_after_wakeup_admits_no_more_than_the_bound() -> None:
    """The head admits itself when it runs, from the bucket as it is then.  If the loop stalls
    after a wake-up, the backlog goes at the rate from the stall's end: a design that booked
    slots in advance would let every booked request through at once after the stall.

    trio only: its MockClock lets the test move time by hand, as a blocked event loop would.
    """
    clock = trio.testing.MockClock(autojump_threshold=0)
    limiter = RateLimiter(TokenBucket(4, burst=1))
    times: list[float] = []

    async def waiter() -> None:
        await limiter.acquire()
        times.append(now())
        if len(times) == 2:
            clock.jump(5)  # the loop "stalls" right after the second admission

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()

    trio.run(main, clock=clock)
    assert times == [0, 0.25, 5.25, 5.5, 5.75]
