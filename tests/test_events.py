"""Events (``on_event=``) and shadow mode, on both backends and virtual time: each event made
by the code path that should make it, with exact times; a listener that raises changes nothing."""

from __future__ import annotations

import logging
import math

import anyio
import pytest

import throttle_trio as tt
from throttle_trio import events
from throttle_trio._headers import LimitReport, RateLimitHeaders

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self) -> None:
        self.events: list[events.Event] = []

    def __call__(self, event: events.Event) -> None:
        self.events.append(event)

    def of(self, kind: type[events.Event]) -> list[events.Event]:
        return [e for e in self.events if isinstance(e, kind)]


def headers(retry_after: float | None = None, **remaining: float) -> RateLimitHeaders:
    return RateLimitHeaders(
        limits={
            m: LimitReport(limit=None, remaining=r, reset_after=None) for m, r in remaining.items()
        },
        retry_after=retry_after,
        should_retry=None,
    )


async def test_an_admission_reports_its_wait_and_what_held_it() -> None:
    seen = Recorder()
    throttle = tt.Throttle(requests=tt.TokenBucket(1, burst=1), on_event=seen, name="key-a")
    async with throttle.reserve(requests=1):
        pass
    async with throttle.reserve(requests=1):
        pass
    first, second = seen.of(events.Admitted)
    assert first == events.Admitted("key-a", 0.0, 0.0, None, 0, {"requests": 1})
    assert isinstance(second, events.Admitted)
    assert (second.at, second.waited, second.binding, second.ticket) == (1.0, 1.0, "requests", 1)
    assert second.would_wait is None


async def test_a_timeout_is_reported_at_once_or_when_it_passes() -> None:
    seen = Recorder()
    throttle = tt.Throttle(
        requests=tt.TokenBucket(1, burst=1), max_concurrent=1, on_event=seen, name="t"
    )
    held = await throttle.acquire(requests=1)
    with pytest.raises(tt.RateLimitTimeout):
        await throttle.acquire(requests=1, timeout=0.5)  # known at once: the bucket needs 1 s
    with pytest.raises(tt.RateLimitTimeout):
        await throttle.acquire(requests=1, timeout=2.0)  # the slot is never freed
    held.release()
    at_once, later = seen.of(events.TimedOut)
    assert at_once == events.TimedOut("t", 0.0, 0.0, 0.5, {"requests": 1})
    assert isinstance(later, events.TimedOut)
    assert (later.at, later.waited, later.timeout) == (2.0, 2.0, 2.0)


async def test_a_settle_reports_estimate_and_usage() -> None:
    seen = Recorder()
    throttle = tt.Throttle(tokens=tt.TokenBucket(100, burst=1000), on_event=seen, name="t")
    async with throttle.reserve(tokens=500) as slot:
        await anyio.sleep(3)
        slot.settle(tokens=320)
    (settled,) = seen.of(events.Settled)
    assert settled == events.Settled("t", 3.0, 0, {"tokens": 500.0}, {"tokens": 320.0})


async def test_a_rejection_reports_the_shortfall_it_proved_and_the_retry_after() -> None:
    seen = Recorder()
    throttle = tt.Throttle(
        requests=tt.TokenBucket(10, burst=10),
        tokens=tt.TokenBucket(100, burst=1000),
        on_event=seen,
        name="t",
    )
    slot = await throttle.acquire(requests=1, tokens=500)
    throttle.rejected(headers(retry_after=7.0, tokens=120), slot)
    slot.reject(requests=1)
    (rejected,) = seen.of(events.Rejected)
    assert rejected == events.Rejected("t", 0.0, 0, None, {"tokens": 380.0}, 7.0)
    slot = await throttle.acquire(requests=1)
    slot.reject()
    assert seen.of(events.Rejected)[-1] == events.Rejected("t", 0.0, 1)


