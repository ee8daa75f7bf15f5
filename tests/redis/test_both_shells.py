"""The same behaviour from both throttles, through the same doors: one test, two shells.

Each test runs once with a local ``Throttle`` and once with a ``RedisThrottle`` (a real
redis-server), on both backends, through the httpx transport or ``call_with_retries``.  The
limits refill slowly (per hour), so levels read after a request are exact up to the refill of a
few milliseconds.  Real I/O: the real clock, counts and levels, never durations.
"""

from __future__ import annotations

import json
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

import throttle_trio as tt
from throttle_trio.httpx import ThrottledTransport
from throttle_trio.redis import GCRALimit, RedisThrottle

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import coredis

pytestmark = pytest.mark.anyio

URL = "http://api.test/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 100}
ESTIMATE = 400 // 4 + 4 + 100  # the prompt's characters / 4, 4 per message, and max_tokens


class Shell:
    """A throttle of one kind, and how to read its levels."""

    def __init__(self, throttle: tt.Throttle | RedisThrottle, rates: dict[str, float]) -> None:
        self.throttle = throttle
        self.rates = rates  # units per second, by limit
        self.made = time.monotonic()

    async def assert_level(self, limit: str, expected: float, tolerance: float) -> None:
        """The level is ``expected``, give or take ``tolerance``, plus at most what refilled
        since the shell was made: Redis's clock is real, and a loaded machine is slow (a bound,
        not a duration)."""
        level = await self.available(limit)
        refilled = self.rates[limit] * (time.monotonic() - self.made)
        assert expected - tolerance <= level <= expected + tolerance + refilled, (level, expected)

    async def available(self, limit: str) -> float:
        if isinstance(self.throttle, RedisThrottle):
            return (await self.throttle.state()).available[limit]
        return self.throttle.statistics().limits[limit].available

    def rejections(self) -> int:
        return self.throttle.statistics().rejections


@pytest.fixture(params=["local", "redis"])
def make_shell(
    request: pytest.FixtureRequest, client: coredis.Redis[bytes]
) -> Callable[..., Shell]:
    def make(configured: tuple[str, ...] = ("requests", "tokens"), **options: Any) -> Shell:
        every = {
            "requests": (60, 3600.0, 60),
            "tokens": (100_000, 3600.0, 10_000),
        }
        limits = {name: every[name] for name in configured}
        rates = {name: rate / per for name, (rate, per, _) in every.items()}
        if request.param == "local":
            return Shell(
                tt.Throttle(
                    {
                        name: tt.TokenBucket(rate, per=per, burst=burst)
                        for name, (rate, per, burst) in limits.items()
                    },
                    **options,
                ),
                rates,
            )
        return Shell(
            RedisThrottle(
                client,
                f"shells-{uuid.uuid4().hex[:12]}",
                {
                    name: GCRALimit(rate, per=per, burst=burst)
                    for name, (rate, per, burst) in limits.items()
                },
                **options,
            ),
            rates,
        )

    return make


def http(
    shell: Shell,
    handler: Callable[[httpx.Request], httpx.Response],
    retry: tt.RetryPolicy | None = None,
) -> httpx.AsyncClient:
    transport = ThrottledTransport(
        httpx.MockTransport(handler), throttle=shell.throttle, retry=retry
    )
    return httpx.AsyncClient(transport=transport)


def completion(prompt: int, completion: int, **headers: str) -> httpx.Response:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage["total_tokens"] = prompt + completion
    return httpx.Response(
        200,
        content=json.dumps({"usage": usage}),
        headers={"content-type": "application/json", **headers},
    )


async def test_usage_from_the_body_settles_the_reservation(
    make_shell: Callable[..., Shell],
) -> None:
    shell = make_shell()
    async with http(shell, lambda request: completion(30, 12)) as client:
        response = await client.post(URL, json=BODY)
        await response.aread()
    assert response.status_code == 200
    await shell.assert_level("tokens", 10_000 - 42, 0.5)
    await shell.assert_level("requests", 59, 0.01)


async def test_without_refunds_the_estimate_stands(make_shell: Callable[..., Shell]) -> None:
    shell = make_shell(refund_unused=False)
    async with http(shell, lambda request: completion(30, 12)) as client:
        await (await client.post(URL, json=BODY)).aread()
    await shell.assert_level("tokens", 10_000 - ESTIMATE, 0.5)


async def test_a_429_pauses_costs_a_request_and_is_retried(
    make_shell: Callable[..., Shell],
) -> None:
    shell = make_shell()
    replies = [httpx.Response(429, headers={"retry-after": "0.05"}), completion(10, 10)]
    async with http(shell, lambda request: replies.pop(0)) as client:
        response = await client.post(URL, json=BODY)
        await response.aread()
    assert response.status_code == 200
    assert replies == []
    assert shell.rejections() == 1
    await shell.assert_level("requests", 58, 0.01)  # two attempts
    await shell.assert_level("tokens", 10_000 - 20, 0.5)  # 429: none


