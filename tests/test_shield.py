"""``finish_then_cancel``: a call that must finish (a Redis round trip) finishes, under asyncio's
own cancellation too, and its deadline still cancels it.

The call runs in the calling task (no child task): a ``task.cancel()`` that arrives meanwhile
is held back until the call is over and then delivered at the caller's next ``await``, with
the task's count of cancellation requests as it would have been, so ``asyncio.timeout()`` and
``TaskGroup`` still recognise their own.  The held-back cases run on every asyncio loop of
``test_native_cancel`` (no time involved); the deadline runs on virtual time on both backends.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from tests.test_native_cancel import LOOPS, LoopFactory, run
from throttle_trio._shield import DeadlinePassed, finish_then_cancel


class Call:
    """A call that waits on two futures in turn; the test decides when each is done."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.first: asyncio.Future[str] = loop.create_future()
        self.second: asyncio.Future[str] = loop.create_future()
        self.seen: list[str] = []
        self.task: asyncio.Task[Any] | None = None

    async def __call__(self) -> str:
        self.task = asyncio.current_task()
        try:
            self.seen.append(await self.first)
        except ValueError as exc:
            self.seen.append(f"caught {exc}")
        self.seen.append(await self.second)
        return "done"


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_a_cancel_is_held_back_until_the_call_is_over(loop_factory: LoopFactory) -> None:
    async def main() -> None:
        call = Call()
        caller = asyncio.current_task()
        assert caller is not None
        got: list[str] = []

        async def body() -> None:
            got.append(await finish_then_cancel(call))
            await asyncio.sleep(0)  # the held-back cancellation lands here
            got.append("not cancelled")

        task = asyncio.create_task(body())
        await asyncio.sleep(0)
        assert call.task is task  # run in the calling task itself, not a child task
        task.cancel()
        task.cancel()  # twice: one CancelledError, a count of two, as without the shield
        await asyncio.sleep(0)
        call.first.set_result("one")
        await asyncio.sleep(0)
        assert not task.done()
        call.second.set_result("two")
        with pytest.raises(asyncio.CancelledError):
            await task
        assert call.seen == ["one", "two"]
        assert got == ["done"]
        assert task.cancelling() == 2

    run(loop_factory, main)


@pytest.mark.parametrize("cancelled", [False, True], ids=["alone", "cancelled"])
@pytest.mark.parametrize("loop_factory", LOOPS)
def test_the_error_of_the_awaited_future_reaches_the_call(
    loop_factory: LoopFactory, cancelled: bool
) -> None:
    async def main() -> None:
        call = Call()
        task = asyncio.create_task(finish_then_cancel(call))
        await asyncio.sleep(0)
        if cancelled:  # held back while the future fails: the call still sees the failure
            task.cancel()
        call.first.set_exception(ValueError("refused"))
        await asyncio.sleep(0)
        call.second.set_result("two")
        if cancelled:
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            assert await task == "done"
        assert call.seen == ["caught refused", "two"]

    run(loop_factory, main)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_asyncio_timeout_still_raises_timeout_error(loop_factory: LoopFactory) -> None:
    async def main() -> None:
        call = Call()
        loop = asyncio.get_running_loop()
        got: list[str] = []

        async def body() -> None:
            async with asyncio.timeout(None) as timeout:
                expire.append(timeout)
                got.append(await finish_then_cancel(call))
                await asyncio.sleep(0)
            got.append("not timed out")

        expire: list[asyncio.Timeout] = []
        task = asyncio.create_task(body())
        await asyncio.sleep(0)
        expire[0].reschedule(loop.time())  # it expires while the call waits
        for _ in range(3):
            await asyncio.sleep(0)
        assert not task.done()
        call.first.set_result("one")
        call.second.set_result("two")
        with pytest.raises(TimeoutError):  # not CancelledError: the count is the timeout's own
            await task
        assert got == ["done"]
        assert task.cancelling() == 0

    run(loop_factory, main)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_a_failing_task_group_sibling(loop_factory: LoopFactory) -> None:
    async def main() -> None:
        call = Call()
        got: list[str] = []

        async def worker() -> None:
            got.append(await finish_then_cancel(call))
            await asyncio.sleep(0)
            got.append("not cancelled")

        async def failing() -> None:
            await asyncio.sleep(0)
            raise ValueError("sibling")

        async def finish_later() -> None:
            for _ in range(5):
                await asyncio.sleep(0)
            call.first.set_result("one")
            call.second.set_result("two")

        async def group() -> None:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(worker())
                tasks.create_task(failing())

        finisher = asyncio.create_task(finish_later())
        with pytest.raises(ExceptionGroup) as caught:
            await group()
        await finisher
        assert caught.group_contains(ValueError, match="sibling")
        assert got == ["done"]
        assert call.seen == ["one", "two"]

    run(loop_factory, main)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_any_awaitable(loop_factory: LoopFactory) -> None:
    async def main() -> None:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(finish_then_cancel(lambda: future))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        future.set_result("value")
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not future.cancelled()

    run(loop_factory, main)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_a_deadline_that_passes_between_steps(loop_factory: LoopFactory) -> None:
    """The deadline passes while the call has made a bare yield (``sleep(0)``): nothing to
    cancel then, so the call sees the cancellation where it resumes."""

    async def main() -> None:
        steps: list[int] = []

        async def busy() -> str:
            for step in range(10):
                steps.append(step)
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    steps.append(-1)
                    raise
            return "finished"

        with pytest.raises(DeadlinePassed):
            await asyncio.wait_for(finish_then_cancel(busy, asyncio.get_running_loop().time()), 5)
        assert steps[-1] == -1
        assert len(steps) < 10

    run(loop_factory, main)


@pytest.mark.anyio
async def test_the_deadline_cancels_the_call_where_it_waits() -> None:
    seen: list[str] = []
    never = anyio.Event()

    async def stuck() -> None:
        try:
            await never.wait()
        except BaseException:
            seen.append("cancelled")
            raise

    started = anyio.current_time()
    with anyio.fail_after(1), anyio.CancelScope(shield=True), pytest.raises(DeadlinePassed):
        await finish_then_cancel(stuck, started + 0.25)
    assert anyio.current_time() - started == 0.25
    assert seen == ["cancelled"]


@pytest.mark.anyio
async def test_a_call_done_before_its_deadline_returns_its_value() -> None:
    async def quick() -> str:
        await anyio.sleep(0.125)
        return "value"

    started = anyio.current_time()
    assert await finish_then_cancel(quick, started + 0.25) == "value"
    await anyio.sleep(0.5)  # the deadline's timer was cancelled: nothing fires later
    assert anyio.current_time() - started == 0.625
