"""The main scenarios of a RedisThrottle, as plain async functions of a connected client and a
throttle name, so that every engine runs the same ones: a Redis Cluster and a Valkey cluster
(test_cluster.py), a standalone Valkey (test_valkey.py).  The full suite of the other files
runs on the standalone redis-server.

Each scenario asserts counts, order and bounds on Redis's clock (booked instants, the shared
state), never local durations.  Several RedisThrottle objects of one name stand for several
processes, as in test_throttle.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

import throttle_trio as tt
from tests.redis import rate_violations, us
from throttle_trio.redis import GCRALimit, RedisThrottle

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


async def admits_within_the_rate_booking_batches(client: Any, name: str) -> None:
    """3 "processes" x 10 tasks x 2 requests: every booked instant meets burst + rate*T, and
    the queued tasks of each process are booked several to a round trip (max_batch=4)."""
    rate, burst, processes, tasks, each, max_batch = 100.0, 5.0, 3, 10, 2, 4
    throttles = [
        RedisThrottle(client, name, requests=GCRALimit(rate, burst=burst), max_batch=max_batch)
        for _ in range(processes)
    ]
    booked: list[tuple[float, float]] = []

    async def worker(throttle: RedisThrottle) -> None:
        for _ in range(each):
            async with throttle.reserve(requests=1) as slot:
                booked.append((slot.server_admitted_at, 1.0))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for throttle in throttles:
                for _ in range(tasks):
                    tg.start_soon(worker, throttle)
    total = processes * tasks * each
    assert len(booked) == total
    assert rate_violations(booked, rate, burst, slack=0.01) == []
    times = sorted(us(t) for t, _ in booked)
    assert times[-1] - times[0] >= (total - burst) / rate * 1e6 - 1  # and needed all that time
    for throttle in throttles:
        stats = throttle.statistics()
        assert stats.admitted == tasks * each
        assert stats.admitted / max_batch <= stats.round_trips < stats.admitted


async def settles_refunds_and_overdrafts(client: Any, name: str) -> None:
    """A settle below the estimate refunds the shared bucket; one above it charges a debt."""
    throttle = RedisThrottle(client, name, tokens=GCRALimit(1000, per=3600, burst=1000))
    other = RedisThrottle(client, name, tokens=GCRALimit(1000, per=3600, burst=1000))
    async with throttle.reserve(tokens=800) as slot:
        await slot.settle(tokens=200)
    assert (await other.state()).available["tokens"] == pytest.approx(800, abs=0.1)
    async with throttle.reserve(tokens=500) as slot:
        await slot.settle(tokens=1500)
    assert (await other.state()).available["tokens"] == pytest.approx(-700, abs=0.1)
    limits = throttle.statistics().limits["tokens"]
    assert (limits.refunded, limits.overdraft, limits.dropped) == (600, 1000, 0)


async def pauses_every_process(client: Any, name: str) -> None:
    """Process A pauses; process B's next request is booked after the pause ends."""
    a = RedisThrottle(client, name, requests=GCRALimit(100))
    b = RedisThrottle(client, name, requests=GCRALimit(100))
    await a.pause_for(0.2)
    state = await b.state()
    assert state.paused_for is not None
    assert 0 < state.paused_for <= 0.2
    ends = us(state.server_time) + us(state.paused_for)
    async with b.reserve(requests=1) as slot:
        assert us(slot.server_admitted_at) >= ends


async def header_feedback_lowers_the_shared_bucket(client: Any, name: str) -> None:
    """observe(): the provider's remaining count, minus what this process admitted since the
    response, becomes every process's available units once two reports agree; a higher report
    never raises it."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(100, per=3600, burst=100))
    other = RedisThrottle(client, name, requests=GCRALimit(100, per=3600, burst=100))
    sent = await throttle.acquire(requests=1)
    for _ in range(2):
        (await throttle.acquire(requests=1)).release()

    def report(remaining: int) -> tt.RateLimitHeaders:
        limit = tt.LimitReport(limit=100, remaining=remaining, reset_after=None)
        return tt.RateLimitHeaders(limits={"requests": limit}, retry_after=None, should_retry=None)

    await throttle.observe(report(40), sent)  # one report may be off by requests in flight
    assert (await other.state()).available["requests"] == pytest.approx(97, abs=0.01)
    await throttle.observe(report(40), sent)  # a second that agrees: the cut is taken
    sent.release()
    assert (await other.state()).available["requests"] == pytest.approx(38, abs=0.01)
    await other.observe(report(90))
    assert (await other.state()).available["requests"] == pytest.approx(38, abs=0.01)


async def overload_halves_the_fleets_rate(client: Any, name: str) -> None:
    """adaptive=True: one process's overload halves the rate every process books at, once."""
    a = RedisThrottle(client, name, requests=GCRALimit(100), adaptive=True)
    b = RedisThrottle(client, name, requests=GCRALimit(100), adaptive=True)
    (await a.acquire(requests=1)).release()  # the limit's key exists
    await a.record_overload()
    await b.record_overload()  # within the cooldown: no second cut
    assert (await b.state()).rates["requests"] == pytest.approx(50)
    assert a.statistics().rate_cuts + b.statistics().rate_cuts == 1


async def survives_a_script_flush(client: Any, name: str) -> None:
    """After SCRIPT FLUSH (on every node of a cluster), the script is loaded again."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(100))
    (await throttle.acquire(requests=1)).release()
    await client.script_flush()
    (await throttle.acquire(requests=1)).release()
    assert throttle.statistics().admitted == 2


SCENARIOS: dict[str, Callable[[Any, str], Awaitable[None]]] = {
    "admits": admits_within_the_rate_booking_batches,
    "settles": settles_refunds_and_overdrafts,
    "pauses": pauses_every_process,
    "feedback": header_feedback_lowers_the_shared_bucket,
    "adaptive": overload_halves_the_fleets_rate,
    "script-flush": survives_a_script_flush,
}
