"""FakeLLMServer: OpenAI shapes, provider-like RPM/TPM limits in both modes, headers, errors.

In-process tests call the app through ``httpx.ASGITransport`` on virtual time (both backends,
from the conftest), so latency costs nothing and times compare exactly.  Loopback tests serve
it with hypercorn on the real clock (``real_backend``): they assert counts and order, never
durations.  The server keeps its own accounting; these tests read its headers with the
library's parsers as a cross-check, and with exact expected strings as the reference.
"""

from __future__ import annotations

import json
import math
import random
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

import throttle_trio as tt
import throttle_trio.testing
from throttle_trio.testing import Admission, FakeLLMServer, FakeServerStats, serve
from throttle_trio.testing._fake_limits import format_go_duration

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

# Loopback tests run on the real clock: this replaces the conftest's virtual-time backends.
real_backend = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


def now() -> float:
    return anyio.current_time()


def chat(content: str = "", **fields: Any) -> dict[str, Any]:
    """A chat request whose prompt is ``len(content) / 4`` tokens (rounded up)."""
    return {"model": "gpt-fake", "messages": [{"role": "user", "content": content}], **fields}


@asynccontextmanager
async def client(server: FakeLLMServer, key: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    transport = httpx.ASGITransport(app=server)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://fake/v1", headers=headers
    ) as http:
        yield http


def rate_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit-")}


def sse_events(text: str) -> list[str]:
    """The ``data:`` payloads of a server-sent-event body, in order."""
    assert text.endswith("\n\n")
    frames = text[:-2].split("\n\n")
    assert all(frame.startswith("data: ") for frame in frames)
    return [frame.removeprefix("data: ") for frame in frames]


# -- response shapes -----------------------------------------------------------------------


async def test_chat_completion_has_the_openai_shape() -> None:
    server = FakeLLMServer(completion_tokens=10)
    async with client(server) as http:
        response = await http.post("/chat/completions", json=chat("x" * 40, max_tokens=50))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
    }
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-fake"
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"].split()) == 10
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
    assert response.headers["x-request-id"].startswith("req_")


async def test_n_choices_multiply_the_completion_and_length_is_reported() -> None:
    server = FakeLLMServer(completion_tokens=1.0, model="default-model")
    async with client(server) as http:
        body = {"messages": [{"role": "user", "content": "abcd"}], "n": 3}
        response = await http.post("/chat/completions", json=body | {"max_completion_tokens": 7})
    result = response.json()
    assert result["model"] == "default-model"  # the request named none
    assert [c["index"] for c in result["choices"]] == [0, 1, 2]
    assert {c["finish_reason"] for c in result["choices"]} == {"length"}
    assert result["usage"] == {"prompt_tokens": 1, "completion_tokens": 21, "total_tokens": 22}
    # Charged at arrival: prompt + max_completion_tokens * n.
    assert server.stats.admissions[0].tokens == 1 + 7 * 3


async def test_text_completion_shape_and_one_output_per_prompt_and_choice() -> None:
    server = FakeLLMServer(completion_tokens=4)
    async with client(server) as http:
        request = {"model": "m", "prompt": ["abcd", "abcdefgh"], "n": 2, "max_tokens": 10}
        response = await http.post("/completions", json=request)
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert len(body["choices"]) == 4
    assert set(body["choices"][0]) == {"text", "index", "logprobs", "finish_reason"}
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 16, "total_tokens": 19}
    assert server.stats.admissions[0].tokens == 3 + 10 * 4


async def test_embeddings_are_deterministic_unit_vectors() -> None:
    server = FakeLLMServer()
    async with client(server) as http:
        first = (await http.post("/embeddings", json={"input": ["abcd", "abcdefgh"]})).json()
        again = await http.post("/embeddings", json={"input": "abcd", "dimensions": 4})
    assert first["object"] == "list"
    assert [d["index"] for d in first["data"]] == [0, 1]
    assert {d["object"] for d in first["data"]} == {"embedding"}
    vector = first["data"][0]["embedding"]
    assert len(vector) == 8
    assert math.isclose(sum(x * x for x in vector), 1.0, abs_tol=1e-4)
    assert first["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert len(again.json()["data"][0]["embedding"]) == 4
    assert server.stats.admissions[0].tokens == 3  # embeddings produce no output tokens


# -- headers and 429s -------------------------------------------------------------------------


async def test_every_response_carries_openai_rate_limit_headers() -> None:
    server = FakeLLMServer(rpm=60, tpm=6000, completion_tokens=10)
    async with client(server) as http:
        # 10 prompt tokens + 90 max: 100 tokens charged, refilled in 1 s at 100 tokens/s.
        response = await http.post("/chat/completions", json=chat("x" * 40, max_tokens=90))
    assert rate_headers(response) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "5900",
        "x-ratelimit-reset-tokens": "1s",
    }
    parsed = tt.parse_rate_limit_headers(response.headers, now=0.0)
    assert parsed.limits["requests"] == tt.LimitReport(limit=60, remaining=59, reset_after=1.0)
    assert parsed.limits["tokens"] == tt.LimitReport(limit=6000, remaining=5900, reset_after=1.0)
    assert parsed.retry_after is None


async def test_no_headers_for_a_limit_that_is_not_set() -> None:
    server = FakeLLMServer(rpm=60)
    async with client(server) as http:
        response = await http.post("/chat/completions", json=chat("hi"))
    assert set(rate_headers(response)) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }


