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
    ok = await script(keys=keys, args=["acquire", 1, 1, 10_000_000, -1, 10_000_000])
    assert ok[0] == OK
    assert ok[2:4] == [OK, 0]  # booked, no wait
    assert ok[4] == ok[1]  # booked now
    stored = await client.hgetall(keys[1])
    assert stored[b"t"] == str(ok[1] + 10_000_000).encode()  # digits, never 1.79e+15
    late = await script(keys=keys, args=["acquire", 1, 1, 10_000_000, 0, 5_000_000])
    assert late[2] == LATE
    assert 0 < late[3] <= 5_000_000  # the wait it would have needed, nothing booked
    assert await client.hgetall(keys[1]) == stored
    exceeds = await script(keys=keys, args=["acquire", 1, 1, 10_000_000, -1, 10_000_001])
    assert exceeds[2:4] == [EXCEEDS, 1]  # the limit's index
    assert exceeds[-1] == RATE_ONE  # every reply ends with r


async def test_a_batch_books_as_calls_in_a_row_would(
    client: coredis.Redis[bytes], name: str
) -> None:
    """One acquire books several requests in order: each after its predecessors, a LATE or
    EXCEEDS one books nothing and the next is decided without it; a limit a request does not
    use (inc 0) neither holds it back nor is charged."""
    throttle = RedisThrottle(
        client, name, requests=GCRALimit(1, burst=2), tokens=GCRALimit(1, burst=5)
    )
    script: Any = throttle._script
    keys = [throttle.keys["gate"], throttle.keys["requests"], throttle.keys["tokens"]]
    s = 1_000_000  # one unit: a second, so that the keys outlive the test
    requests = [
        (-1, s, 0),  # 1 request: at once
        (-1, s, 5 * s),  # 1 request and 5 tokens: at once, the tokens bucket is now empty
        (s // 2, s, 0),  # needs 1 s of requests: LATE
        (-1, s, 0),  # takes the place of the LATE one: 1 s
        (-1, 3 * s, 0),  # above the burst of requests: EXCEEDS
        (-1, 0, s),  # 1 token: after the latest booking, and after the tokens refill
    ]
    args: list[Any] = ["acquire", 2, len(requests), 2 * s, 5 * s]
    for request in requests:
        args += request
    reply = await script(keys=keys, args=args)
    now, parts = reply[1], reply[2:-2]
    assert reply[0] == OK
    assert reply[-2:] == [RATE_ONE, RATE_ONE]
    stride = 4 + 4 * 2
    assert len(parts) == stride * len(requests)
    got = [parts[j * stride : j * stride + 4] for j in range(len(requests))]
    assert got[0] == [OK, 0, now, 0]  # code, wait, start, the gate's prior l
    assert got[1] == [OK, 0, now, 0]
    assert got[2][:2] == [LATE, s]
    assert got[3] == [OK, s, now + s, 0]
    assert got[4][:2] == [EXCEEDS, 1]
    assert got[5] == [OK, s, now + s, now + s]  # tokens full again at now + 5 s - 4 s
    # Priors and new TATs: the second request saw the first's state; the absent key, -1.
    assert parts[stride + 4 : stride + 8] == [now + s, now + s, now, now + 2 * s]
    assert parts[stride + 8 : stride + 12] == [-1, -1, -1, now + 5 * s]
    assert parts[4 + 4 : 4 + 8] == [0, 0, 0, 0]  # the first did not use tokens
    stored = {key: {k: int(v) for k, v in (await client.hgetall(key)).items()} for key in keys}
    assert stored[keys[0]] == {b"p": 0, b"l": now + s}
    # The booking floor restarts at each booking made while no other is in the future, as in
    # calls in a row: f = start + inc.
    assert stored[keys[1]] == {b"t": now + 3 * s, b"f": now + 2 * s, b"u": now + s}
    assert stored[keys[2]] == {b"t": now + 6 * s, b"f": now + 2 * s, b"u": now + s}


async def test_adaptive_rate_fields_and_exact_scaling(
    client: coredis.Redis[bytes], name: str
) -> None:
    """A cut stores r, d, x as integers; amounts are scaled to the adaptive rate exactly, even
    when amount x RATE_ONE is far above 2^53 (a Lua number is a double)."""
    throttle = RedisThrottle(client, name, tokens=GCRALimit(1, per=86_400, burst=300))
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
    ok = await script(keys=keys, args=["acquire", 1, 1, 25_920_000_000_000, -1, inc])
    assert ok[0] == ok[2] == OK
    assert ok[-1] == 500_000
    tat = int((await client.hgetall(keys[1]))[b"t"])
    assert tat == ok[4] + 2 * inc  # twice as long at half the rate, to the microsecond
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
        await throttle._round_trip("nonsense", [], ["nonsense", 0])


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
