"""A fleet: three worker processes, on asyncio and on trio, share one API key's limits in Redis.

Each worker is its own OS process with its own event loop, its own Redis connection and its
own ``RedisThrottle``; they share the limits because they give the same name and the same
limits.  Each calls the API with the official ``openai`` SDK, through throttle_trio's httpx2
transport, exactly as one process would with a local ``Throttle``: the transport estimates,
admits, settles to the usage and feeds the rate-limit headers back, into the fleet's shared
state.  Together they send 36 requests to an LLM API whose key allows 600 requests and 60,000
tokens a minute, and the provider refuses none of them: the fleet keeps to one limit, not to
three.  ``max_concurrent`` (4 here) is per worker.

The "provider" is throttle_trio's fake OpenAI-compatible server, served on 127.0.0.1 by this
(parent) process; Redis is a private ``redis-server`` on a free loopback port, started here and
stopped at the end.  No key, no network.

Run it with ``python examples/redis_fleet.py`` (a few seconds on the real clock).  It needs the
``redis-server`` binary (``apt-get install redis-server``), the redis and httpx2 extras and the
openai SDK (``pip install "throttle_trio[redis,httpx2]" openai``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import httpx2

import throttle_trio as tt
from throttle_trio.testing import FakeLLMServer, redis_server, serve

RPM = 600  # the provider's requests per minute (10 a second)
TPM = 60_000  # and tokens per minute
WORKERS = ("asyncio", "trio", "asyncio")  # one process each
REQUESTS = 12  # per worker


# -- a worker process -------------------------------------------------------------------------


async def work(redis_url: str, base_url: str, name: str, backend: str) -> str:
    """One worker: 12 tasks, one chat completion each, through the fleet's shared throttle."""
    import openai

    from throttle_trio.httpx2 import ThrottledTransport
    from throttle_trio.redis import GCRALimit, RedisThrottle, client_from_url

    # The application enters the Redis client once, in a long-lived task, and exits it there.
    async with client_from_url(redis_url) as redis:
        throttle = RedisThrottle(
            redis,
            name,  # every worker gives the same name and limits: one shared set of buckets
            requests=GCRALimit(RPM, per=60.0, burst=10),
            tokens=GCRALimit(TPM, per=60.0, burst=5_000),
            max_concurrent=4,  # per process
        )
        transport = ThrottledTransport(httpx2.AsyncHTTPTransport(), throttle=throttle)
        async with (
            httpx2.AsyncClient(transport=transport) as http,
            openai.AsyncOpenAI(
                base_url=base_url, api_key="sk-the-shared-key", http_client=http, max_retries=0
            ) as client,
        ):

            async def ask(number: int) -> None:
                await client.chat.completions.create(
                    model="fake-llm",
                    messages=[{"role": "user", "content": f"Question {number}: why?"}],
                    max_tokens=100,
                )

            async with anyio.create_task_group() as tg:
                for number in range(REQUESTS):
                    tg.start_soon(ask, number)
        stats = throttle.statistics()
    return json.dumps(
        {
            "backend": backend,
            "pid": os.getpid(),
            "admitted": stats.admitted,
            "round_trips": stats.round_trips,
            "rejected": stats.rejections,
        }
    )


# -- the parent: Redis, the fake provider, three workers -----------------------------------------


async def main(redis_url: str) -> None:
    server = FakeLLMServer(rpm=RPM, tpm=TPM, latency=(0.02, 0.1))
    name = "fleet-" + tt.api_key_hash("sk-the-shared-key")  # never the key itself
    reports: list[dict[str, Any]] = []
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server)  # the fake provider, on a free port

        async def worker(backend: str) -> None:
            command = [sys.executable, __file__, "worker", redis_url, address.base_url]
            done = await anyio.run_process([*command, name, backend], stderr=None)
            reports.append(json.loads(done.stdout))

        async with anyio.create_task_group() as workers:
            for backend in WORKERS:
                workers.start_soon(worker, backend)
        tg.cancel_scope.cancel()  # stop the server

    for report in sorted(reports, key=lambda r: (r["backend"], r["pid"])):
        print(
            f"worker {report['pid']} ({report['backend']}): {report['admitted']} admitted, "
            f"{report['round_trips']} Redis round trips (bookings, settles, header feedback), "
            f"{report['rejected']} 429s"
        )
    admitted = sum(r["admitted"] for r in reports)
    print(f"fleet: {admitted} admitted, {sum(r['rejected'] for r in reports)} 429s")
    served = server.stats
    print(
        f"server: {served.admitted} admitted, {served.rate_limited} refused (429), "
        f"at most {served.max_requests_in(1.0)} requests in any 1 s (bound: burst 10 + 10/s)"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        redis_url, url, fleet_name, loop = sys.argv[2:]
        print(anyio.run(work, redis_url, url, fleet_name, loop, backend=loop))
    else:
        with redis_server() as redis:  # a private one on a free loopback port, stopped after
            anyio.run(main, f"redis://127.0.0.1:{redis.port}/0", backend="trio")
