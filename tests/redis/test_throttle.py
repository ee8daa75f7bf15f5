"""RedisThrottle against a real Redis: invariants I1, I3, I4, I6 across "processes".

Several RedisThrottle objects with the same name stand for several processes: each has its own
local queue and booking role, exactly as separate processes would (the multi-process test runs
real ones).  Times compared exactly are Redis's own booked instants (integer microseconds);
local times are only compared against rate bounds with a documented tolerance.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import throttle_trio as tt
from tests.redis import rate_violations, us
from throttle_trio.redis import (
    DEFAULT_MAX_BATCH,
    GCRALimit,
    RedisBackendError,
    RedisReservation,
    RedisThrottle,
)

if TYPE_CHECKING:
    import coredis

    from tests.redis.conftest import RedisServer

pytestmark = pytest.mark.anyio


async def wait_until_booked(throttle: RedisThrottle, round_trips: int) -> None:
    """Wait until ``throttle`` has made ``round_trips`` round trips and holds a booking."""
    with anyio.fail_after(5):
        while not (
            throttle.statistics().round_trips >= round_trips
            and throttle.statistics().tasks_waiting >= 1
            and throttle._booking
        ):
            await anyio.sleep(0.001)


@pytest.mark.parametrize("max_batch", [1, DEFAULT_MAX_BATCH])
async def test_rate_bound_over_every_window(
    client: coredis.Redis[bytes], name: str, max_batch: int
) -> None:
    """I1: 3 "processes" x 20 tasks; admissions stay within burst + rate*T in every window.

    Booked instants (Redis's clock) must meet the bound exactly (slack: microsecond rounding).
    Local return times may exceed it by ``max_batch`` requests per process whose booked waits
    ended late (the documented booking overshoot), plus float noise of the anyio clock.  Each
    round trip books at most ``max_batch`` requests.
    """
    rate, burst, processes, tasks, each = 200.0, 10.0, 3, 20, 3
    throttles = [
        RedisThrottle(client, name, requests=GCRALimit(rate, burst=burst), max_batch=max_batch)
        for _ in range(processes)
    ]
    booked: list[tuple[float, float]] = []
    local: list[tuple[float, float]] = []

    async def worker(throttle: RedisThrottle) -> None:
        for _ in range(each):
            async with throttle.reserve(requests=1) as slot:
                local.append((anyio.current_time(), 1.0))
                booked.append((slot.server_admitted_at, 1.0))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for throttle in throttles:
                for _ in range(tasks):
                    tg.start_soon(worker, throttle)
    total = processes * tasks * each
    assert len(booked) == len(local) == total
    assert rate_violations(booked, rate, burst, slack=0.01) == []
    assert rate_violations(local, rate, burst, slack=processes * max_batch + 0.05) == []
    # The bound is tight: the fleet needed (total - burst) / rate seconds of Redis time.
    times = sorted(t for t, _ in booked)
    assert us(times[-1]) - us(times[0]) >= (total - burst) / rate * 1e6 - 1
    for throttle in throttles:
        stats = throttle.statistics()
        assert stats.admitted == tasks * each
        if max_batch == 1:
            assert stats.round_trips == stats.admitted  # one round trip per admission
        else:
            assert stats.admitted / max_batch <= stats.round_trips < stats.admitted


async def test_one_round_trip_per_admission_with_several_limits(
    client: coredis.Redis[bytes], name: str
) -> None:
    """An uncontended admission costs exactly one EVALSHA, whatever the number of limits."""

    async def evalsha_calls() -> int:
        info: Any = await client.info("commandstats")
        return int(info.get("cmdstat_evalsha", {}).get("calls", 0))

    throttle = RedisThrottle(
        client,
        name,
        requests=GCRALimit(10_000, burst=1_000),
        tokens=GCRALimit(1_000_000, burst=100_000),
        tokens_per_day=GCRALimit(10**9, per=86_400),
    )
    async with throttle.reserve(requests=1, tokens=10):  # loads the script once
        pass
    before = await evalsha_calls()
    for _ in range(50):
        async with throttle.reserve(requests=1, tokens=10):
            pass
    assert await evalsha_calls() - before == 50
    assert throttle.statistics().round_trips == 51


async def test_all_or_nothing_across_limits(client: coredis.Redis[bytes], name: str) -> None:
    """A request that one limit refuses charges none: the other limit keeps its units."""
    throttle = RedisThrottle(
        client,
        name,
        requests=GCRALimit(10, per=3600, burst=10),
        tokens=GCRALimit(1000, per=3600, burst=1000),
    )
    async with throttle.reserve(requests=1, tokens=1000):
        pass
    with pytest.raises(tt.RateLimitTimeout):
        async with throttle.reserve(requests=1, tokens=500, timeout=0.05):
            pass
    state = await throttle.state()
    assert state.available["requests"] == pytest.approx(9, abs=0.01)  # not charged
    assert state.available["tokens"] == pytest.approx(0, abs=0.01)
    assert state.booked_for is None  # nothing was booked


async def test_weighted_costs_book_the_exact_instant(
    client: coredis.Redis[bytes], name: str
) -> None:
    """6 tokens, then 6 more, at 5/s with a burst of 10: the second goes 0.4 s after the
    first on Redis's clock, to the microsecond."""
    throttle = RedisThrottle(client, name, tokens=GCRALimit(5, burst=10))
    async with throttle.reserve(tokens=6) as first:
        pass
    async with throttle.reserve(tokens=6) as second:
        pass
    assert us(second.server_admitted_at) - us(first.server_admitted_at) == 400_000


async def test_cost_above_capacity_fails_at_once(client: coredis.Redis[bytes], name: str) -> None:
    """I6: a cost above a burst raises CostExceedsCapacity before any round trip."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(10), tokens=GCRALimit(100, burst=50))
    with pytest.raises(
        tt.CostExceedsCapacity,
        match=r"^tokens must be <= the capacity 50 of limit 'tokens', got 51$",
    ):
        await throttle.acquire(requests=1, tokens=51)
    with pytest.raises(ValueError, match=r"^unknown cost 'images': this throttle counts"):
        throttle.reserve(images=1)
    assert throttle.statistics().round_trips == 0


async def test_fifo_within_a_process(client: coredis.Redis[bytes], name: str) -> None:
    """I3: tasks are admitted in arrival order; a large cost is not overtaken by small ones."""
    throttle = RedisThrottle(client, name, tokens=GCRALimit(2000, burst=100))
    order: list[int] = []

    async def request(index: int, cost: int) -> None:
        async with throttle.reserve(tokens=cost):
            order.append(index)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for index in range(12):
                tg.start_soon(request, index, 100 if index == 3 else 10)
                await anyio.sleep(0.001)  # arrival order
    assert order == list(range(12))


async def test_fifo_across_processes(client: coredis.Redis[bytes], name: str) -> None:
    """A large request booked by one process is admitted before a small one another process
    asks for later, even when the small one concerns a limit the large one does not wait for."""
    a = RedisThrottle(
        client, name, requests=GCRALimit(100, burst=10), tokens=GCRALimit(1000, burst=1000)
    )
    b = RedisThrottle(
        client, name, requests=GCRALimit(100, burst=10), tokens=GCRALimit(1000, burst=1000)
    )
    async with a.reserve(tokens=1000):
        pass
    results: dict[str, RedisReservation] = {}

    async def big() -> None:
        async with a.reserve(requests=1, tokens=300) as slot:
            results["big"] = slot

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(big)
            await wait_until_booked(a, 2)
            async with b.reserve(requests=1) as small:  # tokens=0: fits at once on its own
                results["small"] = small
    assert us(results["small"].server_admitted_at) >= us(results["big"].server_admitted_at)


async def test_settle_refund_and_overdraft(client: coredis.Redis[bytes], name: str) -> None:
    """Settle refunds below the estimate and charges a debt above it, on the shared bucket."""
    throttle = RedisThrottle(client, name, tokens=GCRALimit(1000, per=3600, burst=1000))
    async with throttle.reserve(tokens=800) as slot:
        await slot.settle(tokens=200)
        with pytest.raises(tt.ReservationError, match=r"^settle\(\) called twice"):
            await slot.settle(tokens=100)
    assert (await throttle.state()).available["tokens"] == pytest.approx(800, abs=0.1)
    async with throttle.reserve(tokens=500) as slot:
        await slot.settle(tokens=1500)
    assert (await throttle.state()).available["tokens"] == pytest.approx(-700, abs=0.1)
    limits = throttle.statistics().limits["tokens"]
    assert (limits.refunded, limits.overdraft, limits.dropped) == (600, 1000, 0)
    assert limits.admitted_cost == 1300


async def test_refund_never_frees_room_a_booking_needs(
    client: coredis.Redis[bytes], name: str
) -> None:
    """A refund while another process's request is booked in the future is not credited where
    the booking relies on it: a third request still books after the booked one's share."""
    a = RedisThrottle(client, name, tokens=GCRALimit(1000, burst=1000))
    b = RedisThrottle(client, name, tokens=GCRALimit(1000, burst=1000))
    c = RedisThrottle(client, name, tokens=GCRALimit(1000, burst=1000))
    first = await a.acquire(tokens=1000)
    booked: list[RedisReservation] = []

    async def book() -> None:
        async with b.reserve(tokens=1000) as slot:
            booked.append(slot)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(book)
            await wait_until_booked(b, 1)
            await first.settle(tokens=0)  # refund 1000 while b's request sleeps
            first.release()
            third = await c.acquire(tokens=1)
            third.release()
    assert us(third.server_admitted_at) - us(booked[0].server_admitted_at) >= 1000
    assert a.statistics().limits["tokens"].dropped == 1000


async def test_pause_is_shared(client: coredis.Redis[bytes], name: str) -> None:
    """Process A pauses; process B's requests are booked after the pause ends."""
    a = RedisThrottle(client, name, requests=GCRALimit(100))
    b = RedisThrottle(client, name, requests=GCRALimit(100))
    await a.pause_for(0.2)
    state = await b.state()
    assert state.paused_for is not None
    assert 0 < state.paused_for <= 0.2
    ends = us(state.server_time) + us(state.paused_for)
    async with b.reserve(requests=1) as slot:
        assert us(slot.server_admitted_at) >= ends
    await a.pause_for(0.01)  # a shorter pause never shortens one in force (it has ended here)
    assert a.statistics().pauses == 2


async def test_headers_limit_the_shared_bucket(client: coredis.Redis[bytes], name: str) -> None:
    """observe(): the server's remaining count, minus what we admitted since, becomes the
    available units for every process, once two reports in a row agree (the local throttle's
    rule, from the same code)."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(100, per=3600, burst=100))
    other = RedisThrottle(client, name, requests=GCRALimit(100, per=3600, burst=100))
    sent = await throttle.acquire(requests=1)
    for _ in range(2):
        (await throttle.acquire(requests=1)).release()
    report = tt.RateLimitHeaders(
        limits={"requests": tt.LimitReport(limit=100, remaining=40, reset_after=None)},
        retry_after=None,
        should_retry=None,
    )
    await throttle.observe(report, sent)  # one report may be off by the requests in flight
    assert (await other.state()).available["requests"] == pytest.approx(97, abs=0.01)
    await throttle.observe(report, sent)  # a second that agrees: the cut is taken
    assert (await other.state()).available["requests"] == pytest.approx(38, abs=0.01)
    high = tt.RateLimitHeaders(
        limits={"requests": tt.LimitReport(limit=100, remaining=90, reset_after=None)},
        retry_after=None,
        should_retry=None,
    )
    await other.observe(high)  # never raised
    assert (await other.state()).available["requests"] == pytest.approx(38, abs=0.01)


async def test_idle_keys_expire(client: coredis.Redis[bytes], name: str) -> None:
    """A limit's key expires when its bucket is full again; the gate when its times are past."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(10, burst=5))
    async with throttle.reserve(requests=5):
        pass
    key = throttle.keys["requests"]
    ttl = await client.pttl(key)
    assert 0 < ttl <= 501  # 5 units at 10/s: full again in 500 ms
    await throttle.pause_for(0.5)
    gate_ttl = await client.pttl(throttle.keys["gate"])
    assert 0 < gate_ttl <= 501
    with anyio.fail_after(5):
        while await client.exists([key, throttle.keys["gate"]]):
            await anyio.sleep(0.01)


@pytest.mark.parametrize(
    ("setup", "kind"),
    [
        (lambda c, k: c.rpush(k, ["x"]), "list"),
        (lambda c, k: c.set(k, "12"), "string"),
        (lambda c, k: c.hset(k, {"t": "soon", "f": "1", "u": "1"}), "hash"),
        (lambda c, k: c.hset(k, {"other": "1"}), "hash"),
        (
            lambda c, k: c.hset(k, {"t": "1", "f": "1", "u": "0", "r": "0", "d": "0", "x": "0"}),
            "hash",
        ),
        (lambda c, k: c.hset(k, {"t": "1", "f": "1", "u": "0", "r": "1"}), "hash"),
    ],
    ids=["list", "string", "non-integer", "other-hash", "zero-rate", "partial-rate"],
)
async def test_foreign_value_is_a_clear_error(
    client: coredis.Redis[bytes], name: str, setup: Any, kind: str
) -> None:
    """A key holding data we did not write raises RedisBackendError naming the key."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(100))
    key = throttle.keys["requests"]
    await setup(client, key)
    with pytest.raises(
        RedisBackendError,
        match=rf"^key '{key.replace('{', '[{]').replace('}', '[}]')}' holds data throttle_trio "
        rf"did not write \(a Redis {kind}\); delete it",
    ):
        await throttle.acquire(requests=1)
    assert throttle.statistics().in_flight == 0
    await client.delete([key])
    await client.set(throttle.keys["gate"], "x")
    with pytest.raises(RedisBackendError, match=r"\(a Redis string\)"):
        await throttle.acquire(requests=1)


async def test_cancelled_booked_head_gives_its_booking_back(
    client: coredis.Redis[bytes], name: str
) -> None:
    """I4: cancelling a head that sleeps until its booked instant restores the keys exactly:
    the next request books the instant the cancelled one had."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(2, burst=1), max_concurrent=5)
    async with throttle.reserve(requests=1) as first:
        pass
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(throttle.acquire, requests=1))
            await wait_until_booked(throttle, 2)
            tg.cancel_scope.cancel()
    stats = throttle.statistics()
    assert (stats.unbooked, stats.admitted, stats.in_flight, stats.tasks_waiting) == (1, 1, 0, 0)
    async with throttle.reserve(requests=1) as again:
        pass
    assert us(again.server_admitted_at) - us(first.server_admitted_at) == 500_000


