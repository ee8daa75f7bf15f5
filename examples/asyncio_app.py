"""The trio application of ``trio_app.py``, on asyncio: the same Throttle, unchanged.

throttle_trio runs on anyio, so a ``tt.Throttle`` works in a plain ``asyncio.run`` program with
``asyncio.TaskGroup``, exactly as it does under trio.  This one also shows two things an
application meets sooner or later:

* a task cancelled while it waits in the throttle's queue takes nothing (here, one task gives
  up after 0.2 s with ``asyncio.timeout``);
* ``throttle.statistics()`` tells what held requests back.

The provider is the fake OpenAI-compatible server on 127.0.0.1 (no key, no network).
Run it with ``python examples/asyncio_app.py`` (about 2 s on the real clock).
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import httpx

import throttle_trio as tt
from throttle_trio.testing import FakeLLMServer, serve

RPM = 600
TPM = 60_000
TASKS = 30


async def ask(
    client: httpx.AsyncClient, throttle: tt.Throttle, number: int, used: list[float]
) -> None:
    body: dict[str, Any] = {
        "model": "fake-llm",
        "messages": [{"role": "user", "content": f"Question {number}: " + "why? " * number}],
        "max_tokens": 100,
    }
    estimate = tt.estimate_request_cost(body)["tokens"]
    async with throttle.reserve(requests=1, tokens=estimate) as slot:
        response = await client.post("/chat/completions", json=body)
        response.raise_for_status()
        tokens = response.json()["usage"]["total_tokens"]
        slot.settle(tokens=tokens)
    used.append(tokens)


async def impatient(client: httpx.AsyncClient, throttle: tt.Throttle, gave_up: list[int]) -> None:
    """A task that arrives last and gives up after 0.2 s: cancelled in the queue, it takes
    nothing (no slot, no request, no token)."""
    try:
        async with asyncio.timeout(0.2):
            await ask(client, throttle, 99, [])
    except TimeoutError:
        gave_up.append(99)


async def main() -> None:
    server = FakeLLMServer(rpm=RPM, tpm=TPM, latency=(0.05, 0.2))
    throttle = tt.Throttle(
        requests=tt.TokenBucket(RPM, per=60.0, burst=10),
        tokens=tt.TokenBucket(TPM, per=60.0, burst=5_000),
        max_concurrent=8,
    )
    used: list[float] = []
    gave_up: list[int] = []
    # serve() reports its address through anyio's task_status: start it in an anyio task
    # group, which runs on asyncio like any other.
    async with anyio.create_task_group() as server_group:
        address = await server_group.start(serve, server)
        async with (
            httpx.AsyncClient(base_url=address.base_url) as client,
            asyncio.TaskGroup() as tasks,
        ):
            for number in range(TASKS):
                tasks.create_task(ask(client, throttle, number, used))
            await asyncio.sleep(0.05)  # let them queue, then one more that will not wait
            tasks.create_task(impatient(client, throttle, gave_up))
            await asyncio.sleep(0.1)
            stats = throttle.statistics()
            print(f"after 0.15 s: {stats.tasks_waiting} waiting, held back by {stats.binding!r}")
        server_group.cancel_scope.cancel()

    stats = throttle.statistics()
    print(f"{len(used)} answers, {len(gave_up)} task gave up while queued")
    print(
        f"throttle: {stats.admitted} admitted; the first in line waited "
        f"{stats.limits['requests'].wait_time:.1f} s for the requests limit, "
        f"{stats.concurrency_wait_time:.1f} s for a slot"
    )
    print(f"server: {server.stats.admitted} admitted, {server.stats.rate_limited} refused (429)")


if __name__ == "__main__":
    asyncio.run(main())
