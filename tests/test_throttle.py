"""Throttle on both backends, on virtual time: several limits and a concurrency cap taken at
one instant (I8, I9), reserve and settle, the pause gate, tickets for retries, I6."""

from __future__ import annotations

import math
from functools import partial

import anyio
import pytest
import trio
import trio.testing

import throttle_trio as tt
from tests.helpers import DelegatingPolicy, settle
from throttle_trio import SlidingWindow, Throttle, TokenBucket, events
from throttle_trio._headers import LimitReport, RateLimitHeaders

pytestmark = pytest.mark.anyio


def now() -> float:
    return anyio.current_time()


async def admit_one(throttle: Throttle, admitted: list[float]) -> None:
    """Take one request, and note when it was admitted (a task beside the test's)."""
    (await throttle.acquire(requests=1)).release()
    admitted.append(now())


def llm_throttle(**kwargs: object) -> Throttle:
    """4 requests/s (burst 2) and 64 tokens/s (burst 128)."""
    return Throttle(
        requests=TokenBucket(4, burst=2),
        tokens=TokenBucket(64, burst=128),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_admitted_when_every_limit_admits_and_charged_for_all_at_once() -> None:
    throttle = llm_throttle()
    async with throttle.reserve(requests=1, tokens=128):
        assert now() == 0
    # The next request needs 64 tokens (ready at 1.0) and 1 request (ready now): it waits
    # for the tokens and holds nothing meanwhile.
    async with anyio.create_task_group() as tg:

        async def second() -> None:
            async with throttle.reserve(requests=1, tokens=64):
                assert now() == 1.0

        tg.start_soon(second)
        await anyio.sleep(0.5)
        stats = throttle.statistics()
        assert stats.tasks_waiting == 1
        assert stats.in_flight == 0
        assert stats.binding == "tokens"
        assert stats.limits["requests"].available == 2  # untouched while it waits (I8)
    stats = throttle.statistics()
    assert stats.limits["requests"].admitted_cost == 2
    assert stats.limits["tokens"].admitted_cost == 192
    assert stats.limits["tokens"].wait_time == 1.0
    assert stats.binding is None


async def test_a_concurrency_slot_is_taken_with_the_rates() -> None:
    throttle = Throttle(requests=TokenBucket(64, burst=64), max_concurrent=2)
    starts: list[float] = []

    async def call(duration: float) -> None:
        async with throttle.reserve(requests=1):
            starts.append(now())
            await anyio.sleep(duration)

    async with anyio.create_task_group() as tg:
        for duration in (1, 2, 1, 1):
            tg.start_soon(call, duration)
            await settle()
        await anyio.sleep(0.5)
        assert throttle.statistics().binding == "concurrency"
    assert starts == [0, 0, 1, 2]
    stats = throttle.statistics()
    assert stats.in_flight == 0
    assert stats.concurrency_wait_time == 2  # the head waited 0->1, then 1->2


# -- I8 and I9 against the seed article's designs -----------------------------------------
# The article (shared/seed-article.txt) combines a rate limiter and a semaphore.  We reproduce
# both orders with the same parameters: 4 requests/s with burst 1, 3 in flight; the first 3
# requests take 5 s, the rest 0.1 s.  "Sent" is the instant a request enters its call.

RATE, BURST, SLOTS, N = 4, 1, 3, 10


def latency(i: int) -> float:
    return 5.0 if i < SLOTS else 0.1


def max_in_window(times: list[float], window: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


async def article_rate_then_semaphore() -> list[float]:
    """LLMThrottler.call: `await rate_limiter.acquire()`, then `async with semaphore`."""
    rate = tt.RateLimiter(TokenBucket(RATE, burst=BURST))
    semaphore = anyio.Semaphore(SLOTS)
    sent: list[float] = []

    async def call(i: int) -> None:
        await rate.acquire()
        async with semaphore:
            sent.append(now())
            await anyio.sleep(latency(i))

    async with anyio.create_task_group() as tg:
        for i in range(N):
            tg.start_soon(call, i)
            await settle()
    return sent


async def semaphore_then_rate() -> tuple[list[float], float]:
    """The reverse order: returns send times and the slot-seconds held while not sending."""
    rate = tt.RateLimiter(TokenBucket(RATE, burst=BURST))
    semaphore = anyio.Semaphore(SLOTS)
    sent: list[float] = []
    idle_slot_time = 0.0

    async def call(i: int) -> None:
        nonlocal idle_slot_time
        async with semaphore:
            got_slot = now()
            await rate.acquire()
            idle_slot_time += now() - got_slot
            sent.append(now())
            await anyio.sleep(latency(i))

    async with anyio.create_task_group() as tg:
        for i in range(N):
            tg.start_soon(call, i)
            await settle()
    return sent, idle_slot_time


async def with_throttle() -> tuple[list[float], float]:
    throttle = Throttle(requests=TokenBucket(RATE, burst=BURST), max_concurrent=SLOTS)
    sent: list[float] = []
    idle_slot_time = 0.0

    async def call(i: int) -> None:
        nonlocal idle_slot_time
        async with throttle.reserve(requests=1):
            idle_slot_time += 0.0  # admitted = slot taken = sent, at one instant
            sent.append(now())
            await anyio.sleep(latency(i))

    async with anyio.create_task_group() as tg:
        for i in range(N):
            tg.start_soon(call, i)
            await settle()
    return sent, idle_slot_time


async def test_the_article_order_sends_a_burst_when_slots_free_up() -> None:
    """I9 broken: requests that passed the rate while slots were busy leave together."""
    sent = await article_rate_then_semaphore()
    assert max_in_window(sent, 0.5) > BURST + RATE * 0.5


async def test_the_reverse_order_holds_slots_while_waiting_for_the_rate() -> None:
    """I8 broken: a slot is held for seconds by requests that are not being sent."""
    sent, idle_slot_time = await semaphore_then_rate()
    assert max_in_window(sent, 0.5) <= BURST + RATE * 0.5
    assert idle_slot_time > 1.0


async def test_the_throttle_keeps_the_rate_at_send_time_and_holds_nothing_while_waiting() -> None:
    sent, idle_slot_time = await with_throttle()
    for window in (0.25, 0.5, 1.0, 2.0):
        assert max_in_window(sent, window) <= BURST + RATE * window
    assert idle_slot_time == 0
    assert len(sent) == N


# -- reserve and settle -----------------------------------------------------------------------


async def test_settle_refunds_the_unused_estimate() -> None:
    throttle = llm_throttle()
    async with throttle.reserve(requests=1, tokens=100) as slot:
        slot.settle(tokens=40)
    stats = throttle.statistics().limits["tokens"]
    assert stats.available == 128 - 40
    assert stats.refunded == 60
    assert slot.costs == {"requests": 1, "tokens": 40}


async def test_settle_above_the_estimate_is_a_debt_repaid_first() -> None:
    throttle = llm_throttle()
    async with throttle.reserve(requests=1, tokens=100) as slot:
        slot.settle(tokens=160)  # 32 tokens of debt
    assert throttle.statistics().limits["tokens"].available == -32
    assert throttle.statistics().limits["tokens"].overdraft == 60
    async with throttle.reserve(requests=1, tokens=32):
        assert now() == 1.0  # 64 tokens to repay the debt and pay the 32


async def test_providers_that_count_the_estimate_keep_it() -> None:
    throttle = llm_throttle(refund_unused=False)
    async with throttle.reserve(requests=1, tokens=100) as slot:
        slot.settle(tokens=40)
    assert throttle.statistics().limits["tokens"].available == 28
    async with throttle.reserve(requests=1, tokens=10) as slot:
        slot.settle(tokens=30)  # an overdraft is still charged
    assert throttle.statistics().limits["tokens"].available == -2


async def test_a_refund_never_rises_above_the_burst_and_the_drop_is_counted() -> None:
    throttle = llm_throttle()
    async with throttle.reserve(requests=1, tokens=100) as slot:
        await anyio.sleep(10)  # the bucket refilled meanwhile
        slot.settle(tokens=0)
    stats = throttle.statistics().limits["tokens"]
    assert stats.available == 128
    assert stats.dropped == 100
    assert stats.refunded == 0


async def test_exit_without_settle_keeps_the_estimate() -> None:
    throttle = llm_throttle()
    with pytest.raises(RuntimeError, match="boom"):
        async with throttle.reserve(requests=1, tokens=100):
            raise RuntimeError("boom")
    assert throttle.statistics().limits["tokens"].available == 28
    with anyio.move_on_after(1):
        async with throttle.reserve(requests=1, tokens=20):
            await anyio.sleep(5)  # cancelled "after sending"
    assert throttle.statistics().limits["tokens"].available == 28 + 64 - 20
    assert throttle.statistics().in_flight == 0


async def test_cancel_refunds_everything() -> None:
    throttle = llm_throttle()
    async with throttle.reserve(requests=1, tokens=100) as slot:
        slot.cancel()
        assert throttle.statistics().in_flight == 0
    stats = throttle.statistics().limits
    assert (stats["requests"].available, stats["tokens"].available) == (2, 128)


async def test_a_rejected_attempt_costs_one_request_and_no_tokens() -> None:
    throttle = llm_throttle()
    async with throttle.reserve(requests=1, tokens=100) as slot:
        slot.reject(requests=1)
    stats = throttle.statistics()
    assert (stats.limits["requests"].available, stats.limits["tokens"].available) == (1, 128)
    assert stats.rejections == 1


async def test_misuse_of_a_reservation_is_a_clear_error() -> None:
    throttle = llm_throttle()
    async with throttle.reserve(requests=1, tokens=10) as slot:
        slot.settle(tokens=5)
        with pytest.raises(
            tt.ThrottleTrioError, match=r"^settle\(\) called twice on the same reservation$"
        ):
            slot.settle(tokens=5)
        with pytest.raises(
            ValueError, match=r"^unknown usage 'token': this throttle counts requests, tokens$"
        ):
            slot._throttle._adjust(slot._booking, {"token": 1}, refund=True)
    with pytest.raises(
        RuntimeError, match=r"^settle\(\) called on a reservation after it was released$"
    ):
        slot.settle(tokens=1)
    async with throttle.reserve(requests=1, tokens=10) as slot:
        with pytest.raises(ValueError, match=r"^tokens must be a finite number >= 0, got -1$"):
            slot.settle(tokens=-1)
        with pytest.raises(
            ValueError, match=r"^unknown usage 'token': this throttle counts requests, tokens$"
        ):
            slot.settle(token=1)
    slot.release()  # idempotent


async def test_bad_reservations_fail_at_once() -> None:
    throttle = llm_throttle()
    with pytest.raises(
        ValueError, match=r"^unknown cost 'token': this throttle counts requests, tokens$"
    ):
        throttle.reserve(requests=1, token=5)
    with pytest.raises(
        tt.CostExceedsCapacity,
        match=r"^tokens must be <= the capacity 128 of limit 'tokens', got 129$",
    ):
        throttle.reserve(requests=1, tokens=129)
    with pytest.raises(ValueError, match=r"^tokens must be a finite number >= 0, got nan$"):
        throttle.reserve(tokens=math.nan)


def test_bad_construction() -> None:
    with pytest.raises(
        ValueError,
        match=r"^a Throttle needs at least one limit, max_concurrent or learn_limits, got none$",
    ):
        Throttle()
    with pytest.raises(
        TypeError,
        match=r"^limit 'tokens' must be a RatePolicy "
        r"\(TokenBucket, GCRA, SlidingWindow, \.\.\.\), got int 5$",
    ):
        Throttle(tokens=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^max_concurrent must be >= 1, got 0$"):
        Throttle(max_concurrent=0)
    with pytest.raises(TypeError, match=r"^max_concurrent must be an int or None, got 2.5$"):
        Throttle(max_concurrent=2.5)  # type: ignore[arg-type]


async def test_per_day_limits_count_their_metric() -> None:
    throttle = Throttle(
        tokens=TokenBucket(64, burst=128), tokens_per_day=TokenBucket(1000, per=86400)
    )
    assert throttle.metrics == {"tokens"}
    async with throttle.reserve(tokens=100):
        pass
    stats = throttle.statistics().limits
    assert stats["tokens_per_day"].metric == "tokens"
    assert stats["tokens_per_day"].available == 900


# -- the pause gate and tickets ---------------------------------------------------------------


async def test_pause_closes_the_gate_for_every_waiter() -> None:
    throttle = llm_throttle(max_concurrent=8)
    sent: list[float] = []

    async def call() -> None:
        async with throttle.reserve(requests=1, tokens=1):
            sent.append(now())

    throttle.pause_for(2)
    assert throttle.paused_until == 2
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(call)
        await anyio.sleep(1)
        assert sent == []
        assert throttle.statistics().binding == "pause"
        throttle.pause_until(1.5)  # an earlier deadline does not shorten the pause
    assert sent == [2, 2, 2.25]
    stats = throttle.statistics()
    assert stats.pauses == 1
    assert stats.paused_until is None
    assert stats.pause_wait_time == 2


async def test_a_retry_keeps_its_ticket_and_holds_no_slot_while_it_waits() -> None:
    throttle = Throttle(requests=TokenBucket(4, burst=1), max_concurrent=1)
    order: list[str] = []

    async def first() -> None:
        slot = await throttle.acquire(requests=1)
        order.append("first attempt")
        slot.reject(requests=1)  # a 429
        throttle.pause_for(1)
        assert throttle.statistics().in_flight == 0  # no slot held while it backs off
        async with throttle.reserve(requests=1, ticket=slot.ticket):
            order.append(f"first retry@{now()}")

    async def later(name: str) -> None:
        async with throttle.reserve(requests=1):
            order.append(f"{name}@{now()}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await settle()
        tg.start_soon(later, "second")
        await settle()
        tg.start_soon(later, "third")
    assert order == ["first attempt", "first retry@1.0", "second@1.25", "third@1.5"]


async def test_lowering_a_capacity_fails_queued_requests_that_no_longer_fit() -> None:
    throttle = llm_throttle()
    slot = await throttle.acquire(tokens=128)
    slot.release()
    outcome: dict[str, object] = {}

    async def call(name: str, tokens: int) -> None:
        try:
            async with throttle.reserve(requests=1, tokens=tokens):
                outcome[name] = now()
        except tt.CostExceedsCapacity as exc:
            outcome[name] = str(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "big", 100)
        await settle()
        tg.start_soon(call, "small", 10)
        await settle()
        throttle.reconfigure("tokens", burst=64)
    assert outcome == {
        "big": "tokens must be <= the capacity 64 of limit 'tokens', got 100 "
        "(the capacity was lowered while the request waited)",
        "small": 0.15625,
    }
    with pytest.raises(
        ValueError, match=r"^limit must be one of \['requests', 'tokens'\], got 'rpm'$"
    ):
        throttle.reconfigure("rpm", rate=1)


async def test_a_large_request_is_not_starved_by_small_ones() -> None:
    throttle = Throttle(tokens=TokenBucket(64, burst=128), max_concurrent=100)
    order: list[str] = []

    async def small(i: int) -> None:
        for _ in range(30):
            async with throttle.reserve(tokens=4):
                order.append("small")

    async def big() -> None:
        await anyio.sleep(0.5)
        async with throttle.reserve(tokens=128):
            order.append(f"big@{now()}")

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(small, i)
        tg.start_soon(big)
    big_at = next(i for i, entry in enumerate(order) if entry.startswith("big"))
    assert big_at < 60  # admitted within a couple of seconds, not after all 120 small ones


async def test_timeout_fails_at_once_when_a_limit_cannot_make_it() -> None:
    throttle = llm_throttle()
    async with throttle.reserve(tokens=128):
        pass
    with pytest.raises(
        tt.RateLimitTimeout,
        match=r"^reserve\(requests=1, tokens=64\) could not be admitted "
        r"within timeout=0.5 seconds$",
    ):
        async with throttle.reserve(requests=1, tokens=64, timeout=0.5):
            pass
    assert now() == 0
    async with throttle.reserve(requests=1, tokens=64, timeout=1.0):
        assert now() == 1.0
    assert throttle.statistics().timeouts == 1


async def test_cancelled_waiters_take_nothing_and_capacity_is_whole_at_the_end() -> None:
    throttle = llm_throttle(max_concurrent=2)

    async def call(tokens: int, cancel_after: float) -> None:
        with anyio.move_on_after(cancel_after):
            async with throttle.reserve(requests=1, tokens=tokens) as slot:
                await anyio.sleep(0.25)
                slot.settle(tokens=tokens // 2)

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(call, 16 * (i % 5 + 1), 0.3 if i % 3 == 0 else math.inf)
            await settle()
    stats = throttle.statistics()
    assert (stats.in_flight, stats.tasks_waiting) == (0, 0)
    await anyio.sleep(100)
    assert throttle.statistics().limits["tokens"].available == 128
    assert throttle.statistics().limits["requests"].available == 2


async def test_a_head_displaced_by_a_retry_waits_its_turn() -> None:
    """A retry with an earlier ticket takes the head's place while the head sleeps on its
    timer; when that timer fires the old head must park again, not give up."""
    throttle = Throttle(requests=TokenBucket(4, burst=1))
    order: list[str] = []

    async def retried() -> None:
        slot = await throttle.acquire(requests=1)
        await settle()  # let the other request queue up as the head
        slot.reject(requests=1)
        throttle.pause_for(0.5)
        async with throttle.reserve(requests=1, ticket=slot.ticket):
            order.append(f"retry@{now()}")

    async def other() -> None:
        await settle()
        async with throttle.reserve(requests=1):
            order.append(f"other@{now()}")

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(retried)
            tg.start_soon(other)
    assert order == ["retry@0.5", "other@0.75"]


# -- feedback: headers, learning, adaptive rates ------------------------------------------------


def report(**metrics: tuple[float | None, float | None]) -> RateLimitHeaders:
    """Headers that report (limit, remaining) per metric."""
    limits = {m: LimitReport(limit, remaining, None) for m, (limit, remaining) in metrics.items()}
    return RateLimitHeaders(limits=limits, retry_after=None, should_retry=None)


async def opened(throttle: Throttle, costs: dict[str, float]) -> None:
    """A first request and its response: the run is under way, its buckets' opening wave
    over (a wave's reports cut nothing: see the tests after these)."""
    slot = await throttle.acquire(costs)
    throttle.observe(RateLimitHeaders(), slot)
    slot.release()


async def test_headers_lower_the_available_capacity_minus_what_was_sent_since() -> None:
    throttle = Throttle(requests=TokenBucket(60, per=60.0), tokens=TokenBucket(6000, per=60.0))
    await opened(throttle, {"requests": 1, "tokens": 100})
    first = await throttle.acquire(requests=1, tokens=100)
    for _ in range(3):  # three more leave before the first response arrives
        (await throttle.acquire(requests=1, tokens=100)).release()
    first.release()
    # The server saw the first request and others sharing the key: 20 requests remain.
    # One report is not enough to cut (see the next test); the second says the same.
    throttle.observe(report(requests=(60, 20), tokens=(6000, 5900)), first)
    assert throttle.statistics().limits["requests"].available == 60 - 5
    throttle.observe(report(requests=(60, 20), tokens=(6000, 5900)), first)
    stats = throttle.statistics().limits
    assert stats["requests"].available == 20 - 3
    assert stats["tokens"].available == 5500  # local 5500 < 5900 - 300: ours is lower
    throttle.observe(report(requests=(60, 50)))  # more than we think: ignored
    assert throttle.statistics().limits["requests"].available == 17


async def test_a_cut_needs_two_reports_in_a_row_and_takes_the_smaller() -> None:
    """One report can be wrong by the requests in flight (which of them the server had
    counted is a guess), and a cut is kept for good: a report that says less is left than we
    think cuts only as far as the report before it agreed."""
    throttle = Throttle(tokens=TokenBucket(1, per=1000.0, burst=100))
    (await throttle.acquire(tokens=10)).release()

    def available() -> float:
        return throttle.statistics().limits["tokens"].available

    throttle.observe(report(tokens=(100, 30)))  # says 60 too many: alone, believed not at all
    assert available() == 90
    throttle.observe(report(tokens=(100, 80)))  # says 10: the two agree on 10
    assert available() == 80
    throttle.observe(report(tokens=(100, 50)))  # 30 more, but the last report wanted none
    assert available() == 80
    throttle.observe(report(tokens=(100, 60)))  # 20, and the last one 30 (20 agreed)
    assert available() == 60
    throttle.observe(report(tokens=(100, 100)))  # more than we think: nothing, and forgets
    throttle.observe(report(tokens=(100, 0)))
    assert available() == 60


async def test_a_new_limit_takes_its_first_report_at_once() -> None:
    throttle = Throttle(learn_limits=True)
    throttle.observe(report(requests=(100, 7)))  # learned, nothing charged yet: believed
    assert throttle.statistics().limits["requests"].available == 7


async def test_limits_are_learned_after_one_probe() -> None:
    throttle = Throttle(learn_limits=True)
    started: list[float] = []

    async def call() -> None:
        async with throttle.reserve() as slot:
            started.append(now())
            await anyio.sleep(1)
            if len(started) == 1:  # the probe's response
                throttle.observe(report(requests=(120, 119), tokens=(1000, 900)), slot)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(call)
            await settle()
    assert started == [0, 1, 1, 1]  # the probe alone, then the rest
    stats = throttle.statistics().limits
    assert stats["requests"].learned
    assert stats["requests"].rate == 2  # 120 per minute
    assert stats["tokens"].capacity == 1000
    assert throttle.metrics == {"requests", "tokens"}


async def test_a_configured_limit_is_never_raised_by_headers() -> None:
    throttle = Throttle(requests=TokenBucket(10, per=60.0), learn_limits=True)
    throttle.observe(report(requests=(1000, 999)))
    stats = throttle.statistics().limits["requests"]
    assert (stats.capacity, stats.available, stats.learned) == (10, 10, False)


async def test_adaptive_rates_back_off_and_recover_below_the_configured_rate() -> None:
    throttle = Throttle(requests=TokenBucket(8, burst=1), adaptive=True)
    throttle.record_overload()
    assert throttle.statistics().limits["requests"].rate == 4
    throttle.record_overload()  # within the cooldown: the same wave of 429s
    assert throttle.statistics().limits["requests"].rate == 4
    await anyio.sleep(1)
    throttle.record_overload()
    assert throttle.statistics().limits["requests"].rate == 2
    assert not throttle.is_pristine()
    for _ in range(1000):
        throttle.record_success()
    assert throttle.statistics().limits["requests"].rate == 8
    await anyio.sleep(1)
    assert throttle.is_pristine()


async def test_headers_credit_the_refill_since_the_request_arrived() -> None:
    """`remaining` was counted when the request arrived; by the response the server's bucket
    has refilled, and our refunds since then count too.  (A bucket that was not full: a full
    one refills from its first response, see below.)"""
    throttle = Throttle(tokens=TokenBucket(8, burst=64, initial_tokens=63))
    first = await throttle.acquire(tokens=32)
    await anyio.sleep(2)  # the response arrives 2 s later: the server refilled 16 meanwhile
    second = await throttle.acquire(tokens=8)
    second.settle(tokens=2)  # net 2 charged since `first`
    throttle.observe(report(tokens=(64, 20)), first)
    throttle.observe(report(tokens=(64, 20)), first)  # a cut needs two reports that agree
    assert throttle.statistics().limits["tokens"].available == 20 + 16 - 2
    first.release()
    second.release()


class _StallBeforeResuming(trio.abc.Instrument):
    """Moves the clock on just before ``task`` runs again after its first admission: the event
    loop was busy elsewhere (thousands of tasks building their requests) for ``seconds``."""

    def __init__(self, clock: trio.testing.MockClock, throttle: Throttle, seconds: float) -> None:
        self.clock, self.throttle, self.seconds = clock, throttle, seconds
        self.task: trio.lowlevel.Task | None = None
        self.stalled = False

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task and not self.stalled and self.throttle.statistics().in_flight:
            self.stalled = True
            self.clock.jump(self.seconds)


def test_headers_credit_the_refill_from_when_the_admitted_task_resumed() -> None:
    """Admitted at 0, the task runs again only at 1.5 s: its request cannot have reached the
    server before then, so the server's bucket refilled from 1.5 s, not from 0.  Crediting
    from the admission would let the client lead the server by 1.5 s of refill (the 429s a
    full client bucket met at the end of its first burst in ``bench.http``).

    trio only: an Instrument moves the MockClock between the admission and the resumption.
    """
    clock = trio.testing.MockClock(autojump_threshold=0)
    throttle = Throttle(tokens=TokenBucket(8, burst=64))
    stall = _StallBeforeResuming(clock, throttle, 1.5)

    async def main() -> None:
        stall.task = trio.lowlevel.current_task()
        slot = await throttle.acquire(tokens=32)
        assert (slot.admitted_at, now()) == (0, 1.5)
        await trio.sleep(0.5)  # the response, 2 s after the admission
        # The server counted 20 left when the request arrived (at 1.5 s at the earliest) and
        # refilled 8 x 0.5 since.  Our own bucket thinks 64 - 32 + 16 = 48.
        throttle.observe(report(tokens=(64, 20)), slot)
        throttle.observe(report(tokens=(64, 20)), slot)  # a cut needs two reports that agree
        assert throttle.statistics().limits["tokens"].available == 20 + 4
        slot.release()

    trio.run(main, clock=clock, instruments=[stall])
    assert stall.stalled


@pytest.mark.parametrize("full", [True, False])
def test_a_full_bucket_refills_from_when_the_first_request_can_leave(full: bool) -> None:
    """A full bucket starts refilling at its first admission, the server's only when that
    request arrives.  If the admitted task runs again 1.5 s later (a loop busy with thousands
    of tasks building their requests), the bucket refills nothing for those 1.5 s: else the
    client leads the server by 12 tokens here, by 9,500 in ``bench.http``, and meets 429s when
    its first burst runs out.  A bucket that was not full is left alone: its server was
    already refilling.

    trio only: an Instrument moves the MockClock between the admission and the resumption.
    """
    clock = trio.testing.MockClock(autojump_threshold=0)
    throttle = Throttle(tokens=TokenBucket(8, burst=64))
    stall = _StallBeforeResuming(clock, throttle, 1.5)

    async def main() -> float:
        if not full:
            (await throttle.acquire(tokens=8)).release()  # 56 left, refilling from 0 s
            await trio.sleep(0.5)  # 60
        stall.task = trio.lowlevel.current_task()
        slot = await throttle.acquire(tokens=32)
        slot.release()
        return throttle.statistics().limits["tokens"].available

    available = trio.run(main, clock=clock, instruments=[stall])
    assert stall.stalled
    assert available == (32 if full else 60 - 32 + 12)


def _two_requests_admitted_at_once() -> bool:
    """Admit 10 and 20 tokens at 0 s, report in the order the tasks ran again; whether that
    was the admission order."""
    throttle = Throttle(tokens=TokenBucket(8, burst=100))
    sent: list[tt.Reservation] = []

    async def request(cost: int) -> None:
        sent.append(await throttle.acquire(tokens=cost))  # the request leaves as the task runs

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(request, 10)
            nursery.start_soon(request, 20)
        # The server counts in arrival order; both reports come back at 0 s.
        first, second = sent
        left = 100 - first.costs["tokens"]
        throttle.observe(report(tokens=(100, left)), first)
        throttle.observe(report(tokens=(100, left - second.costs["tokens"])), second)
        assert throttle.statistics().limits["tokens"].available == 100 - 30

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return sent[0].ticket < sent[1].ticket


def test_headers_count_what_the_server_saw_in_the_order_the_tasks_ran_again() -> None:
    """Two requests admitted at one instant reach the server in the order their tasks run
    again, which trio randomizes and which need not be the admission order.  Counting "what
    we charged since" from the admission would subtract, from the report of the one admitted
    first but sent second, the other request a second time: the server had already counted
    it.  After a burst of 64 that error reached 30,000 tokens, and it lasts (feedback never
    raises a level back).

    trio only, and repeated: both orders must occur among the runs.
    """
    orders = {_two_requests_admitted_at_once() for _ in range(40)}
    assert orders == {True, False}  # both orders were exercised


@pytest.mark.parametrize("answered", [0, 1], ids=["its-response", "a-later-requests"])
async def test_the_first_response_takes_nothing_back(answered: int) -> None:
    """A bucket that started full stays a token bucket through its first response: it refills
    from when its first admitted task ran again, whatever the response says or when it comes
    (taking back the refill of the first response time would stall a paced bucket for that
    long, and delay every later admission of a small one)."""
    throttle = Throttle(tokens=TokenBucket(128, burst=1024))

    def available() -> float:
        return throttle.statistics().limits["tokens"].available

    wave = [await throttle.acquire(tokens=512), await throttle.acquire(tokens=128)]
    await anyio.sleep(0.25)
    assert available() == 384 + 32  # refilling from when the first one could leave
    throttle.observe(RateLimitHeaders(), wave[answered])  # the first response
    assert available() == 384 + 32
    await anyio.sleep(0.125)
    throttle.observe(RateLimitHeaders(), wave[1 - answered])
    assert available() == 384 + 48
    for slot in wave:
        slot.release()


async def test_a_full_bucket_refills_from_when_its_first_request_is_on_the_wire() -> None:
    """The server's bucket (full too) refills only from when the first request reaches it:
    the report that a request is on the wire takes back the refill since the admission from
    full, once.  Before it, the bucket refills from when the admitted task ran again."""
    throttle = Throttle(tokens=TokenBucket(128, burst=1024))

    def available() -> float:
        return throttle.statistics().limits["tokens"].available

    first = await throttle.acquire(tokens=512)
    second = await throttle.acquire(tokens=128)
    await anyio.sleep(0.25)  # connecting
    assert available() == 384 + 32
    second.sent()  # the first of them on the wire: the server's bucket starts refilling
    assert available() == 384
    await anyio.sleep(0.125)
    first.sent()  # once only
    assert available() == 384 + 16
    for slot in (first, second):
        slot.release()
    slot = await throttle.acquire(tokens=16)  # not from full: nothing to take back
    await anyio.sleep(0.125)
    slot.sent()
    assert available() == 384 + 16 - 16 + 16
    slot.release()


async def test_a_window_counts_a_request_from_when_it_is_on_the_wire() -> None:
    """A provider counts its window from when a request arrives: one reported on the wire a
    quarter second after its admission leaves the throttle's window that much later."""
    throttle = Throttle(requests=SlidingWindow(2, window=1.0))
    late = await throttle.acquire(requests=1)
    on_time = await throttle.acquire(requests=1)
    on_time.sent()
    await anyio.sleep(0.25)
    late.sent()  # its connection took a quarter second
    for slot in (late, on_time):
        slot.release()
    admitted = []
    for _ in range(2):
        await throttle.acquire(requests=1)
        admitted.append(anyio.current_time())
    assert admitted == [1.0, 1.25]  # without the report: both at 1.0


async def test_a_pace_until_sent_lets_a_reported_request_go_at_once() -> None:
    """``until_sent``: a request reported on the wire gives its units back, and the request
    waiting for them is admitted then, not when the bucket would have refilled."""
    throttle = Throttle(requests=TokenBucket(4, burst=2, until_sent=True))
    first = await throttle.acquire(requests=1)
    second = await throttle.acquire(requests=1)
    admitted: list[float] = []

    async with anyio.create_task_group() as tg:
        tg.start_soon(admit_one, throttle, admitted)
        await anyio.sleep(0.0625)
        assert not admitted  # the bucket holds a quarter of a request
        first.sent()  # its unit comes back, and the waiter goes
        await settle()
        assert admitted == [0.0625]
        second.sent()
        second.sent()  # once per reservation: nothing more comes back
    # Both back; the third not on the wire yet (the first report also took back the refill
    # since the admission from full: the quarter of a request).
    assert throttle.statistics().limits["requests"].available == 1
    for slot in (first, second):
        slot.release()


async def test_a_pace_until_sent_paces_requests_that_never_report() -> None:
    throttle = Throttle(requests=TokenBucket(4, burst=2, until_sent=True))
    admitted = []
    for _ in range(4):
        (await throttle.acquire(requests=1)).release()
        admitted.append(now())
    assert admitted == [0.0, 0.0, 0.25, 0.5]


async def test_a_refund_after_a_report_gives_back_the_units_where_they_moved() -> None:
    """The window counts a reported request from its send; settling it below the estimate
    afterwards gives back those units, not nothing (its admission's entry is empty) and not
    those of the request admitted after it."""
    throttle = Throttle(tokens=SlidingWindow(100, window=1.0))
    first = await throttle.acquire(tokens=50)
    await anyio.sleep(0.125)
    second = await throttle.acquire(tokens=50)
    await anyio.sleep(0.125)
    first.sent()
    await anyio.sleep(0.125)
    first.settle(tokens=0)
    first.release()
    stats = throttle.statistics().limits["tokens"]
    assert (stats.available, stats.refunded, stats.dropped) == (50, 50, 0)
    await anyio.sleep(0.125)
    second.sent()
    second.release()
    async with throttle.reserve(tokens=100):
        assert now() == 1.5  # the second's units leave a window after its send


async def test_a_pace_until_sent_gives_back_once_even_when_settled_after_the_send() -> None:
    throttle = Throttle(requests=TokenBucket(4, burst=2, until_sent=True))
    first = await throttle.acquire(requests=1)
    second = await throttle.acquire(requests=1)
    first.sent()  # the first report: the refill since the full admission is taken back
    assert throttle.statistics().limits["requests"].available == 1
    first.settle(requests=0)  # its unit came back at the send already
    assert throttle.statistics().limits["requests"].available == 1
    for slot in (first, second):
        slot.release()


async def test_a_report_after_a_warm_up_record_counts_from_the_send() -> None:
    """A request of the first window reported on the wire after its ``warmup`` record counts
    from the send, and the next window's request waits for it."""
    throttle = Throttle(requests=SlidingWindow(2, window=1.0, warmup=0.5))
    slots = [await throttle.acquire(requests=1) for _ in range(2)]  # recorded at 0.5
    admitted: list[float] = []

    async with anyio.create_task_group() as tg:
        tg.start_soon(admit_one, throttle, admitted)
        await anyio.sleep(0.75)
        for slot in slots:
            slot.sent()
            slot.release()
    assert admitted == [1.75]  # without the reports: 1.5


async def test_only_requests_admitted_since_the_full_admission_take_back_its_refill() -> None:
    """A request admitted before the bucket was last full does not say when the server's
    started refilling; and a request admitted since that ends without a report (sent by
    other means, or never) leaves the refill where it is, also for later reports."""
    throttle = Throttle(tokens=TokenBucket(128, burst=1024))

    def available() -> float:
        return throttle.statistics().limits["tokens"].available

    earlier = await throttle.acquire(tokens=128)
    await anyio.sleep(1)  # full again
    opening = await throttle.acquire(tokens=512)
    await anyio.sleep(0.25)
    earlier.sent()
    assert available() == 512 + 32
    opening.release()  # ended, never reported on the wire
    later = await throttle.acquire(tokens=64)
    later.sent()
    assert available() == 512 + 32 - 64
    opening.sent()  # released: a no-op
    assert available() == 512 + 32 - 64
    earlier.release()
    later.release()


async def test_a_slow_first_response_does_not_stall_a_paced_bucket() -> None:
    """The OpenAI preset paces with a small bucket (20 a second, burst 4): by the time an
    LLM's first response comes back (2 s here), the wave has been admitted at that rate.
    Refilling nothing before that response must not turn into a debt of the two seconds'
    refill: the pace goes on as before (at most the bucket's few units are lost)."""
    throttle = Throttle.for_openai(rpm=1200, tpm=10_000_000)
    admitted: list[float] = []
    first: list[tt.Reservation] = []

    async def worker() -> None:
        while anyio.current_time() < 4:
            slot = await throttle.acquire(requests=1, tokens=10)
            admitted.append(anyio.current_time())
            if first:
                slot.release()
            else:
                first.append(slot)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(worker)
        await anyio.sleep(2)
        throttle.observe(RateLimitHeaders(), first[0])  # the first response, 2 s in
        first[0].release()
    after = [t for t in admitted if 2 <= t < 3]
    assert len(after) >= 16  # about 20 a second, not a stall


async def test_a_response_to_a_request_admitted_before_the_opening_does_not_end_it() -> None:
    """Only a response to a request admitted at or after a bucket's first admission ends its
    opening wave: one to an earlier request (that did not charge it) does not, so the wave's
    reports still cut nothing."""
    throttle = Throttle(requests=TokenBucket(64), tokens=TokenBucket(8, burst=1000))

    def available() -> float:
        return throttle.statistics().limits["tokens"].available

    earlier = await throttle.acquire(requests=1)
    await anyio.sleep(0.125)
    opening = await throttle.acquire(requests=1, tokens=100)
    throttle.observe(RateLimitHeaders(), earlier)  # not the tokens bucket's opening
    second = await throttle.acquire(requests=1, tokens=100)  # still in the wave
    throttle.observe(report(tokens=(1000, 500)), opening)  # ends it: both were sent before
    throttle.observe(report(tokens=(1000, 400)), second)  # two low reports that agree
    assert available() == 800
    for slot in (earlier, opening, second):
        slot.release()


@pytest.mark.parametrize("start", ["below-full", "full-again"])
async def test_only_a_bucket_that_started_full_has_an_opening_wave(start: str) -> None:
    """A bucket given ``initial_tokens=`` below full says where the server is, and a bucket
    full again after a lull sends on open connections: their first requests' reports count
    as usual (two that agree cut)."""
    initial = 1000 - 100 if start == "below-full" else None
    throttle = Throttle(tokens=TokenBucket(8, burst=1000, initial_tokens=initial))

    def available() -> float:
        return throttle.statistics().limits["tokens"].available

    if start == "full-again":
        opening = await throttle.acquire(tokens=100)
        throttle.observe(RateLimitHeaders(), opening)
        opening.release()
        await anyio.sleep(12.5)  # full again
    level = available()
    a, b = [await throttle.acquire(tokens=100) for _ in range(2)]
    throttle.observe(report(tokens=(1000, level - 400)), a)  # another client spent 300
    throttle.observe(report(tokens=(1000, level - 500)), b)
    assert available() == level - 500
    a.release()
    b.release()


async def test_reports_of_an_opening_wave_cut_nothing_and_later_ones_do() -> None:
    """Requests that leave together from a full bucket, before its first response, reach the
    server in any order (most open their connection; trio runs their tasks again in random
    order): which of the others the server had counted when one arrived is a guess, off by
    thousands of tokens after a wave of 64 in ``bench.http``, and two such guesses in a row
    can agree on a cut that is not real (0.95-0.97 of the limit on trio, kept for good).  So
    a wave's reports cut nothing.  After the wave, reports count as usual: another client on
    the key is found by the next two that agree."""
    throttle = Throttle(tokens=TokenBucket(8, burst=1000))

    def available() -> float:
        return throttle.statistics().limits["tokens"].available

    a, b, c, d = [await throttle.acquire(tokens=100) for _ in range(4)]  # they leave together
    # The server got C, D, A, B: 700 left after A, 600 after B.  Less what was sent after
    # each (B, C, D; C, D), both say 400 now, and agree; but 600 is left.
    throttle.observe(report(tokens=(1000, 700)), a)
    throttle.observe(report(tokens=(1000, 600)), b)
    assert available() == 600
    for slot in (a, b, c, d):
        slot.release()
    await anyio.sleep(0.5)  # 604, on both sides
    e, f = [await throttle.acquire(tokens=100) for _ in range(2)]
    # Meanwhile another client spent 300: 604 - 300 - 100 left after E, 104 after F.
    throttle.observe(report(tokens=(1000, 204)), e)
    assert available() == 404  # one report: not yet
    throttle.observe(report(tokens=(1000, 104)), f)
    assert available() == 104
    e.release()
    f.release()


async def test_a_learned_limit_takes_its_period_from_the_reset_header() -> None:
    throttle = Throttle(learn_limits=True)
    limits = {"requests": LimitReport(limit=100, remaining=90, reset_after=1.0)}
    throttle.observe(RateLimitHeaders(limits=limits, retry_after=None, should_retry=None))
    stats = throttle.statistics().limits["requests"]
    assert stats.rate == 10  # 10 spent come back in 1 s: 100 per 10 s
    assert stats.capacity == 100


async def test_a_learned_limit_with_little_spent_is_taken_per_minute() -> None:
    """100 spent of 90,000 come back in 0.07 s, but Anthropic reports the reset in whole
    seconds (1 s): taken at face value that is 90,000 per 900 s, 15 times too slow."""
    throttle = Throttle(learn_limits=True)
    limits = {"tokens": LimitReport(limit=90_000, remaining=89_900, reset_after=1.0)}
    throttle.observe(RateLimitHeaders(limits=limits, retry_after=None, should_retry=None))
    assert throttle.statistics().limits["tokens"].rate == 1_500  # 90,000 per minute


async def test_waiting_for_a_slot_uses_the_whole_timeout() -> None:
    """A full concurrency cap is an unknown wait: it is waited for until the deadline, not
    failed at once (only a wait known to be longer fails at once)."""
    throttle = Throttle(requests=TokenBucket(64, burst=64), max_concurrent=1)
    holder = await throttle.acquire(requests=1)
    outcome: dict[str, object] = {}

    async def patient() -> None:
        async with throttle.reserve(requests=1, timeout=5):
            outcome["patient"] = now()

    async def hasty() -> None:
        try:
            async with throttle.reserve(requests=1, timeout=0.5):
                outcome["hasty"] = now()
        except tt.RateLimitTimeout:
            outcome["hasty"] = f"timed out at {now()}"

    async with anyio.create_task_group() as tg:
        tg.start_soon(patient)
        await settle()
        tg.start_soon(hasty)
        await anyio.sleep(1)
        holder.release()
    assert outcome == {"patient": 1, "hasty": "timed out at 0.5"}


async def test_reconfiguring_the_burst_keeps_the_adaptive_ceiling() -> None:
    throttle = Throttle(requests=TokenBucket(8, burst=1), adaptive=True)
    throttle.record_overload()
    throttle.reconfigure("requests", burst=4)
    for _ in range(1000):
        throttle.record_success()
    assert throttle.statistics().limits["requests"].rate == 8  # back to the configured rate
    throttle.reconfigure("requests", rate=2)
    assert throttle.statistics().limits["requests"].rate == 2


async def test_settling_a_metric_that_was_not_reserved_charges_it() -> None:
    throttle = llm_throttle()
    async with throttle.reserve(requests=1) as slot:
        slot.settle(tokens=40)
    stats = throttle.statistics().limits["tokens"]
    assert (stats.available, stats.overdraft) == (128 - 40, 40)


# -- a user's own policy gets what the built-in ones get ----------------------------------------


class OwnBucket(DelegatingPolicy):
    """A user's policy that tells its rate and lets it be changed (forwarded to a bucket)."""

    refills_continuously = True

    @property
    def units_per_second(self) -> float:
        return self._inner.units_per_second

    def set_units_per_second(self, rate: float, now: float) -> None:
        self._inner.set_units_per_second(rate, now)


async def test_the_adaptive_rate_drives_a_policy_of_ones_own() -> None:
    throttle = Throttle(tokens=OwnBucket(TokenBucket(600, per=60.0)), adaptive=True)
    assert throttle.statistics().limits["tokens"].rate == 10.0
    throttle.record_overload()
    assert throttle.statistics().limits["tokens"].rate == 5.0


async def test_a_policy_that_cannot_change_its_rate_is_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Fixed(DelegatingPolicy):
        @property
        def units_per_second(self) -> float:
            return self._inner.units_per_second

        def __repr__(self) -> str:
            return "Fixed(...)"

    throttle = Throttle(tokens=Fixed(TokenBucket(600, per=60.0)), adaptive=True)
    throttle.record_overload()
    throttle.record_overload()
    assert throttle.statistics().limits["tokens"].rate == 10.0
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "limit 'tokens': Fixed(...) cannot change its rate; no adaptive backoff for it"
    ]


async def test_a_sliding_window_gets_no_refill_credit_from_feedback() -> None:
    """A window frees units when admissions expire, not steadily: a report is not topped up
    with the rate times the time since the request left (a bucket's would be)."""
    throttle = Throttle(requests=tt.SlidingWindow(limit=10, window=16.0))
    async with throttle.reserve(requests=1) as slot:
        await anyio.sleep(4)
        report = RateLimitHeaders(
            limits={"requests": LimitReport(limit=10, remaining=5, reset_after=None)},
            retry_after=None,
            should_retry=None,
        )
        throttle.observe(report, slot)
        throttle.observe(report, slot)  # two reports that agree: the cut is taken
    assert throttle.statistics().limits["requests"].available == 5


# -- recost: costs computed again when the throttle decides the admission --------------------


async def test_a_queued_request_is_charged_what_recost_says_when_it_is_admitted() -> None:
    """The estimate grows while the request waits (what the transports' learned token ratio
    does): at each step of the head its costs are computed again, so it waits for, and is
    charged, what ``recost`` says at admission, not what it said on arrival."""
    seen: list[events.Event] = []
    throttle = Throttle(tokens=TokenBucket(100, burst=100), on_event=seen.append)
    estimate = {"tokens": 50.0}
    async with throttle.reserve(tokens=100):  # empties the bucket at 0
        pass
    got: list[tuple[float, dict[str, float]]] = []

    async def queued() -> None:
        async with throttle.reserve(tokens=50, recost=lambda: estimate) as slot:
            got.append((now(), dict(slot.costs)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(queued)
        await anyio.sleep(0.25)  # it waits for 50 tokens, until 0.5; learning meanwhile:
        estimate["tokens"] = 100.0
    # At 0.5 it asks again: 100 tokens, ready at 1.0.  Charged 100.
    assert got == [(1.0, {"tokens": 100.0})]
    stats = throttle.statistics()
    assert stats.limits["tokens"].admitted_cost == 200
    assert stats.limits["tokens"].available == 0
    admitted = [event for event in seen if isinstance(event, events.Admitted)]
    assert [event.costs for event in admitted] == [{"tokens": 100.0}, {"tokens": 100.0}]


async def test_recost_on_the_fast_path_and_its_result_settles() -> None:
    """Admitted at once, the request is charged what ``recost`` returns (it is judged once),
    and a settle adjusts from there."""
    throttle = Throttle(requests=TokenBucket(10), tokens=TokenBucket(1000))
    calls: list[float] = []

    def recost() -> dict[str, float]:
        calls.append(now())
        return {"requests": 1, "tokens": 300}

    async with throttle.reserve(requests=1, tokens=200, recost=recost) as slot:
        assert dict(slot.costs) == {"requests": 1, "tokens": 300}
        slot.settle(tokens=250)
    assert calls == [0]
    stats = throttle.statistics()
    assert stats.limits["tokens"].available == 750
    assert stats.limits["tokens"].refunded == 50


async def test_a_bad_recost_fails_its_request_alone() -> None:
    """What ``recost`` raises, a result above a capacity, an unknown metric or not a mapping
    fails that request, in its own task, with a message naming ``recost``; the next waiter
    becomes the head and is admitted when the slot frees, as if they had not been there."""
    throttle = Throttle(tokens=TokenBucket(100, burst=100), max_concurrent=1)
    held = await throttle.acquire(tokens=0)
    outcomes: dict[str, object] = {}
    broken = False  # each recost is fine on arrival, and goes wrong while it waits

    def boom() -> dict[str, float]:
        raise RuntimeError("tokenizer broke")

    recosts: dict[str, object] = {
        "raises": boom,
        "too big": lambda: {"tokens": 101},
        "unknown": lambda: {"token": 1},
        "not a mapping": lambda: 5,
        "fine": lambda: {"tokens": 10},
    }

    def recost_of(name: str) -> object:
        return recosts[name]() if broken else {"tokens": 1}  # type: ignore[operator]

    async def request(name: str) -> None:
        try:
            slot = await throttle.acquire(tokens=1, recost=partial(recost_of, name))  # type: ignore[arg-type]
        except Exception as exc:
            outcomes[name] = (now(), type(exc), str(exc))
        else:
            outcomes[name] = (now(), dict(slot.costs))
            slot.release()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for name in recosts:
                tg.start_soon(request, name)
            await settle()
            assert throttle.statistics().tasks_waiting == 5
            await anyio.sleep(1)
            broken = True
            held.release()
    assert outcomes == {
        "raises": (1, RuntimeError, "tokenizer broke"),
        "too big": (
            1,
            tt.CostExceedsCapacity,
            "recost() returned {'tokens': 101}: tokens must be <= the capacity 100 of limit "
            "'tokens', got 101",
        ),
        "unknown": (
            1,
            ValueError,
            "recost() returned {'token': 1}: unknown cost 'token': this throttle counts tokens",
        ),
        "not a mapping": (
            1,
            TypeError,
            "recost() must return a mapping of costs per metric, got int 5",
        ),
        "fine": (1, {"tokens": 10}),
    }
    stats = throttle.statistics()
    assert stats.limits["tokens"].admitted_cost == 10
    assert (stats.admitted, stats.in_flight, stats.tasks_waiting) == (2, 0, 0)


async def test_recost_must_be_callable() -> None:
    throttle = llm_throttle()
    with pytest.raises(
        TypeError,
        match=r"^recost must be a callable returning costs per metric, or None, got int 5$",
    ):
        throttle.reserve(requests=1, recost=5)  # type: ignore[arg-type]
