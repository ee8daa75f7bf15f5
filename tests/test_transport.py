"""The httpx and httpx2 transports against scripted servers (MockTransport), on both
backends, on virtual time: usage settled at close, 429s pause the key and are retried with
their ticket, the last 429 is returned unread, streams keep their slot, queue time counts
against the request's pool timeout, and the official OpenAI SDK works through it."""

from __future__ import annotations

import gzip
import json
import logging
import math
import random
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


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])  # the real clock: loopback
@pytest.mark.parametrize("users_trace", [False, True], ids=["no-trace", "users-trace"])
async def test_over_loopback_each_attempt_says_when_it_is_on_the_wire(
    lib: tuple[ModuleType, Any], users_trace: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpcore's ``trace`` extension tells the throttle when each attempt's body is written
    (``Reservation.sent``, after the connection is set up), chained before the user's own
    trace, which sees every event as before and is back in the request afterwards."""
    module, transport_class = lib
    server = FakeLLMServer(latency=0.0)
    rejected: list[int] = []

    async def first_rejected(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or rejected:
            return await server(scope, receive, send)
        rejected.append(429)
        while (await receive()).get("more_body"):
            pass
        headers = [(b"retry-after-ms", b"1"), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"error": {}}'})
        return None

    throttle = Throttle(tokens=TokenBucket(1, burst=100_000))
    said: list[str] = []
    original = tt.Reservation.sent

    def spy(self: tt.Reservation) -> None:
        said.append(f"sent {self.ticket}")
        original(self)

    monkeypatch.setattr(tt.Reservation, "sent", spy)

    async def trace(name: str, info: Any) -> None:
        said.append(name)

    extensions = {"trace": trace} if users_trace else {}
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, first_rejected)
        transport = transport_class(module.AsyncHTTPTransport(), throttle=throttle)
        async with module.AsyncClient(transport=transport, base_url=address.base_url) as client:
            request = client.build_request(
                "POST", "/chat/completions", json=BODY, extensions=extensions
            )
            response = await client.send(request)
            assert response.status_code == 200
        tg.cancel_scope.cancel()
    assert request.extensions.get("trace") is (trace if users_trace else None)
    ticket = [line for line in said if line.startswith("sent")]
    assert len(ticket) == 2  # the 429's attempt and its retry, with one ticket
    assert ticket[0] == ticket[1]
    if users_trace:
        for attempt in range(2):  # the user's trace saw each attempt's events, ours first
            at = [i for i, line in enumerate(said) if line.endswith("send_request_body.complete")]
            assert said[at[attempt] - 1] == ticket[attempt]
        assert said[0] == "connection.connect_tcp.started"
        assert any(line.endswith("response_closed.complete") for line in said)
    assert rejected == [429]
    assert server.stats.completed == 1


# Estimates that learn (issue #12, item 2): the prompt estimate is scaled by the ratio of the
# tokens the provider counted to the raw estimate, learned per model (TokenRatioLearner).

LONG_BODY = {
    "model": "gpt-test",
    "messages": [{"role": "user", "content": "x" * 400}],
    "max_tokens": 100,
}
LONG_INPUT = 100 + 4  # 400 chars / 4 + 4 per message: above the learner's min_tokens


def counting(module: ModuleType, prompt_tokens: Any) -> Callable[[Any], Any]:
    """A handler whose usage reports ``prompt_tokens`` (any JSON value) for every request."""
    usage = json.dumps({"prompt_tokens": prompt_tokens, "completion_tokens": 10})
    body = json.dumps({**COMPLETION, "usage": "USAGE"}).replace('"USAGE"', usage).encode()

    def handler(request: Any) -> Any:
        return module.Response(200, content=body, headers={"content-type": "application/json"})

    return handler


async def test_the_prompt_estimate_learns_what_the_provider_counts(
    lib: tuple[ModuleType, Any],
) -> None:
    """The provider counts 1.5x the estimate: the second reservation covers it."""
    module = lib[0]
    throttle = llm_throttle()
    handler = counting(module, 156)
    async with client_for(lib, handler, throttle=throttle) as client:
        learner = client._transport.token_ratios
        assert isinstance(learner, tt.TokenRatioLearner)
        await client.post("/chat/completions", json=LONG_BODY)
        assert throttle.statistics().limits["tokens"].admitted_cost == LONG_INPUT + 100
        await client.post("/chat/completions", json=LONG_BODY)
        assert throttle.statistics().limits["tokens"].admitted_cost == (LONG_INPUT + 100) + (
            156 + 100
        )
    # A read outside the event loop's work, that changes nothing.
    assert learner.ratio("gpt-test") == 1.5
    assert learner.statistics() == tt.TokenRatioStatistics(
        ratios={"gpt-test": 1.5}, observed=2, ignored=0
    )


async def test_a_retry_reserves_with_what_was_learned_since_its_first_attempt(
    lib: tuple[ModuleType, Any],
) -> None:
    """While the first attempt is out (it meets a 429), another response teaches the ratio
    1.5: the retry queues with the corrected estimate, not the stale one."""
    module = lib[0]
    throttle = llm_throttle()
    learner = tt.TokenRatioLearner()
    calls = 0

    def handler(request: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            learner.observe("gpt-test", estimated=LONG_INPUT, counted=156)  # meanwhile
            return module.Response(429, headers={"retry-after": "1"})
        return counting(module, 156)(request)

    async with client_for(lib, handler, throttle=throttle, learn_estimates=learner) as client:
        await client.post("/chat/completions", json=LONG_BODY)
    tokens = throttle.statistics().limits["tokens"]
    assert tokens.admitted_cost == (LONG_INPUT + 100) + (156 + 100)
    assert calls == 2


async def test_learning_can_be_turned_off_or_shared(lib: tuple[ModuleType, Any]) -> None:
    module = lib[0]
    throttle = llm_throttle()
    handler = counting(module, 156)
    async with client_for(lib, handler, throttle=throttle, learn_estimates=False) as client:
        assert client._transport.token_ratios is None
        for _ in range(2):
            await client.post("/chat/completions", json=LONG_BODY)
    assert throttle.statistics().limits["tokens"].admitted_cost == 2 * (LONG_INPUT + 100)

    shared = tt.TokenRatioLearner()
    async with client_for(lib, handler, throttle=llm_throttle(), learn_estimates=shared) as one:
        await one.post("/chat/completions", json=LONG_BODY)
    throttle = llm_throttle()
    async with client_for(lib, handler, throttle=throttle, learn_estimates=shared) as other:
        assert other._transport.token_ratios is shared
        await other.post("/chat/completions", json=LONG_BODY)  # learned by the first one
    assert throttle.statistics().limits["tokens"].admitted_cost == 156 + 100


async def test_a_tokenizer_hook_counts_the_prompt_and_the_ratio_still_guards_it(
    lib: tuple[ModuleType, Any],
) -> None:
    """count_tokens replaces 4 characters per token; a wrong tokenizer is still corrected."""
    module = lib[0]
    throttle = llm_throttle()
    words = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "ab " * 30}],
        "max_tokens": 10,
    }
    handler = counting(module, 2 * (30 + 4))  # the provider counts twice the hook's count
    options = {"throttle": throttle, "count_tokens": lambda text: len(text.split())}
    async with client_for(lib, handler, **options) as client:
        for _ in range(2):
            await client.post("/chat/completions", json=words)
    assert throttle.statistics().limits["tokens"].admitted_cost == (30 + 4 + 10) + (68 + 10)


async def test_a_failing_tokenizer_falls_back_to_characters_with_one_warning(
    lib: tuple[ModuleType, Any], caplog: pytest.LogCaptureFixture
) -> None:
    module = lib[0]
    throttle = llm_throttle()
    answers: list[Any] = [ValueError("special token <|endoftext|>"), math.nan, "12", -1, True]

    def tokenizer(text: str) -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    handler = counting(module, 14)
    with caplog.at_level(logging.DEBUG, logger="throttle_trio"):
        async with client_for(lib, handler, throttle=throttle, count_tokens=tokenizer) as client:
            for _ in range(5):
                response = await client.post("/chat/completions", json=BODY)
                assert response.status_code == 200
    assert throttle.statistics().limits["tokens"].admitted_cost == 5 * ESTIMATE
    fallbacks = [r for r in caplog.records if r.getMessage().startswith("count_tokens ")]
    assert [r.levelno for r in fallbacks] == [logging.WARNING] + [logging.DEBUG] * 4
    assert fallbacks[0].getMessage() == (
        "count_tokens raised ValueError('special token <|endoftext|>') for a text of 40 "
        "characters: counted at 4 characters per token instead (further failures are logged "
        "at debug level)"
    )
    assert fallbacks[1].getMessage().startswith("count_tokens returned nan for a text")
    assert fallbacks[2].getMessage().startswith("count_tokens returned str '12' for a text")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"count_tokens": len, "estimate": tt.estimate_request_cost},
            "pass count_tokens= or estimate=, not both (an estimate of your own counts tokens "
            "its own way)",
        ),
        ({"count_tokens": 4}, "count_tokens must be callable (str -> int), got int 4"),
        (
            {"learn_estimates": "yes"},
            "learn_estimates must be a bool or a TokenRatioLearner, got str 'yes'",
        ),
        (
            {"learn_estimates": None},
            "learn_estimates must be a bool or a TokenRatioLearner, got NoneType None",
        ),
    ],
)
def test_bad_learning_options_name_the_parameter(
    lib: tuple[ModuleType, Any], options: dict[str, Any], message: str
) -> None:
    module, transport_class = lib
    with pytest.raises(TypeError) as caught:
        transport_class(module.MockTransport(lambda r: None), throttle=llm_throttle(), **options)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "prompt_tokens", [math.nan, math.inf, -156, "156", True, None, 156.0, [156], {"n": 1}]
)
async def test_hostile_usage_never_raises_nor_teaches(
    lib: tuple[ModuleType, Any], prompt_tokens: Any
) -> None:
    module = lib[0]
    async with client_for(lib, counting(module, prompt_tokens), throttle=llm_throttle()) as client:
        for _ in range(2):
            assert (await client.post("/chat/completions", json=LONG_BODY)).status_code == 200
        learner = client._transport.token_ratios
    assert learner.statistics() == tt.TokenRatioStatistics()


async def test_usage_wildly_off_moves_the_ratio_one_step(
    lib: tuple[ModuleType, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """10**12 prompt tokens: clamped to MAX_REPORTED_TOKENS by the reader, then one bounded
    step of x4 in the learner, said at debug level; the next reservation is 4x, not 10**10x."""
    module = lib[0]
    throttle = llm_throttle(max_concurrent=1)
    handler = counting(module, 10**12)
    with caplog.at_level(logging.DEBUG, logger="throttle_trio"):
        async with client_for(lib, handler, throttle=throttle) as client:
            await client.post("/chat/completions", json=LONG_BODY)
            learner = client._transport.token_ratios
            assert learner.ratio("gpt-test") == 4.0
    assert learner.statistics().bounded == 1
    assert any("a bounded step" in record.getMessage() for record in caplog.records)


async def test_a_response_without_usage_keeps_its_estimate_and_is_logged_once(
    lib: tuple[ModuleType, Any], caplog: pytest.LogCaptureFixture
) -> None:
    module = lib[0]
    throttle = llm_throttle()

    def handler(request: Any) -> Any:
        return module.Response(200, json={k: v for k, v in COMPLETION.items() if k != "usage"})

    with caplog.at_level(logging.DEBUG, logger="throttle_trio"):
        async with client_for(lib, handler, throttle=throttle) as client:
            for _ in range(3):
                await client.post("/chat/completions", json=LONG_BODY)
            learner = client._transport.token_ratios
    stats = throttle.statistics().limits["tokens"]
    assert (stats.admitted_cost, stats.refunded) == (3 * (LONG_INPUT + 100), 0)
    assert learner.statistics() == tt.TokenRatioStatistics()
    notes = [r for r in caplog.records if "usage could not be read" in r.getMessage()]
    assert [r.levelno for r in notes] == [logging.INFO, logging.DEBUG, logging.DEBUG]


def chars_per_six(text: str) -> int:
    """A client tokenizer that counts 2/3 of what the fake provider counts (4 chars a token)."""
    return math.ceil(len(text) / 6)


async def test_against_the_fake_provider_reservations_cover_its_count_after_one_response(
    lib: tuple[ModuleType, Any],
) -> None:
    """The fake provider counts 4 characters a token, the client's tokenizer 6: from the
    second request on, each reservation is what the provider charges (prompt + max_tokens),
    never less.  Without learning, every one of them is under-reserved."""
    module, transport_class = lib
    rng = random.Random(7)
    lengths = [12 * rng.randint(20, 160) for _ in range(12)]  # multiples of 12: exact ratios
    for learn in (True, False):
        server = FakeLLMServer(completion_tokens=0.5)
        throttle = llm_throttle()
        transport = transport_class(
            module.ASGITransport(app=server),
            throttle=throttle,
            count_tokens=chars_per_six,
            learn_estimates=learn,
        )
        reserved = []
        async with module.AsyncClient(transport=transport, base_url="http://fake/v1") as client:
            for length in lengths:
                before = throttle.statistics().limits["tokens"].admitted_cost
                body = {"model": "fake-llm", "prompt": "y" * length, "max_tokens": 50}
                assert (await client.post("/completions", json=body)).status_code == 200
                reserved.append(throttle.statistics().limits["tokens"].admitted_cost - before)
        charged = [admission.tokens for admission in server.stats.admissions]
        assert charged == [length // 4 + 50 for length in lengths]
        assert reserved[0] < charged[0]
        if learn:
            assert reserved[1:] == charged[1:]
            assert transport.token_ratios.ratio("fake-llm") == 1.5
        else:
            assert all(r < c for r, c in zip(reserved, charged, strict=True))


async def token_bound_run(
    lib: tuple[ModuleType, Any], learn: bool | tt.TokenRatioLearner, seed: int
) -> int:
    """60 chat requests (200-2,000 characters, max_tokens 50-300) from 8 workers against
    the fake provider in OpenAI mode (1,000 tokens in any second, the estimate charged up
    front), through a throttle that matches it, with a client tokenizer counting 2/3 of the
    provider's.  Returns the 429s the provider sent."""
    module, transport_class = lib
    server = FakeLLMServer(
        rpm=10_000, tpm=60_000, mode="openai", latency=(0.5, 2.0), completion_tokens=(0.25, 1.0)
    )
    throttle = Throttle(
        tokens=tt.SlidingWindow(1000, 1.0),
        tokens_per_minute=TokenBucket(60_000, per=60.0),
        max_concurrent=8,
        refund_unused=False,
    )
    transport = transport_class(
        module.ASGITransport(app=server),
        throttle=throttle,
        count_tokens=chars_per_six,
        learn_estimates=learn,
    )
    rng = random.Random(seed)
    bodies = [
        {
            "model": "fake-llm",
            "max_tokens": rng.randint(50, 300),
            "messages": [{"role": "user", "content": "z" * rng.randint(200, 2000)}],
        }
        for _ in range(60)
    ]

    async def worker(client: Any, mine: list[dict[str, Any]]) -> None:
        for body in mine:
            assert (await client.post("/chat/completions", json=body)).status_code == 200

    async with module.AsyncClient(
        transport=transport, base_url="http://fake/v1", timeout=None
    ) as client:
        async with anyio.create_task_group() as tg:
            for index in range(8):
                tg.start_soon(worker, client, bodies[index::8])
    assert server.stats.admitted == 60
    return server.stats.rate_limited


async def test_learning_removes_most_429s_of_a_token_bound_run(
    lib: tuple[ModuleType, Any],
) -> None:
    """Three runs (seeds 0-2), counted together: trio runs the tasks of one scheduler pass in
    random order, so one run's count moves (seed 0 without learning: 23 on asyncio every time,
    8 to 21 on trio); at least 10 a run on average without learning, a third of that with it
    (the requests queued before the first response), none with a prior of 1.5 (seed 0)."""
    without = learned = 0
    for seed in range(3):
        without += await token_bound_run(lib, False, seed=seed)
        learned += await token_bound_run(lib, True, seed=seed)
    prior = await token_bound_run(lib, tt.TokenRatioLearner(initial_ratio=1.5), seed=0)
    assert without >= 3 * 10
    assert learned <= without // 3
    assert prior == 0


async def test_a_tokenizer_swap_mid_run_is_relearned(lib: tuple[ModuleType, Any]) -> None:
    """The provider counts 1.5x, then 0.75x (a new tokenizer behind the same model name): the
    ratio holds 1.5 for the window (16 responses), then comes down to 0.75 by halves."""
    module = lib[0]
    counts = [156] * 4 + [78] * 18

    def handler(request: Any) -> Any:
        usage = {"prompt_tokens": counts.pop(0), "completion_tokens": 10}
        return module.Response(200, json={**COMPLETION, "usage": usage})

    ratios = []
    async with client_for(lib, handler, throttle=llm_throttle()) as client:
        learner = client._transport.token_ratios
        for _ in range(22):
            await client.post("/chat/completions", json=LONG_BODY)
            ratios.append(learner.ratio("gpt-test"))
    assert ratios[:19] == [1.5] * 19  # 4 at 1.5, then 15 lower ones: 1.5 is still in the window
    assert ratios[19:] == [0.75] * 3  # the 16th lower one pushes it out; 1.5 / 2 = 0.75


async def test_anthropic_usage_teaches_its_model(lib: tuple[ModuleType, Any]) -> None:
    """Anthropic's input_tokens plus cache writes (what its ITPM counts) against the estimate
    of the system prompt and messages (cache reads do not count)."""
    module = lib[0]
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 100,
            "cache_creation_input_tokens": 30,
            "cache_read_input_tokens": 500,
            "output_tokens": 5,
        },
    }

    def handler(request: Any) -> Any:
        return module.Response(200, json=message)

    body = {
        "model": "claude-test",
        "system": "s" * 200,  # 50 tokens
        "messages": [{"role": "user", "content": "u" * 176}],  # 44 + 4
        "max_tokens": 64,
    }
    async with client_for(lib, handler, throttle=llm_throttle()) as client:
        await client.post("/v1/messages", json=body)
        learner = client._transport.token_ratios
    assert learner.statistics().ratios == {"claude-test": 130 / 98}


