"""The transports' parser= option, and error bodies read for the parsers (Gemini)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import httpx2
import openai
import pytest

import throttle_trio as tt
import throttle_trio.httpx
import throttle_trio.httpx2

if TYPE_CHECKING:
    from collections.abc import Mapping

pytestmark = pytest.mark.anyio

GEMINI_429 = json.dumps(
    {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota. Please retry in 2.5s.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}],
        }
    }
).encode()
COMPLETION = json.dumps(
    {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "gemini-fake",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
).encode()


class Gemini:
    """An OpenAI-compatible endpoint that answers 429s the way Gemini does (no header)."""

    def __init__(self, failures: int, *, content_length: bool = True) -> None:
        self.failures = failures
        self.content_length = content_length
        self.sent: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        self.sent.append(anyio.current_time())
        status, body = (429, GEMINI_429) if self.failures else (200, COMPLETION)
        self.failures = max(0, self.failures - 1)
        headers = [(b"content-type", b"application/json")]
        if self.content_length:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def transport(library: str, app: Gemini, **options: Any) -> Any:
    module = {"httpx": (httpx, tt.httpx), "httpx2": (httpx2, tt.httpx2)}[library]
    return module[1].ThrottledTransport(module[0].ASGITransport(app=app), **options)


@pytest.mark.parametrize("library", ["httpx", "httpx2"])
async def test_a_gemini_429_pauses_the_key_for_its_retry_delay(library: str) -> None:
    app = Gemini(failures=1)
    throttle = tt.Throttle(requests=tt.TokenBucket(60))
    client_class = {"httpx": httpx.AsyncClient, "httpx2": httpx2.AsyncClient}[library]
    async with client_class(transport=transport(library, app, throttle=throttle)) as client:
        start = anyio.current_time()
        response = await client.post("http://fake/v1/chat/completions", json={"model": "g"})
    assert response.status_code == 200
    assert [t - start for t in app.sent] == [0.0, pytest.approx(3.0, abs=1e-6)]
    assert throttle.statistics().pauses == 1


async def test_a_parser_that_reads_no_body_backs_off_instead() -> None:
    app = Gemini(failures=1)
    throttle = tt.Throttle(requests=tt.TokenBucket(60))
    retry = tt.RetryPolicy(base_delay=0.5)
    options = {"throttle": throttle, "retry": retry, "parser": tt.parse_openai}
    async with httpx2.AsyncClient(transport=transport("httpx2", app, **options)) as client:
        start = anyio.current_time()
        await client.post("http://fake/v1/chat/completions", json={"model": "g"})
    assert app.sent[1] - start <= 0.5  # a backoff, not the 3 s the body asked for


async def test_an_error_body_without_content_length_is_not_read() -> None:
    app = Gemini(failures=1, content_length=False)
    throttle = tt.Throttle(requests=tt.TokenBucket(60))
    retry = tt.RetryPolicy(base_delay=0.5)
    async with httpx2.AsyncClient(
        transport=transport("httpx2", app, throttle=throttle, retry=retry)
    ) as client:
        start = anyio.current_time()
        await client.post("http://fake/v1/chat/completions", json={"model": "g"})
    assert app.sent[1] - start <= 0.5


async def test_a_custom_parser_gets_the_headers_and_the_error_body() -> None:
    seen: list[tuple[dict[str, str], bytes | str | None]] = []

    def mine(
        headers: Mapping[str, str], body: bytes | str | None, now: float
    ) -> tt.RateLimitHeaders:
        seen.append((dict(headers), body))
        return tt.RateLimitHeaders(retry_after=1.0) if body else tt.RateLimitHeaders()

    app = Gemini(failures=1)
    options = {"throttle": tt.Throttle(max_concurrent=1), "parser": mine}
    async with httpx2.AsyncClient(transport=transport("httpx2", app, **options)) as client:
        start = anyio.current_time()
        await client.post("http://fake/v1/chat/completions", json={"model": "g"})
    assert [t - start for t in app.sent] == [0.0, pytest.approx(1.0, abs=1e-6)]
    assert [(headers["content-type"], body) for headers, body in seen] == [
        ("application/json", GEMINI_429),
        ("application/json", None),  # a success's body streams to the caller
    ]


async def test_the_sdk_still_reads_the_error_body_it_raises_with() -> None:
    app = Gemini(failures=5)
    options = {"throttle": tt.Throttle(max_concurrent=1), "retry": tt.RetryPolicy(max_attempts=1)}
    async with httpx2.AsyncClient(transport=transport("httpx2", app, **options)) as http:
        client = openai.AsyncOpenAI(
            base_url="http://fake/v1", api_key="k", http_client=http, max_retries=0
        )
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError) as caught:
                await client.chat.completions.create(
                    model="g", messages=[{"role": "user", "content": "x"}], stream=stream
                )
            assert caught.value.status_code == 429
            assert "You exceeded your current quota" in caught.value.message


async def test_the_client_factories_take_a_parser() -> None:
    app = Gemini(failures=1)
    client = tt.openai_client(
        tt.Throttle(max_concurrent=1),
        transport=httpx2.ASGITransport(app=app),
        base_url="http://fake/v1",
        api_key="k",
        parser=tt.parse_openai,  # reads no body: the retry backs off instead of waiting 3 s
        retry=tt.RetryPolicy(base_delay=0.5),
    )
    async with client:
        start = anyio.current_time()
        await client.chat.completions.create(model="g", messages=[{"role": "user", "content": "x"}])
    assert app.sent[1] - start <= 0.5
