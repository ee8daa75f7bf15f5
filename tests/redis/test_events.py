"""The Redis throttle's events (``on_event=``), against a real redis-server: admissions,
timeouts, settles, rejections with their shortfall, pauses with their reason, the shared rate
cut, and the fallback's entry and exit when the server dies and comes back.  Counts and order
on the real clock, never durations."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import anyio
import pytest

import throttle_trio as tt
from throttle_trio import events
from throttle_trio._headers import LimitReport, RateLimitHeaders
from throttle_trio.redis import GCRALimit, LocalFallback, RedisThrottle

if TYPE_CHECKING:
    import coredis

    from tests.redis.conftest import RedisServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
        r":pytest.PytestUnraisableExceptionWarning"
    ),
]


def of(seen: list[events.Event], kind: type[events.Event]) -> list[events.Event]:
    return [e for e in seen if isinstance(e, kind)]


async def test_each_event_comes_from_the_shell_that_made_it(client: coredis.Redis[bytes]) -> None:
    seen: list[events.Event] = []
    name = f"ev-{uuid.uuid4().hex[:8]}"
    throttle = RedisThrottle(
        client,
        name,
        requests=GCRALimit(1, per=3600, burst=2),
        tokens=GCRALimit(1_000, per=3600, burst=1_000),
        adaptive=True,
        on_event=seen.append,
    )
    with anyio.fail_after(10):
        slot = await throttle.acquire(requests=1, tokens=500)
        await slot.settle(tokens=300)
        slot.release()
        slot = await throttle.acquire(requests=1, tokens=400)
        report = RateLimitHeaders(
            limits={"tokens": LimitReport(limit=None, remaining=100, reset_after=None)},
            retry_after=3.0,
        )
        await throttle.rejected(report, slot)
        await throttle.reject(slot, {"requests": 1}, None)
        with pytest.raises(tt.RateLimitTimeout):
            await throttle.acquire(requests=1, timeout=1.0)  # the bucket is empty for an hour
        await throttle.pause_for(2, reason="retry-after")
        await throttle.record_overload()
    first, second = of(seen, events.Admitted)
    assert isinstance(first, events.Admitted)
    assert isinstance(second, events.Admitted)
    assert (first.source, first.ticket, dict(first.costs)) == (
        name,
        0,
        {"requests": 1, "tokens": 500},
    )
    assert first.waited >= 0
    assert second.ticket == 1
    (settled,) = of(seen, events.Settled)
    assert isinstance(settled, events.Settled)
    assert (dict(settled.estimate), dict(settled.usage)) == (
        {"requests": 1, "tokens": 500},
        {"requests": 1, "tokens": 300.0},
    )
    (rejected,) = of(seen, events.Rejected)
    assert isinstance(rejected, events.Rejected)
    assert (dict(rejected.shortfall), rejected.retry_after) == ({"tokens": 300.0}, 3.0)
    (timed_out,) = of(seen, events.TimedOut)
    assert isinstance(timed_out, events.TimedOut)
    assert timed_out.timeout == 1.0
    assert 0 <= timed_out.waited <= 1.0  # known at once, or at the deadline: a bound
    (paused,) = of(seen, events.Paused)
    assert isinstance(paused, events.Paused)
    assert (paused.seconds, paused.reason) == (2, "retry-after")
    cuts = [e for e in seen if isinstance(e, events.RateChanged)]
    assert sorted(cut.limit for cut in cuts) == ["requests", "tokens"]
    for cut in cuts:
        assert cut.cause == "overload"
        assert cut.rate == pytest.approx(cut.previous / 2)


async def test_the_fallback_reports_its_entry_and_its_exit(own_server: RedisServer) -> None:
    seen: list[events.Event] = []
    async with own_server.client() as client:
        throttle = RedisThrottle(
            client,
            "fb-events",
            requests=GCRALimit(100, burst=10),
            on_unavailable=LocalFallback(fraction=0.5, retry_interval=0.1),
            redis_timeout=2,
            on_event=seen.append,
        )
        with anyio.fail_after(30):
            (await throttle.acquire(requests=1)).release()
            own_server.kill()
            for _ in range(3):
                (await throttle.acquire(requests=1)).release()
            own_server.start()
            await anyio.sleep(0.15)  # the retry interval
            async with throttle.reserve(requests=1) as slot:
                assert not slot.via_fallback
    (entered,) = of(seen, events.FallbackEntered)
    (exited,) = of(seen, events.FallbackExited)
    assert isinstance(entered, events.FallbackEntered)
    assert isinstance(exited, events.FallbackExited)
    assert entered.source == exited.source == "fb-events"
    assert "ConnectionError" in entered.reason
    assert exited.seconds > 0
    assert exited.at >= entered.at
    assert len(of(seen, events.Admitted)) == 5  # through Redis, the fallback, Redis again


def test_statistics_read_outside_the_event_loop(redis_server: RedisServer) -> None:
    """Reading state works outside an event loop and changes nothing (after the loop that
    used the throttle has ended)."""
    made: list[RedisThrottle] = []

    async def main() -> None:
        async with redis_server.client() as client:
            throttle = RedisThrottle(
                client,
                f"outside-{uuid.uuid4().hex[:8]}",
                requests=GCRALimit(10, burst=10),
                on_unavailable=LocalFallback(fraction=0.5),
            )
            made.append(throttle)
            (await throttle.acquire(requests=1)).release()

    anyio.run(main)
    (throttle,) = made
    first = throttle.statistics()
    assert (first.admitted, first.in_flight, first.fallback_active) == (1, 0, False)
    assert throttle.statistics() == first
    assert throttle.paused_until is None
