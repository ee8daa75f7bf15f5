"""The official OpenAI SDK, throttled by ``ThrottledTransport``, on asyncio and on trio.

The SDK is built on httpx2, so the transport comes from ``throttle_trio.httpx2``.  Every request
the SDK sends goes through the throttle: its cost is estimated from the JSON body, it waits its
turn, and when its body is closed the reservation is settled to the ``usage`` in the response
(for a stream, the final chunk's usage, sent with ``stream_options={"include_usage": True}``).
``max_retries=0``: the transport does the retries (429s pause the whole key and retry with the
request's place in line); SDK retries on top would multiply the attempts.

The provider is the fake OpenAI-compatible server on 127.0.0.1 in ``"openai"`` mode: like
OpenAI it counts ``prompt + max_tokens`` up front and enforces its per-minute limits in
one-second slices (at most RPM/60 requests in any second), so the throttle uses one-second
sliding windows.  Two parts:

1. twelve concurrent completions and one stream: every one admitted, no 429;
2. a request the server refuses for good (larger than its tokens-per-minute limit): the
   transport does not retry it and returns the 429 unread, so the SDK raises its own
   ``openai.RateLimitError``.

No key, no network beyond 127.0.0.1.  Run it with ``python examples/openai_sdk.py`` (about
1.5 s per backend on the real clock).
"""

from __future__ import annotations

import anyio
import httpx2
import openai

import throttle_trio as tt
from throttle_trio.httpx2 import ThrottledTransport
from throttle_trio.testing import FakeLLMServer, serve

RPM = 600  # 10 requests in any one-second slice
TPM = 12_000  # 200 tokens in any one-second slice
WINDOW = 1.05  # one second, plus a margin for the trip to the server (its clock is not ours)


def sdk_client(base_url: str, throttle: tt.Throttle, retry: tt.RetryPolicy) -> openai.AsyncOpenAI:
    transport = ThrottledTransport(httpx2.AsyncHTTPTransport(), throttle=throttle, retry=retry)
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key="sk-fake",  # the fake server accepts anything; a real key is never logged
        http_client=httpx2.AsyncClient(transport=transport),
        max_retries=0,
    )


async def main() -> None:
    server = FakeLLMServer(rpm=RPM, tpm=TPM, mode="openai", latency=(0.02, 0.1))
    throttle = tt.Throttle(
        requests=tt.SlidingWindow(RPM // 60, window=WINDOW),
        tokens=tt.SlidingWindow(TPM // 60, window=WINDOW),
        refund_unused=False,  # OpenAI counts max_tokens up front: no refund
    )
    async with anyio.create_task_group() as server_group:
        address = await server_group.start(serve, server)
        async with sdk_client(address.base_url, throttle, tt.RetryPolicy()) as client:

            async def complete(number: int) -> None:
                await client.chat.completions.create(
                    model="fake-llm",
                    messages=[{"role": "user", "content": f"Say {number}."}],
                    max_tokens=10,
                )

            async with anyio.create_task_group() as tasks:
                for number in range(12):
                    tasks.start_soon(complete, number)

            stream = await client.chat.completions.create(
                model="fake-llm",
                messages=[{"role": "user", "content": "Count to ten."}],
                max_tokens=10,
                stream=True,
                stream_options={"include_usage": True},
            )
            # A stream keeps its concurrency slot until its body is closed.
            in_flight_while_streaming = throttle.statistics().in_flight
            async with stream:
                async for _chunk in stream:
                    pass
            in_flight_after = throttle.statistics().in_flight
        part_one = server.stats  # a snapshot: admitted, refused, ...

        # Part 2: a throttle without a tokens limit lets a 13,000-token request through.  The
        # server allows 12,000 a minute, so it answers 429 "Request too large" with
        # x-should-retry: false: the transport does not retry and hands the SDK the 429.
        lenient = tt.Throttle(requests=tt.SlidingWindow(RPM // 60, window=WINDOW))
        async with sdk_client(address.base_url, lenient, tt.RetryPolicy()) as client:
            try:
                await client.chat.completions.create(
                    model="fake-llm",
                    messages=[{"role": "user", "content": "Write a long essay."}],
                    max_tokens=13_000,
                )
            except openai.RateLimitError as error:
                refused = f"openai.RateLimitError ({error.status_code})"
            else:
                refused = "no error"
        server_group.cancel_scope.cancel()

    print(
        f"  12 completions and a stream: server admitted {part_one.admitted}, "
        f"refused {part_one.rate_limited} (429)"
    )
    print(f"  stream: {in_flight_while_streaming} in flight while open, {in_flight_after} after")
    print(f"  too large a request: {refused}")


if __name__ == "__main__":
    for backend_name in ("asyncio", "trio"):
        print(f"{backend_name}:")
        anyio.run(main, backend=backend_name)
