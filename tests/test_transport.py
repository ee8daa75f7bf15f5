"""The httpx and httpx2 transports against scripted servers (MockTransport), on both
backends, on virtual time: usage settled at close, 429s pause the key and are retried with
their ticket, the last 429 is returned unread, streams keep their slot, queue time counts
against the request's pool timeout, and the official OpenAI SDK works through it."""

from __future__ import annotations

import gzip
import json
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import httpx2
import openai
import pytest

import throttle_trio as tt
from throttle_trio import Throttle, TokenBucket
from throttle_trio import httpx as tt_httpx
from throttle_trio import httpx2 as tt_httpx2
from throttle_trio.testing import FakeLLMServer, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from types import ModuleType

pytestmark = pytest.mark.anyio

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-test",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
}
BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 100}
ESTIMATE = 10 + 4 + 100  # prompt (40 chars / 4 + 4 per message) + max_tokens


@pytest.fixture(params=["httpx", "httpx2"])
def lib(request: pytest.FixtureRequest) -> tuple[ModuleType, Any]:
    """(the http library, its ThrottledTransport class)."""
    if request.param == "httpx":
        return httpx, tt_httpx.ThrottledTransport
    return httpx2, tt_httpx2.ThrottledTransport


def llm_throttle(**kwargs: Any) -> Throttle:
    return Throttle(
        requests=TokenBucket(64, burst=64),
        tokens=TokenBucket(1024, burst=4096),
        **kwargs,
    )


def client_for(lib: tuple[ModuleType, Any], handler: Callable[..., Any], **options: Any) -> Any:
    module, transport_class = lib
    transport = transport_class(module.MockTransport(handler), **options)
    return module.AsyncClient(transport=transport, base_url="https://api.test/v1")


async def test_usage_is_settled_when_the_body_is_closed(lib: tuple[ModuleType, Any]) -> None:
    module = lib[0]
    throttle = llm_throttle()

    def handler(request: Any) -> Any:
        return module.Response(200, json=COMPLETION)

    async with client_for(lib, handler, throttle=throttle) as client:
        response = await client.post("/chat/completions", json=BODY)
    assert response.json()["usage"]["total_tokens"] == 20
    stats = throttle.statistics()
    assert stats.in_flight == 0
    assert stats.limits["tokens"].admitted_cost == ESTIMATE
    assert stats.limits["tokens"].refunded == ESTIMATE - 20


async def test_usage_is_read_from_a_gzip_body(lib: tuple[ModuleType, Any]) -> None:
    module = lib[0]
    throttle = llm_throttle()
    payload = gzip.compress(json.dumps(COMPLETION).encode())

    def handler(request: Any) -> Any:
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        return module.Response(200, content=payload, headers=headers)

    async with client_for(lib, handler, throttle=throttle) as client:
        response = await client.post("/chat/completions", json=BODY)
    assert response.json()["id"] == "chatcmpl-1"  # the client still decodes it
    assert throttle.statistics().limits["tokens"].refunded == ESTIMATE - 20


async def test_a_429_pauses_the_key_and_is_retried(lib: tuple[ModuleType, Any]) -> None:
    module = lib[0]
    throttle = llm_throttle()
    seen: list[tuple[str, float]] = []
    answers = {"first": [429, 200], "second": [200]}

    def handler(request: Any) -> Any:
        name = json.loads(request.content)["name"]
        seen.append((name, anyio.current_time()))
        status = answers[name].pop(0)
        if status == 429:
            return module.Response(429, headers={"retry-after-ms": "500"}, json={"error": {}})
        return module.Response(200, json=COMPLETION)

    async with client_for(lib, handler, throttle=throttle) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(client.post, "/chat/completions", json={**BODY, "name": "first"}))
            await anyio.sleep(0.25)  # the second arrives during the pause
            tg.start_soon(
                partial(client.post, "/chat/completions", json={**BODY, "name": "second"})
            )
    assert seen == [("first", 0), ("first", 0.5), ("second", 0.5)]
    stats = throttle.statistics()
    assert (stats.rejections, stats.pauses, stats.in_flight) == (1, 1, 0)