async def test_round_trip_cancelled_in_flight_is_refunded(
    redis_server: RedisServer, client: coredis.Redis[bytes], name: str
) -> None:
    """I4: a caller cancelled while its (shielded) round trip is in flight gets nothing, and
    what the script charged on the server is given back."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(10, per=3600, burst=10))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, redis_server.debug_sleep, 1.0)
            await anyio.sleep(0.2)  # the server now sleeps
            with anyio.move_on_after(0.1) as scope:
                await throttle.acquire(requests=3)
            assert scope.cancelled_caught
    stats = throttle.statistics()
    assert (stats.admitted, stats.unbooked, stats.round_trips) == (0, 1, 2)
    assert (await throttle.state()).available["requests"] == pytest.approx(10, abs=0.01)


async def test_timeout_fails_without_booking(client: coredis.Redis[bytes], name: str) -> None:
    """A wait longer than the timeout fails at once, books nothing, and counts as a timeout."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(1, burst=1))
    (await throttle.acquire(requests=1)).release()
    with pytest.raises(
        tt.RateLimitTimeout,
        match=r"^reserve\(requests=1\) could not be admitted within timeout=0.1 seconds$",
    ):
        await throttle.acquire(requests=1, timeout=0.1)
    assert (await throttle.state()).booked_for is None
    assert throttle.statistics().timeouts == 1


