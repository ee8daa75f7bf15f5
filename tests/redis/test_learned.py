"""Limits learned from headers, shared by the fleet through Redis (``learn_limits=True``).

Several RedisThrottle objects with the same name stand for several processes.  A learned limit
is recorded once in the throttle's learned-limits hash; every process counts it on the same key.
Real I/O: the real clock; counts, levels and order, never durations.  The learned limits refill
per hour, so a level read right after a charge is exact up to the refill of a few milliseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import throttle_trio as tt
from throttle_trio.events import Event, LimitLearned
from throttle_trio.redis import GCRALimit, LocalFallback, RedisBackendError, RedisThrottle

if TYPE_CHECKING:
    import coredis

pytestmark = pytest.mark.anyio


def tokens_report(limit: float, remaining: float, reset_after: float) -> tt.RateLimitHeaders:
    """A response that reports its key's token limit (10% spent over ``reset_after`` gives a
    period of ``10 * reset_after``)."""
    report = tt.LimitReport(limit=limit, remaining=remaining, reset_after=reset_after)
    return tt.RateLimitHeaders(limits={"tokens": report})


def learning(client: coredis.Redis[bytes], name: str, **options: object) -> RedisThrottle:
    """A "process" of the fleet: requests configured, tokens to be learned."""
    return RedisThrottle(
        client,
        name,
        requests=GCRALimit(1000, per=3600.0),
        learn_limits=True,
        **options,  # type: ignore[arg-type]
    )


async def test_a_limit_one_process_learned_is_charged_by_another_from_its_first_request(
    client: coredis.Redis[bytes], name: str
) -> None:
    first, second = learning(client, name), learning(client, name)
    await first.observe(tokens_report(10_000, 9_000, 360.0))  # 10% spent in 360 s: per hour
    assert first.statistics().limits["tokens"].learned
    assert "tokens" not in second.statistics().limits  # it has not asked Redis yet

    async with second.reserve(requests=1, tokens=5_000):  # its first admission reads the record
        pass
    stats = second.statistics().limits["tokens"]
    assert (stats.learned, stats.capacity, stats.key) == (True, 10_000, first.keys["tokens"])
    assert stats.rate == pytest.approx(10_000 / 3600)
    # One shared key: the first process sees the second one's charge, below the 9,000 reported.
    available = (await first.state()).available["tokens"]
    assert 4_000 - 0.5 <= available <= 4_000 + 5, available


async def test_the_first_process_to_learn_a_metric_sets_it_for_the_fleet(
    client: coredis.Redis[bytes], name: str
) -> None:
    first, second, third = (learning(client, name) for _ in range(3))
    await first.observe(tokens_report(10_000, 10_000, 60.0))  # little spent: per minute
    await second.observe(tokens_report(20_000, 20_000, 60.0))  # a late, different report
    await third.acquire(requests=1)  # a process started later reads the record
    for throttle in (first, second, third):
        stats = throttle.statistics().limits["tokens"]
        assert stats.capacity == 10_000
        assert stats.rate == pytest.approx(10_000 / 60)


async def test_a_process_learns_what_the_fleet_recorded_when_a_report_names_a_new_metric(
    client: coredis.Redis[bytes], name: str
) -> None:
    """The round trip that records a process's own learned limit also brings the others."""
    first, second = learning(client, name), learning(client, name)
    await first.observe(tokens_report(10_000, 10_000, 60.0))
    requests_and_input = tt.RateLimitHeaders(
        limits={"input_tokens": tt.LimitReport(limit=5_000, remaining=5_000, reset_after=60.0)}
    )
    await second.observe(requests_and_input)
    assert {"tokens", "input_tokens"} <= set(second.statistics().limits)


async def test_while_no_limit_is_known_one_request_probes_alone(
    client: coredis.Redis[bytes], name: str
) -> None:
    throttle = RedisThrottle(client, name, learn_limits=True)
    order: list[str] = []
    probe = await throttle.acquire(tokens=100)

    async def second() -> None:
        async with throttle.reserve(tokens=100):
            order.append("second admitted")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(second)
            while throttle.statistics().tasks_waiting != 1:
                await anyio.sleep(0.001)
            await anyio.sleep(0.05)  # a bound on nothing: it had every chance to go
            order.append("learned")
            await throttle.observe(tokens_report(10_000, 9_000, 360.0), probe)
            probe.release()
    assert order == ["learned", "second admitted"]
    assert throttle.statistics().limits["tokens"].learned


async def test_a_probe_that_teaches_nothing_hands_the_turn_on(
    client: coredis.Redis[bytes], name: str
) -> None:
    throttle = RedisThrottle(client, name, learn_limits=True)
    probe = await throttle.acquire(tokens=100)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(throttle.acquire)
            while throttle.statistics().tasks_waiting != 1:
                await anyio.sleep(0.001)
            probe.release()  # no headers: the next request probes
    assert throttle.statistics().in_flight == 1


async def test_learning_is_reported_as_an_event(client: coredis.Redis[bytes], name: str) -> None:
    events: list[Event] = []
    first = learning(client, name)
    second = learning(client, name, on_event=events.append)
    await first.observe(tokens_report(10_000, 9_000, 360.0))
    await second.acquire(requests=1)
    learned = [event for event in events if isinstance(event, LimitLearned)]
    assert [(e.source, e.metric, e.limit, round(e.per, 6)) for e in learned] == [
        (name, "tokens", 10_000, 3600.0)
    ]


async def test_the_fallback_learns_its_share(client: coredis.Redis[bytes], name: str) -> None:
    throttle = learning(client, name, on_unavailable=LocalFallback(fraction=0.25))
    await throttle.observe(tokens_report(10_000, 9_000, 360.0))
    fallback = throttle.statistics().fallback
    assert fallback is not None
    assert fallback.limits["tokens"].capacity == 2_500
    assert fallback.limits["tokens"].available == pytest.approx(9_000 * 0.25, abs=1)


async def test_a_learned_limit_below_a_queued_cost_fails_it_instead_of_blocking(
    client: coredis.Redis[bytes], name: str
) -> None:
    first, second = learning(client, name), learning(client, name)
    await first.observe(tokens_report(1_000, 1_000, 60.0))
    with pytest.raises(tt.CostExceedsCapacity, match="tokens"):
        await second.acquire(tokens=5_000)


@pytest.mark.parametrize(
    ("stored", "kind"),
    [(b"a string", "string"), ({b"tokens": b"ten per minute"}, "hash")],
)
async def test_a_learned_record_the_library_did_not_write_is_a_clear_error(
    client: coredis.Redis[bytes], name: str, stored: bytes | dict[bytes, bytes], kind: str
) -> None:
    throttle = learning(client, name)
    key = f"throttle_trio:{{{name}}}#learned"
    if isinstance(stored, bytes):
        await client.set(key, stored)
    else:
        await client.hset(key, stored)
    with pytest.raises(RedisBackendError, match=rf"key '.*#learned' holds .*Redis {kind}"):
        await throttle.acquire(requests=1)


def test_learn_limits_is_checked() -> None:
    with pytest.raises(TypeError, match=r"^learn_limits must be a bool, got 'yes'$"):
        RedisThrottle(None, "x", learn_limits="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs at least one limit or learn_limits"):
        RedisThrottle(None, "x")  # type: ignore[arg-type]
