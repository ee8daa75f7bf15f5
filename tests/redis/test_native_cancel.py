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
from throttle_trio.redis import GCRALimit, RedisThrottle, WindowLimit

if TYPE_CHECKING:
    import coredis

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("kind", ["bucket", "window"])
@pytest.mark.parametrize("contended", [False, True], ids=["uncontended", "contended"])
async def test_cancel_at_every_step_of_an_acquire(
    client: coredis.Redis[bytes], name: str, contended: bool, kind: str
) -> None:
    completed_at = None
    for steps in range(400):
        # An hour per unit (a window of an hour): nothing comes back by itself during the
        # test, so what is there is what is left.
        limit = (
            GCRALimit(1, per=3600.0, burst=5) if kind == "bucket" else WindowLimit(5, window=3600.0)
        )
        throttle = RedisThrottle(client, f"{name}-{steps}", requests=limit, max_concurrent=1)
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
        # A window gives nothing back once admitted: the holder's cancelled unit stays counted.
        kept = 1 if contended and kind == "window" else 0
        assert left == pytest.approx(5 - got_through - kept, abs=0.01), (steps, got_through)
        if finished_first:
            completed_at = steps
            break
    assert completed_at is not None
    assert completed_at >= 1


@pytest.mark.parametrize("kind", ["bucket", "window"])
async def test_a_task_cancel_while_it_sleeps_to_its_booked_instant(
    client: coredis.Redis[bytes], name: str, kind: str
) -> None:
    """Booked an hour ahead and sleeping until then, the request is cancelled by a plain
    ``task.cancel()``: its booking is given back, and the next request books as if it never
    came."""
    limit = GCRALimit(1, per=3600.0, burst=1) if kind == "bucket" else WindowLimit(1, window=3600.0)
    throttle = RedisThrottle(client, name, requests=limit)
    (await throttle.acquire(requests=1)).release()
    before = await throttle.state()
    sleeper = asyncio.create_task(throttle.acquire(requests=1))
    for _ in range(500):  # until it has booked (bounded: 5 s)
        await asyncio.sleep(0.01)
        if throttle.statistics().round_trips == 2:
            break
    assert (await throttle.state()).booked_for is not None
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    stats = throttle.statistics()
    assert (stats.unbooked, stats.in_flight, stats.tasks_waiting) == (1, 0, 0)
    after = await throttle.state()
    assert after.booked_for == before.booked_for
    # What refilled meanwhile (a unit an hour) is all that differs.
    assert after.available["requests"] == pytest.approx(before.available["requests"], abs=0.01)
