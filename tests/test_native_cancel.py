"""asyncio's own cancellation, as users meet it: a cancelled acquire took nothing.

anyio's cancel scopes are not the only way an asyncio task is cancelled: ``task.cancel()``,
``asyncio.timeout()``, ``asyncio.wait_for()`` and a failing ``asyncio.TaskGroup`` sibling
cancel natively, and anyio's shield does not stop them.  The rule (see ``_waitqueue``): an
admission is delivered when the acquire returns; one whose final checkpoint raised is undone.

The sweeps cancel an acquire after 0, 1, 2, ... scheduler steps, uncontended and behind a
holder, until the acquire completes before the cancel lands, and check afterwards that the
capacity is whole, no unit was spent by a cancelled acquire and the statistics agree.  They run
on the default asyncio loop, on looptime's virtual loop, with eager tasks (Python 3.12+) and on
uvloop (when installed).
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import looptime
import pytest

import throttle_trio as tt
from tests.helpers import cancel_after
from throttle_trio.httpx import ThrottledTransport

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _eager_loop() -> asyncio.AbstractEventLoop:
    loop = looptime.new_event_loop(start=0)
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    return loop


def _uvloop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(lambda: looptime.new_event_loop(start=0), id="looptime"),
    pytest.param(
        _eager_loop,
        id="eager",
        marks=pytest.mark.skipif(
            sys.version_info < (3, 12), reason="asyncio.eager_task_factory is new in 3.12"
        ),
    ),
    pytest.param(
        _uvloop,
        id="uvloop",
        marks=pytest.mark.skipif(not _has_uvloop(), reason="uvloop is not installed"),
    ),
]


def run(loop_factory: LoopFactory, main: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())  # type: ignore[arg-type]


@dataclass
class Scenario:
    """One primitive, and what "whole" means for it after a cancelled or completed acquire."""

    enter: Callable[[], AbstractAsyncContextManager[Any]]
    hold: Callable[[], Awaitable[Callable[[], None]]]  # takes it first; returns the release
    check: Callable[[int], None]  # asserts the state, given how many acquires got through


def capacity_scenario() -> Scenario:
    limiter = tt.CapacityLimiter(1)

    async def hold() -> Callable[[], None]:
        holder = object()
        await limiter.acquire_on_behalf_of(holder)
        return lambda: limiter.release_on_behalf_of(holder)

    def check(acquired: int) -> None:
        stats = limiter.statistics()
        assert stats.borrowed_tokens == 0
        assert stats.tasks_waiting == 0
        assert limiter.available_tokens == 1
        limiter.acquire_on_behalf_of_nowait("next")  # the token is really there
        limiter.release_on_behalf_of("next")

    return Scenario(lambda: limiter, hold, check)


def rate_scenario() -> Scenario:
    limiter = tt.RateLimiter(tt.TokenBucket(rate=1, per=3600.0, burst=2))
    held: list[bool] = []

    async def hold() -> Callable[[], None]:
        await limiter.acquire(2)  # drains the bucket: the next acquire waits for an hour
        held.append(True)

        def release() -> None:  # a refund lets the waiter in
            limiter.refund(2)

        return release

    def check(acquired: int) -> None:
        stats = limiter.statistics()
        assert stats.tasks_waiting == 0
        spent = int(acquired)
        assert stats.admitted == len(held) + spent
        assert stats.admitted_cost == 2 * len(held) + spent
        # Virtual time barely moves (an hour per unit): what is there is what was not spent.
        assert math.floor(stats.available) == 2 - spent

    return Scenario(lambda: limiter, hold, check)


def throttle_scenario() -> Scenario:
    throttle = tt.Throttle(requests=tt.TokenBucket(rate=1, per=3600.0, burst=5), max_concurrent=1)

    held: list[tt.Reservation] = []

    async def hold() -> Callable[[], None]:
        slot = await throttle.acquire(requests=1)
        held.append(slot)
        return slot.cancel  # never sent: its request comes back too

    def check(acquired: int) -> None:
        stats = throttle.statistics()
        assert stats.in_flight == 0
        assert stats.tasks_waiting == 0
        requests = stats.limits["requests"]
        spent = int(acquired)
        assert math.floor(requests.available) == 5 - spent
        assert stats.admitted == len(held) + spent
        assert requests.admitted_cost == len(held) + spent
        # The holder's cancel; on a real clock a full bucket drops what refilled meanwhile (at
        # one unit an hour, 1e-3 is 3.6 s of a loaded machine): a bound, not a duration.
        assert len(held) - 1e-3 <= requests.refunded <= len(held)

    return Scenario(lambda: throttle.reserve(requests=1), hold, check)


SCENARIOS = [
    pytest.param(capacity_scenario, id="CapacityLimiter"),
    pytest.param(rate_scenario, id="RateLimiter"),
    pytest.param(throttle_scenario, id="Throttle"),
]


async def sweep(make: Callable[[], Scenario], *, contended: bool, release_after: int = 3) -> int:
    """Cancel after 0, 1, 2, ... steps until the acquire completes first; return the steps."""
    for steps in range(200):
        scenario = make()
        release = await scenario.hold() if contended else None
        got_through = False

        async def borrower(scenario: Scenario = scenario) -> None:
            nonlocal got_through
            async with scenario.enter():
                got_through = True
                await asyncio.sleep(0)

        def release_midway(step: int) -> None:
            nonlocal release
            if release is not None and step == release_after:
                release()
                release = None

        finished_first = await cancel_after(borrower, steps, release_midway)
        if release is not None:
            release()
        for _ in range(5):  # let every task that was woken run and find nothing to do
            await asyncio.sleep(0)
        scenario.check(got_through)
        if finished_first:
            return steps
    raise AssertionError("the acquire never completed")


@pytest.mark.parametrize("make", SCENARIOS)
@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("contended", [False, True], ids=["uncontended", "contended"])
def test_cancel_at_every_step(
    make: Callable[[], Scenario], loop_factory: LoopFactory, contended: bool
) -> None:
    """task.cancel() at every await point of an acquire leaves nothing taken."""
    result: list[int] = []

    async def main() -> None:
        result.append(await sweep(make, contended=contended))

    run(loop_factory, main)
    assert result[0] >= 1  # at least one cancel landed inside the acquire


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_anyio_398_deadlock(loop_factory: LoopFactory) -> None:
    """anyio's regression test for anyio #398, against our CapacityLimiter."""

    async def main() -> None:
        limiter = tt.CapacityLimiter(1)

        async def borrower() -> None:
            async with limiter:
                await asyncio.sleep(0)

        task = asyncio.create_task(borrower())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert limiter.borrowed_tokens == 0
        await asyncio.wait_for(borrower(), 10)  # would wait forever with a leaked token

    run(loop_factory, main)


