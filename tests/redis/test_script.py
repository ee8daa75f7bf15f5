"""The Lua script alone: its replies, its stored format and its arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import pytest

from throttle_trio._redis._script import EXCEEDS, LATE, OK, RATE_ONE, Interval
from throttle_trio.redis import GCRALimit, RedisBackendError, RedisThrottle

if TYPE_CHECKING:
    import coredis

pytestmark = pytest.mark.anyio


async def test_replies_and_stored_format(client: coredis.Redis[bytes], name: str) -> None:
    """Integer microseconds everywhere: booked, late and impossible requests."""
    throttle = RedisThrottle(client, name, requests=GCRALimit(1000, burst=10))
    script: Any = throttle._script
    keys = [throttle.keys["gate"], throttle.keys["requests"]]
    ok = await script(keys=keys, args=["acquire", 1, -1, 10_000_000, 10_000_000])
    assert ok[0] == OK
    assert ok[2] == 0  # no wait
    assert ok[3] == ok[1]  # booked now
    stored = await client.hgetall(keys[1])
    assert stored[b"t"] == str(ok[1] + 10_000_000).encode()  # digits, never 1.79e+15
    late = await script(keys=keys, args=["acquire", 1, 0, 5_000_000, 10_000_000])
    assert late[0] == LATE
    assert 0 < late[2] <= 5_000_000  # the wait it would have needed, nothing booked
    assert await client.hgetall(keys[1]) == stored
    exceeds = await script(keys=keys, args=["acquire", 1, -1, 10_000_001, 10_000_000])
    assert exceeds[:1] + exceeds[2:] == [EXCEEDS, 1, RATE_ONE]  # every reply ends with r


async def test_adaptive_rate_fields_and_exact_scaling(
    client: coredis.Redis[bytes], name: str
) -> None:
    """A cut stores r, d, x as integers; amounts are scaled to the adaptive rate exactly, even
    when amount x RATE_ONE is far above 2^53 (a Lua number is a double)."""
    throttle = RedisThrottle(client, name, tokens=GCRALimit(1, per=86_400, burst=1000))
    script: Any = throttle._script
    keys = [throttle.keys["gate"], throttle.keys["tokens"]]
    memory = 3_600_000_000
    cut = await script(keys=keys, args=["cut", 1, 500_000, 10_000, 1_000_000, memory])
    assert cut[0] == OK
    assert cut[2:] == [1, 500_000]  # cut, and the rate it left
    stored = await client.hgetall(keys[1])
    now = cut[1]
    assert {k: int(v) for k, v in stored.items()} == {
        b"t": now,  # a full bucket, as before
        b"f": now,
        b"u": 0,
        b"r": 500_000,
        b"d": now,
        b"x": now + memory,
    }
    again = await script(keys=keys, args=["cut", 1, 500_000, 10_000, 1_000_000, memory])
    assert again[2:] == [0, 500_000]  # within the cooldown: no cut
    inc = 3_333_333_333_333  # 3.3e12 µs at the configured rate: x RATE_ONE is 3.3e18
    ok = await script(keys=keys, args=["acquire", 1, -1, inc, 86_400_000_000_000])
    assert ok[0] == OK
    assert ok[-1] == 500_000
    tat = int((await client.hgetall(keys[1]))[b"t"])
    assert tat == ok[3] + 2 * inc  # twice as long at half the rate, to the microsecond
    grown = await script(keys=keys, args=["grow", 1, 10_000, memory])
    assert grown[-1] == 510_000
    stored = await client.hgetall(keys[1])
    # The level is kept: what was owed is rescaled about now, rounded up.
    assert int(stored[b"t"]) == grown[1] + math.ceil(Fraction(tat - grown[1]) * 500_000 / 510_000)
    tat = int(stored[b"t"])
    half = await script(keys=keys, args=["adjust", 1, -(inc // 2)])
    assert half[2:] == [-(inc // 2), 510_000]  # credited in full: returned as sent
    after = int((await client.hgetall(keys[1]))[b"t"])
    assert after == tat - inc // 2 * RATE_ONE // 510_000  # credits round down
    rest = await script(keys=keys, args=["adjust", 1, -inc])  # more than is owed: capped
    assert rest[2:] == [-((after - rest[1]) * 510_000 // RATE_ONE), 510_000]
    assert int((await client.hgetall(keys[1]))[b"t"]) == rest[1]  # full, never above


async def test_unknown_operation_is_an_error(client: coredis.Redis[bytes], name: str) -> None:
    throttle = RedisThrottle(client, name, requests=GCRALimit(1000))
    with pytest.raises(RedisBackendError, match=r"throttle_trio: unknown operation nonsense"):
        await throttle._call("nonsense", [], ["nonsense", 0])


@pytest.mark.parametrize(
    ("rate", "per", "units", "charge", "credit"),
    [
        (1000, 1.0, 1, 1000, 1000),
        (90_000, 60.0, 3, 2000, 2000),
        (90_000, 60.0, 1, 667, 666),  # 666.67 µs: charges round up, credits down
        (1e7, 1.0, 1, 1, 0),  # below a microsecond per unit
        (3, 1.0, 0.5, 166_667, 166_666),
    ],
)
def test_interval_rounding(rate: float, per: float, units: float, charge: int, credit: int) -> None:
    interval = Interval(rate, per)
    assert (interval.charge(units), interval.credit(units)) == (charge, credit)
