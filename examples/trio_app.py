"""A trio application: many tasks share one Throttle.

Thirty tasks ask an LLM API one question each.  They share one ``tt.Throttle`` that holds the
provider's limits (requests and tokens per minute) and a cap on requests in flight.  Each task
reserves an estimate of its tokens, sends its request, and settles the reservation to the
tokens the response says it used, so the throttle's buckets follow the provider's.

The "provider" is throttle_trio's fake OpenAI-compatible server, served on 127.0.0.1 in this
process: no key, no network.  It keeps its own books, so at the end it tells us how many
requests it refused (none) and the most it saw in any one second.

Run it with ``python examples/trio_app.py`` (about 2 s on the real clock).
"""

from __future__ import annotations

from typing import Any

import httpx
import trio

import throttle_trio as tt
from throttle_trio.testing import FakeLLMServer, serve

RPM = 600  # the provider's requests per minute (10 a second)
TPM = 60_000  # and tokens per minute
TASKS = 30


async def ask(
    client: httpx.AsyncClient, throttle: tt.Throttle, number: int, used: list[float]
) -> None:
    """One task: reserve the estimate, send, settle to the real usage."""
    body: dict[str, Any] = {
        "model": "fake-llm",
        "messages": [{"role": "user", "content": f"Question {number}: " + "why? " * number}],
        "max_tokens": 100,
    }
    # prompt (characters / 4) + max_tokens: what the provider charges when the request arrives
    estimate = tt.estimate_request_cost(body)["tokens"]
    # Waits (first come, first served) until a slot is free and both limits admit the cost,
    # then takes all of them at one instant.  Leaving the block gives the slot back.
    async with throttle.reserve(requests=1, tokens=estimate) as slot:
        response = await client.post("/chat/completions", json=body)
        response.raise_for_status()
        tokens = response.json()["usage"]["total_tokens"]
        slot.settle(tokens=tokens)  # refund the unused part of the estimate
    used.append(tokens)


async def main() -> None:
    server = FakeLLMServer(rpm=RPM, tpm=TPM, latency=(0.05, 0.2))
    throttle = tt.Throttle(
        # Bursts of 10 requests after a quiet spell, then the steady rate: 10 a second.
        requests=tt.TokenBucket(RPM, per=60.0, burst=10),
        tokens=tt.TokenBucket(TPM, per=60.0, burst=5_000),
        max_concurrent=8,  # at most 8 requests in flight
    )
    used: list[float] = []
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve, server)  # the fake provider, on a free port
        async with (
            httpx.AsyncClient(base_url=address.base_url) as client,
            trio.open_nursery() as tasks,
        ):
            for number in range(TASKS):
                tasks.start_soon(ask, client, throttle, number, used)
        nursery.cancel_scope.cancel()  # stop the server

    stats = throttle.statistics()
    print(f"{len(used)} answers, {sum(used):.0f} tokens used")
    print(
        f"throttle: {stats.admitted} admitted, {stats.in_flight} in flight, "
        f"{stats.limits['tokens'].refunded:.0f} tokens refunded by settle"
    )
    served = server.stats
    print(
        f"server: {served.admitted} admitted, {served.rate_limited} refused (429), "
        f"at most {served.max_requests_in(1.0)} requests in any 1 s (bound: burst 10 + 10/s)"
    )


if __name__ == "__main__":
    trio.run(main)
