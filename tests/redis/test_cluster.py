"""RedisThrottle on a Redis Cluster: a local cluster of 3 masters (no replicas) that the
session starts from the same ``redis-server`` binary (and from ``valkey-server``), reached the
way users reach theirs, through ``client_from_url("redis+cluster://host:port")``.

Every key of one throttle is under one hash tag (``prefix:{name}...``), so each script call
goes to the one node that serves the throttle's slot; throttles of other names spread over
the nodes.  The main scenarios (tests/redis/scenarios.py) run on both engines and both event
loops; then what is particular to a cluster: one slot per throttle, names that cannot be a
hash tag, and a node that goes down.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING

import anyio
import coredis
import pytest

from tests.redis.conftest import connect_cluster
from tests.redis.scenarios import SCENARIOS
from throttle_trio.redis import (
    BackendUnavailable,
    GCRALimit,
    LocalFallback,
    RedisThrottle,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from throttle_trio.testing import RedisClusterServer

pytestmark = pytest.mark.anyio

SLOTS = 16384


@pytest.fixture(params=["redis", "valkey"])
def cluster(request: pytest.FixtureRequest) -> RedisClusterServer:
    """The session's Redis Cluster, then its Valkey cluster."""
    started: RedisClusterServer = request.getfixturevalue(f"{request.param}_cluster")
    return started


@pytest.fixture
async def cluster_client(
    cluster: RedisClusterServer,
) -> AsyncIterator[coredis.RedisCluster[bytes]]:
    async with connect_cluster(cluster.url) as client:
        yield client


def node_of(slot: int, masters: int = 3) -> int:
    """The node that serves ``slot``: redis_cluster() gives each an equal range, in order."""
    return next(i for i in range(masters) if slot < (i + 1) * SLOTS // masters)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_main_scenarios(
    cluster_client: coredis.RedisCluster[bytes], name: str, scenario: str
) -> None:
    """Admission within the rate (batches booked), settle, the shared pause, header feedback,
    the shared adaptive rate and SCRIPT FLUSH on every node: as on a standalone server."""
    await SCENARIOS[scenario](cluster_client, name)


async def test_a_throttles_keys_share_one_slot_and_throttles_spread_over_the_nodes(
    cluster: RedisClusterServer, cluster_client: coredis.RedisCluster[bytes], name: str
) -> None:
    """Each throttle's gate and limits hash to one slot (one node runs its script); two
    throttles whose names hash to slots of different nodes both work, and each one's keys are
    on its own node only."""
    limits = {
        "requests": GCRALimit(100, per=3600, burst=100),
        "tokens": GCRALimit(10_000, per=3600, burst=10_000),
    }
    first = RedisThrottle(cluster_client, f"{name}-0", limits)
    slot = await cluster_client.cluster_keyslot(first.keys["gate"])
    for i in itertools.count(1):  # a name whose slot another node serves
        second_name = f"{name}-{i}"
        if node_of(await cluster_client.cluster_keyslot(f"x:{{{second_name}}}")) != node_of(slot):
            break
    second = RedisThrottle(cluster_client, second_name, limits)
    throttles = {slot: first, await cluster_client.cluster_keyslot(second.keys["gate"]): second}
    assert node_of(min(throttles)) != node_of(max(throttles))

    async def use(throttle: RedisThrottle) -> None:
        for _ in range(5):
            async with throttle.reserve(requests=1, tokens=100):
                pass

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for throttle in throttles.values():
                tg.start_soon(use, throttle)
    for slot, throttle in throttles.items():
        assert throttle.statistics().admitted == 5
        assert {await cluster_client.cluster_keyslot(key) for key in throttle.keys.values()} == {
            slot
        }
        counts = []
        for port in cluster.ports:  # a plain client per node: its own keys in that slot
            async with coredis.Redis(host=cluster.host, port=port) as node:
                counts.append(await node.cluster_countkeysinslot(slot))
        expected = [0, 0, 0]  # both limits (the gate expired: no pause, no booking ahead)
        expected[node_of(slot)] = await cluster_client.exists(list(throttle.keys.values()))
        assert expected[node_of(slot)] >= len(limits)
        assert counts == expected
        state = await throttle.state()
        assert state.available["requests"] == pytest.approx(95, abs=0.01)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("name", "tenant-{a}"),
        ("name", "open{"),
        ("name", "close}"),
        ("name", ""),
        ("prefix", "app:{x}"),
        ("limit name", "req}"),
    ],
)
async def test_a_name_that_cannot_be_a_hash_tag_is_refused_at_construction(
    cluster_client: coredis.RedisCluster[bytes], where: str, value: str
) -> None:
    """A brace in the name, the prefix or a limit name would split a throttle over slots (or
    make another tag): refused with a clear error before any round trip."""
    limit = GCRALimit(10)
    message = f"{where} must be a non-empty str without '{{' or '}}', got {value!r}"
    arguments: dict[str, tuple[tuple[object, ...], dict[str, object]]] = {
        "name": ((value,), {"requests": limit}),
        "prefix": (("ok",), {"requests": limit, "prefix": value}),
        "limit name": (("ok", {value: limit}), {}),
    }
    args, kwargs = arguments[where]
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        RedisThrottle(cluster_client, *args, **kwargs)  # type: ignore[arg-type]


# coredis 6.9 leaves a failed connection's anyio memory streams unclosed (as test_failures.py).
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
    r":pytest.PytestUnraisableExceptionWarning"
)
async def test_a_node_down_is_unavailable_and_the_fallback_admits(
    own_cluster: RedisClusterServer, name: str
) -> None:
    """The node that serves a throttle's slot is killed: the next request fails with
    BackendUnavailable within redis_timeout (never a hang), or goes through the local
    fallback; once the node is back (empty), requests go through Redis again."""
    async with connect_cluster(own_cluster.url) as client:
        limit = GCRALimit(100, per=3600, burst=100)  # refills 0.03 a second: counts hold
        strict = RedisThrottle(client, name, requests=limit, redis_timeout=2.0)
        fallback = LocalFallback(fraction=1 / 2, retry_interval=60.0)
        lenient = RedisThrottle(
            client, name, requests=limit, redis_timeout=2.0, on_unavailable=fallback
        )
        (await strict.acquire(requests=1)).release()  # the cluster's layout is known
        node = node_of(await client.cluster_keyslot(strict.keys["gate"]))
        own_cluster.nodes[node].kill()
        with anyio.fail_after(15):
            with pytest.raises(
                BackendUnavailable, match=f"^Redis is unavailable for throttle {name!r}"
            ):
                await strict.acquire(requests=1)
            (await lenient.acquire(requests=1)).release()
        assert lenient.statistics().fallback_admissions == 1
        assert lenient.statistics().fallback_active
        own_cluster.nodes[node].start()  # empty, with its slots: it rejoins from nodes.conf
        with anyio.fail_after(30):
            while True:  # until the cluster is ok again and the client has found the node
                try:
                    (await strict.acquire(requests=1)).release()
                    break
                except BackendUnavailable:
                    await anyio.sleep(0.1)
        assert (await strict.state()).available["requests"] == pytest.approx(99, abs=0.1)