async def test_a_429_cuts_the_shortfall_it_proves(make_shell: Callable[..., Shell]) -> None:
    """The server had 50 tokens left when the request (an estimate of 204) arrived: the throttle
    was ahead by at least 154, and takes them off at once."""
    shell = make_shell()
    headers = {"x-ratelimit-remaining-tokens": "50", "x-ratelimit-limit-tokens": "10000"}
    async with http(
        shell, lambda request: httpx.Response(429, headers=headers), tt.RetryPolicy(max_attempts=1)
    ) as client:
        response = await client.post(URL, json=BODY)
    assert response.status_code == 429
    await shell.assert_level("tokens", 10_000 - (ESTIMATE - 50), 0.5)


async def test_a_reset_beyond_the_cap_fails_at_once_and_pauses_for_the_cap(
    make_shell: Callable[..., Shell],
) -> None:
    shell = make_shell()
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "23h59m59s"}
    async with http(
        shell,
        lambda request: httpx.Response(429, headers=headers),
        tt.RetryPolicy(max_retry_after=30),
    ) as client:
        with pytest.raises(tt.RetryAfterTooLong):
            await client.post(URL, json=BODY)
    assert shell.throttle.paused_until is not None


async def test_two_agreeing_reports_cut_a_limit_and_one_does_not(
    make_shell: Callable[..., Shell],
) -> None:
    shell = make_shell()
    headers = {"x-ratelimit-remaining-requests": "20", "x-ratelimit-limit-requests": "60"}
    async with http(shell, lambda request: completion(1, 1, **headers)) as client:
        await (await client.post(URL, json=BODY)).aread()
        await shell.assert_level("requests", 59, 0.01)  # one report
        await (await client.post(URL, json=BODY)).aread()
    # The second agrees: the level is what the server said, 20, less nothing sent since.
    await shell.assert_level("requests", 20, 0.05)


