"""The public API as a type checker sees it: checked by mypy and pyright (both strict), never run.

Each ``assert_type`` pins what a caller gets back, so that a change to an annotation in the
library (a return type widened to ``Any``, a generic parameter lost) fails
``tests/test_typing.py`` and ``mypy`` instead of going unnoticed.  Only public names are used,
imported the way the documentation imports them.
"""

# mypy: disallow-untyped-defs, disallow-incomplete-defs, disallow-any-generics

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, assert_type

import httpx
import httpx2

import throttle_trio as tt
from throttle_trio.httpx import ThrottledTransport
from throttle_trio.httpx2 import ThrottledTransport as ThrottledTransport2
from throttle_trio.policy import Decision, RatePolicy
from throttle_trio.redis import (
    GCRALimit,
    RedisRateLimiter,
    RedisReservation,
    RedisThrottle,
    RedisThrottleStatistics,
)
from throttle_trio.testing import FakeLLMServer, FakeServerStats

if TYPE_CHECKING:
    import coredis


def policies() -> None:
    bucket = tt.TokenBucket(60, per=60.0, burst=10)
    assert_type(bucket.try_admit(1, 0.0), Decision)
    assert_type(bucket.try_admit(1, 0.0).allowed, bool)
    assert_type(bucket.ready_at(1, 0.0), float)
    policy: RatePolicy = tt.GCRA(10)
    assert_type(policy.capacity, float)
    assert_type(tt.AIMD(10).on_overload(0.0), float)


async def rate_limiter() -> None:
    limiter = tt.RateLimiter(tt.TokenBucket(5))
    assert_type(limiter, tt.RateLimiter[tt.TokenBucket])
    assert_type(limiter.policy, tt.TokenBucket)
    assert_type(await limiter.acquire(), None)
    assert_type(await limiter.acquire(2.5, timeout=1.0), None)
    assert_type(limiter.try_acquire(), bool)
    assert_type(limiter.refund(1), float)
    stats = limiter.statistics()
    assert_type(stats, tt.RateLimiterStatistics)
    assert_type(stats.tasks_waiting, int)
    assert_type(stats.available, float)
    async with limiter:
        pass


async def capacity_limiter() -> None:
    limiter = tt.CapacityLimiter(4)
    assert_type(await limiter.acquire(), None)
    limiter.release()
    assert_type(limiter.available_tokens, float)
    assert_type(limiter.statistics(), tt.CapacityLimiterStatistics)
    async with limiter:
        pass


async def throttle() -> None:
    throttle = tt.Throttle(
        requests=tt.TokenBucket(500, per=60.0),
        tokens=tt.GCRA(200_000, per=60.0),
        max_concurrent=32,
    )
    async with throttle.reserve(requests=1, tokens=1200, timeout=5.0) as slot:
        assert_type(slot, tt.Reservation)
        assert_type(slot.ticket, int)
        assert_type(slot.costs, Mapping[str, float])
        assert_type(slot.settle(tokens=900), None)
        assert_type(throttle.observe(tt.parse_rate_limit_headers({}, 0.0), slot), None)
    retry = await throttle.acquire({"requests": 1}, ticket=slot.ticket)
    assert_type(retry, tt.Reservation)
    assert_type(retry.reject(), None)
    assert_type(throttle.refund_unused, bool)
    assert_type(throttle.limits, Mapping[str, RatePolicy])
    assert_type(throttle.paused_until, float | None)
    stats = throttle.statistics()
    assert_type(stats, tt.ThrottleStatistics)
    assert_type(stats.limits, Mapping[str, tt.LimitStatistics])
    registry = tt.ThrottleRegistry[tt.RequestKey](lambda key: tt.Throttle(max_concurrent=4))
    key = tt.RequestKey.of("api.openai.com", "sk-test", "gpt-4o")
    assert_type(registry.get(key), tt.Throttle)