async def test_a_pause_reports_its_end_its_length_and_its_reason() -> None:
    seen = Recorder()
    throttle = tt.Throttle(requests=tt.TokenBucket(1), on_event=seen, name="t")
    await anyio.sleep(2)
    throttle.pause_for(5)
    throttle.pause_for(3, reason="retry-after")  # ends earlier: nothing changes, no event
    throttle.pause_until(10, reason="retry-after")
    assert seen.of(events.Paused) == [
        events.Paused("t", 2.0, 7.0, 5.0, "user"),
        events.Paused("t", 2.0, 10.0, 8.0, "retry-after"),
    ]


async def test_the_adaptive_controller_reports_each_rate_change() -> None:
    seen = Recorder()
    throttle = tt.Throttle(requests=tt.TokenBucket(10), adaptive=True, on_event=seen, name="t")
    throttle.record_overload()
    throttle.record_overload()  # within the cooldown: no change, no event
    throttle.record_success()
    cut, recovery = seen.of(events.RateChanged)
    assert cut == events.RateChanged("t", 0.0, "requests", 5.0, 10.0, 10.0, "overload")
    assert recovery == events.RateChanged("t", 0.0, "requests", 5.1, 5.0, 10.0, "recovery")


async def test_header_feedback_reports_the_limits_it_lowers_and_learns() -> None:
    seen = Recorder()
    throttle = tt.Throttle(
        requests=tt.TokenBucket(10, burst=10), learn_limits=True, on_event=seen, name="t"
    )
    report = RateLimitHeaders(
        limits={
            "requests": LimitReport(limit=10, remaining=4, reset_after=None),
            "tokens": LimitReport(limit=6000, remaining=6000, reset_after=None),
        },
        retry_after=None,
        should_retry=None,
    )
    throttle.observe(report)  # nothing charged yet: the first report is taken as it is
    assert seen.of(events.LimitLearned) == [events.LimitLearned("t", 0.0, "tokens", 6000, 60.0)]
    assert seen.of(events.LimitLowered) == [events.LimitLowered("t", 0.0, "requests", 4, 10.0)]


async def test_a_listener_that_raises_is_logged_and_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: events.Event) -> None:
        raise RuntimeError("listener bug")

    before = events.listener_errors()
    throttle = tt.Throttle(requests=tt.TokenBucket(1, burst=1), on_event=broken)
    with caplog.at_level(logging.ERROR, logger="throttle_trio.events"):
        async with throttle.reserve(requests=1) as slot:
            slot.settle(requests=1)
    assert events.listener_errors() == before + 2
    assert "listener bug" in caplog.text
    stats = throttle.statistics()
    assert (stats.admitted, stats.in_flight) == (1, 0)


def test_on_event_must_be_callable() -> None:
    with pytest.raises(
        TypeError, match="on_event must be a callable taking one event, or None, got int 3"
    ):
        tt.Throttle(requests=tt.TokenBucket(1), on_event=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name must be a str or None, got int 3"):
        tt.Throttle(requests=tt.TokenBucket(1), name=3)  # type: ignore[arg-type]


# -- shadow mode ---------------------------------------------------------------------------------


async def test_shadow_mode_never_waits_and_counts_what_enforcement_would_have_waited() -> None:
    seen = Recorder()
    throttle = tt.Throttle(
        requests=tt.TokenBucket(1, burst=1),
        tokens=tt.TokenBucket(100, burst=100),
        shadow=True,
        on_event=seen,
    )
    for _ in range(3):
        async with throttle.reserve(requests=1, tokens=10):
            assert anyio.current_time() == 0
    # A token-free request after them would still queue behind them (FIFO).
    async with throttle.reserve(tokens=10):
        pass
    admitted = seen.of(events.Admitted)
    assert [(e.would_wait, e.binding, e.waited) for e in admitted] == [  # type: ignore[union-attr]
        (0.0, None, 0.0),
        (1.0, "requests", 0.0),
        (2.0, "requests", 0.0),
        (2.0, "requests", 0.0),
    ]
    stats = throttle.statistics()
    assert stats.shadow
    assert (stats.admitted, stats.would_wait, stats.would_wait_time) == (4, 3, 5.0)
    assert stats.limits["requests"].wait_time == 5.0
    assert stats.limits["requests"].available == -2  # the debt an enforcing queue would repay
    await anyio.sleep(3)
    async with throttle.reserve(requests=1):
        pass
    assert seen.of(events.Admitted)[-1].would_wait == 0.0  # type: ignore[union-attr]


async def test_shadow_mode_counts_the_pause_and_the_concurrency_cap_without_waiting() -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(10), max_concurrent=1, shadow=True)
    first = await throttle.acquire(requests=1)
    second = await throttle.acquire(requests=1)  # over the cap: would have waited for a slot
    assert throttle.statistics().in_flight == 2
    throttle.pause_for(4)
    third = await throttle.acquire(requests=1)
    stats = throttle.statistics()
    assert (stats.would_wait, stats.would_wait_time, stats.pause_wait_time) == (2, 4.0, 4.0)
    for slot in (first, second, third):
        slot.release()
    assert throttle.statistics().in_flight == 0