async def test_a_limit_the_headers_report_is_learned_then_charged_and_synced(
    make_shell: Callable[..., Shell],
) -> None:
    """With ``learn_limits``, the first report of tokens adds a limit of 10,000 per hour (10%
    spent, back in 6 minutes) at the level reported; the next request is charged on it and
    settled to its usage."""
    shell = make_shell(configured=("requests",), learn_limits=True)
    headers = {
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "9000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    replies = [completion(30, 12, **headers), completion(30, 12)]
    async with http(shell, lambda request: replies.pop(0)) as client:
        await (await client.post(URL, json=BODY)).aread()
        stats = shell.throttle.statistics().limits["tokens"]
        assert (stats.learned, stats.capacity) == (True, 10_000)
        await shell.assert_level("tokens", 9_000, 0.5)
        await (await client.post(URL, json=BODY)).aread()
    await shell.assert_level("tokens", 9_000 - 42, 0.5)


async def test_call_with_retries_takes_either(make_shell: Callable[..., Shell]) -> None:
    shell = make_shell()
    statuses = iter([503, 200])

    async def send() -> int:
        return next(statuses)

    async def never(response: int) -> None:
        return None

    inspect: Callable[[int], tt.ResponseInfo] = lambda status: tt.ResponseInfo(  # noqa: E731
        status, {"retry-after": "0"}, {"tokens": 5.0}
    )
    result: Awaitable[int] = tt.call_with_retries(
        shell.throttle, send, inspect, costs={"requests": 1, "tokens": 50}, discard=never
    )
    assert await result == 200
    assert shell.rejections() == 1
    await shell.assert_level("tokens", 10_000 - 5, 0.5)


async def test_an_interactive_request_goes_before_the_batch_backlog(
    make_shell: Callable[..., Shell],
) -> None:
    """Lanes work alike in both shells: behind a held slot, three batch requests queue, then
    an interactive one; it is admitted first, then the batch in its order."""
    shell = make_shell(max_concurrent=1)
    throttle = shell.throttle
    order: list[str] = []
    held = await throttle.acquire(requests=1)

    async def request(name: str, lane: str) -> None:
        async with throttle.reserve(requests=1, lane=lane):  # type: ignore[arg-type]
            order.append(name)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(request, f"batch-{i}", "batch")
                await wait_until(partial(waiting, throttle, i + 1))
            tg.start_soon(request, "chat", "interactive")
            await wait_until(partial(waiting, throttle, 4))
            held.release()
    assert order == ["chat", "batch-0", "batch-1", "batch-2"]


def waiting(throttle: tt.Throttle | RedisThrottle, count: int) -> bool:
    return throttle.statistics().tasks_waiting == count


async def wait_until(condition: Callable[[], bool]) -> None:
    while not condition():
        await anyio.sleep(0.001)


def token_rate(shell: Shell) -> tuple[float, float]:
    """The tokens limit's rate now and as configured, units per second."""
    throttle = shell.throttle
    if isinstance(throttle, RedisThrottle):
        limit = throttle.statistics().limits["tokens"]
        return limit.rate, limit.configured_rate
    return throttle.statistics().limits["tokens"].rate, shell.rates["tokens"]


@pytest.mark.parametrize("learned", [True, False], ids=["learned", "not-learned"])
async def test_a_429_the_learned_ratio_explains_keeps_the_rate(
    make_shell: Callable[..., Shell], learned: bool
) -> None:
    """A 429 answers a request reserved at the prior ratio; meanwhile another response taught
    the learner that the model counts 1.5 times the estimate.  The retry reserves the new
    costs, the key still pauses for the Retry-After, but the adaptive rate is not cut: the 429
    was the estimate's miss, not an overload.  Without the lesson, the same 429 cuts it."""
    shell = make_shell(adaptive=True)
    learner = tt.TokenRatioLearner()
    replies = [httpx.Response(429, headers={"retry-after": "0.05"}), completion(156, 10)]

    def handler(request: httpx.Request) -> httpx.Response:
        reply = replies.pop(0)
        if reply.status_code == 429 and learned:
            learner.observe("m", estimated=104, counted=156)
        return reply

    transport = ThrottledTransport(
        httpx.MockTransport(handler), throttle=shell.throttle, learn_estimates=learner
    )
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(URL, json=BODY)
        await response.aread()
    assert response.status_code == 200
    assert shell.rejections() == 1
    assert shell.throttle.statistics().pauses == 1
    rate, configured = token_rate(shell)
    if learned:
        assert rate == configured
    else:  # halved, then a success's step back up (a hundredth of the configured rate)
        assert rate == pytest.approx(configured * 0.51)


async def test_a_queued_request_is_charged_what_recost_says_at_booking(
    make_shell: Callable[..., Shell],
) -> None:
    """Behind a held slot, a request's estimate grows while it waits: it is charged what
    ``recost`` says when the throttle admits it (the local one at the head's step, the Redis
    one when it books), not what it said on arrival."""
    shell = make_shell(max_concurrent=1)
    throttle = shell.throttle
    estimate = {"requests": 1.0, "tokens": 100.0}
    held = await throttle.acquire(requests=1)
    got: list[dict[str, float]] = []

    async def queued() -> None:
        slot = await throttle.acquire(dict(estimate), recost=lambda: estimate)
        got.append(dict(slot.costs))
        slot.release()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(queued)
            await wait_until(partial(waiting, throttle, 1))
            estimate["tokens"] = 150.0
            held.release()
    assert got == [{"requests": 1.0, "tokens": 150.0}]
    await shell.assert_level("tokens", 10_000 - 150, 0.5)
    await shell.assert_level("requests", 58, 0.01)


async def test_a_bad_recost_fails_its_request_alone(make_shell: Callable[..., Shell]) -> None:
    """A ``recost`` that raises, or returns a cost above a capacity, fails that request in its
    own task; the others queued with it are admitted and charged as usual."""
    shell = make_shell(max_concurrent=1)
    throttle = shell.throttle
    held = await throttle.acquire(requests=1)
    outcomes: dict[str, object] = {}
    broken = False  # fine on arrival (the local throttle asks then too), wrong at admission

    def boom() -> dict[str, float]:
        raise RuntimeError("tokenizer broke")

    recosts: dict[str, Callable[[], dict[str, float]]] = {
        "raises": boom,
        "too big": lambda: {"requests": 1, "tokens": 20_000},
        "fine": lambda: {"requests": 1, "tokens": 10},
    }

    def recost_of(name: str) -> dict[str, float]:
        return recosts[name]() if broken else {"requests": 1}

    async def request(name: str) -> None:
        try:
            slot = await throttle.acquire(requests=1, recost=partial(recost_of, name))
        except Exception as exc:
            outcomes[name] = type(exc)
        else:
            outcomes[name] = dict(slot.costs)
            slot.release()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for count, name in enumerate(recosts, 1):
                tg.start_soon(request, name)
                await wait_until(partial(waiting, throttle, count))
            broken = True
            held.release()
    assert outcomes == {
        "raises": RuntimeError,
        "too big": tt.CostExceedsCapacity,
        "fine": {"requests": 1, "tokens": 10},
    }
    await shell.assert_level("tokens", 10_000 - 10, 0.5)
    await shell.assert_level("requests", 58, 0.01)