@pytest.mark.parametrize("make", SCENARIOS)
@pytest.mark.parametrize("loop_factory", LOOPS)
def test_task_group_with_a_failing_sibling(
    make: Callable[[], Scenario], loop_factory: LoopFactory
) -> None:
    """A TaskGroup with a task that fails at once cancels the others, some inside their
    acquire: afterwards only the ones that got in have spent anything, and all is released."""

    async def main() -> None:
        scenario = make()
        entered = 0

        async def failing() -> None:
            raise ValueError("boom")

        async def worker() -> None:
            nonlocal entered
            async with scenario.enter():
                entered += 1
                await asyncio.sleep(3600)

        async def group() -> None:
            async with asyncio.TaskGroup() as group:
                for _ in range(3):
                    group.create_task(worker())
                # Last: an eager task fails inside create_task, and a group that is already
                # failing refuses new tasks.
                group.create_task(failing())

        with pytest.raises(ExceptionGroup) as caught:
            await group()
        assert caught.group_contains(ValueError)
        await asyncio.sleep(0)
        assert entered < 3  # the group failed while some were still acquiring
        scenario.check(entered)

    run(loop_factory, main)


@pytest.mark.parametrize("make", SCENARIOS)
@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("how", ["timeout", "wait_for"])
def test_timeouts_that_expire_in_the_acquire(
    make: Callable[[], Scenario], loop_factory: LoopFactory, how: str
) -> None:
    """asyncio.timeout() and wait_for() with a budget already spent: nothing taken, twice."""

    async def main() -> None:
        scenario = make()

        async def borrow() -> None:
            async with scenario.enter():
                await asyncio.sleep(0)

        for _ in range(2):  # the second would raise "already holding" after a leak
            if how == "timeout":
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0):
                        await borrow()
            else:
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(borrow(), 0)
            await asyncio.sleep(0)
            scenario.check(False)

    run(loop_factory, main)


