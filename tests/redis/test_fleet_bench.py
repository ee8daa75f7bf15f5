"""A smoke run of ``bench.fleet``: both fleets, small, so that the benchmark keeps running.

Real processes, Redis and loopback HTTP on the real clock: counts only (every request answered
200 once, the provider admitted exactly the total), never durations nor 429s, which depend on
the machine's load; the benchmark itself judges those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from bench.fleet import FleetConfig, FleetRun, run_batch_fleet, run_sdk_fleet

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tests.redis.conftest import RedisServer

TOTAL = 20  # a second at the provider's 20 a second


@pytest.mark.parametrize(
    "config",
    [FleetConfig(total=TOTAL, throttle_rate=19.0), FleetConfig(total=TOTAL, policy="window")],
    ids=["bucket", "window"],  # a GCRA bucket 5% below; OpenAI's preset at the provider's rate
)
@pytest.mark.parametrize("fleet", [run_sdk_fleet, run_batch_fleet], ids=["sdk", "batch"])
def test_a_small_fleet_run_answers_every_request_once(
    redis_server: RedisServer,
    fleet: Callable[[str, FleetConfig], Awaitable[FleetRun]],
    config: FleetConfig,
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    result = anyio.run(fleet, url, config)
    assert result.problems == []
    assert (result.succeeded, result.failed) == (TOTAL, 0)
    assert result.admitted == TOTAL  # each request admitted once; any 429 was retried
    assert result.max_in_window <= config.rate  # the provider's own bound, as recorded
    assert len(result.workers) == (3 if fleet is run_sdk_fleet else 2)