async def test_the_last_429_is_returned_unread(lib: tuple[ModuleType, Any]) -> None:
    module = lib[0]
    throttle = llm_throttle()
    attempts = 0

    def handler(request: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return module.Response(429, headers={"retry-after": "1"}, json={"error": {"n": attempts}})

    retry = tt.RetryPolicy(max_attempts=3)
    async with client_for(lib, handler, throttle=throttle, retry=retry) as client:
        response = await client.post("/chat/completions", json=BODY)
    assert response.status_code == 429
    assert response.json() == {"error": {"n": 3}}
    assert attempts == 3
    assert anyio.current_time() == 2


async def test_a_streaming_request_body_is_not_retried(lib: tuple[ModuleType, Any]) -> None:
    module = lib[0]
    throttle = llm_throttle()
    attempts = 0

    def handler(request: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return module.Response(503, headers={"retry-after": "1"})

    async def body() -> AsyncIterator[bytes]:
        yield json.dumps(BODY).encode()

    async with client_for(lib, handler, throttle=throttle) as client:
        response = await client.post("/chat/completions", content=body())
    assert (response.status_code, attempts) == (503, 1)


async def test_a_stream_keeps_its_slot_until_closed(lib: tuple[ModuleType, Any]) -> None:
    module = lib[0]
    throttle = Throttle(tokens=TokenBucket(1, burst=4096), max_concurrent=1)
    chunks = [
        b'data: {"choices": [{"delta": {"content": "h"}}]}\n\n',
        b'data: {"choices": [], "usage": '
        b'{"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}\n\n',
        b"data: [DONE]\n\n",
    ]

    async def events() -> AsyncIterator[bytes]:
        for chunk in chunks:
            await anyio.sleep(1)
            yield chunk

    def handler(request: Any) -> Any:
        return module.Response(200, content=events(), headers={"content-type": "text/event-stream"})

    async with client_for(lib, handler, throttle=throttle) as client:
        async with client.stream(
            "POST", "/chat/completions", json={**BODY, "stream": True}
        ) as response:
            assert throttle.statistics().in_flight == 1
            received = []
            async for chunk in response.aiter_raw():
                received.append(chunk)
                assert throttle.statistics().in_flight == 1  # held while the body streams
        assert throttle.statistics().in_flight == 0
    assert b"".join(received) == b"".join(chunks)
    assert throttle.statistics().limits["tokens"].refunded == ESTIMATE - 12


async def test_a_stream_closed_early_is_charged_the_estimate(lib: tuple[ModuleType, Any]) -> None:
    module = lib[0]
    throttle = llm_throttle()

    async def events() -> AsyncIterator[bytes]:
        yield b'data: {"choices": []}\n\n'
        await anyio.sleep(10)
        yield b'data: {"usage": {"prompt_tokens": 1, "total_tokens": 2}}\n\n'

    def handler(request: Any) -> Any:
        return module.Response(200, content=events(), headers={"content-type": "text/event-stream"})

    async with client_for(lib, handler, throttle=throttle) as client:
        async with client.stream("POST", "/chat/completions", json=BODY):
            await anyio.sleep(1)  # closed before its end: the usage is unknown
    stats = throttle.statistics()
    assert stats.in_flight == 0
    assert stats.limits["tokens"].refunded == 0


async def test_queueing_counts_against_the_pool_timeout(lib: tuple[ModuleType, Any]) -> None:
    module = lib[0]
    throttle = Throttle(requests=TokenBucket(1, burst=1))

    def handler(request: Any) -> Any:
        return module.Response(200, json=COMPLETION)

    async with client_for(lib, handler, throttle=throttle) as client:
        await client.post("/chat/completions", json=BODY)
        with pytest.raises(tt.RateLimitTimeout) as info:
            await client.post("/chat/completions", json=BODY, timeout=module.Timeout(5, pool=0.5))
        assert not isinstance(info.value, (httpx.RequestError, httpx2.RequestError))
        assert not isinstance(info.value, (httpx.TimeoutException, httpx2.TimeoutException))
        response = await client.post(
            "/chat/completions", json=BODY, timeout=module.Timeout(5, pool=2)
        )
        assert response.status_code == 200
    assert anyio.current_time() == 1


async def test_one_throttle_per_api_key_and_model(lib: tuple[ModuleType, Any]) -> None:
    module = lib[0]
    registry: tt.ThrottleRegistry[tt.RequestKey] = tt.ThrottleRegistry(lambda key: llm_throttle())

    def handler(request: Any) -> Any:
        return module.Response(200, json=COMPLETION)

    async with client_for(lib, handler, registry=registry) as client:
        for api_key, model in [("sk-a", "m1"), ("sk-a", "m1"), ("sk-b", "m1"), ("sk-a", "m2")]:
            headers = {"authorization": f"Bearer {api_key}"}
            await client.post("/chat/completions", json={**BODY, "model": model}, headers=headers)
    assert len(registry) == 3
    assert all("sk-" not in repr(key) for key in registry)


async def test_the_openai_sdk_works_through_the_transport(lib: tuple[ModuleType, Any]) -> None:
    module = lib[0]
    throttle = llm_throttle()
    statuses = [429, 200, 200]

    def handler(request: Any) -> Any:
        status = statuses.pop(0)
        if status == 429:
            return module.Response(429, headers={"retry-after-ms": "100"}, json={"error": {}})
        return module.Response(200, json=COMPLETION)

    async with client_for(lib, handler, throttle=throttle) as http_client:
        client = openai.AsyncOpenAI(
            api_key="sk-test",
            base_url="https://api.test/v1",
            http_client=http_client,
            max_retries=0,
        )
        for _ in range(2):
            completion = await client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "x" * 40}], max_tokens=100
            )
            assert completion.usage is not None
            assert completion.usage.total_tokens == 20
    stats = throttle.statistics()
    assert (stats.admitted, stats.rejections, stats.in_flight) == (3, 1, 0)


