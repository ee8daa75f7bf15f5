"""Four real OS processes (two on asyncio, two on trio) share one limit through Redis.

Together they make 2,000 acquisitions at 400/s with a burst of 20.  Each logs, per admission,
the instant Redis booked for it (Redis's clock) and the moment ``reserve()`` returned in its
task, mapped onto Redis's clock through a ``TIME`` read (the sample with the shortest round
trip; its error is at most half that round trip).  The merged logs must meet:

* booked instants: ``burst + rate*T`` in every window, exactly (slack 0.01 for µs rounding);
* return moments: the same, plus ``max_batch`` requests per process (the documented booking
  overshoot: the requests a process booked in its latest round trip may leave late, after a
  stall) plus ``rate`` times twice the largest clock-mapping error.

Run as ``python -m tests.redis.test_multiprocess PORT BACKEND NAME COUNT TASKS START_US`` it is
one worker: it prints one JSON object.  Run as ``... overload PORT BACKEND NAME`` it reports one
overload to an adaptive throttle (and prints its statistics' ``rate_cuts``): the adaptive-rate
test checks that this process's 429 slows another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.redis import booking_gaps, rate_violations
from throttle_trio.redis import DEFAULT_MAX_BATCH

if TYPE_CHECKING:
    import coredis

    from tests.redis.conftest import RedisServer

RATE, BURST = 400.0, 20.0
ROOT = Path(__file__).resolve().parents[2]


def test_four_processes_share_one_limit(redis_server: RedisServer) -> None:
    """2 asyncio + 2 trio processes, 500 acquisitions each: the fleet stays within the bound."""
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    backends = ["asyncio", "trio", "asyncio", "trio"]
    start_us = redis_server.time_us() + 2_000_000  # every worker starts then
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.redis.test_multiprocess",
                str(redis_server.port),
                backend,
                name,
                "500",
                "10",
                str(start_us),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for backend in backends
    ]
    reports: list[dict[str, Any]] = []
    for worker in workers:
        out, err = worker.communicate(timeout=90)
        assert worker.returncode == 0, err.decode()
        reports.append(json.loads(out))
    assert sorted(r["backend"] for r in reports) == sorted(backends)
    booked = [(t, 1.0) for r in reports for t in r["booked"]]
    returned = [(t, 1.0) for r in reports for t in r["returned"]]
    assert len(booked) == len(returned) == 2000
    assert rate_violations(booked, RATE, BURST, slack=0.01) == []
    mapping_error = max(r["mapping_error"] for r in reports)
    slack = len(workers) * DEFAULT_MAX_BATCH + RATE * 2 * mapping_error + 0.05
    assert rate_violations(returned, RATE, BURST, slack=slack) == []
    # Contended: the fleet ran at the limit, so Redis's clock advanced (2000 - burst) / rate.
    times = sorted(t for t, _ in booked)
    assert times[-1] - times[0] >= (2000 - BURST) / RATE - 1e-6
    for report in reports:
        # Contended: each round trip books up to max_batch of the process's 10 waiting tasks.
        assert report["admitted"] == 500
        assert 500 / DEFAULT_MAX_BATCH <= report["round_trips"] < 500


@pytest.mark.anyio
async def test_an_overload_in_another_process_slows_this_one(
    redis_server: RedisServer, client: coredis.Redis[bytes], anyio_backend: str
) -> None:
    """A worker process on the other event loop records an overload; the throttles of this
    process (which saw no 429) then book at half the rate, exactly one new interval apart."""
    from throttle_trio.redis import GCRALimit, RedisThrottle

    name = f"adaptive-{uuid.uuid4().hex[:8]}"
    here = [
        RedisThrottle(client, name, requests=GCRALimit(50, burst=1), adaptive=True)
        for _ in range(3)
    ]

    assert await booking_gaps(here) == [20_000] * 2
    other = "trio" if anyio_backend == "asyncio" else "asyncio"
    command = [sys.executable, "-m", "tests.redis.test_multiprocess", "overload"]
    result = await anyio.run_process(
        [*command, str(redis_server.port), other, name],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert json.loads(result.stdout) == {"backend": other, "rate_cuts": 1}
    assert await booking_gaps(here) == [40_000] * 2
    assert [t.statistics().limits["requests"].rate for t in here] == [25] * 3


async def _overload(port: int, backend: str, name: str) -> str:
    import coredis

    from throttle_trio.redis import GCRALimit, RedisThrottle

    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        throttle = RedisThrottle(client, name, requests=GCRALimit(50, burst=1), adaptive=True)
        await throttle.record_overload()
        return json.dumps({"backend": backend, "rate_cuts": throttle.statistics().rate_cuts})


async def _work(port: int, backend: str, name: str, count: int, tasks: int, start_us: int) -> str:
    import coredis

    from throttle_trio.redis import GCRALimit, RedisThrottle

    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        # Map the anyio clock onto Redis's: the TIME read with the shortest round trip.
        offset, error = 0.0, float("inf")
        for _ in range(20):
            before = anyio.current_time()
            server_us = await client.eval(
                "local t = redis.call('TIME') return t[1] * 1000000 + t[2]", [], []
            )
            after = anyio.current_time()
            if (after - before) / 2 < error:
                error = (after - before) / 2
                offset = int(server_us) / 1e6 - (before + after) / 2  # type: ignore[arg-type]
        throttle = RedisThrottle(client, name, requests=GCRALimit(RATE, burst=BURST))
        booked: list[float] = []
        returned: list[float] = []
        remaining = count

        async def task() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with throttle.reserve(requests=1) as slot:
                    returned.append(anyio.current_time() + offset)
                    booked.append(slot.server_admitted_at)

        await anyio.sleep(max(0.0, start_us / 1e6 - (anyio.current_time() + offset)))
        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(task)
        stats = throttle.statistics()
        return json.dumps(
            {
                "backend": backend,
                "booked": booked,
                "returned": returned,
                "mapping_error": error,
                "admitted": stats.admitted,
                "round_trips": stats.round_trips,
            }
        )


if __name__ == "__main__":
    if sys.argv[1] == "overload":
        port, backend, name = sys.argv[2:]
        print(anyio.run(_overload, int(port), backend, name, backend=backend))
        sys.exit()
    port, backend, name, count, tasks, start_us = sys.argv[1:]
    print(
        anyio.run(
            _work, int(port), backend, name, int(count), int(tasks), int(start_us), backend=backend
        )
    )
