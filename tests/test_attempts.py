"""call_with_retries: one request through a throttle against a scripted server, on both
backends, on virtual time."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import throttle_trio as tt
from tests.helpers import settle
from throttle_trio import (
    ResponseInfo,
    RetryAfterTooLong,
    RetryPolicy,
    Throttle,
    TokenBucket,
    call_with_retries,
    events,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

pytestmark = pytest.mark.anyio

Reply = tuple[int, dict[str, str], dict[str, float] | None]


def now() -> float:
    return anyio.current_time()


def server(
    replies: list[Reply], log: list[tuple[str, float]], name: str
) -> Callable[[], Awaitable[Reply]]:
    """Each call sends one attempt and gets the next scripted reply."""

    async def send() -> Reply:
        log.append((name, now()))
        return replies.pop(0)

    return send


def inspect(reply: Reply) -> ResponseInfo:
    status, headers, usage = reply
    return ResponseInfo(status, headers, usage)


def throttle() -> Throttle:
    return Throttle(requests=TokenBucket(64, burst=64), tokens=TokenBucket(64, burst=1024))


async def test_a_429_pauses_the_key_and_the_retry_keeps_its_ticket() -> None:
    t = throttle()
    log: list[tuple[str, float]] = []
    first = server([(429, {"retry-after-ms": "250"}, None), (200, {}, {"tokens": 10})], log, "A")
    second = server([(200, {}, None)], log, "B")
    results = {}

    async def run(name: str, send: Callable[[], Awaitable[Reply]]) -> None:
        results[name] = await call_with_retries(
            t,
            send,
            inspect,
            costs={"requests": 1, "tokens": 100},
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "A", first)
        await settle()
        tg.start_soon(run, "B", second)  # arrives during the pause
    assert log == [("A", 0), ("A", 0.25), ("B", 0.25)]
    assert results["A"][0] == 200
    stats = t.statistics()
    assert (stats.rejections, stats.pauses) == (1, 1)
    # A's 429 cost one request and no tokens; its success was settled to 10 tokens.
    assert stats.limits["tokens"].admitted_cost == 300
    assert stats.limits["tokens"].refunded == 100 + 90


async def test_a_429_cuts_the_limit_by_the_shortfall_it_proves() -> None:
    """The server had 50 tokens when a request of 60 arrived; we had at least 60 when we
    admitted it: we were ahead by at least 10, and a 429 is proof enough to cut at once."""
    t = Throttle(tokens=TokenBucket(1, per=1000.0, burst=100))
    headers = {"retry-after-ms": "0", "x-ratelimit-remaining-tokens": "50"}
    send = server([(429, headers, None)], [], "A")
    reply = await call_with_retries(
        t, send, inspect, costs={"tokens": 60}, retry=RetryPolicy(max_attempts=1)
    )
    assert reply[0] == 429
    assert t.statistics().limits["tokens"].available == 100 - 10  # the 60 refunded, 10 cut


async def test_other_5xx_back_off_this_request_only() -> None:
    t = throttle()
    log: list[tuple[str, float]] = []
    send = server([(500, {}, None), (502, {}, None), (200, {}, None)], log, "A")
    policy = RetryPolicy(base_delay=1.0)
    reply = await call_with_retries(
        t, send, inspect, costs={"requests": 1}, retry=policy, rng=lambda: 0.5
    )
    assert reply[0] == 200
    assert log == [("A", 0), ("A", 0.5), ("A", 1.5)]  # 0.5 * 1, then 0.5 * 2
    assert t.statistics().pauses == 0


async def test_a_503_with_retry_after_pauses_the_key() -> None:
    t = throttle()
    log: list[tuple[str, float]] = []
    send = server([(503, {"retry-after": "2"}, None), (200, {}, None)], log, "A")
    await call_with_retries(t, send, inspect, costs={"requests": 1})
    assert log == [("A", 0), ("A", 2)]
    assert t.statistics().pauses == 1


async def test_without_retry_after_a_429_waits_for_the_reported_reset() -> None:
    t = throttle()
    log: list[tuple[str, float]] = []
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}
    send = server([(429, headers, None), (200, {}, None)], log, "A")
    await call_with_retries(t, send, inspect, costs={"requests": 1})
    assert log == [("A", 0), ("A", 1.5)]


async def test_a_retry_after_above_the_cap_fails_and_pauses_for_the_cap() -> None:
    t = throttle()
    send = server([(429, {"retry-after": "600"}, None)], [], "A")
    with pytest.raises(RetryAfterTooLong):
        await call_with_retries(
            t, send, inspect, costs={"requests": 1}, retry=RetryPolicy(max_retry_after=60)
        )
    assert t.paused_until == 60


async def test_the_last_attempt_returns_the_error_response() -> None:
    t = throttle()
    log: list[tuple[str, float]] = []
    discarded: list[int] = []

    async def discard(reply: Reply) -> None:
        discarded.append(reply[0])

    send = server([(429, {"retry-after": "1"}, None)] * 3, log, "A")
    reply = await call_with_retries(
        t,
        send,
        inspect,
        costs={"requests": 1},
        retry=RetryPolicy(max_attempts=3),
        discard=discard,
    )
    assert reply[0] == 429
    assert [at for _, at in log] == [0, 1, 2]
    assert discarded == [429, 429]  # the returned one is left to the caller


async def test_the_server_may_forbid_a_retry() -> None:
    t = throttle()
    send = server([(500, {"x-should-retry": "false"}, None)], [], "A")
    reply = await call_with_retries(t, send, inspect, costs={"requests": 1})
    assert reply[0] == 500


async def test_the_total_timeout_counts_waiting() -> None:
    t = throttle()
    log: list[tuple[str, float]] = []
    send = server([(429, {"retry-after": "5"}, None), (200, {}, None)], log, "A")
    reply = await call_with_retries(
        t, send, inspect, costs={"requests": 1}, retry=RetryPolicy(total_timeout=3)
    )
    assert reply[0] == 429
    assert log == [("A", 0)]


async def test_an_exception_from_send_leaves_the_estimate_and_frees_the_slot() -> None:
    t = Throttle(tokens=TokenBucket(64, burst=1024), max_concurrent=1)

    async def send() -> Reply:
        raise ConnectionError("reset")

    with pytest.raises(ConnectionError):
        await call_with_retries(t, send, inspect, costs={"tokens": 100})
    stats = t.statistics()
    assert stats.in_flight == 0
    assert stats.limits["tokens"].available == 924


def test_errors_are_not_httpx_errors() -> None:
    assert issubclass(RetryAfterTooLong, tt.ThrottleTrioError)
    assert not issubclass(RetryAfterTooLong, OSError)


async def test_a_429_that_is_not_retried_still_pauses_the_key() -> None:
    """The last attempt's 429 closes the gate for every other request on the key (the design:
    a 429 pauses the whole shared limiter), and the pause is reported as the server's."""
    seen: list[events.Event] = []
    throttle = tt.Throttle(requests=tt.TokenBucket(10), on_event=seen.append)

    async def send() -> tuple[int, dict[str, str]]:
        return 429, {"retry-after": "7"}

    response = await tt.call_with_retries(
        throttle,
        send,
        lambda response: tt.ResponseInfo(response[0], response[1]),
        costs={"requests": 1},
        retry=tt.RetryPolicy(max_attempts=1),
    )
    assert response[0] == 429  # returned as it is, for the caller's own error
    stats = throttle.statistics()
    assert stats.pauses == 1
    assert stats.paused_until == anyio.current_time() + 7
    (paused,) = [e for e in seen if isinstance(e, events.Paused)]
    assert paused.reason == "retry-after"