async def test_the_sdk_raises_its_own_rate_limit_error_on_the_last_attempt(
    lib: tuple[ModuleType, Any],
) -> None:
    module = lib[0]

    def handler(request: Any) -> Any:
        return module.Response(
            429, headers={"retry-after-ms": "100"}, json={"error": {"message": "slow down"}}
        )

    retry = tt.RetryPolicy(max_attempts=2)
    async with client_for(lib, handler, throttle=llm_throttle(), retry=retry) as http_client:
        client = openai.AsyncOpenAI(
            api_key="sk-test",
            base_url="https://api.test/v1",
            http_client=http_client,
            max_retries=0,
        )
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="gpt-test", messages=[], max_tokens=10)


def test_a_transport_needs_exactly_one_source_of_throttles() -> None:
    with pytest.raises(TypeError, match=r"^pass exactly one of throttle= or registry=$"):
        tt_httpx.ThrottledTransport(httpx.MockTransport(lambda r: httpx.Response(200)))


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])  # the real clock: loopback
async def test_over_loopback_a_stream_keeps_its_slot_until_its_body_is_closed(
    lib: tuple[ModuleType, Any],
) -> None:
    """httpx's ASGITransport buffers whole bodies, so this runs against the fake provider on
    a real socket: the slot is held while chunks arrive, and released when the body closes."""
    module, transport_class = lib
    server = FakeLLMServer(latency=0.0, stream_interval=0.02, stream_chunk_tokens=2)
    throttle = Throttle(tokens=TokenBucket(1, burst=100_000), max_concurrent=1)
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 12}
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server)
        transport = transport_class(module.AsyncHTTPTransport(), throttle=throttle)
        async with module.AsyncClient(transport=transport, base_url=address.base_url) as client:
            chunks = 0
            async with client.stream("POST", "/chat/completions", json=body) as response:
                async for _ in response.aiter_lines():
                    chunks += 1
                    assert throttle.statistics().in_flight == 1
            assert throttle.statistics().in_flight == 0
        tg.cancel_scope.cancel()
    assert chunks >= 3
    stats = throttle.statistics().limits["tokens"]
    assert stats.refunded > 0  # settled to the usage of the final chunk
    assert server.stats.completed == 1