async def test_over_rpm_gets_429_with_retry_after_rounded_up() -> None:
    server = FakeLLMServer(rpm=120, latency=0.25)  # 2 requests/s, a minute's worth at once
    async with client(server) as http, anyio.create_task_group() as tg:

        async def post() -> None:
            await http.post("/chat/completions", json=chat("hi"))

        for _ in range(120):
            tg.start_soon(post)
        await anyio.sleep(0.125)
        response = await http.post("/chat/completions", json=chat("hi"))
        assert now() == 0.125  # a 429 is answered at once, without the latency
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "375"  # 0.5 s per request, 0.125 s gone
    assert response.headers["retry-after"] == "1"  # rounded up
    assert response.json() == {
        "error": {
            "message": "Rate limit reached for gpt-fake on requests per min (RPM): Limit 120, "
            "Used 120, Requested 1. Please try again in 375ms.",
            "type": "rate_limit_exceeded",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-reset-requests"] == "59.875s"
    assert tt.parse_retry_after(response.headers, now=0.0) == 0.375
    stats = server.stats
    assert (stats.received, stats.admitted, stats.rate_limited) == (121, 120, 1)


async def test_waiting_retry_after_ms_is_enough() -> None:
    # 116.67 tokens/s: one token takes 8.57 ms.  (Whole estimates used: nothing to refund.)
    server = FakeLLMServer(tpm=7000, completion_tokens=1.0)
    async with client(server) as http:
        first = await http.post("/chat/completions", json=chat(max_tokens=7000))
        assert first.status_code == 200
        refused = await http.post("/chat/completions", json=chat(max_tokens=1))
        assert refused.status_code == 429
        assert refused.headers["retry-after-ms"] == "9"
        assert refused.headers["retry-after"] == "1"
        await anyio.sleep(int(refused.headers["retry-after-ms"]) / 1000)
        assert (await http.post("/chat/completions", json=chat(max_tokens=1))).status_code == 200


async def test_a_request_above_a_minute_of_tokens_is_refused_for_good() -> None:
    server = FakeLLMServer(tpm=1000)
    async with client(server) as http:
        response = await http.post("/chat/completions", json=chat(max_tokens=2000))
    assert response.status_code == 429
    assert response.headers["x-should-retry"] == "false"
    assert "retry-after" not in response.headers
    assert response.json()["error"]["message"].startswith("Request too large for gpt-fake")
    assert response.headers["x-ratelimit-remaining-tokens"] == "1000"  # it cost nothing


# -- settle mode and openai mode --------------------------------------------------------------


@pytest.mark.parametrize(("mode", "charged"), [("settle", 20), ("openai", 100)])
async def test_settle_refunds_the_unused_estimate_and_openai_does_not(
    mode: str, charged: int
) -> None:
    server = FakeLLMServer(tpm=60_000, mode=mode, completion_tokens=10)  # type: ignore[arg-type]
    async with client(server) as http:
        first = await http.post("/chat/completions", json=chat("x" * 40, max_tokens=90))
        second = await http.post("/chat/completions", json=chat("x" * 40, max_tokens=90))
    assert first.json()["usage"]["total_tokens"] == 20
    assert first.headers["x-ratelimit-remaining-tokens"] == "59900"  # the estimate, at arrival
    assert second.headers["x-ratelimit-remaining-tokens"] == str(60_000 - charged - 100)
    stats = server.stats
    assert stats.tokens_charged == 2 * charged
    assert [(a.tokens, a.usage) for a in stats.admissions] == [(100, 20), (100, 20)]


async def test_openai_mode_refuses_a_burst_of_a_minutes_quota() -> None:
    settle, openai = FakeLLMServer(rpm=600), FakeLLMServer(rpm=600, mode="openai")
    for server in (settle, openai):
        async with client(server) as http:
            statuses = [
                (await http.post("/chat/completions", json=chat("hi"))).status_code
                for _ in range(30)
            ]
        if server is settle:
            assert statuses == [200] * 30
        else:  # at most 600 / 60 requests in any second
            assert statuses == [200] * 10 + [429] * 20
    assert openai.stats.max_requests_in(1.0) == 10


async def test_openai_mode_retry_after_points_at_the_next_slice() -> None:
    server = FakeLLMServer(rpm=600, mode="openai")
    async with client(server) as http:
        for _ in range(10):
            await http.post("/chat/completions", json=chat("hi"))
        await anyio.sleep(0.25)
        refused = await http.post("/chat/completions", json=chat("hi"))
        assert refused.status_code == 429
        assert refused.headers["retry-after-ms"] == "750"  # the first ten leave at t=1
        # A rejected request counts against the minute (OpenAI documents it): 600 - 10 - 1,
        # plus 2.5 refilled in 0.25 s.
        assert refused.headers["x-ratelimit-remaining-requests"] == "591"
        await anyio.sleep(0.75)
        statuses = [
            (await http.post("/chat/completions", json=chat("hi"))).status_code for _ in range(11)
        ]
    assert statuses == [200] * 10 + [429]  # rejected requests take no place in a slice
    assert server.stats.max_requests_in(1.0) == 10


async def test_openai_mode_token_slices_and_a_request_larger_than_a_slice() -> None:
    server = FakeLLMServer(tpm=6000, mode="openai")  # 100 tokens in any second
    async with client(server) as http:

        async def status(max_tokens: int) -> int:
            response = await http.post("/chat/completions", json=chat(max_tokens=max_tokens))
            return response.status_code

        assert await status(60) == 200
        assert await status(60) == 429  # 120 > 100 in this second
        await anyio.sleep(1)
        assert await status(150) == 200  # larger than a slice: only into an empty window
        await anyio.sleep(0.5)
        assert await status(150) == 429
        assert await status(1) == 429  # nothing else while it fills the window
        await anyio.sleep(0.5)
        assert await status(1) == 200
    assert server.stats.max_tokens_in(1.0) == 150


async def test_a_refund_never_fills_a_bucket_above_one_minute() -> None:
    server = FakeLLMServer(tpm=6000, latency=1.0, completion_tokens=10)
    async with client(server) as http:
        # 100 charged at t=0, refilled by t=1, when the response refunds 80 unused tokens.
        await http.post("/chat/completions", json=chat("x" * 40, max_tokens=90))
        second = await http.post("/chat/completions", json=chat("x" * 40, max_tokens=90))
    assert second.headers["x-ratelimit-remaining-tokens"] == "5900"


async def test_retry_after_in_seconds_is_rounded_up() -> None:
    server = FakeLLMServer(rpm=40)  # one request every 1.5 s
    async with client(server) as http:
        for _ in range(41):
            response = await http.post("/chat/completions", json=chat())
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "1500"
    assert response.headers["retry-after"] == "2"


async def test_settle_mode_rejections_cost_nothing() -> None:
    server = FakeLLMServer(rpm=2)
    async with client(server) as http:
        for _ in range(5):
            response = await http.post("/chat/completions", json=chat("hi"))
        assert response.status_code == 429
        assert response.headers["retry-after"] == "30"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"


async def test_rejected_requests_never_drive_the_budget_into_debt() -> None:
    server = FakeLLMServer(rpm=60, mode="openai")
    async with client(server) as http:
        assert (await http.post("/chat/completions", json=chat())).status_code == 200
        for _ in range(100):  # a retry storm within the same second: slice full
            refused = await http.post("/chat/completions", json=chat())
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        # 59 taken by the storm, none owed: a second later the refill admits one.
        await anyio.sleep(1)
        assert (await http.post("/chat/completions", json=chat())).status_code == 200


async def test_count_rejected_can_be_set_either_way() -> None:
    counting = FakeLLMServer(rpm=60, tpm=100, count_rejected=True, completion_tokens=1.0)
    lenient = FakeLLMServer(rpm=60, tpm=100, mode="openai", count_rejected=False)
    for server, remaining in ((counting, "58"), (lenient, "59")):
        async with client(server) as http:
            await http.post("/chat/completions", json=chat(max_tokens=100))
            refused = await http.post("/chat/completions", json=chat(max_tokens=1))
        assert refused.status_code == 429
        assert refused.headers["x-ratelimit-remaining-requests"] == remaining


# -- keys, clocks, randomness -----------------------------------------------------------------


async def test_limits_are_per_key_and_keys_are_required() -> None:
    server = FakeLLMServer(rpm=1, api_keys=["key-a", "key-b"])
    async with client(server, "key-a") as a, client(server, "key-b") as b, client(server) as anon:
        assert (await a.post("/chat/completions", json=chat())).status_code == 200
        assert (await a.post("/chat/completions", json=chat())).status_code == 429
        assert (await b.post("/chat/completions", json=chat())).status_code == 200
        missing = await anon.post("/chat/completions", json=chat())
        wrong = await anon.post(
            "/chat/completions", json=chat(), headers={"authorization": "Bearer key-c"}
        )
        basic = await anon.post(
            "/chat/completions", json=chat(), headers={"authorization": "Basic key-a"}
        )
        relaxed = await anon.post(
            "/chat/completions", json=chat(), headers={"authorization": "  bearer   key-b "}
        )
    assert missing.status_code == 401
    assert missing.json()["error"]["message"].startswith("You didn't provide an API key")
    assert wrong.status_code == basic.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert "key-c" not in wrong.text  # keys are never echoed
    assert not rate_headers(missing)  # no key, no limits to report
    assert relaxed.status_code == 429  # key-b's one request is spent
    stats = server.stats
    assert [a.key for a in stats.admissions] == ["key-a", "key-b"]
    assert stats.max_requests_in(60, key="key-a") == 1
    assert (stats.admitted, stats.rate_limited, stats.rejected) == (2, 2, 3)


async def test_the_clock_can_be_replaced() -> None:
    clock = [100.0]
    server = FakeLLMServer(rpm=60, clock=lambda: clock[0])
    async with client(server) as http:
        for _ in range(60):
            await http.post("/chat/completions", json=chat())
        assert (await http.post("/chat/completions", json=chat())).status_code == 429
        clock[0] += 1.0
        assert (await http.post("/chat/completions", json=chat())).status_code == 200
    assert server.stats.admissions[-1].time == 101.0


async def test_latency_runs_on_the_event_loop_clock() -> None:
    server = FakeLLMServer(latency=2.0)
    async with client(server) as http:
        await http.post("/chat/completions", json=chat())
    assert now() == 2.0


async def test_a_request_cancelled_in_flight_is_charged_as_if_completed() -> None:
    server = FakeLLMServer(tpm=6000, latency=5.0, completion_tokens=10)
    async with client(server) as http:
        with anyio.move_on_after(1.0):
            await http.post("/chat/completions", json=chat("x" * 40, max_tokens=90))
        stats = server.stats
        assert (stats.admitted, stats.completed, stats.in_flight) == (1, 0, 0)
        assert stats.admissions[0].usage == 20
        assert stats.tokens_charged == 20


async def test_concurrent_responses_keep_their_own_ids() -> None:
    server = FakeLLMServer(latency=(0.5, 1.5))
    ids: list[str] = []
    async with client(server) as http, anyio.create_task_group() as tg:

        async def one() -> None:
            response = await http.post("/chat/completions", json=chat())
            assert response.json()["id"].endswith(response.headers["x-request-id"][-12:])
            ids.append(response.json()["id"])

        for _ in range(10):
            tg.start_soon(one)
    assert len(set(ids)) == 10


async def test_latency_ranges_are_drawn_from_the_seed() -> None:
    async def finish_times(seed: int) -> list[float]:
        server = FakeLLMServer(latency=(0.5, 1.5), seed=seed)
        start = now()
        times: list[float] = []
        async with client(server) as http, anyio.create_task_group() as tg:

            async def one() -> None:
                await http.post("/chat/completions", json=chat())
                times.append(round(now() - start, 6))

            for _ in range(20):
                tg.start_soon(one)
        return sorted(times)

    first, again, other = await finish_times(1), await finish_times(1), await finish_times(2)
    assert all(0.5 <= t <= 1.5 for t in first)
    assert len(set(first)) > 10
    assert first == again
    assert first != other


async def test_error_rate_answers_500_and_503_and_refunds_in_settle_mode() -> None:
    async def statuses(seed: int) -> tuple[list[int], FakeServerStats]:
        server = FakeLLMServer(tpm=100_000, error_rate=0.3, seed=seed)
        async with client(server) as http:
            codes = [
                (await http.post("/chat/completions", json=chat(max_tokens=10))).status_code
                for _ in range(100)
            ]
        return codes, server.stats

    codes, stats = await statuses(7)
    assert (codes, stats) == await statuses(7)  # reproducible
    assert set(codes) == {200, 500, 503}
    assert 15 <= stats.errors <= 45
    assert stats.errors == codes.count(500) + codes.count(503)
    assert stats.completed + stats.errors == stats.admitted == 100
    assert stats.in_flight == 0
    # A failed request is refunded in settle mode: its usage is 0.
    assert stats.tokens_charged == sum(a.usage or 0 for a in stats.admissions)
    assert sum(1 for a in stats.admissions if a.usage == 0) == stats.errors


async def test_every_request_fails_at_error_rate_one() -> None:
    server = FakeLLMServer(rpm=60, error_rate=1.0)
    async with client(server) as http:
        response = await http.post("/chat/completions", json=chat())
    assert response.status_code in (500, 503)
    assert response.json()["error"]["type"] == "server_error"
    assert rate_headers(response)["x-ratelimit-remaining-requests"] == "59"


async def test_completion_tokens_as_a_fraction_range_stay_within_max_tokens() -> None:
    server = FakeLLMServer(completion_tokens=(0.5, 1.0), seed=3)
    async with client(server) as http:
        for _ in range(20):
            response = await http.post("/chat/completions", json=chat(max_tokens=100))
            assert 50 <= response.json()["usage"]["completion_tokens"] <= 100


# -- streaming ------------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [True, False])
async def test_streamed_chat_sends_chunks_then_usage_then_done(include_usage: bool) -> None:
    server = FakeLLMServer(completion_tokens=20, stream_chunk_tokens=8, tpm=6000)
    request = chat("x" * 40, max_tokens=50, stream=True)
    if include_usage:
        request["stream_options"] = {"include_usage": True}
    async with client(server) as http:
        response = await http.post("/chat/completions", json=request)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-ratelimit-remaining-tokens"] == "5940"
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    if include_usage:
        *chunks, last = chunks
        assert last["choices"] == []
        assert last["usage"] == {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
        assert all(c["usage"] is None for c in chunks)
    else:
        assert all("usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    contents = [c["choices"][0]["delta"].get("content", "") for c in chunks]
    assert len(contents) == 1 + 3 + 1  # role, ceil(20 / 8) content chunks, finish
    assert len("".join(contents).split()) == 20
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert server.stats.admissions[0].usage == 30


async def test_streamed_completions_with_several_choices() -> None:
    server = FakeLLMServer(completion_tokens=4)
    request = {"prompt": "abcd", "n": 2, "max_tokens": 4, "stream": True}
    async with client(server) as http:
        response = await http.post("/completions", json=request)
    chunks = [json.loads(e) for e in sse_events(response.text)[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    finishes = [c["choices"][0] for c in chunks if c["choices"][0]["finish_reason"]]
    assert [(f["index"], f["finish_reason"]) for f in finishes] == [(0, "length"), (1, "length")]


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content", "param"),
    [
        ("/chat/completions", b"{not json", None),
        ("/chat/completions", b"\xff\xfe", None),
        ("/chat/completions", b"[1, 2]", None),
        ("/chat/completions", b"", None),
        ("/chat/completions", b'{"messages": []}', "messages"),
        ("/chat/completions", b'{"messages": ["hi"]}', "messages"),
        ("/chat/completions", b'{"messages": [{"role": "user"}], "max_tokens": 0}', "max_tokens"),
        ("/chat/completions", b'{"messages": [{"role": "user"}], "max_tokens": "9"}', "max_tokens"),
        ("/chat/completions", b'{"messages": [{"role": "user"}], "n": true}', "n"),
        ("/chat/completions", b'{"messages": [{"role": "user"}], "stream": "yes"}', "stream"),
        ("/chat/completions", b'{"messages": [{"role": "user"}], "model": 5}', "model"),
        ("/completions", b'{"prompt": 5}', "prompt"),
        ("/embeddings", b'{"input": []}', "input"),
        ("/embeddings", b'{"input": "a", "dimensions": 0}', "dimensions"),
    ],
)
async def test_invalid_bodies_get_400_and_cost_nothing(
    path: str, content: bytes, param: str | None
) -> None:
    server = FakeLLMServer(rpm=60)
    async with client(server) as http:
        response = await http.post(path, content=content)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param
        assert error["message"]
        assert response.headers["x-ratelimit-remaining-requests"] == "60"
    stats = server.stats
    assert (stats.received, stats.rejected, stats.admitted) == (1, 1, 0)


async def test_unknown_paths_get_404_and_other_methods_405() -> None:
    server = FakeLLMServer(rpm=60)
    async with client(server) as http:
        missing = await http.post("/chat/completion", json=chat())
        slash = await http.post("/chat/completions/", json=chat())
        get = await http.get("/chat/completions")
    assert missing.status_code == slash.status_code == 404
    assert missing.json()["error"]["message"] == "Invalid URL (POST /v1/chat/completion)"
    assert get.status_code == 405
    assert get.headers["allow"] == "POST"
    assert server.stats.rejected == 3
    assert server.stats.admitted == 0


async def test_garbage_headers_do_not_break_the_server() -> None:
    server = FakeLLMServer(rpm=60, api_keys=["key-a"])
    async with client(server) as http:
        junk = await http.post(
            "/chat/completions",
            json=chat(),
            headers={b"authorization": b"Bearer \xff\xfe", b"x-junk": b"\x80\x81"},
        )
        empty = await http.post("/chat/completions", json=chat(), headers={"authorization": ""})
        bearer_only = await http.post(
            "/chat/completions", json=chat(), headers={"authorization": "Bearer"}
        )
        plain = await http.post(
            "/chat/completions",
            content=json.dumps(chat()).encode(),
            headers={"authorization": "Bearer key-a", "content-type": "text/plain; junk=\x7f"},
        )
    assert junk.status_code == empty.status_code == bearer_only.status_code == 401
    assert plain.status_code == 200  # the body is JSON whatever the content type says


async def test_the_lifespan_protocol_is_acknowledged() -> None:
    server = FakeLLMServer()
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await server({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


# -- the admission log and the rate bound ----------------------------------------------------


def test_window_maxima_are_over_half_open_windows() -> None:
    admissions = tuple(
        Admission(t, tokens, key, "chat")
        for t, tokens, key in [(0.0, 5, "a"), (0.5, 1, "b"), (1.0, 7, "a"), (1.5, 2, "a")]
    )
    stats = FakeServerStats(4, 4, 0, 0, 0, 4, 0, 15, admissions)
    assert stats.max_requests_in(1.0) == 2  # (0, 1] holds 0.5 and 1.0, not 0.0
    assert stats.max_requests_in(1.5) == 3
    assert stats.max_tokens_in(1.0) == 9
    assert stats.max_tokens_in(1.0, key="a") == 9
    assert stats.max_tokens_in(0.5, key="a") == 7
    with pytest.raises(ValueError, match=r"^window must be a finite number > 0, got 0$"):
        stats.max_requests_in(0)


@pytest.mark.parametrize("mode", ["settle", "openai"])
async def test_naive_retrying_clients_never_get_more_than_the_limits(mode: str) -> None:
    # Clients that retry after retry-after-ms, plus a little jitter: a crowd in openai mode,
    # where each 429 takes a request from the minute's budget.
    rpm, tpm = 120, 12_000
    server = FakeLLMServer(rpm=rpm, tpm=tpm, mode=mode, latency=(0.1, 0.5))  # type: ignore[arg-type]
    jitter = random.Random(5)
    async with client(server) as http, anyio.create_task_group() as tg:

        async def worker() -> None:
            for _ in range(10):
                while True:
                    response = await http.post("/chat/completions", json=chat("x" * 80))
                    if response.status_code != 429:
                        break
                    wait = int(response.headers["retry-after-ms"]) / 1000
                    await anyio.sleep(wait + jitter.randrange(64) / 64)

        for _ in range(20):
            tg.start_soon(worker)
    stats = server.stats
    assert stats.admitted == 200
    assert stats.rate_limited > 0
    for window in (0.5, 1.0, 10.0, 60.0, 120.0):
        # A full bucket (one minute) plus the refill: I1's bound, as the provider enforces it.
        assert stats.max_requests_in(window) <= rpm + rpm / 60 * window + 1e-9
        if mode == "openai":  # estimates stay charged (settle mode refunds, so more go)
            assert stats.max_tokens_in(window) <= tpm + tpm / 60 * window + 1e-9
    if mode == "openai":
        assert stats.max_requests_in(1.0) <= rpm / 60
        # Each request (276 tokens) is larger than a slice (200): one at a time, alone.
        assert stats.max_tokens_in(1.0) == 276


async def test_a_throttled_client_gets_no_429_from_a_settling_server() -> None:
    rpm, tpm = 60, 3000
    server = FakeLLMServer(rpm=rpm, tpm=tpm, latency=(0.1, 1.0), completion_tokens=(0.1, 1.0))
    throttle = tt.Throttle(requests=tt.TokenBucket(rpm, per=60), tokens=tt.TokenBucket(tpm, per=60))
    async with client(server) as http, anyio.create_task_group() as tg:

        async def call(index: int) -> None:
            body = chat("y" * (index % 7 * 40), max_tokens=100)
            estimate = tt.estimate_request_cost(body)
            async with throttle.reserve(requests=1, tokens=estimate["tokens"]) as slot:
                response = await http.post("/chat/completions", json=body)
                assert response.status_code == 200
                slot.settle(tokens=response.json()["usage"]["total_tokens"])

        for index in range(100):
            tg.start_soon(call, index)
    stats = server.stats
    assert (stats.admitted, stats.rate_limited) == (100, 0)
    assert now() > 60  # the limits, not the latency, set the pace


# The fake provider: the modules that serve requests and keep its books.
FAKE_PROVIDER = ["_fake_server", "_fake_limits", "_openai_shapes", "_anthropic_shapes"]
# The client's books: its policies and their math, its queue, throttles, estimates, header and
# usage parsing, its Redis engine, and the kit built on them.  Plumbing (exceptions, argument
# checks, the extras' import errors, re-export metadata) is shared freely.
CLIENT_MATH = (
    "throttle_trio.policy",
    "throttle_trio._throttle",
    "throttle_trio._limiter",
    "throttle_trio._capacity",
    "throttle_trio._waitqueue",
    "throttle_trio._feedback",
    "throttle_trio._estimate",
    "throttle_trio._token_ratios",
    "throttle_trio._headers",
    "throttle_trio._usage",
    "throttle_trio._redis",
    "throttle_trio.redis",
    "throttle_trio.testing._kit",
)


def reached(*modules: str) -> set[str]:
    """The package's modules that ``modules`` import, transitively (statically, every import
    in the file, lazy and TYPE_CHECKING ones included; a package's ``__init__`` only when it
    is imported by name)."""
    from tests.test_exports import module_path
    from tests.test_layering import imported_modules

    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for target in imported_modules(name):
            while target.startswith("throttle_trio") and module_path(target) is None:
                target = target.rpartition(".")[0]  # `from .mod import Name`: the module
            if target.startswith("throttle_trio") and target not in seen:
                todo.append(target)
    return seen


def test_the_fake_provider_reaches_none_of_the_clients_books() -> None:
    """It referees the library: its limits, estimates and headers are its own, so a bug in
    the client's cannot pass unnoticed in a test against it.  What the design forbids is
    exactly that (shared/DESIGN.md); the rest of throttle_trio.testing (the kit, the
    launchers) may build on the library, and the oracle has its own test (standard library
    only, test_oracle.py)."""
    fake = reached(*(f"throttle_trio.testing.{name}" for name in FAKE_PROVIDER))
    assert sorted(n for n in fake if n.startswith(CLIENT_MATH)) == []
    assert "throttle_trio" not in fake  # nor the package's __init__, which imports it all
    # The walk does find the client's books where they are used (the check can fail):
    # the recorder maps policies (lazily, in a function), the kit's stateful templates
    # reach them through the recorder.
    assert "throttle_trio.policy" in reached("throttle_trio.testing._kit.recorder")
    assert "throttle_trio.policy" in reached("throttle_trio.testing.stateful")


# -- constructor checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rpm": 0}, ValueError, "rpm must be >= 1 or None, got 0"),
        ({"tpm": 1.5}, TypeError, "tpm must be an int or None, got float 1.5"),
        (
            {"mode": "fast"},
            ValueError,
            "mode must be 'settle', 'openai' or 'anthropic', got 'fast'",
        ),
        ({"latency": -1}, ValueError, "latency must be a finite number >= 0, got -1"),
        ({"latency": (2, 1)}, ValueError, "latency must be a (low, high) pair with low <= high"),
        ({"error_rate": 2}, ValueError, "error_rate must be a finite number >= 0 and <= 1"),
        ({"completion_tokens": 1.5}, ValueError, "completion_tokens must be a finite number"),
        ({"completion_tokens": -1}, ValueError, "completion_tokens must be >= 0, got -1"),
        ({"completion_tokens": True}, TypeError, "completion_tokens must be a number"),
        ({"api_keys": ["a b"]}, ValueError, "api_keys must be non-empty strings without spaces"),
        ({"slice_seconds": 0}, ValueError, "slice_seconds must be a finite number > 0, got 0"),
        ({"stream_chunk_tokens": 0}, ValueError, "stream_chunk_tokens must be >= 1, got 0"),
        ({"count_rejected": 1}, TypeError, "count_rejected must be a bool or None, got 1"),
    ],
)
def test_bad_parameters_are_refused_with_their_name(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        FakeLLMServer(**kwargs)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.012, "12ms"),
        (0.0001, "1ms"),  # rounded up to whole milliseconds
        (0.1, "100ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (85656.648, "23h47m36.648s"),
    ],
)
def test_reset_durations_are_go_durations(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text
    parsed = tt.parse_go_duration(text)
    assert parsed is not None
    assert parsed >= seconds - 1e-9


# -- over loopback, on the real clock -------------------------------------------------------


@real_backend
async def test_serves_over_loopback_and_stops_when_cancelled() -> None:
    server = FakeLLMServer(rpm=2)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            address = await tg.start(serve, server)
            assert address.base_url == f"http://127.0.0.1:{address.port}/v1"
            async with httpx.AsyncClient(base_url=address.base_url) as http:
                statuses = [
                    (await http.post("/chat/completions", json=chat("hi"))).status_code
                    for _ in range(3)
                ]
                refused = await http.post("/chat/completions", json=chat("hi"))
                get = await http.get("/chat/completions")
            tg.cancel_scope.cancel()
        assert statuses == [200, 200, 429]  # 2 per minute: no refill worth a request meanwhile
        assert int(refused.headers["retry-after"]) >= 1
        assert tt.parse_rate_limit_headers(refused.headers, now=0.0).limits["requests"].limit == 2
        assert get.status_code == 405
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as http:
                await http.post(f"{address.base_url}/chat/completions", json=chat("hi"))


@real_backend
async def test_streamed_chunks_arrive_one_by_one_over_loopback() -> None:
    # 4 content chunks 50 ms apart: the first reaches the client while the server is still
    # sending (an order, not a duration: it would take 300 ms of delay on loopback to fail).
    server = FakeLLMServer(completion_tokens=32, stream_chunk_tokens=8, stream_interval=0.05)
    request = chat("hi", max_tokens=64, stream=True, stream_options={"include_usage": True})
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            address = await tg.start(serve, server)
            async with (
                httpx.AsyncClient(base_url=address.base_url) as http,
                http.stream("POST", "/chat/completions", json=request) as response,
            ):
                reads, seen_in_flight = 0, []
                text = ""
                async for piece in response.aiter_text():
                    reads += 1
                    seen_in_flight.append(server.stats.in_flight)
                    text += piece
            tg.cancel_scope.cancel()
    assert seen_in_flight[0] == 1  # the first chunk came before the response ended
    assert reads >= 2
    events = sse_events(text)
    assert len(events) == 1 + 4 + 1 + 1 + 1  # role, content, finish, usage, [DONE]
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 32
    assert server.stats.completed == 1


@real_backend
async def test_garbage_on_the_wire_is_answered_and_the_server_keeps_serving() -> None:
    server = FakeLLMServer(api_keys=["key-a"])
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            address = await tg.start(serve, server)
            raw = (
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer \xff\xfe\r\nX-Junk: \x80\x81\x82\r\n"
                b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
            )
            async with await anyio.connect_tcp(address.host, address.port) as stream:
                await stream.send(raw)
                reply = b""
                while b"\r\n\r\n" not in reply:  # the status line and headers
                    reply += await stream.receive()
            async with httpx.AsyncClient(base_url=address.base_url) as http:
                ok = await http.post(
                    "/chat/completions", json=chat(), headers={"authorization": "Bearer key-a"}
                )
            tg.cancel_scope.cancel()
    assert reply.startswith(b"HTTP/1.1 401 ")
    assert ok.status_code == 200


async def test_serve_names_the_extra_when_hypercorn_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "hypercorn.config", None)
    with pytest.raises(ImportError, match=r'pip install "throttle_trio\[server\]"'):
        await serve(FakeLLMServer())


# -- token_factor: a provider whose tokenizer is not the client's ---------------------------


def messages_body(content: str, model: str = "claude-fake") -> dict[str, Any]:
    return {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": content}]}


async def test_token_factor_scales_the_prompt_charged_and_reported() -> None:
    # 400 characters: 100 tokens at 4 a token, counted 130 by a 1.3 tokenizer.
    server = FakeLLMServer(tpm=60_000, itpm=60_000, token_factor=1.3, completion_tokens=10)
    async with client(server) as http:
        response = await http.post("/chat/completions", json=chat("x" * 400, max_tokens=50))
        assert response.json()["usage"] == {
            "prompt_tokens": 130,
            "completion_tokens": 10,
            "total_tokens": 140,
        }
        assert response.headers["x-ratelimit-remaining-tokens"] == str(60_000 - 130 - 50)
        message = await http.post("/messages", json=messages_body("y" * 400))
        assert message.json()["usage"]["input_tokens"] == 130
        # Token arrays are the provider's tokens already: not scaled (3 + ceil(100 * 1.3)).
        body = {"model": "m", "prompt": [[1, 2, 3], "z" * 400], "max_tokens": 5}
        completion = await http.post("/completions", json=body)
        assert completion.json()["usage"]["prompt_tokens"] == 3 + 130
    admissions = server.stats.admissions
    assert [a.tokens for a in admissions] == [130 + 50, 130 + 10, 133 + 5 * 2]  # 2 prompts
    assert admissions[0].usage == 140


async def test_token_factor_per_model_and_its_slices_in_openai_mode() -> None:
    factors = {"big": 1.5, "small": 0.7}
    server = FakeLLMServer(tpm=6_000, mode="openai", token_factor=factors)  # 100 a second
    async with client(server) as http:

        async def prompt_tokens(model: str) -> int:
            body = {**chat("x" * 240, max_tokens=1), "model": model}  # 60 tokens at 4 a token
            response = await http.post("/chat/completions", json=body)
            if response.status_code != 200:
                return -response.status_code
            return int(response.json()["usage"]["prompt_tokens"])

        assert await prompt_tokens("small") == 42
        assert await prompt_tokens("big") == -429  # 42 + 1 + 90 + 1 > 100 in this second
        await anyio.sleep(1)
        assert await prompt_tokens("big") == 90
        await anyio.sleep(1)
        assert await prompt_tokens("other") == 60  # not in the mapping: 4 characters a token
    assert [server.token_factor(m) for m in ("big", "small", "other")] == [1.5, 0.7, 1.0]
    assert server.stats.max_tokens_in(1.0) == 91


def test_a_token_factor_range_draws_one_factor_per_model_from_the_seed() -> None:
    models = [f"model-{i}" for i in range(50)]
    server = FakeLLMServer(token_factor=(0.7, 1.5), seed=3)
    drawn = [server.token_factor(model) for model in models]
    assert all(0.7 <= f <= 1.5 for f in drawn)
    assert len(set(drawn)) == 50
    assert min(drawn) < 0.8
    assert max(drawn) > 1.4
    # The same seed, the same factors, whatever the order they are asked in.
    again = FakeLLMServer(token_factor=(0.7, 1.5), seed=3)
    assert [again.token_factor(m) for m in reversed(models)] == drawn[::-1]
    other = FakeLLMServer(token_factor=(0.7, 1.5), seed=4)
    assert [other.token_factor(m) for m in models] != drawn
    assert FakeLLMServer(token_factor=(1.2, 1.2)).token_factor("any") == 1.2


async def test_a_token_factor_range_draws_nothing_from_the_servers_stream() -> None:
    # Latency and completion lengths come out the same with or without the factors.
    def server(factor: Any) -> FakeLLMServer:
        return FakeLLMServer(latency=(0.1, 1.0), token_factor=factor, seed=9)

    lengths = []
    for plain in (server(1.0), server((0.7, 1.5))):
        async with client(plain) as http:
            body = chat("x" * 400, max_tokens=100)
            lengths.append(
                [
                    (await http.post("/chat/completions", json=body)).json()["usage"][
                        "completion_tokens"
                    ]
                    for _ in range(5)
                ]
            )
    assert lengths[0] == lengths[1]


@pytest.mark.parametrize(
    ("factor", "error", "message"),
    [
        (0, ValueError, "token_factor must be a finite number > 0, got 0"),
        (-1.0, ValueError, "token_factor must be a finite number > 0, got -1.0"),
        (math.nan, ValueError, "token_factor must be a finite number > 0, got nan"),
        (math.inf, ValueError, "token_factor must be a finite number > 0, got inf"),
        (True, TypeError, "token_factor must be a number, got bool True"),
        ("1.5", TypeError, "token_factor must be a number, got str '1.5'"),
        ((1.5, 0.7), ValueError, "token_factor must be a (low, high) pair with low <= high"),
        ((0.0, 1.0), ValueError, "token_factor's low must be a finite number > 0, got 0.0"),
        ((1.0,), ValueError, "token_factor must be a number, a {model: factor} mapping or"),
        ({"m": 0}, ValueError, "token_factor['m'] must be a finite number > 0, got 0"),
        ({"": 1.0}, TypeError, "token_factor's models must be non-empty strs, got ''"),
        ({1: 1.0}, TypeError, "token_factor's models must be non-empty strs, got 1"),
    ],
)
def test_bad_token_factors_are_refused_with_their_name(
    factor: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        FakeLLMServer(token_factor=factor)
    assert str(caught.value).startswith(message)


# -- a 429 names the limit that bound it -----------------------------------------------------


async def test_a_slice_429_names_the_slice_not_the_minute() -> None:
    server = FakeLLMServer(tpm=300_000, mode="openai")  # 5,000 tokens in any second
    async with client(server) as http:
        first = await http.post("/chat/completions", json=chat(max_tokens=4_000))
        assert first.status_code == 200
        await anyio.sleep(0.25)
        refused = await http.post("/chat/completions", json=chat(max_tokens=2_000))
    assert refused.status_code == 429
    assert refused.json()["error"]["message"] == (
        "Rate limit reached for gpt-fake on tokens per min (TPM), enforced per 1s: "
        "Limit 5000 per 1s, Used 4000 in the last 1s, Requested 2000. "
        "Please try again in 750ms."
    )


async def test_an_anthropic_short_bucket_429_names_the_short_bucket() -> None:
    server = FakeLLMServer(rpm=120, mode="anthropic")  # 2 requests a second, 2 at once
    async with client(server) as http:
        statuses = [
            (await http.post("/messages", json=messages_body("hi"))).status_code for _ in range(3)
        ]
        refused = await http.post("/messages", json=messages_body("hi"))
    assert statuses == [200, 200, 429]
    assert refused.headers["retry-after"] == "1"  # 0.5 s to the next request, rounded up
    assert refused.json()["error"]["message"] == (
        "This request would exceed your organization's rate limit of 120 requests per minute, "
        "enforced as 2 per 1s (used 2 of those 2, requested 1). Please try again later."
    )
