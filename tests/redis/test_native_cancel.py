"""The Redis throttle under asyncio's own cancellation: a cancelled acquire took nothing.

``task.cancel()`` (what ``asyncio.TaskGroup``, ``asyncio.timeout()`` and ``wait_for()`` use)
is not stopped by anyio's shields, so it can land in the middle of a booking's round trip, or
in the final checkpoint after an admission.  The sweep cancels an acquire after 0, 1, 2, ...
scheduler steps until the acquire completes first, and checks after each that the process
holds nothing and that Redis got back every unit of a cancelled acquire.

Real I/O: the real clock, asyncio only (these are asyncio's semantics); counts and bounds.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from tests.helpers import cancel_after
from throttle_trio.redis import GCRALimit, RedisThrottle

if TYPE_CHECKING:
    import coredis

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("contended", [False, True], ids=["uncontended", "contended"])
async def test_cancel_at_every_step_of_an_acquire(
    client: coredis.Redis[bytes], name: str, contended: bool
) -> None:
    completed_at = None
    for steps in range(400):
        # An hour per unit: nothing refills during the test, so what is there is what is left.
        throttle = RedisThrottle(
            client,
            f"{name}-{steps}",
            requests=GCRALimit(1, per=3600.0, burst=5),
            max_concurrent=1,
        )
        holder = await throttle.acquire(requests=1) if contended else None
        got_through = False

        async def borrower(throttle: RedisThrottle = throttle) -> None:
            nonlocal got_through
            async with throttle.reserve(requests=1):
                got_through = True
                await asyncio.sleep(0)

        async def release_midway(step: int, throttle: RedisThrottle = throttle) -> None:
            nonlocal holder
            if holder is not None and step == 3:
                await throttle.cancel(holder)  # the slot and its unit come back
                holder = None

        finished_first = await cancel_after(borrower, steps, release_midway)
        if holder is not None:
            await throttle.cancel(holder)
        for _ in range(20):  # let shielded give-backs finish
            await asyncio.sleep(0.01)
        stats = throttle.statistics()
        assert (stats.in_flight, stats.tasks_waiting) == (0, 0), steps
        left = (await throttle.state()).available["requests"]
        assert left == pytest.approx(5 - got_through, abs=0.01), (steps, got_through)
        if finished_first:
            completed_at = steps
            break
    assert completed_at is not None
    assert completed_at >= 1
