"""Behind a waiter, an acquire parks at once, and parking is its checkpoint (I5).

The owners skip their own ``checkpoint_if_cancelled()`` when somebody already waits: the
request cannot go before that waiter, so it joins the line and parks, and a pending
cancellation is delivered at the park.  These tests hold a head that never goes and call
``acquire`` behind it from a cancelled scope: it raises, takes nothing, and leaves the line as
it was, on both backends, for the three owners.  Counts and order, not timings.
"""

from __future__ import annotations

import anyio
import pytest

from tests.helpers import settle
from tests.test_waitqueue_memory import OWNERS, Owner, linked, live_waiters

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("owner", OWNERS)
async def test_acquire_behind_a_waiter_in_a_cancelled_scope_takes_nothing(owner: Owner) -> None:
    async with owner() as (queue, acquire), anyio.create_task_group() as tg:
        tg.start_soon(acquire)  # the head: waits for an hour, or for a slot never given back
        await settle()
        (head,) = linked(queue)
        alone = live_waiters()
        tickets = queue._next_ticket
        with anyio.fail_after(30):  # a guard against a hang, not a measurement
            with anyio.CancelScope() as scope:
                scope.cancel()
                await acquire()
                pytest.fail("acquire() behind a waiter returned in a cancelled scope")
        assert scope.cancelled_caught
        assert linked(queue) == [head]
        # The loop keeps a task's last exception, and the frames of its traceback, until the
        # task yields again (trio's next send, asyncio's cancelled future): then it is gone.
        await settle()
        assert live_waiters() == alone
        assert queue.waiting == 1
        assert queue._next_ticket in (tickets, tickets + 1)  # at most a ticket left unused
        tg.cancel_scope.cancel()
    assert linked(queue) == []


@pytest.mark.parametrize("owner", OWNERS)
async def test_waiters_behind_one_cancelled_on_arrival_keep_their_order(owner: Owner) -> None:
    """A cancelled arrival between two waiters leaves no gap that changes who is next."""
    async with owner() as (queue, acquire), anyio.create_task_group() as tg:
        tg.start_soon(acquire)
        await settle()
        (head,) = linked(queue)

        async def cancelled_arrival() -> None:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await acquire()

        tg.start_soon(cancelled_arrival)
        await settle()
        tg.start_soon(acquire)
        await settle()
        first, second = linked(queue)
        assert first is head
        assert second.ticket > head.ticket
        assert queue.waiting == 2
        tg.cancel_scope.cancel()
    assert linked(queue) == []