async def test_an_estimate_of_your_own_gets_the_body_bytes_and_is_corrected(
    lib: tuple[ModuleType, Any],
) -> None:
    """With learning on, the library's estimate gets the body parsed once; yours still gets
    the bytes, and its ``input_tokens`` are scaled like the library's."""
    module = lib[0]
    seen: list[object] = []

    def estimate(body: Any) -> dict[str, float]:
        seen.append(type(body))
        return {"requests": 1, "input_tokens": 100, "tokens": 200}

    throttle = llm_throttle()
    async with client_for(lib, counting(module, 150), throttle=throttle, estimate=estimate) as c:
        for _ in range(2):
            await c.post("/chat/completions", json=LONG_BODY)
    assert seen == [bytes, bytes]
    assert throttle.statistics().limits["tokens"].admitted_cost == 200 + 250


async def test_a_batch_transport_goes_behind_interactive_requests(
    lib: tuple[ModuleType, Any],
) -> None:
    """Two clients on one throttle: the batch one (``lane="batch"``) queues its backlog behind
    the interactive one's request."""
    module, transport_class = lib
    throttle = tt.Throttle(requests=tt.TokenBucket(1, burst=1))
    order: list[str] = []

    def handler(request: Any) -> Any:
        order.append(request.headers["x-who"])
        return module.Response(200, json=COMPLETION)

    batch = module.AsyncClient(
        transport=transport_class(module.MockTransport(handler), throttle=throttle, lane="batch"),
        base_url="https://api.test/v1",
    )
    chat = client_for(lib, handler, throttle=throttle)
    async with batch, chat, anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(partial(batch.post, "/x", json=BODY, headers={"x-who": f"batch-{i}"}))
        await anyio.sleep(0.5)
        tg.start_soon(partial(chat.post, "/x", json=BODY, headers={"x-who": "chat"}))
    # The batch's requests reach the transport in whatever order their tasks build them; the
    # first one goes at once, the chat request goes before the other two.
    assert order[1] == "chat"
    assert sorted(order) == ["batch-0", "batch-1", "batch-2", "chat"]
    with pytest.raises(ValueError, match="lane must be 'interactive' or 'batch', got 'bulk'"):
        transport_class(module.MockTransport(handler), throttle=throttle, lane="bulk")
