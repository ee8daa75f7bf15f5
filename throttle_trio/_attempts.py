"""One request through a throttle, with retries that keep its ticket.

This is layer 4 put together: reserve the estimate, send, read the response's rate-limit
headers back into the throttle, settle to the real usage, and on a retryable error decide
between pausing the whole key (a 429, or a 503/529 with Retry-After) and backing off this one
request, then try again with the original ticket, holding no slot while waiting.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio

from ._headers import RateLimitHeaders, parse_rate_limit_headers
from ._reserve import Lane, check_lane
from ._retry import RetryAfterTooLong, RetryPolicy
from ._shell import shell_for

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from ._headers import HeadersLike, ResponseParser
    from ._shell import Slot, ThrottleShell
    from ._throttle import Throttle
    from .redis import RedisThrottle

__all__ = ["ResponseInfo", "call_with_retries"]

logger = logging.getLogger("throttle_trio.transport")

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """What :func:`call_with_retries` needs to know about a response.

    Attributes:
        status: the HTTP status.
        headers: the response headers (any mapping, or (name, value) pairs).
        usage: the real usage per metric (``{"tokens": 812}``), or ``None`` if unknown (the
            estimate then stands).
        body: an error response's body, if read, for the parsers that read bodies (Gemini's
            ``retryDelay``), or ``None``.
    """

    status: int
    headers: HeadersLike
    usage: Mapping[str, float] | None = None
    body: bytes | str | None = None


async def call_with_retries(
    throttle: Throttle | RedisThrottle,
    send: Callable[[], Awaitable[R]],
    inspect: Callable[[R], ResponseInfo],
    *,
    costs: Mapping[str, float],
    retry: RetryPolicy | None = None,
    discard: Callable[[R], Awaitable[None]] | None = None,
    rng: Callable[[], float] = random.random,
    wall_clock: Callable[[], float] = time.time,
    parser: ResponseParser | None = None,
    lane: Lane = "interactive",
) -> R:
    """Send one request through ``throttle``, retrying as ``retry`` says, and return the last
    response.

    Each attempt reserves ``costs`` (the first one takes a ticket, every retry reuses it, so a
    retried request goes before everyone who arrived after it), calls ``send()``, and feeds the
    response's rate-limit headers to the throttle's ``observe``.  A success (status < 400) is
    settled to ``inspect(response).usage`` and counts as a success for the adaptive rate.  An
    error costs the attempt one request and no tokens (the reservation's ``reject``); overload
    statuses (429 and 5xx) cut the adaptive rate.  Then:

    * a 429, or a 503/529 with Retry-After, closes the throttle's gate for the whole key, for
      the Retry-After, else until the exhausted limit resets as its headers say, else for a
      backoff; the request retries behind the gate;
    * another retryable error (408, 409, 5xx; ``x-should-retry``) waits a full-jitter backoff
      (or the Retry-After) for this request alone, holding no slot;
    * a wait above ``retry.max_retry_after`` (a Retry-After or a reset) raises
      :class:`RetryAfterTooLong` (the gate still closes for at most the cap); a non-retryable
      error, the last attempt or an exhausted ``retry.total_timeout`` returns the response as
      it is, so that an SDK above raises its own error.  Time spent queueing counts against
      ``total_timeout``.

    Exceptions from ``send`` propagate: the attempt's estimate stands (the request may have
    left).  A response that will be retried is passed to ``discard`` first (close it there).

    Args:
        throttle: the throttle of the request's key: a :class:`~throttle_trio.Throttle`, or a
            :class:`~throttle_trio.redis.RedisThrottle` shared by a fleet.
        send: makes one attempt and returns its response.
        inspect: reads a response's status, headers and usage.
        costs: the estimate per metric (``{"requests": 1, "tokens": 1200}``).
        retry: the retry policy (default: ``RetryPolicy()``).
        discard: releases a response that will not be returned.
        rng: a source of uniform numbers in [0, 1) for the jitter.
        wall_clock: UNIX time, for HTTP-date and RFC 3339 headers.
        parser: reads each response's rate-limit signals (default: every built-in dialect,
            :func:`~throttle_trio.parse_any`).
        lane: ``"interactive"`` or ``"batch"`` (see :meth:`~throttle_trio.Throttle.reserve`);
            its retries keep their ticket, whatever the lane.
    """
    shell = shell_for(throttle)

    async def succeeded(slot: Slot, response: R, info: ResponseInfo) -> R:
        try:
            await settle_success(shell, slot, info.usage)
        finally:
            slot.release()
        return response

    return await attempts(
        shell,
        costs,
        lambda _slot: send(),
        inspect,
        succeeded,
        retry if retry is not None else RetryPolicy(),
        discard=discard,
        rng=rng,
        wall_clock=wall_clock,
        parser=parser,
        lane=check_lane(lane),
    )


async def attempts(
    shell: ThrottleShell,
    costs: Mapping[str, float],
    send: Callable[[Slot], Awaitable[R]],
    inspect: Callable[[R], ResponseInfo],
    succeeded: Callable[[Slot, R, ResponseInfo], Awaitable[R]],
    policy: RetryPolicy,
    *,
    discard: Callable[[R], Awaitable[None]] | None = None,
    queue_timeout: float | None = None,
    replayable: bool = True,
    rng: Callable[[], float] = random.random,
    wall_clock: Callable[[], float] = time.time,
    parser: ResponseParser | None = None,
    recost: Callable[[], Mapping[str, float]] | None = None,
    lane: Lane = "interactive",
) -> R:
    """The retry loop of :func:`call_with_retries` and of the transports.

    ``send(slot)`` makes one attempt under the admitted ``slot`` (a transport reports through
    it when the request is on the wire).
    ``succeeded(slot, response, info)`` takes over a success's slot (it must release it, now
    or later: a transport keeps it until the body is closed) and returns what to return.
    ``queue_timeout`` caps each wait in the queue (the transports pass the pool timeout);
    a request that is not ``replayable`` (a streaming body) is never retried.  ``recost()``,
    if given, computes the request's costs again with what was learned since ``costs`` (the
    transports apply the token ratio learned meanwhile): the throttle calls it when it
    decides each attempt's admission, so a request queued before its model's first response
    is charged what was learned while it waited, and a retry is reserved with it.  A 429
    that it explains (it now asks more than the attempt reserved: an estimate that was
    short, not a server that is overloaded) does not cut the adaptive rate.
    """
    started = anyio.current_time()
    deadline = math.inf if policy.total_timeout is None else started + policy.total_timeout
    ticket: int | None = None
    attempt = 0
    while True:
        attempt += 1
        wait_at_most = deadline - anyio.current_time()
        if queue_timeout is not None:
            wait_at_most = min(wait_at_most, queue_timeout)
        if attempt > 1 and recost is not None:
            costs = recost()
        slot = await shell.acquire(
            costs,
            ticket=ticket,
            lane=lane,
            timeout=None if wait_at_most == math.inf else max(0.0, wait_at_most),
            recost=recost,
        )
        ticket = slot.ticket
        try:
            response = await send(slot)
        except BaseException:
            slot.release()  # the request may have left: the estimate stands
            raise
        try:
            info = inspect(response)
            now = wall_clock()
            report = parse_rate_limit_headers(info.headers, now, body=info.body, parser=parser)
            await shell.observe(report, slot)
            if info.status < 400:
                return await succeeded(slot, response, info)
            wait = await handle_failure(
                shell, slot, info.status, info.headers, report, policy, attempt, rng, recost
            )
        except BaseException:
            slot.release()  # idempotent: also after succeeded() took it over and failed
            if discard is not None:
                with anyio.CancelScope(shield=True):
                    await discard(response)
            raise
        slot.release()
        if wait is None or not replayable or not time_for_retry(shell, wait, deadline):
            return response  # unread: the caller (an SDK) raises its own error
        if discard is not None:
            await discard(response)  # close a rejected response before waiting
        if wait:
            await anyio.sleep(wait)


async def settle_success(
    shell: ThrottleShell, slot: Slot, usage: Mapping[str, float] | None
) -> None:
    """A successful response: settle its reservation to the real usage, feed the adaptive rate."""
    if usage:  # a response reports metrics this reservation may not count
        counted = {metric: value for metric, value in usage.items() if metric in slot.costs}
        if counted:
            await shell.settle(slot, counted)
    await shell.record_success()


async def handle_failure(
    shell: ThrottleShell,
    slot: Slot,
    status: int,
    headers: HeadersLike,
    report: RateLimitHeaders,
    policy: RetryPolicy,
    attempt: int,
    rng: Callable[[], float],
    recost: Callable[[], Mapping[str, float]] | None = None,
) -> float | None:
    """An error response: account for it, and say how long this request waits before its
    retry (``0.0`` when the key is paused: the gate holds it back), or ``None`` to give up.

    The attempt costs one request and no tokens (the reservation's ``reject``; a 429 first
    cuts each limit by the shortfall it proves); an overload status cuts the adaptive rate,
    except a 429 that ``recost()`` explains (the request's costs computed again now exceed
    what the attempt reserved, in some metric: the estimate was short, and learning has
    caught up since, so the retry is reserved right and the rate need not fall); a 429 (or
    503/529 with Retry-After) closes the gate, explained or not.

    Raises:
        RetryAfterTooLong: the server asked for a wait above ``policy.max_retry_after``.
    """
    reserved = slot.costs
    requests = reserved.get("requests")
    kept = {"requests": requests} if requests is not None else {}
    overload = status == 429 or status >= 500
    if status == 429 and recost is not None and _underestimated(reserved, recost()):
        overload = False  # an estimation miss: the retry reserves the new costs
        logger.debug("a 429 that the costs learned since explain: the rate stays")
    await shell.reject(slot, kept, report if status == 429 else None, status)
    if overload:
        await shell.record_overload()
    pauses = policy.pauses_key(status, headers)
    # The headers were parsed (and anything malformed logged) once, into `report`.
    delay = policy.judge_delay(report.retry_after)
    if delay is None and pauses:  # until an exhausted limit resets, as the headers say
        resets = [
            info.reset_after
            for info in report.limits.values()
            if info.remaining == 0 and info.reset_after is not None
        ]
        delay = policy.judge_delay(min(resets)) if resets else None
    if delay is not None and delay.too_long:  # whatever said it, no pause is longer
        if pauses:
            await shell.pause_for(delay.pause, reason="retry-after")
        raise RetryAfterTooLong(delay.delay, policy.max_retry_after)
    wait = delay.pause if delay is not None else policy.backoff(attempt, rng())
    if pauses:
        # The gate closes for every request on the key, also when this one gives up.
        await shell.pause_for(wait, reason="retry-after")
    if not policy.should_retry(status, report, attempt):
        return None
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "attempt %d got %d: %s", attempt, status, "pausing the key" if pauses else "backing off"
        )
    return 0.0 if pauses else wait  # 0.0: the gate holds this request back, with its ticket


def _underestimated(reserved: Mapping[str, float], now: Mapping[str, float]) -> bool:
    """Whether the costs computed ``now`` exceed what was ``reserved``, in some metric."""
    return any(cost > reserved.get(metric, 0.0) for metric, cost in now.items())


def time_for_retry(shell: ThrottleShell, wait: float, deadline: float) -> bool:
    """Whether a retry after ``wait`` seconds (and after the pause) starts before ``deadline``."""
    resume = max(anyio.current_time() + wait, shell.paused_until or -math.inf)
    return resume <= deadline
