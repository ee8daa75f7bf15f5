"""A cancelled waiter leaves the line at once, wherever it is, and its memory goes with it.

The wait queue links its waiters both ways; one that leaves (cancelled, timed out, failed or
admitted) is unlinked in O(1), not kept until it reaches the front.  These tests hold a head
that never goes, cancel the waiters queued behind it, and count what the queue still holds:
its linked waiters and the waiter objects alive in the process (``gc``), on both backends, for
the three owners (RateLimiter, CapacityLimiter, Throttle).  Counts, not timings or bytes.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest

import throttle_trio as tt
from tests.helpers import settle
from throttle_trio._waitqueue import WaitQueue, _Waiter

pytestmark = pytest.mark.anyio

QUEUED = 1_000

Blocked = tuple[WaitQueue[Any], Callable[[], Coroutine[Any, Any, object]]]


@asynccontextmanager
async def _rate_limiter() -> AsyncIterator[Blocked]:
    limiter = tt.RateLimiter(tt.TokenBucket(1, per=3600.0, burst=1))
    assert limiter.try_acquire()  # drained: the next unit comes in an hour
    yield limiter._queue, limiter.acquire


@asynccontextmanager
async def _capacity_limiter() -> AsyncIterator[Blocked]:
    limiter = tt.CapacityLimiter(1)
    limiter.acquire_on_behalf_of_nowait("holder")
    yield limiter._queue, limiter.acquire


@asynccontextmanager
async def _throttle() -> AsyncIterator[Blocked]:
    throttle = tt.Throttle(
        requests=tt.TokenBucket(1, per=3600.0, burst=1),
        tokens=tt.TokenBucket(1000, per=3600.0, burst=1000),
        max_concurrent=1,
    )
    held = await throttle.acquire(requests=1, tokens=1)

    async def acquire() -> object:
        return await throttle.acquire(requests=1, tokens=1)

    try:
        yield throttle._queue, acquire
    finally:
        held.cancel()


OWNERS = [
    pytest.param(_rate_limiter, id="RateLimiter"),
    pytest.param(_capacity_limiter, id="CapacityLimiter"),
    pytest.param(_throttle, id="Throttle"),
]
Owner = Callable[[], AbstractAsyncContextManager[Blocked]]


def linked(queue: WaitQueue[Any]) -> list[_Waiter[Any]]:
    """The queue's waiters, front to back, after checking the links agree both ways."""
    waiters = queue._waiters()
    assert queue._first is (waiters[0] if waiters else None)
    assert queue._last is (waiters[-1] if waiters else None)
    for before, after in itertools.pairwise(waiters):
        assert before.next is after
        assert after.prev is before
        assert before.ticket < after.ticket
    if waiters:
        assert waiters[0].prev is None
        assert waiters[-1].next is None
    assert len(waiters) == queue.waiting
    return waiters


def live_waiters() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, _Waiter))


@pytest.mark.parametrize("owner", OWNERS)
async def test_cancelled_waiters_behind_a_waiting_head_are_gone(owner: Owner) -> None:
    """1,000 waiters cancelled behind a head that stays: the line holds the head alone, and no
    waiter object of theirs is left in the process."""
    async with owner() as (queue, acquire), anyio.create_task_group() as head:
        head.start_soon(acquire)
        await settle()
        (first,) = linked(queue)
        alone = live_waiters()
        async with anyio.create_task_group() as queued:
            for _ in range(QUEUED):
                queued.start_soon(acquire)
            await settle()
            assert len(linked(queue)) == 1 + QUEUED
            assert live_waiters() == alone + QUEUED
            queued.cancel_scope.cancel()
        assert linked(queue) == [first]
        assert live_waiters() == alone
        head.cancel_scope.cancel()
    assert linked(queue) == []


@pytest.mark.parametrize("owner", OWNERS)
async def test_a_waiter_cancelled_in_the_middle_is_unlinked_at_once(owner: Owner) -> None:
    """Cancelling one waiter between others unlinks it there, before the head moves; the rest
    keep their order."""
    async with owner() as (queue, acquire), anyio.create_task_group() as tg:
        scopes = []
        for _ in range(5):
            scope = anyio.CancelScope()
            scopes.append(scope)

            async def wait(scope: anyio.CancelScope = scope) -> None:
                with scope:
                    await acquire()

            tg.start_soon(wait)
            await settle()  # one at a time: their places are their start order
        waiters = linked(queue)
        assert len(waiters) == 5
        scopes[2].cancel()
        await settle()
        assert linked(queue) == [*waiters[:2], *waiters[3:]]
        scopes[4].cancel()  # the last one: the tail moves back
        await settle()
        assert linked(queue) == [*waiters[:2], waiters[3]]
        scopes[0].cancel()  # the head: the head role passes on
        await settle()
        assert linked(queue) == [waiters[1], waiters[3]]
        tg.cancel_scope.cancel()
    assert linked(queue) == []


async def test_a_retry_is_linked_at_its_ticket_place() -> None:
    """A Throttle retry with an earlier ticket goes back between the waiters around it."""
    throttle = tt.Throttle(requests=tt.TokenBucket(1, per=3600.0, burst=1), max_concurrent=1)
    held = await throttle.acquire(requests=1)
    queue = throttle._queue
    tickets = [queue.take_ticket() for _ in range(4)]
    async with anyio.create_task_group() as tg:

        async def retry(ticket: int) -> None:
            await throttle.acquire(requests=1, ticket=ticket)

        for ticket in (tickets[0], tickets[3], tickets[1]):  # tickets[1] comes back late
            tg.start_soon(retry, ticket)
            await settle()
        assert [w.ticket for w in linked(queue)] == [tickets[0], tickets[1], tickets[3]]
        tg.cancel_scope.cancel()
    held.cancel()
    assert linked(queue) == []