@pytest.mark.parametrize("learned", [True, False], ids=["learned", "not-learned"])
async def test_a_429_that_recost_explains_retries_with_it_and_keeps_the_rate(
    learned: bool,
) -> None:
    """The transports' retry loop with a ``recost`` (their learned token ratio): a 429 answers
    an attempt reserved at 100 tokens, and by then ``recost`` says 150.  The 429 is the
    estimate's miss: the key pauses for its Retry-After and the retry reserves 150, but the
    adaptive rate stays.  A 429 that ``recost`` does not explain halves it."""
    from throttle_trio._attempts import attempts
    from throttle_trio._shell import shell_for

    t = Throttle(
        requests=TokenBucket(64, burst=64), tokens=TokenBucket(64, burst=1024), adaptive=True
    )
    estimate = {"requests": 1.0, "tokens": 100.0}
    replies: list[Reply] = [(429, {"retry-after-ms": "250"}, None), (200, {}, None)]
    log: list[tuple[float, dict[str, float]]] = []

    async def send(slot: object) -> Reply:
        reply = replies.pop(0)
        if reply[0] == 429 and learned:
            estimate["tokens"] = 150.0  # another response taught the learner meanwhile
        return reply

    async def succeeded(slot: tt.Reservation, reply: Reply, info: ResponseInfo) -> Reply:
        log.append((now(), dict(slot.costs)))
        slot.release()
        return reply

    result = await attempts(
        shell_for(t),
        dict(estimate),
        send,
        inspect,
        succeeded,  # type: ignore[arg-type]
        RetryPolicy(),
        recost=lambda: dict(estimate),
    )
    assert result[0] == 200
    assert log == [(0.25, dict(estimate))]
    stats = t.statistics()
    assert (stats.rejections, stats.pauses) == (1, 1)
    rates = {name: limit.rate for name, limit in stats.limits.items()}
    assert rates == ({"requests": 64, "tokens": 64} if learned else {"requests": 32, "tokens": 32})
