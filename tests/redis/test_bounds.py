"""Every number sent to the script stays within what it stores exactly (issue #10, item 4).

A Lua number is a double: integers are exact to 2**53 µs (the year 2255 on Redis's clock), and
``string.format('%d')`` of anything above 2**63 writes -2**63.  Python clamps what a caller may
ask for (a pause, a settle, a refund, a header-feedback level) to ``MAX_SPAN``, logs it once and
counts it; the script refuses any argument out of range, and any time it would store after
2**53, before it writes anything.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import throttle_trio as tt
from throttle_trio._headers import LimitReport
from throttle_trio._redis._protocol import Adjust
from throttle_trio._redis._script import MAX_US, OK, RANGE, SPAN_US
from throttle_trio.redis import (
    MAX_SPAN,
    GCRALimit,
    RedisBackendError,
    RedisRateLimiter,
    RedisThrottle,
)

if TYPE_CHECKING:
    import coredis

pytestmark = pytest.mark.anyio


async def snapshot(client: coredis.Redis[bytes], keys: list[str]) -> list[Any]:
    """Each key's fields and whether it expires (-1: never, -2: absent)."""
    state: list[Any] = []
    for key in keys:
        ttl = await client.pttl(key)
        state.append((await client.hgetall(key), ttl if ttl < 0 else "expires"))
    return state


def clamp_warnings(caplog: pytest.LogCaptureFixture, kind: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if f"clamped {kind} to MAX_SPAN" in r.getMessage()
    ]


def test_max_span_is_365_days() -> None:
    assert MAX_SPAN == 365 * 86_400 == SPAN_US / 1e6
    assert MAX_US == 2**53 - 1


