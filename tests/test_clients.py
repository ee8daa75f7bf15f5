"""tt.openai_client and tt.anthropic_client: the official SDKs' async clients, throttled.

Against the fake provider: in process through httpx2's ASGI transport on virtual time (both
backends, from the conftest), and over loopback on the real clock.  The server keeps its own
books, so it counts the attempts: with the SDK's retries off, every retry it sees is the
transport's.
"""

from __future__ import annotations

import sys
from typing import Any

import anthropic
import anyio
import httpx2
import openai
import pytest

import throttle_trio as tt
from throttle_trio.testing import FakeLLMServer, serve

pytestmark = pytest.mark.anyio

MESSAGES: list[Any] = [{"role": "user", "content": "x" * 40}]


class Recording(httpx2.ASGITransport):
    """The fake provider in process, remembering whether it was closed."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


def openai_client(
    throttle: tt.Throttle, server: FakeLLMServer, **options: Any
) -> openai.AsyncOpenAI:
    return tt.openai_client(
        throttle,
        transport=Recording(app=server),
        base_url="http://fake/v1",
        api_key="test",
        **options,
    )


def anthropic_client(
    throttle: tt.Throttle, server: FakeLLMServer, **options: Any
) -> anthropic.AsyncAnthropic:
    return tt.anthropic_client(
        throttle, transport=Recording(app=server), base_url="http://fake", api_key="test", **options
    )


async def test_openai_client_sends_through_the_throttle_and_settles() -> None:
    server = FakeLLMServer(completion_tokens=7)
    throttle = tt.Throttle(requests=tt.TokenBucket(60), tokens=tt.TokenBucket(100_000))
    async with openai_client(throttle, server) as client:
        assert client.max_retries == 0
        completion = await client.chat.completions.create(
            model="gpt-fake", messages=MESSAGES, max_tokens=50
        )
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 7
    stats = throttle.statistics()
    assert (stats.admitted, stats.in_flight) == (1, 0)
    tokens = stats.limits["tokens"]
    assert tokens.admitted_cost - tokens.refunded == completion.usage.total_tokens


async def test_anthropic_client_sends_through_the_throttle_and_settles() -> None:
    server = FakeLLMServer(completion_tokens=9)
    throttle = tt.Throttle(
        input_tokens=tt.TokenBucket(50_000), output_tokens=tt.TokenBucket(20_000)
    )
    async with anthropic_client(throttle, server) as client:
        assert client.max_retries == 0
        message = await client.messages.create(
            model="claude-fake", max_tokens=50, messages=MESSAGES
        )
    assert message.usage.output_tokens == 9
    stats = throttle.statistics()
    assert (stats.admitted, stats.in_flight) == (1, 0)
    output = stats.limits["output_tokens"]
    assert output.admitted_cost - output.refunded == 9


@pytest.mark.parametrize("make", [openai_client, anthropic_client])
async def test_the_sdk_does_not_retry_the_transport_does(make: Any) -> None:
    """A 429: the transport pauses the key and retries once; the SDK adds no attempt.  When
    the transport gives up, the SDK raises its own RateLimitError at once."""
    server = FakeLLMServer(rpm=1)
    throttle = tt.Throttle(max_concurrent=4)
    retry_once = tt.RetryPolicy(max_attempts=2)
    async with make(throttle, server, retry=retry_once) as client:
        await call(client)  # the minute's one request
        await call(client)  # 429, paused for the retry-after, then admitted
        assert (server.stats.admitted, server.stats.rate_limited) == (2, 1)
        async with make(throttle, server, retry=tt.RetryPolicy(max_attempts=1)) as giving_up:
            with pytest.raises((openai.RateLimitError, anthropic.RateLimitError)):
                await call(giving_up)
    assert (server.stats.admitted, server.stats.rate_limited) == (2, 2)  # no SDK retry
    stats = throttle.statistics()
    assert (stats.rejections, stats.pauses) == (2, 2)  # a 429 not retried pauses the key too


async def call(client: openai.AsyncOpenAI | anthropic.AsyncAnthropic) -> None:
    if isinstance(client, openai.AsyncOpenAI):
        await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=5)
    else:
        await client.messages.create(model="m", max_tokens=5, messages=MESSAGES)


async def test_max_retries_may_be_given() -> None:
    server = FakeLLMServer()
    async with openai_client(tt.Throttle(max_concurrent=8), server, max_retries=3) as client:
        assert client.max_retries == 3


@pytest.mark.parametrize("make", [openai_client, anthropic_client])
async def test_closing_the_client_closes_the_transport(make: Any) -> None:
    client = make(tt.Throttle(max_concurrent=8), FakeLLMServer())
    inner = client._client._transport._transport  # the SDK's, httpx2's, then ours
    assert isinstance(inner, Recording)
    assert not inner.closed
    await client.close()
    assert inner.closed


async def test_a_registry_keeps_a_throttle_per_api_key() -> None:
    server = FakeLLMServer(completion_tokens=3)
    registry: tt.ThrottleRegistry[Any] = tt.ThrottleRegistry(
        lambda key: tt.Throttle(requests=tt.TokenBucket(60))
    )
    for api_key in ("key-a", "key-b", "key-a"):
        client = tt.openai_client(
            registry=registry,
            transport=httpx2.ASGITransport(app=server),
            base_url="http://fake/v1",
            api_key=api_key,
        )
        async with client:
            await client.chat.completions.create(model="gpt-fake", messages=MESSAGES, max_tokens=5)
    admitted = sorted(registry.get(key).statistics().admitted for key in list(registry))
    assert admitted == [1, 2]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])  # the real clock: loopback
async def test_over_loopback_both_clients_share_one_throttle() -> None:
    server = FakeLLMServer(rpm=600, completion_tokens=4)
    throttle = tt.Throttle(requests=tt.TokenBucket(600, burst=4), max_concurrent=2)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            address = await tg.start(serve, server)
            async with (
                tt.openai_client(throttle, base_url=address.base_url, api_key="k") as oai,
                tt.anthropic_client(throttle, base_url=address.url, api_key="k") as ant,
            ):
                async with anyio.create_task_group() as calls:
                    for _ in range(4):
                        calls.start_soon(call, oai)
                        calls.start_soon(call, ant)
            tg.cancel_scope.cancel()
    stats = throttle.statistics()
    assert (stats.admitted, stats.in_flight, stats.rejections) == (8, 0, 0)
    assert (server.stats.completed, server.stats.rate_limited) == (8, 0)


# -- arguments and errors ----------------------------------------------------------------------


@pytest.mark.parametrize("factory", [tt.openai_client, tt.anthropic_client])
def test_exactly_one_of_throttle_and_registry(factory: Any) -> None:
    with pytest.raises(TypeError, match=r"^pass exactly one of throttle or registry=$"):
        factory(api_key="k")
    registry: tt.ThrottleRegistry[Any] = tt.ThrottleRegistry(
        lambda key: tt.Throttle(max_concurrent=8)
    )
    with pytest.raises(TypeError, match=r"^pass exactly one of throttle or registry=$"):
        factory(tt.Throttle(max_concurrent=8), registry=registry, api_key="k")


@pytest.mark.parametrize(
    ("factory", "sdk"), [(tt.openai_client, "openai"), (tt.anthropic_client, "anthropic")]
)
def test_the_http_client_is_ours_to_make(factory: Any, sdk: str) -> None:
    with pytest.raises(TypeError, match=rf"^{sdk}_client\(\) makes the http_client: "):
        factory(tt.Throttle(max_concurrent=8), api_key="k", http_client=httpx2.AsyncClient())


@pytest.mark.parametrize(
    ("factory", "sdk"), [(tt.openai_client, "openai"), (tt.anthropic_client, "anthropic")]
)
def test_a_missing_sdk_names_the_extra(
    factory: Any, sdk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, sdk, None)  # `import openai` now raises ImportError
    with pytest.raises(ImportError) as caught:
        factory(tt.Throttle(max_concurrent=8))
    assert str(caught.value) == (
        f"throttle_trio.{sdk}_client needs the {sdk!r} extra ({sdk} is not installed): "
        f'pip install "throttle_trio[{sdk}]"'
    )


def test_the_transport_matches_the_sdks_http_library() -> None:
    """openai 3.x is built on httpx2: its client gets throttle_trio.httpx2's transport."""
    from throttle_trio.httpx2 import ThrottledTransport

    client = tt.openai_client(tt.Throttle(max_concurrent=8), api_key="k")
    assert isinstance(client._client, openai.DefaultAsyncHttpxClient)
    assert isinstance(client._client._transport, ThrottledTransport)
