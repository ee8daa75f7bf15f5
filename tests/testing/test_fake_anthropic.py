"""FakeLLMServer's Anthropic-compatible ``POST /v1/messages``: shapes, headers, limits, errors.

In-process through ``httpx.ASGITransport`` on virtual time (both backends, from the
conftest).  Shapes are checked against the ``anthropic`` SDK's own types (``Message``,
``RawMessageStreamEvent``, ``ErrorResponse``), headers against exact strings, and, as a
cross-check, against the library's parsers.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anthropic
import anyio
import httpx
import pydantic
import pytest

import throttle_trio as tt
from throttle_trio.testing import FakeLLMServer
from throttle_trio.testing._fake_limits import format_rfc3339

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

WALL = 1_800_000_000.25  # a fixed wall clock for the RFC 3339 resets
STREAM_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(
    anthropic.types.RawMessageStreamEvent
)


def message(content: str = "", max_tokens: int = 100, **fields: Any) -> dict[str, Any]:
    """A Messages request whose prompt is ``len(content) / 4`` tokens (rounded up)."""
    return {
        "model": "claude-fake",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}],
        **fields,
    }


@asynccontextmanager
async def client(server: FakeLLMServer, key: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"anthropic-version": "2023-06-01"}
    if key is not None:
        headers["x-api-key"] = key
    transport = httpx.ASGITransport(app=server)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://fake/v1", headers=headers
    ) as http:
        yield http


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every server-sent event."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_a_message_has_the_anthropic_shape_and_usage() -> None:
    server = FakeLLMServer(completion_tokens=30)
    async with client(server) as http:
        response = await http.post(
            "/messages", json=message("x" * 40, system=[{"type": "text", "text": "y" * 8}])
        )
    assert response.status_code == 200
    body = response.json()
    parsed = anthropic.types.Message.model_validate(body)
    assert parsed.id == "msg_fake000000000001"
    assert (parsed.type, parsed.role, parsed.model) == ("message", "assistant", "claude-fake")
    assert parsed.stop_reason == "end_turn"
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (10 + 2, 30)
    assert len(parsed.content) == 1
    assert parsed.content[0].type == "text"
    assert response.headers["request-id"] == response.headers["x-request-id"]
    assert server.stats.admissions[0].endpoint == "messages"
    assert server.stats.admissions[0].tokens == 12 + 100
    assert server.stats.admissions[0].usage == 12 + 30


async def test_a_message_at_max_tokens_stops_for_max_tokens() -> None:
    server = FakeLLMServer(completion_tokens=1.0)
    async with client(server) as http:
        body = (await http.post("/messages", json=message("hi", max_tokens=7))).json()
    assert body["stop_reason"] == "max_tokens"
    assert body["usage"]["output_tokens"] == 7


async def test_a_stream_is_anthropic_events_with_usage_in_message_start_and_delta() -> None:
    server = FakeLLMServer(completion_tokens=20, stream_chunk_tokens=8)
    async with client(server) as http:
        response = await http.post("/messages", json=message("x" * 40, stream=True))
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    events = sse(response.text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 3,  # 8 + 8 + 4 tokens
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for name, data in events:
        assert data["type"] == name
        if name != "ping":
            STREAM_EVENTS.validate_python(data)  # the SDK's own event types
    start, delta = events[0][1], events[-2][1]
    assert start["message"]["usage"]["input_tokens"] == 10
    assert start["message"]["usage"]["output_tokens"] == 1
    assert start["message"]["stop_reason"] is None
    assert delta["usage"] == {"output_tokens": 20}
    assert delta["delta"]["stop_reason"] == "end_turn"
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert len(text.split()) == 20


async def test_anthropic_rate_limit_headers_with_rfc3339_resets() -> None:
    server = FakeLLMServer(
        rpm=60, tpm=10_000, itpm=4_000, otpm=6_000, completion_tokens=10, wall_clock=lambda: WALL
    )
    async with client(server) as http:
        response = await http.post("/messages", json=message("x" * 400))
    headers = {k: v for k, v in response.headers.items() if k.startswith("anthropic-ratelimit-")}
    # Charged 1 request, 100 + 100 tokens at arrival; the headers are as of then.
    assert headers == {
        "anthropic-ratelimit-requests-limit": "60",
        "anthropic-ratelimit-requests-remaining": "59",
        "anthropic-ratelimit-requests-reset": format_rfc3339(WALL + 1),
        "anthropic-ratelimit-tokens-limit": "10000",
        "anthropic-ratelimit-tokens-remaining": "9800",
        "anthropic-ratelimit-tokens-reset": format_rfc3339(WALL + 200 / (10_000 / 60)),
        "anthropic-ratelimit-input-tokens-limit": "4000",
        "anthropic-ratelimit-input-tokens-remaining": "3900",
        "anthropic-ratelimit-input-tokens-reset": format_rfc3339(WALL + 100 / (4_000 / 60)),
        "anthropic-ratelimit-output-tokens-limit": "6000",
        "anthropic-ratelimit-output-tokens-remaining": "5900",
        "anthropic-ratelimit-output-tokens-reset": format_rfc3339(WALL + 100 / (6_000 / 60)),
    }
    assert headers["anthropic-ratelimit-requests-reset"] == "2027-01-15T08:00:02Z"
    assert not any(name.startswith("x-ratelimit-") for name in response.headers)
    report = tt.parse_rate_limit_headers(response.headers, WALL)
    assert report.limits["input_tokens"].limit == 4000
    reset = report.limits["requests"].reset_after
    assert reset is not None
    assert 1 <= reset < 2  # the time to refill one request, rounded up to a whole second


def test_rfc3339_times_are_rounded_up_to_whole_seconds() -> None:
    assert format_rfc3339(1_800_000_000.0) == "2027-01-15T08:00:00Z"
    assert format_rfc3339(1_800_000_000.001) == "2027-01-15T08:00:01Z"
    moment = datetime.fromisoformat(format_rfc3339(1_800_000_059.5).replace("Z", "+00:00"))
    assert moment == datetime(2027, 1, 15, 8, 1, 0, tzinfo=UTC)


async def test_openai_endpoints_still_send_only_openai_headers() -> None:
    server = FakeLLMServer(rpm=60, itpm=4_000)
    async with client(server) as http:
        response = await http.post(
            "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
    assert response.headers["x-ratelimit-limit-requests"] == "60"
    assert not any(name.startswith("anthropic-") for name in response.headers)
    assert "x-ratelimit-limit-input_tokens" not in response.headers


async def test_over_the_limit_a_rate_limit_error_with_retry_after_in_seconds() -> None:
    server = FakeLLMServer(rpm=2)
    async with client(server) as http:
        statuses = [
            (await http.post("/messages", json=message("hi"))).status_code for _ in range(2)
        ]
        refused = await http.post("/messages", json=message("hi"))
        assert statuses == [200, 200]
        assert refused.status_code == 429
        body = refused.json()
        error = anthropic.types.ErrorResponse.model_validate(body)
        assert error.error.type == "rate_limit_error"
        assert body["request_id"] == refused.headers["request-id"]
        assert "2 requests per minute" in body["error"]["message"]
        assert refused.headers["retry-after"] == "30"  # one request refills in 30 s
        assert "retry-after-ms" not in refused.headers
        assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
        await anyio.sleep(30)
        assert (await http.post("/messages", json=message("hi"))).status_code == 200
    assert (server.stats.admitted, server.stats.rate_limited) == (3, 1)


async def test_output_tokens_are_limited_on_max_tokens_and_settled_to_the_usage() -> None:
    server = FakeLLMServer(otpm=1_000, completion_tokens=100, latency=1.0)
    responses: list[httpx.Response] = []
    async with client(server) as http:

        async def send(delay: float) -> None:
            await anyio.sleep(delay)
            responses.append(await http.post("/messages", json=message("hi", max_tokens=600)))

        # Each charges 600 output tokens on arrival: two at once do not fit in 1,000.
        async with anyio.create_task_group() as tg:
            tg.start_soon(send, 0.0)
            tg.start_soon(send, 0.5)
        # The first settled to its usage (100) at t=1: 400 + 1,000/60 refilled + 500 refunded.
        third = await http.post("/messages", json=message("hi", max_tokens=600))
        too_large = await http.post("/messages", json=message("hi", max_tokens=1_001))
    first, second = responses[1], responses[0]  # the 429 comes back first
    assert (first.status_code, second.status_code, third.status_code) == (200, 429, 200)
    assert first.headers["anthropic-ratelimit-output-tokens-remaining"] == "400"
    assert third.headers["anthropic-ratelimit-output-tokens-remaining"] == "316"
    assert too_large.status_code == 429
    assert too_large.headers["x-should-retry"] == "false"
    assert "retry-after" not in too_large.headers
    assert "1,000 output tokens per minute" in too_large.json()["error"]["message"]


async def test_concurrent_requests_above_the_input_limit_get_429() -> None:
    server = FakeLLMServer(itpm=100, latency=1.0)
    statuses: list[int] = []
    async with client(server) as http:

        async def send() -> None:
            response = await http.post("/messages", json=message("x" * 160, max_tokens=5))
            statuses.append(response.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(send)
    assert sorted(statuses) == [200, 200, 429]  # 40 input tokens each, 100 a minute


async def test_x_api_key_authenticates_and_bad_keys_get_authentication_error() -> None:
    server = FakeLLMServer(api_keys=["key-a", "key-b"], rpm=1)
    async with client(server, key="key-a") as http:
        assert (await http.post("/messages", json=message("hi"))).status_code == 200
        assert (await http.post("/messages", json=message("hi"))).status_code == 429
    async with client(server, key="key-b") as http:
        assert (await http.post("/messages", json=message("hi"))).status_code == 200
    async with client(server, key="wrong") as http:
        wrong = await http.post("/messages", json=message("hi"))
    async with client(server) as http:
        missing = await http.post("/messages", json=message("hi"))
        bearer = await http.post(
            "/messages", json=message("hi"), headers={"authorization": "Bearer key-a"}
        )
    assert (wrong.status_code, missing.status_code) == (401, 401)
    assert wrong.json()["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    assert missing.json()["error"]["message"] == "x-api-key header is required"
    assert "key-a" not in wrong.text
    assert bearer.status_code == 429  # key-a's minute is spent: the Bearer key is the same key


def request(**changes: Any) -> dict[str, Any]:
    """A valid request with ``changes``; a change to ``None`` removes the field."""
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    body |= changes
    return {name: value for name, value in body.items() if value is not None}


@pytest.mark.parametrize(
    ("body", "message_text"),
    [
        (request(model=None), "model: Field required"),
        (request(max_tokens=None), "max_tokens: Field required"),
        (request(max_tokens=0), "max_tokens: Input should be an integer >= 1, got 0"),
        (request(messages=[]), "messages: at least one message is required"),
        (
            request(messages=[{"role": "system", "content": "hi"}]),
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (request(messages=[{"role": "user"}]), "messages.0.content: Field required"),
        (
            request(messages=[{"role": "user", "content": [{"type": "text"}]}]),
            "messages.0.content.0.text: Field required",
        ),
        (request(stream="yes"), "stream: Input should be a valid boolean, got 'yes'"),
        ([1, 2], "The request body must be a JSON object."),
    ],
)
async def test_invalid_requests_get_invalid_request_error_and_cost_nothing(
    body: Any, message_text: str
) -> None:
    server = FakeLLMServer(rpm=100)
    async with client(server) as http:
        response = await http.post("/messages", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message_text}
    assert (server.stats.rejected, server.stats.admitted) == (1, 0)


async def test_server_errors_are_api_error_or_overloaded_error() -> None:
    server = FakeLLMServer(error_rate=1.0, seed=4)
    async with client(server) as http:
        responses = [await http.post("/messages", json=message("hi")) for _ in range(20)]
    kinds = {(r.status_code, r.json()["error"]["type"]) for r in responses}
    assert kinds == {(500, "api_error"), (529, "overloaded_error")}
    assert server.stats.errors == 20


async def test_other_methods_get_an_anthropic_405() -> None:
    server = FakeLLMServer()
    async with client(server) as http:
        response = await http.get("/messages")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["type"] == "error"


@pytest.mark.parametrize(
    ("kwargs", "message_text"),
    [
        ({"itpm": 0}, "itpm must be >= 1 or None, got 0"),
        ({"otpm": 2.5}, "otpm must be an int or None, got float 2.5"),
        ({"wall_clock": 5}, "wall_clock must be callable, got 5"),
    ],
)
def test_bad_anthropic_parameters_are_refused_with_their_name(
    kwargs: dict[str, Any], message_text: str
) -> None:
    with pytest.raises((TypeError, ValueError)) as caught:
        FakeLLMServer(**kwargs)
    assert str(caught.value) == message_text


def test_the_repr_shows_the_anthropic_limits_when_set() -> None:
    assert repr(FakeLLMServer(rpm=5, itpm=10)) == (
        "FakeLLMServer(rpm=5, tpm=None, itpm=10, mode='settle', model='fake-llm')"
    )


# -- anthropic mode: Anthropic's documented enforcement ---------------------------------------


async def test_anthropic_mode_holds_a_second_of_requests_refilled_continuously() -> None:
    server = FakeLLMServer(rpm=600, mode="anthropic")  # 10 a second, one every 0.1 s
    async with client(server) as http:

        async def status() -> int:
            return (await http.post("/messages", json=message("hi"))).status_code

        statuses = [await status() for _ in range(30)]
        assert statuses == [200] * 10 + [429] * 20  # a minute's burst is refused
        refused = await http.post("/messages", json=message("hi"))
        assert refused.headers["retry-after"] == "1"  # 0.1 s, rounded up to whole seconds
        await anyio.sleep(0.25)  # a token bucket: 2.5 requests back, not a whole window
        assert [await status() for _ in range(3)] == [200, 200, 429]
        # A 429 costs nothing: the minute's bucket counts the 12 admissions only (plus 2.5
        # refilled), as Anthropic documents no charge for rejected requests.
        last = await http.post("/messages", json=message("hi"))
        assert last.headers["anthropic-ratelimit-requests-remaining"] == "590"
    assert server.stats.max_requests_in(1.0) == 12
    assert server.mode == "anthropic"


async def test_anthropic_mode_lets_a_minute_of_tokens_go_and_settles_output() -> None:
    server = FakeLLMServer(
        itpm=6000, otpm=6000, mode="anthropic", completion_tokens=100, wall_clock=lambda: WALL
    )
    async with client(server) as http:
        # Ten requests of 600 output tokens each (max_tokens, counted up front): a minute's
        # OTPM at once, with no requests limit to slice them.
        statuses = []
        for _ in range(10):
            response = await http.post("/messages", json=message("x" * 40, max_tokens=600))
            statuses.append(response.status_code)
        # Each used 100 of its 600: settled at the end, so 5,000 came back.
        after = await http.post("/messages", json=message("x" * 40, max_tokens=600))
    assert statuses == [200] * 10
    assert after.status_code == 200
    assert after.headers["anthropic-ratelimit-output-tokens-remaining"] == str(6000 - 1000 - 600)
    assert after.headers["anthropic-ratelimit-input-tokens-remaining"] == str(6000 - 11 * 10)


async def test_anthropic_mode_a_request_bucket_below_one_request_still_admits_one() -> None:
    server = FakeLLMServer(rpm=30, mode="anthropic")  # half a request a second: holds one
    async with client(server) as http:
        first = await http.post("/messages", json=message("hi"))
        second = await http.post("/messages", json=message("hi"))
        assert (first.status_code, second.status_code) == (200, 429)
        assert second.headers["retry-after"] == "2"
        await anyio.sleep(2)
        assert (await http.post("/messages", json=message("hi"))).status_code == 200
