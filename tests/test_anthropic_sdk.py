"""The official ``anthropic`` SDK through ``throttle_trio.httpx2.ThrottledTransport``, for real.

The SDK (2.x, built on httpx2) talks to the fake provider's Anthropic-compatible
``POST /v1/messages``: in-process through ``httpx2.ASGITransport`` on virtual time (both
backends, from the conftest), and over loopback on the real clock where a stream must really
arrive in pieces (``ASGITransport`` buffers whole bodies).  The server keeps its own accounting
(it shares no code with the library), so it referees: 429s counted by the server, usage sent
by the server, limits announced in its ``anthropic-ratelimit-*`` headers.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anthropic
import anyio
import httpx2
import pytest

import throttle_trio as tt
from throttle_trio.httpx2 import ThrottledTransport
from throttle_trio.testing import FakeLLMServer, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

MODEL = "claude-fake"
PROMPT = "x" * 40  # 10 tokens to the server; 10 + 4 (per message) to the client's estimate
SYSTEM = "be brief"  # 2 tokens to both
# The client's estimate of one request with PROMPT, SYSTEM and max_tokens=100.
INPUT_ESTIMATE = 10 + 4 + 2
ESTIMATE = INPUT_ESTIMATE + 100


@asynccontextmanager
async def sdk(
    throttle: tt.Throttle,
    *,
    app: Any = None,
    base_url: str = "http://fake",
    retry: tt.RetryPolicy | None = None,
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """An SDK client whose requests go through ``throttle`` (in-process to ``app``, if given)."""
    inner = httpx2.ASGITransport(app=app) if app is not None else httpx2.AsyncHTTPTransport()
    transport = ThrottledTransport(inner, throttle=throttle, retry=retry)
    async with httpx2.AsyncClient(transport=transport) as http:
        yield anthropic.AsyncAnthropic(
            base_url=base_url, api_key="test", http_client=http, max_retries=0
        )


async def create(
    client: anthropic.AsyncAnthropic, max_tokens: int = 100
) -> anthropic.types.Message:
    return await client.messages.create(
        model=MODEL,
        max_tokens=max_tokens,
        system=SYSTEM,
        messages=[{"role": "user", "content": PROMPT}],
    )


def net_charged(throttle: tt.Throttle, name: str) -> float:
    """What ``name`` was charged after settling: admissions, minus refunds (also those that
    did not fit below a full bucket's capacity), plus overdrafts."""
    stats = throttle.statistics().limits[name]
    return stats.admitted_cost - stats.refunded - stats.dropped + stats.overdraft


async def test_messages_create_settles_to_the_usage_in_the_response() -> None:
    server = FakeLLMServer(completion_tokens=37)
    throttle = tt.Throttle(
        tokens=tt.TokenBucket(100_000, per=60.0),
        input_tokens=tt.TokenBucket(50_000, per=60.0),
        output_tokens=tt.TokenBucket(20_000, per=60.0),
    )
    async with sdk(throttle, app=server) as client:
        message = await create(client)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 37)
    assert message.stop_reason == "end_turn"
    stats = throttle.statistics()
    assert (stats.admitted, stats.in_flight, stats.rejections) == (1, 0, 0)
    assert stats.limits["tokens"].admitted_cost == ESTIMATE
    # Reserved the estimate, settled to what the server said it used.
    assert net_charged(throttle, "tokens") == 12 + 37
    assert net_charged(throttle, "input_tokens") == 12
    assert net_charged(throttle, "output_tokens") == 37


async def test_the_anthropic_rate_limit_headers_teach_the_throttle_its_limits() -> None:
    server = FakeLLMServer(rpm=50, tpm=90_000, itpm=40_000, otpm=8_000, completion_tokens=10)
    throttle = tt.Throttle(learn_limits=True, max_concurrent=4)
    async with sdk(throttle, app=server) as client:
        raw = await client.messages.with_raw_response.create(
            model=MODEL, max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
        )
        await create(client)
    headers = raw.headers
    assert headers["anthropic-ratelimit-requests-limit"] == "50"
    assert headers["anthropic-ratelimit-requests-remaining"] == "49"
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "40000"
    assert headers["anthropic-ratelimit-output-tokens-remaining"] == str(8_000 - 100)
    assert headers["anthropic-ratelimit-tokens-reset"].endswith("Z")  # RFC 3339, UTC
    assert not any(name.startswith("x-ratelimit-") for name in headers)
    limits = throttle.statistics().limits
    learned = {name: (stats.capacity, stats.learned) for name, stats in limits.items()}
    assert learned == {
        "requests": (50, True),
        "tokens": (90_000, True),
        "input_tokens": (40_000, True),
        "output_tokens": (8_000, True),
    }


async def test_remaining_below_the_configured_limit_lowers_what_is_available() -> None:
    """Another client spent the key: the server's ``remaining`` is the truth."""
    server = FakeLLMServer(rpm=10, completion_tokens=10)
    async with sdk(tt.Throttle(max_concurrent=1), app=server) as other:
        for _ in range(6):
            await create(other)
    throttle = tt.Throttle(requests=tt.TokenBucket(600, per=60.0))
    async with sdk(throttle, app=server) as client:
        await create(client)  # a cut needs two reports that agree
        await create(client)
    # 10 - 8 left at the server; the configured 600 would allow 598 more.
    assert throttle.statistics().limits["requests"].available < 2 + 1
    assert throttle.statistics().limits["requests"].capacity == 600  # never changed