async def test_a_huge_pause_is_clamped_logged_once_and_counted(
    client: coredis.Redis[bytes], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """pause_for(1e13) used to write p = -2**63 (lifting a pause of an hour) and 1e14 to fail
    after a partial write, leaving a gate that never expires.  Now both, and pause_until(inf),
    close the gate for MAX_SPAN: the hour's pause is extended, never lifted; one warning; three
    clamps counted."""
    caplog.set_level(logging.WARNING, logger="throttle_trio")
    with anyio.fail_after(10):
        throttle = RedisThrottle(client, name, requests=GCRALimit(10, burst=5))
        await throttle.pause_for(3600)
        for seconds in (1e13, 1e14):
            await throttle.pause_for(seconds)
            paused = (await throttle.state()).paused_for
            assert paused is not None
            assert 3600 < paused <= MAX_SPAN
        await throttle.pause_until(math.inf)
        gate = await client.hgetall(throttle.keys["gate"])
        assert 0 < int(gate[b"p"]) <= MAX_US
        assert 0 < await client.pttl(throttle.keys["gate"]) <= MAX_SPAN * 1000 + 1
        with pytest.raises(tt.RateLimitTimeout):
            await throttle.acquire(requests=1, timeout=0)  # still paused
    assert throttle.statistics().clamped == 3
    assert throttle.statistics().pauses == 4
    assert clamp_warnings(caplog, "a pause") == [
        f"{throttle!r} clamped a pause to MAX_SPAN=31536000 s (365 days), the longest span the "
        "Redis script takes: pause_for(10000000000000.0) is 1e+13 s (further clamps of a pause "
        "are counted in statistics().clamped)"
    ]


async def test_a_pause_from_an_older_overflow_is_repaired(
    client: coredis.Redis[bytes], name: str
) -> None:
    """A gate an older version left with p = -2**63 and no expiry reads as no pause; the next
    pause rewrites it with a TTL."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(10, burst=5))
    gate = throttle.keys["gate"]
    with anyio.fail_after(10):
        await client.hset(gate, {"p": str(-(2**63)), "l": "0"})
        assert (await throttle.state()).paused_for is None
        await throttle.pause_for(60)
        paused = (await throttle.state()).paused_for
        assert paused is not None
        assert 59 < paused <= 60
        assert await client.pttl(gate) > 0


@pytest.mark.parametrize(
    ("args", "argument", "bounds", "got"),
    [
        (["pause", 0, 10**20], 3, f"[0, {SPAN_US}]", str(10**20)),
        (["pause", 0, SPAN_US + 1], 3, f"[0, {SPAN_US}]", str(SPAN_US + 1)),
        (["pause", 0, "1e20"], 3, f"[0, {SPAN_US}]", "1e20"),
        (["pause", 0, -1], 3, f"[0, {SPAN_US}]", "-1"),
        (["adjust", 1, 10**30], 3, f"[-{SPAN_US}, {SPAN_US}]", str(10**30)),
        (["adjust", 1, -(10**30)], 3, f"[-{SPAN_US}, {SPAN_US}]", str(-(10**30))),
        (["limit", 1, SPAN_US + 1], 3, f"[0, {SPAN_US}]", str(SPAN_US + 1)),
        (["acquire", 1, 1, SPAN_US + 1, -1, 1], 4, f"[1, {SPAN_US}]", str(SPAN_US + 1)),
        (["acquire", 1, 1, 10, MAX_US + 1, 1], 5, f"[-1, {MAX_US}]", str(MAX_US + 1)),
        (["acquire", 1, 1, 10, -1, SPAN_US + 1], 6, f"[0, {SPAN_US}]", str(SPAN_US + 1)),
        (["cut", 1, 500_000, 10_000, 1_000_000, 10**16], 6, f"[0, {SPAN_US}]", str(10**16)),
    ],
)
async def test_the_script_refuses_an_argument_out_of_range_and_writes_nothing(
    client: coredis.Redis[bytes],
    name: str,
    args: list[Any],
    argument: int,
    bounds: str,
    got: str,
) -> None:
    """Whatever a caller sends (a bug, an older or newer client), an argument outside its range
    is an error that names it, and the keys are left exactly as they were."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(10, burst=5))
    used = throttle._limits[: args[1]]
    keys = [throttle.keys["gate"], *(limit.key for limit in used)]
    with anyio.fail_after(10):
        (await throttle.acquire(requests=1)).release()
        await throttle.pause_for(3600)
        before = await snapshot(client, keys)
        with pytest.raises(RedisBackendError) as raised:
            await throttle._round_trip(args[0], used, args)
        assert await snapshot(client, keys) == before
    assert (
        f"throttle_trio: argument {argument} of {args[0]} must be an integer in {bounds}, "
        f"got {got} script:"
    ) in str(raised.value)


async def test_a_booking_after_2_53_is_refused_alone(
    client: coredis.Redis[bytes], name: str
) -> None:
    """A limit whose state is near 2**53 µs (centuries of debt) refuses a booking on it with
    RANGE, and writes nothing for it; the next request of the batch, on another limit, is
    booked as if the refused one had never been asked."""
    throttle = RedisThrottle(client, name, a=GCRALimit(10, burst=5), b=GCRALimit(10, burst=5))
    key_a = throttle.keys["a"]
    far = MAX_US - 50_000
    keys = [throttle.keys["gate"], key_a, throttle.keys["b"]]
    tau = 500_000
    args: list[Any] = ["acquire", 2, 2, tau, tau, -1, 100_000, 0, -1, 0, 100_000]
    with anyio.fail_after(10):
        await client.hset(key_a, {"t": str(far), "f": str(far), "u": "0"})
        await client.pexpire(key_a, 60_000)
        before = await snapshot(client, keys[:2])
        reply: list[Any] = await throttle._script(keys=keys, args=args)
        stride = 4 + 4 * 2
        first, second = reply[2 : 2 + stride], reply[2 + stride : 2 + 2 * stride]
        assert first == [RANGE, 1] + [0] * (stride - 2)
        assert second[:3] == [OK, 0, reply[1]]  # booked now, on b
        assert await snapshot(client, keys[:2]) == before
        with pytest.raises(RedisBackendError) as raised:
            await throttle.acquire(a=1)
        assert await snapshot(client, keys[:2]) == before
    assert str(raised.value) == (
        f"reserve(a=1) cannot be booked for throttle {name!r}: limit 'a' would hold it until "
        "after 2**53 µs on Redis's clock (the year 2255), the latest time the script stores; "
        "nothing was booked"
    )


async def test_a_time_after_2_53_is_never_stored(client: coredis.Redis[bytes], name: str) -> None:
    """A charge that would push a limit past 2**53 µs fails and writes nothing; a key that
    holds such a time was not written by throttle_trio."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(10, burst=5))
    limit = throttle._limits[0]
    key = limit.key
    near = MAX_US - 1000
    with anyio.fail_after(10):
        await client.hset(key, {"t": str(near), "f": str(near), "u": "0"})
        await client.pexpire(key, 60_000)
        before = await snapshot(client, [throttle.keys["gate"], key])
        with pytest.raises(RedisBackendError) as raised:
            await throttle._call(Adjust((SPAN_US,)), [limit])
        assert await snapshot(client, [throttle.keys["gate"], key]) == before
        await client.hset(key, {"t": str(MAX_US + 1)})
        with pytest.raises(RedisBackendError, match=r"holds data throttle_trio did not write"):
            await throttle.state()
    assert (
        "throttle_trio: adjust would store a time after 2^53 microseconds (the year 2255); "
        "nothing was written script:"
    ) in str(raised.value)


async def test_settles_and_refunds_are_clamped_logged_and_counted(
    client: coredis.Redis[bytes], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An overdraft worth more than MAX_SPAN of a limit's time is charged as MAX_SPAN (and
    counted as that much overdraft); a refund that large is credited as far as the bucket
    allows; each kind warns once; every clamp is counted."""
    caplog.set_level(logging.WARNING, logger="throttle_trio")
    per_unit = 86.4  # seconds: 1000 tokens a day
    throttle = RedisThrottle(client, name, tokens=GCRALimit(1000, per=86_400, burst=100))
    span_units = MAX_SPAN / per_unit  # 365,000 tokens
    with anyio.fail_after(10):
        for _ in range(2):  # estimated at 0: admitted at once, however deep the debt
            async with throttle.reserve(tokens=0) as slot:
                await slot.settle(tokens=1e30)
        stats = throttle.statistics()
        assert stats.clamped == 2
        assert stats.limits["tokens"].overdraft == pytest.approx(2 * span_units)
        available = (await throttle.state()).available["tokens"]
        assert available == pytest.approx(100 - 2 * span_units, abs=1)
        slot = await throttle.acquire(tokens=0)
        await slot.settle(tokens=1e30)
        await slot.cancel()  # a refund of 1e30: credited as far as the bucket allows
        assert throttle.statistics().clamped == 4
        assert (await throttle.state()).available["tokens"] == pytest.approx(
            100 - 2 * span_units, abs=1
        )
        limiter = RedisRateLimiter(client, name + "-limiter", GCRALimit(10, burst=5))
        assert await limiter.refund(1e30) == 1e30  # a full bucket: nothing to credit
    assert limiter.statistics().clamped == 1
    assert len(clamp_warnings(caplog, "an overdraft")) == 1
    assert len(clamp_warnings(caplog, "a refund")) == 2  # one per throttle


async def test_header_feedback_is_clamped(
    client: coredis.Redis[bytes], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A report of -1e30 remaining (a hand-built or hostile report) lowers the bucket by
    MAX_SPAN at most, counted and logged once."""
    caplog.set_level(logging.WARNING, logger="throttle_trio")
    throttle = RedisThrottle(client, name, tokens=GCRALimit(1000, per=86_400, burst=100))
    report = tt.RateLimitHeaders(
        limits={"tokens": LimitReport(limit=100, remaining=-1e30, reset_after=None)},
        retry_after=None,
        should_retry=None,
    )
    with anyio.fail_after(10):
        await throttle.observe(report)
        await throttle.observe(report)
        assert throttle.statistics().clamped == 2
        available = (await throttle.state()).available["tokens"]
    assert available == pytest.approx(100 - MAX_SPAN / 86.4, abs=1)
    assert len(clamp_warnings(caplog, "a header-feedback level")) == 1


async def test_a_timeout_beyond_the_horizon_means_no_timeout(
    client: coredis.Redis[bytes], name: str
) -> None:
    throttle = RedisThrottle(client, name, requests=GCRALimit(10, burst=5))
    with anyio.fail_after(5):
        async with throttle.reserve(requests=1, timeout=1e300):
            pass
    assert throttle.statistics().clamped == 0


def test_a_limit_must_refill_within_max_span() -> None:
    """The script is sent a limit's burst in µs: it must fit MAX_SPAN (a yearly quota does)."""
    GCRALimit(1_000, per=365 * 86_400)
    with pytest.raises(ValueError, match=r"^burst must refill within MAX_SPAN=31536000 s \(365 "):
        GCRALimit(1, per=86_400, burst=366)
    client: Any = type("Client", (), {"register_script": lambda self, s: None})()
    with pytest.raises(
        ValueError,
        match=(
            r"^burst must refill within MAX_SPAN=31536000 s \(365 days\), but burst \* per / "
            r"rate = 1e\+08 s, got burst=100, per=1.0, rate=1e-06$"
        ),
    ):
        RedisThrottle(client, "n", requests=tt.TokenBucket(1e-6, burst=100))