async def test_timeout_while_waiting_for_a_slot(client: coredis.Redis[bytes], name: str) -> None:
    """A request queued behind a held slot (a wait nobody can know) waits until its timeout,
    then fails, books nothing and leaves the line; the next request is not held up by it."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(10_000), max_concurrent=1)
    holder = await throttle.acquire(requests=1)
    with anyio.fail_after(10), pytest.raises(tt.RateLimitTimeout, match=r"timeout=0\.05 seconds"):
        await throttle.acquire(requests=1, timeout=0.05)
    stats = throttle.statistics()
    assert (stats.timeouts, stats.tasks_waiting, stats.round_trips) == (1, 0, 1)
    holder.release()
    with anyio.fail_after(10):
        async with throttle.reserve(requests=1):
            pass
    assert throttle.statistics().admitted == 2


async def test_max_concurrent_is_per_process_and_taken_before_booking(
    client: coredis.Redis[bytes], name: str
) -> None:
    """At most max_concurrent reservations of one process at once; a request waiting for a
    slot books nothing (no round trip while waiting), and a head books for no more waiters
    than there are free slots."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(10_000), max_concurrent=2)
    other = RedisThrottle(client, name, requests=GCRALimit(10_000), max_concurrent=2)
    done = anyio.Event()
    peak = 0

    async def call(throttle: RedisThrottle) -> None:
        nonlocal peak
        async with throttle.reserve(requests=1):
            peak = max(peak, throttle.statistics().in_flight)
            await done.wait()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(call, throttle)
                tg.start_soon(call, other)
            while throttle.statistics().in_flight < 2 or other.statistics().in_flight < 2:
                await anyio.sleep(0.001)
            await anyio.sleep(0.02)
            stats = throttle.statistics()
            assert (stats.round_trips, stats.in_flight, stats.tasks_waiting) == (2, 2, 4)
            done.set()
    assert peak == 2
    stats = throttle.statistics()
    assert stats.admitted == 6
    # Two alone (nobody else was waiting, then no second slot), then at most two per trip.
    assert 4 <= stats.round_trips <= 6