async def test_a_429_on_the_last_attempt_makes_the_sdk_raise_rate_limit_error() -> None:
    server = FakeLLMServer(rpm=1)
    throttle = tt.Throttle(max_concurrent=2)
    async with sdk(throttle, app=server, retry=tt.RetryPolicy(max_attempts=1)) as client:
        await create(client)
        with pytest.raises(anthropic.RateLimitError) as caught:
            await create(client)
    error = caught.value
    assert error.status_code == 429
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "rate_limit_error"
    assert error.response.headers["retry-after"] == "60"
    assert "retry-after-ms" not in error.response.headers  # Anthropic sends seconds only
    stats = throttle.statistics()
    assert (stats.rejections, stats.in_flight) == (1, 0)
    assert (server.stats.admitted, server.stats.rate_limited) == (1, 1)


async def test_a_429_is_retried_after_the_anthropic_retry_after() -> None:
    server = FakeLLMServer(rpm=2, completion_tokens=5)
    throttle = tt.Throttle(max_concurrent=1)
    async with sdk(throttle, app=server, retry=tt.RetryPolicy(max_attempts=2)) as client:
        for _ in range(3):
            await create(client)
    stats = throttle.statistics()
    assert (stats.admitted, stats.rejections, stats.pauses) == (4, 1, 1)
    assert (server.stats.admitted, server.stats.rate_limited) == (3, 1)
    # The whole key paused for the 30 s of retry-after (one request refills in 60 s / 2).
    assert anyio.current_time() == 30


async def test_a_small_batch_at_the_configured_limits_gets_no_429() -> None:
    """40 requests at once, through limits equal to the server's.  The output tokens bind
    (each reserves its max_tokens, 100, of 1,500 a minute): with a looser output limit the
    server answers 429s."""
    server = FakeLLMServer(rpm=30, itpm=2_000, otpm=1_500, completion_tokens=(0.2, 1.0), seed=7)
    throttle = tt.Throttle(
        requests=tt.TokenBucket(30, per=60.0),
        input_tokens=tt.TokenBucket(2_000, per=60.0),
        output_tokens=tt.TokenBucket(1_500, per=60.0),
        max_concurrent=8,
    )
    usages: list[int] = []
    async with sdk(throttle, app=server) as client:

        async def one() -> None:
            message = await create(client)
            usages.append(message.usage.output_tokens)

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(one)
    assert len(usages) == 40
    assert (server.stats.admitted, server.stats.rate_limited) == (40, 0)
    assert throttle.statistics().rejections == 0


# -- over loopback, on the real clock --------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])  # the real clock: loopback
async def test_a_stream_keeps_its_slot_until_closed_and_settles_from_message_delta() -> None:
    server = FakeLLMServer(completion_tokens=24, stream_chunk_tokens=4, stream_interval=0.02)
    throttle = tt.Throttle(tokens=tt.TokenBucket(100_000, per=60.0), max_concurrent=1)
    events: list[str] = []
    waiting_while_streaming: list[int] = []
    second_done = anyio.Event()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            address = await tg.start(serve, server)
            async with sdk(throttle, base_url=address.url) as client:

                async def second() -> None:
                    await create(client, max_tokens=10)
                    second_done.set()

                stream = await client.messages.create(
                    model=MODEL,
                    max_tokens=100,
                    system=SYSTEM,
                    messages=[{"role": "user", "content": PROMPT}],
                    stream=True,
                )
                async with stream:
                    assert throttle.statistics().in_flight == 1  # headers in, body to come
                    tg.start_soon(second)
                    async for event in stream:
                        events.append(event.type)
                        stats = throttle.statistics()
                        assert stats.in_flight == 1
                        waiting_while_streaming.append(stats.tasks_waiting)
                        if event.type == "message_delta":
                            assert event.usage.output_tokens == 24
                    # The SDK closes the response when it has read the last event.
                    assert throttle.statistics().in_flight <= 1
                await second_done.wait()
            tg.cancel_scope.cancel()
    assert events[0] == "message_start"
    assert events[-2:] == ["message_delta", "message_stop"]
    assert events.count("content_block_delta") == 6
    assert max(waiting_while_streaming) == 1  # the second request queued behind the stream
    stats = throttle.statistics()
    assert (stats.admitted, stats.in_flight, stats.tasks_waiting) == (2, 0, 0)
    # message_start said 12 input tokens, message_delta 24 output tokens; the second request
    # (12 in, 10 out: completion_tokens is capped at its max_tokens) settled from its JSON.
    assert net_charged(throttle, "tokens") == (12 + 24) + (12 + 10)
    assert (server.stats.completed, server.stats.rate_limited) == (2, 0)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])  # the real clock: loopback
async def test_a_stream_closed_before_message_delta_is_charged_the_estimate() -> None:
    """Closed as soon as the headers are in.  (Read through httpx2 without iterating: httpx2's
    and the SDK's body iterators, abandoned half-way, are left to the garbage collector, which
    trio reports as ResourceWarnings.)"""
    server = FakeLLMServer(completion_tokens=40, stream_chunk_tokens=4, stream_interval=0.02)
    throttle = tt.Throttle(tokens=tt.TokenBucket(100_000, per=60.0), max_concurrent=1)
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
    }
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            address = await tg.start(serve, server)
            transport = ThrottledTransport(httpx2.AsyncHTTPTransport(), throttle=throttle)
            async with httpx2.AsyncClient(transport=transport, base_url=address.url) as http:
                async with http.stream("POST", "/v1/messages", json=body) as response:
                    assert response.headers["content-type"].startswith("text/event-stream")
                    assert throttle.statistics().in_flight == 1
                assert throttle.statistics().in_flight == 0
            tg.cancel_scope.cancel()
    assert net_charged(throttle, "tokens") == ESTIMATE  # message_delta never came