#: (enter the primitive, what it has handed out, how many tasks wait in it)
Pair = tuple[
    "Callable[[], AbstractAsyncContextManager[Any]]", "Callable[[], int]", "Callable[[], int]"
]


def _capacity_pair() -> Pair:
    limiter = tt.CapacityLimiter(1)
    return (
        (lambda: limiter),
        (lambda: limiter.borrowed_tokens),
        lambda: limiter.statistics().tasks_waiting,
    )


def _rate_pair() -> Pair:
    limiter = tt.RateLimiter(tt.TokenBucket(rate=1, per=3600.0, burst=1))
    return (
        (lambda: limiter),
        (lambda: limiter.statistics().admitted),
        (lambda: limiter.statistics().tasks_waiting),
    )


def _throttle_pair() -> Pair:
    throttle = tt.Throttle(max_concurrent=1)
    return (
        (lambda: throttle.reserve()),
        (lambda: throttle.statistics().in_flight),
        (lambda: throttle.statistics().tasks_waiting),
    )


@pytest.mark.parametrize("make", [_capacity_pair, _rate_pair, _throttle_pair])
@pytest.mark.parametrize("loop_factory", LOOPS)
def test_undo_wakes_a_waiter_that_queued_meanwhile(
    make: Callable[[], Pair],
    loop_factory: LoopFactory,
) -> None:
    """B queues behind A's undelivered admission; A's cancel gives it back and B goes."""

    async def main() -> None:
        enter, taken, waiting = make()
        inside: list[str] = []

        async def borrower(name: str) -> None:
            async with enter():
                inside.append(name)
                await asyncio.sleep(3600)

        first = asyncio.create_task(borrower("A"))
        second = asyncio.create_task(borrower("B"))
        # A is admitted and yields in its final checkpoint; B finds nothing left and queues
        # (at once with eager tasks, after one step otherwise).
        while not waiting():
            await asyncio.sleep(0)
        assert taken() == 1
        assert inside == []
        first.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        assert inside == ["B"]
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(asyncio.CancelledError):
            await second

    run(loop_factory, main)


# --------------------------------------------------------------------------- the layers above


async def _transport_call(throttle: tt.Throttle) -> None:

    async def reply(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return httpx.Response(
            200, json={"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
        )

    transport = ThrottledTransport(httpx.MockTransport(reply), throttle=throttle)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(
            "http://api.test/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        )
        await response.aread()


async def _batch_call(throttle: tt.Throttle) -> None:
    async def work(item: int) -> int:
        await asyncio.sleep(0)
        return item

    await tt.run_batch(work, range(4), max_concurrent=2, throttle=throttle)


async def _amap_call(throttle: tt.Throttle) -> None:
    async def work(item: int) -> int:
        await asyncio.sleep(0)
        return item

    async with tt.amap(work, range(4), max_concurrent=2, throttle=throttle) as results:
        async for _ in results:
            await asyncio.sleep(0)


async def _retries_call(throttle: tt.Throttle) -> None:
    async def send() -> int:
        await asyncio.sleep(0)
        return 200

    await tt.call_with_retries(
        throttle, send, lambda status: tt.ResponseInfo(status, {}, None), costs={"requests": 1}
    )


LAYERS = [
    pytest.param(_transport_call, id="transport"),
    pytest.param(_batch_call, id="run_batch"),
    pytest.param(_amap_call, id="amap"),
    pytest.param(_retries_call, id="call_with_retries"),
]


@pytest.mark.parametrize("call", LAYERS)
@pytest.mark.parametrize("loop_factory", LOOPS)
def test_layers_cancelled_at_every_step(
    call: Callable[[tt.Throttle], Awaitable[None]], loop_factory: LoopFactory
) -> None:
    """The transport, the batch runners and the retry loop, cancelled after k steps."""

    async def main() -> None:
        for steps in range(400):
            throttle = tt.Throttle(
                requests=tt.TokenBucket(rate=100, per=1.0, burst=100),
                tokens=tt.TokenBucket(rate=10_000, per=1.0, burst=10_000),
                max_concurrent=1,
            )
            finished_first = await cancel_after(partial(call, throttle), steps)
            stats = throttle.statistics()
            assert stats.in_flight == 0, steps
            assert stats.tasks_waiting == 0, steps
            # The slot is really free: a reservation goes through.
            async with asyncio.timeout(10):
                async with throttle.reserve():
                    pass
            if finished_first:
                return
        raise AssertionError("the call never completed")

    run(loop_factory, main)