async def test_reservation_life_cycle(client: coredis.Redis[bytes], name: str) -> None:
    """The same rules as the local Reservation: release is idempotent, settle after release
    fails, cancel refunds everything, reject keeps what it names."""
    throttle = RedisThrottle(
        client,
        name,
        requests=GCRALimit(100, per=3600, burst=100),
        tokens=GCRALimit(1000, per=3600, burst=1000),
    )
    slot = await throttle.acquire(requests=1, tokens=100)
    assert slot.active
    assert not slot.via_fallback
    slot.release()
    slot.release()
    assert throttle.statistics().in_flight == 0
    with pytest.raises(
        tt.ReservationError, match=r"^settle\(\) called on a reservation after it was released$"
    ):
        await slot.settle(tokens=1)
    cancelled = await throttle.acquire(requests=1, tokens=100)
    await cancelled.cancel()
    assert not cancelled.active
    rejected = await throttle.acquire(requests=1, tokens=100)
    await rejected.reject(requests=1)
    state = await throttle.state()
    assert state.available["requests"] == pytest.approx(98, abs=0.01)
    assert state.available["tokens"] == pytest.approx(900, abs=0.01)
    stats = throttle.statistics()
    assert (stats.rejections, stats.in_flight, stats.admitted) == (1, 0, 3)


