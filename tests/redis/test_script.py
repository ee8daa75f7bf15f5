"""The Lua script alone: its replies, its stored format and its arithmetic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from throttle_trio._redis._script import EXCEEDS, LATE, OK, Interval
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
    assert exceeds[:1] + exceeds[2:] == [EXCEEDS, 1]


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
