"""Responses that say absurd things: no pause is longer than the retry policy allows, no number
from a body is unbounded, and nothing malformed is logged twice.  Both backends, virtual time,
through the httpx transport (the engine the httpx2 transport shares) and call_with_retries."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

import throttle_trio as tt
from throttle_trio import httpx as tt_httpx
from throttle_trio._usage import MAX_REPORTED_TOKENS, UsageReader, usage_from_json

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

pytestmark = pytest.mark.anyio

URL = "http://api.test/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

# A 429 with an exhausted limit and an absurd reset, and no Retry-After: each provider's form.
ABSURD_RESETS = [
    pytest.param(
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2562047h"},
        id="openai-292-years",
    ),
    pytest.param(
        {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "23h59m59s"},
        id="openai-daily",
    ),
    pytest.param(
        {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "9999-12-31T23:59:59Z",
        },
        id="anthropic-year-9999",
    ),
]


def client(
    handler: Callable[[httpx.Request], httpx.Response],
    throttle: tt.Throttle,
    retry: tt.RetryPolicy | None = None,
) -> httpx.AsyncClient:
    transport = tt_httpx.ThrottledTransport(
        httpx.MockTransport(handler), throttle=throttle, retry=retry
    )
    return httpx.AsyncClient(transport=transport)


@pytest.mark.parametrize("headers", ABSURD_RESETS)
async def test_a_reset_header_pauses_no_longer_than_max_retry_after(
    headers: dict[str, str],
) -> None:
    """An exhausted limit's reset above the cap fails the request at once, pausing for the cap."""
    sent = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return httpx.Response(429, headers=headers)

    throttle = tt.Throttle(requests=tt.TokenBucket(60, per=60.0))
    policy = tt.RetryPolicy(max_retry_after=30.0)
    async with client(handler, throttle, policy) as http:
        started = anyio.current_time()
        with pytest.raises(tt.RetryAfterTooLong) as caught:
            await http.post(URL, json=BODY)
        assert anyio.current_time() == started  # at once, not after any wait
    assert sent == 1
    assert caught.value.max_retry_after == 30.0
    assert caught.value.delay > 30.0
    assert throttle.paused_until == started + 30.0


async def test_a_reset_within_the_cap_pauses_for_it_and_retries() -> None:
    """A reset of 2 s: the key pauses 2 s, the retry goes through."""
    replies = [
        httpx.Response(
            429, headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}
        ),
        httpx.Response(200, json={"usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
    ]
    throttle = tt.Throttle(requests=tt.TokenBucket(60, per=60.0))
    async with client(lambda request: replies.pop(0), throttle) as http:
        started = anyio.current_time()
        response = await http.post(URL, json=BODY)
        assert response.status_code == 200
        assert anyio.current_time() == started + 2.0
    assert replies == []


@pytest.mark.parametrize("headers", ABSURD_RESETS)
async def test_call_with_retries_caps_reset_pauses_too(headers: Mapping[str, str]) -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(60, per=60.0))

    async def send() -> int:
        return 429

    with pytest.raises(tt.RetryAfterTooLong):
        await tt.call_with_retries(
            throttle,
            send,
            lambda status: tt.ResponseInfo(status, headers),
            costs={"requests": 1},
            retry=tt.RetryPolicy(max_retry_after=10.0),
        )
    assert throttle.paused_until == anyio.current_time() + 10.0


async def test_a_malformed_retry_after_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """One response, parsed once: each malformed header is one warning (it was two)."""
    throttle = tt.Throttle(requests=tt.TokenBucket(600, per=60.0))
    replies = [
        httpx.Response(429, headers={"retry-after": "-1", "x-should-retry": "maybe"}),
        httpx.Response(200),
    ]
    with caplog.at_level(logging.WARNING, logger="throttle_trio"):
        async with client(lambda request: replies.pop(0), throttle) as http:
            response = await http.post(URL, json=BODY)
    assert response.status_code == 200
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "ignoring a malformed retry-after header: '-1'",
        "ignoring a malformed x-should-retry header: 'maybe'",
    ]


@pytest.mark.parametrize("total", [10**15, 10**400], ids=["1e15", "1e400"])
async def test_an_absurd_usage_in_a_body_is_clamped_and_counted(total: int) -> None:
    """1e15 tokens used to block the key for ~1,900 years; 10**400 raised OverflowError."""
    body = json.dumps(
        {"usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": total}}
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    throttle = tt.Throttle(
        requests=tt.TokenBucket(600, per=60.0), tokens=tt.TokenBucket(1_000_000, per=60.0)
    )
    async with client(handler, throttle) as http:
        response = await http.post(URL, json=BODY)
        await response.aread()
    assert response.status_code == 200
    stats = throttle.statistics()
    assert stats.clamped == 1
    tokens = stats.limits["tokens"]
    estimate = tokens.admitted_cost
    assert tokens.overdraft == MAX_REPORTED_TOKENS - estimate
    assert tokens.available == 1_000_000 - MAX_REPORTED_TOKENS


def test_usage_from_json_clamps_every_count(caplog: pytest.LogCaptureFixture) -> None:
    huge = 10**30
    seen: list[tuple[str, int]] = []
    usage = usage_from_json(
        {"usage": {"input_tokens": huge, "cache_creation_input_tokens": huge, "output_tokens": 3}},
        on_clamp=lambda field, value: seen.append((field, value)),
    )
    assert usage == {
        "input_tokens": MAX_REPORTED_TOKENS,
        "output_tokens": 3,
        "tokens": MAX_REPORTED_TOKENS + 3,
    }
    assert seen == [("input_tokens", huge), ("cache_creation_input_tokens", huge)]


def test_usage_reader_counts_clamps_in_events() -> None:
    reader = UsageReader("text/event-stream")
    reader.feed(b'data: {"usage": {"prompt_tokens": 5, "completion_tokens": 99999999999}}\n\n')
    assert reader.usage() == {
        "input_tokens": 5,
        "output_tokens": MAX_REPORTED_TOKENS,
        "tokens": 5 + MAX_REPORTED_TOKENS,
    }
    assert reader.clamped == 1
