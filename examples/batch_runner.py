"""``tt.run_batch`` over a lazy generator, with a throttle and a progress line.

A batch of 60 prompts, produced by a generator (it could read a file of millions of lines:
``run_batch`` reads an item only when a worker is free for it, so memory and live tasks stay
bounded by ``max_concurrent``).  Every call runs inside a reservation of the throttle:
``costs`` says what an item will cost, ``usage`` reads what it really cost from the call's
result, and the reservation is settled to it.  Two items fail on purpose (the server answers
400 to an empty message list): with ``errors="collect"`` they come back as failed
``ItemResult`` values and the batch goes on.  The result list has exactly one entry per
item, in input order.

The provider is the fake OpenAI-compatible server on 127.0.0.1 (no key, no network).
Run it with ``python examples/batch_runner.py [asyncio|trio]`` (about 2 s on the real clock).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import anyio
import httpx2

import throttle_trio as tt
from throttle_trio.testing import FakeLLMServer, serve

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

RPM = 1_200  # 20 requests a second
TPM = 120_000
ITEMS = 60


def prompts(counts: dict[str, int]) -> Iterator[dict[str, Any]]:
    """The input, produced lazily: records how far ahead of the finished items it was read."""
    for number in range(ITEMS):
        counts["read"] += 1
        ahead = counts["read"] - counts["done"]
        counts["most_ahead"] = max(counts["most_ahead"], ahead)
        messages = [{"role": "user", "content": f"Summarize document {number}."}]
        if number in (17, 42):
            messages = []  # an invalid request: the server answers 400
        yield {"model": "fake-llm", "messages": messages, "max_tokens": 50}


async def main() -> None:
    server = FakeLLMServer(rpm=RPM, tpm=TPM, latency=(0.02, 0.1))
    throttle = tt.Throttle(
        requests=tt.TokenBucket(RPM, per=60.0, burst=10),
        tokens=tt.TokenBucket(TPM, per=60.0, burst=5_000),
    )
    counts = {"read": 0, "done": 0, "most_ahead": 0}

    async with anyio.create_task_group() as server_group:
        address = await server_group.start(serve, server)
        async with httpx2.AsyncClient(base_url=address.base_url) as client:

            async def call(body: dict[str, Any]) -> dict[str, Any]:
                response = await client.post("/chat/completions", json=body)
                response.raise_for_status()  # a 400 becomes a failed ItemResult
                result: dict[str, Any] = response.json()
                return result

            def costs(body: dict[str, Any]) -> Mapping[str, float]:
                return {"requests": 1, "tokens": tt.estimate_request_cost(body)["tokens"]}

            def usage(result: dict[str, Any]) -> Mapping[str, float]:
                return {"tokens": result["usage"]["total_tokens"]}

            def on_progress(progress: tt.BatchProgress) -> None:
                counts["done"] = progress.done
                if progress.done % 20 == 0:
                    print(
                        f"  {progress.done} done, {progress.failed} failed, "
                        f"{progress.in_flight} in flight"
                    )

            results = await tt.run_batch(
                call,
                prompts(counts),
                max_concurrent=8,
                throttle=throttle,
                costs=costs,
                usage=usage,
                on_progress=on_progress,
            )
        server_group.cancel_scope.cancel()

    failed = [result for result in results if not result.ok]
    in_order = [result.index for result in results] == list(range(ITEMS))
    print(f"{len(results)} results for {ITEMS} items, in input order: {in_order}")
    print(f"failed: items {[result.index for result in failed]} ({type(failed[0].error).__name__})")
    print(f"items read but not finished: at most {counts['most_ahead']} (max_concurrent=8)")
    tokens = throttle.statistics().limits["tokens"]
    print(f"tokens: {tokens.admitted_cost:.0f} reserved, {tokens.refunded:.0f} refunded by settle")


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