async def test_acquire_is_a_checkpoint(client: coredis.Redis[bytes], name: str) -> None:
    """I5: a cancelled caller is not admitted even when units are free, and makes no trip."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(100))
    with anyio.CancelScope() as scope:
        scope.cancel()
        await throttle.acquire(requests=1)
    assert throttle.statistics().round_trips == 0


async def test_script_flush_is_survived(client: coredis.Redis[bytes], name: str) -> None:
    """After SCRIPT FLUSH (or a restart), the script is loaded again transparently."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(100))
    (await throttle.acquire(requests=1)).release()
    await client.script_flush()
    (await throttle.acquire(requests=1)).release()
    assert throttle.statistics().admitted == 2


async def test_accepts_the_metrics_it_counts(client: coredis.Redis[bytes], name: str) -> None:
    """Like Throttle.accepts, so that library code can take either throttle."""
    throttle = RedisThrottle(client, name, tokens=GCRALimit(100, per=1.0))
    assert throttle.accepts("tokens")
    assert not throttle.accepts("requests")


async def test_recost_at_booking_time_in_a_batch(client: coredis.Redis[bytes], name: str) -> None:
    """Five requests at once: the first books alone, the other four queue behind its round
    trip and are booked together, each with what its ``recost`` says then.  The head's error
    and a picked waiter's cost above the burst fail those two alone, in their own tasks; the
    other two are booked in the same round trip and charged what ``recost`` returned."""
    throttle = RedisThrottle(
        client,
        name,
        requests=GCRALimit(60, per=3600, burst=100),  # refills a request a minute
        tokens=GCRALimit(6000, per=60),
    )

    def boom() -> dict[str, float]:
        raise RuntimeError("tokenizer broke")

    recosts: dict[str, Any] = {
        "first": lambda: {"requests": 1, "tokens": 10},
        "head": boom,
        "too big": lambda: {"requests": 1, "tokens": 7000},
        "grown": lambda: {"requests": 1, "tokens": 30},
        "not a mapping": lambda: [("tokens", 1)],
    }
    outcomes: dict[str, Any] = {}

    async def request(key: str) -> None:
        try:
            slot = await throttle.acquire(requests=1, tokens=1, recost=recosts[key])
        except Exception as exc:
            outcomes[key] = (type(exc), str(exc))
        else:
            outcomes[key] = dict(slot.costs)
            slot.release()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for key in recosts:
                tg.start_soon(request, key)
    assert outcomes == {
        "first": {"requests": 1, "tokens": 10},
        "head": (RuntimeError, "tokenizer broke"),
        "too big": (
            tt.CostExceedsCapacity,
            "recost() returned {'requests': 1, 'tokens': 7000}: tokens must be <= the capacity "
            "6000 of limit 'tokens', got 7000",
        ),
        "grown": {"requests": 1, "tokens": 30},
        "not a mapping": (
            TypeError,
            "recost() must return a mapping of costs per metric, got list [('tokens', 1)]",
        ),
    }
    stats = throttle.statistics()
    assert stats.round_trips == 2  # the first alone, the four others in one batch
    assert stats.limits["tokens"].admitted_cost == 40
    assert stats.tasks_waiting == 0
    # Redis charged the two that were booked, nothing for the three that failed.
    assert 98 <= (await throttle.state()).available["requests"] < 98.1