async def call(prompt: str) -> int:
    return len(prompt)


async def batches(throttle: tt.Throttle) -> None:
    results = await tt.run_batch(call, ["a", "bb"], max_concurrent=2, throttle=throttle)
    assert_type(results, list[tt.ItemResult[str, int]])
    first = results[0]
    assert_type(first.index, int)
    assert_type(first.item, str)
    assert_type(first.value, int | None)
    assert_type(first.error, BaseException | None)
    assert_type(first.unwrap(), int)
    async with tt.amap(call, ["a", "bb"], max_concurrent=2, ordered=True) as stream:
        assert_type(stream, AsyncIterator[tt.ItemResult[str, int]])
        async for result in stream:
            assert_type(result, tt.ItemResult[str, int])
            assert_type(result.ok, bool)


def headers_and_costs() -> None:
    cost = tt.estimate_request_cost({"messages": [{"role": "user", "content": "hi"}]})
    assert_type(cost, dict[str, float])
    assert_type(tt.count_tokens_by_chars("four"), int)
    assert_type(tt.parse_retry_after({"retry-after": "2"}, 0.0), float | None)
    assert_type(tt.parse_rate_limit_headers({}, 0.0), tt.RateLimitHeaders)
    assert_type(tt.api_key_hash("sk-test"), str)
    assert_type(tt.__version__, str)


async def retries(throttle: tt.Throttle) -> None:
    async def send() -> httpx.Response:
        return httpx.Response(200)

    def inspect(response: httpx.Response) -> tt.ResponseInfo:
        return tt.ResponseInfo(status=response.status_code, headers=response.headers)

    response = await tt.call_with_retries(
        throttle, send, inspect, costs={"requests": 1}, retry=tt.RetryPolicy()
    )
    assert_type(response, httpx.Response)


def transports(throttle: tt.Throttle) -> None:
    transport = ThrottledTransport(httpx.AsyncHTTPTransport(), throttle=throttle)
    assert_type(
        transport.throttle_for(httpx.Request("GET", "https://x.test")), tt.Throttle | RedisThrottle
    )
    client = httpx.AsyncClient(transport=transport)
    assert_type(client, httpx.AsyncClient)
    registry: tt.ThrottleRegistry[tt.RequestKey] = tt.ThrottleRegistry(
        lambda key: tt.Throttle(max_concurrent=4)
    )
    transport2 = ThrottledTransport2(registry=registry, retry=tt.RetryPolicy(max_attempts=3))
    assert_type(
        transport2.throttle_for(httpx2.Request("GET", "https://x.test")),
        tt.Throttle | RedisThrottle,
    )
    assert_type(httpx2.AsyncClient(transport=transport2), httpx2.AsyncClient)


async def redis(client: coredis.Redis[Any]) -> None:
    throttle = RedisThrottle(
        client,
        "openai-" + tt.api_key_hash("sk-test"),
        requests=GCRALimit(500, per=60.0, burst=50),
        tokens=tt.GCRA(200_000, per=60.0),
        max_concurrent=32,
    )
    async with throttle.reserve(requests=1, tokens=1200) as slot:
        assert_type(slot, RedisReservation)
        assert_type(slot.ticket, int)
        assert_type(await slot.settle(tokens=900), None)
    assert_type(throttle.refund_unused, bool)
    assert_type(throttle.statistics(), RedisThrottleStatistics)
    limiter = RedisRateLimiter(client, "shared", GCRALimit(10))
    assert_type(limiter.throttle, RedisThrottle)
    assert_type(await limiter.acquire(), None)
    assert_type(await limiter.try_acquire(), bool)


def fake_server() -> None:
    server = FakeLLMServer(rpm=60, tpm=10_000)
    assert_type(server.stats, FakeServerStats)
    assert_type(server.stats.max_requests_in(60.0), int)
    assert_type(httpx.ASGITransport(app=server), httpx.ASGITransport)