async def test_shadow_mode_is_a_checkpoint_and_cancellation_leaves_nothing() -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(1, burst=1), shadow=True)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await throttle.acquire(requests=1)
    stats = throttle.statistics()
    assert (stats.admitted, stats.in_flight, stats.limits["requests"].available) == (0, 0, 1)
    assert not math.isnan(stats.would_wait_time)


async def test_a_transport_429_reports_its_status_and_pauses_for_the_server() -> None:
    """Through the httpx transport: the 429's Rejected carries its status and Retry-After,
    and the pause it causes says it was the server's."""
    import httpx

    from throttle_trio.httpx import ThrottledTransport

    seen = Recorder()
    throttle = tt.Throttle(requests=tt.TokenBucket(10), on_event=seen, name="api")
    answers = [
        httpx.Response(429, headers={"retry-after": "2"}),
        httpx.Response(200, json={"usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
    ]
    transport = ThrottledTransport(httpx.MockTransport(lambda r: answers.pop(0)), throttle=throttle)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post("https://api.test/v1/chat/completions", json={})
    assert response.status_code == 200
    (rejected,) = seen.of(events.Rejected)
    assert isinstance(rejected, events.Rejected)
    assert (rejected.source, rejected.status) == ("api", 429)
    (paused,) = seen.of(events.Paused)
    assert isinstance(paused, events.Paused)
    assert (paused.seconds, paused.reason) == (2.0, "retry-after")
    tickets = [e.ticket for e in seen.events if isinstance(e, events.Admitted)]
    assert tickets == [0, 0]  # the retry kept its ticket


# -- the RateLimiter -----------------------------------------------------------------------------


async def test_a_rate_limiter_reports_its_admissions_and_timeouts() -> None:
    seen = Recorder()
    limiter = tt.RateLimiter(tt.TokenBucket(1, burst=1), on_event=seen, name="rl")
    await limiter.acquire()
    await limiter.acquire()  # waits a second for the rate
    with pytest.raises(tt.RateLimitTimeout):
        await limiter.acquire(timeout=0.5)  # known at once
    first, second = seen.of(events.Admitted)
    assert first == events.Admitted("rl", 0.0, 0.0, None, 0, {"rate": 1})
    assert second == events.Admitted("rl", 1.0, 1.0, "rate", 1, {"rate": 1})
    (timed_out,) = seen.of(events.TimedOut)
    assert timed_out == events.TimedOut("rl", 1.0, 0.0, 0.5, {"rate": 1})
    plain = tt.RateLimiter(tt.TokenBucket(1))  # no listener: nothing is made
    await plain.acquire()
    with pytest.raises(TypeError, match="on_event must be a callable"):
        tt.RateLimiter(tt.TokenBucket(1), on_event="print")  # type: ignore[arg-type]
