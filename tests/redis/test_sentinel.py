"""RedisThrottle behind Redis Sentinel: coredis's ``Sentinel(...).primary_for(service)`` finds the
primary; a primary, its replica and a Sentinel started from the same binary (redis-server, then
valkey-server), per test.

The throttle's keys are written by its script on the primary and replicated (as effects), so a
failover keeps the shared state; while the Sentinel promotes the replica, requests fail with
BackendUnavailable (or go through the fallback), never hang, and then go on through the new
primary.  This is the recipe of docs/redis.md ("Engines").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import coredis
import pytest
from coredis.connection import TCPLocation

from tests.redis.conftest import wait_for
from throttle_trio.redis import BackendUnavailable, GCRALimit, RedisThrottle

if TYPE_CHECKING:
    from tests.redis.conftest import SentinelGroup

pytestmark = [
    pytest.mark.anyio,
    # coredis 6.9 leaves a failed connection's anyio memory streams unclosed (the primary is
    # killed); their __del__ warns when collected: the fixture collects them (as
    # test_failures.py).
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
        r":pytest.PytestUnraisableExceptionWarning"
    ),
]


async def test_the_primary_found_through_sentinel_admits(
    sentinel_group: SentinelGroup, name: str
) -> None:
    """``primary_for(service)`` is a Redis client like any other for the throttle."""
    sentinels = [TCPLocation(sentinel_group.sentinel.host, sentinel_group.sentinel.port)]
    async with coredis.Sentinel(sentinels) as sentinel:
        assert await sentinel.discover_primary(sentinel_group.service) == (
            "127.0.0.1",
            sentinel_group.primary.port,
        )
        async with sentinel.primary_for(sentinel_group.service) as client:
            throttle = RedisThrottle(client, name, tokens=GCRALimit(1000, per=3600, burst=1000))
            async with throttle.reserve(tokens=100) as slot:
                await slot.settle(tokens=40)
            assert (await throttle.state()).available["tokens"] == pytest.approx(960, abs=0.1)


async def test_a_failover_keeps_the_shared_state(sentinel_group: SentinelGroup, name: str) -> None:
    """The primary is killed: requests fail with BackendUnavailable within redis_timeout until
    the Sentinel has promoted the replica, then go through it, which holds what the old
    primary had charged (replicated before the kill)."""
    sentinels = [TCPLocation(sentinel_group.sentinel.host, sentinel_group.sentinel.port)]
    async with coredis.Sentinel(sentinels) as sentinel:
        async with sentinel.primary_for(sentinel_group.service) as client:
            limit = GCRALimit(1000, per=3600, burst=1000)  # refills 0.3 a second: counts hold
            throttle = RedisThrottle(client, name, tokens=limit, redis_timeout=2.0)
            (await throttle.acquire(tokens=100)).release()
            wait_for(sentinel_group.replica_caught_up, "the replica's copy of the charge")
            sentinel_group.primary.kill()
            unavailable = 0
            with anyio.fail_after(30):
                while True:
                    try:
                        (await throttle.acquire(tokens=100)).release()
                        break
                    except BackendUnavailable:
                        unavailable += 1
                        await anyio.sleep(0.1)
            assert unavailable >= 1  # the old primary is gone: the first try fails
            assert await sentinel.discover_primary(sentinel_group.service) == (
                "127.0.0.1",
                sentinel_group.replica.port,
            )
            state = await throttle.state()
    assert 800 <= state.available["tokens"] < 820  # both charges, and a few seconds' refill