async def test_a_second_thread_is_refused_while_requests_wait(
    client: coredis.Redis[bytes], name: str
) -> None:
    """Requests of one RedisThrottle wait in one event loop: while they do, an acquire or a
    release from another thread's loop is refused with a clear error and changes nothing
    (a release from there could not wake them); the waiter then goes in as usual."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(10_000), max_concurrent=1)
    holder = await throttle.acquire(requests=1)
    admitted = anyio.Event()

    async def waiter() -> None:
        async with throttle.reserve(requests=1):
            admitted.set()

    def from_another_thread() -> list[str]:
        errors = []

        async def acquire() -> None:
            await throttle.acquire(requests=1)

        try:
            anyio.run(acquire)
        except RuntimeError as exc:
            errors.append(str(exc))
        try:
            holder.release()
        except RuntimeError as exc:
            errors.append(str(exc))
        return errors

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            while throttle.statistics().tasks_waiting == 0:
                await anyio.sleep(0.001)
            errors = await anyio.to_thread.run_sync(from_another_thread)
            assert len(errors) == 2
            assert all("waiting in an event loop of another thread" in e for e in errors)
            stats = throttle.statistics()
            assert (stats.in_flight, stats.tasks_waiting, stats.round_trips) == (1, 1, 1)
            holder.release()
            await admitted.wait()
    assert throttle.statistics().admitted == 2
