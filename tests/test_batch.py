"""Batch runners on both backends: one outcome per item, lazy input, bounded tasks,
ordering, error policies, clean cancellation and draining (I10)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, assert_type

import anyio
import pytest
import sniffio
import trio

import throttle_trio as tt
from throttle_trio import BatchProgress, ItemResult, amap, run_batch

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytestmark = pytest.mark.anyio


def live_tasks() -> int:
    """Tasks alive in this event loop, counted the same way on both backends."""
    if sniffio.current_async_library() == "asyncio":
        return len(asyncio.all_tasks())
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count, stack = 0, [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def double_later(x: int) -> int:
    await anyio.sleep(0.01 * (x % 7))
    return 2 * x


async def test_one_result_per_item_in_input_order() -> None:
    results = await run_batch(double_later, range(100), max_concurrent=8)
    assert [r.index for r in results] == list(range(100))
    assert [r.value for r in results] == [2 * x for x in range(100)]
    assert all(r.ok for r in results)


async def test_calls_run_concurrently_up_to_the_limit() -> None:
    running = peak = 0

    async def call(x: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(1)
        running -= 1

    await run_batch(call, range(20), max_concurrent=5)
    assert peak == 5
    assert anyio.current_time() == 4


async def test_amap_yields_as_completed_or_in_order() -> None:
    async def call(x: int) -> int:
        await anyio.sleep(10 - x)
        return x

    async with amap(call, range(5), max_concurrent=5) as results:
        assert [r.value async for r in results] == [4, 3, 2, 1, 0]
    async with amap(call, range(5), max_concurrent=5, ordered=True) as results:
        assert [r.value async for r in results] == [0, 1, 2, 3, 4]


async def test_errors_are_collected_as_outcomes() -> None:
    async def call(x: int) -> int:
        if x % 3 == 0:
            raise ValueError(f"bad {x}")
        return x

    results = await run_batch(call, range(9), max_concurrent=4)
    assert [r.ok for r in results] == [x % 3 != 0 for x in range(9)]
    assert str(results[3].error) == "bad 3"
    with pytest.raises(ValueError, match="bad 6"):
        results[6].unwrap()
    assert results[1].unwrap() == 1


async def test_fail_fast_cancels_the_rest_and_raises_a_group() -> None:
    cancelled = 0

    async def call(x: int) -> int:
        nonlocal cancelled
        try:
            await anyio.sleep(1 if x else 0.5)
            if x == 0:
                raise KeyError("first")
            return x
        except anyio.get_cancelled_exc_class():
            cancelled += 1
            raise

    with pytest.RaisesGroup(KeyError, flatten_subgroups=True):
        await run_batch(call, range(10), max_concurrent=4, errors="raise")
    assert cancelled == 3  # the three other calls in flight
    assert anyio.current_time() == 0.5


async def test_async_iterable_of_unknown_length() -> None:
    async def pages() -> AsyncIterator[int]:
        for page in range(5):
            await anyio.sleep(0.1)
            for x in range(page * 10, page * 10 + 10):
                yield x

    results = await run_batch(double_later, pages(), max_concurrent=3)
    assert [r.value for r in results] == [2 * x for x in range(50)]


async def test_100_000_lazy_items_keep_live_tasks_bounded() -> None:
    produced = 0
    worst_tasks = worst_read_ahead = 0

    def items() -> Iterator[int]:
        nonlocal produced
        for x in range(100_000):
            produced += 1
            yield x

    async def call(x: int) -> int:
        nonlocal worst_tasks, worst_read_ahead
        if x % 97 == 0:
            worst_tasks = max(worst_tasks, live_tasks())
        worst_read_ahead = max(worst_read_ahead, produced - x)
        await anyio.lowlevel.checkpoint()
        return x

    baseline = live_tasks()
    done = 0
    async with amap(call, items(), max_concurrent=8) as results:
        async for _ in results:
            done += 1
    assert done == 100_000
    assert worst_tasks <= baseline + 8  # the workers; nothing per item
    assert worst_read_ahead <= 8  # the input is read only as workers free up
    assert live_tasks() == baseline


async def test_in_order_intake_pauses_behind_a_slow_item() -> None:
    produced = 0

    def items() -> Iterator[int]:
        nonlocal produced
        for x in range(1000):
            produced += 1
            yield x

    async def call(x: int) -> int:
        await anyio.sleep(100 if x == 0 else 0.001)
        return x

    async with amap(call, items(), max_concurrent=4, ordered=True, window=10) as results:
        first = await results.__anext__()
        assert first.index == 0
        # While item 0 ran for 100 s, at most `window` results were held back.
        assert anyio.current_time() == 100


async def test_cancelling_the_batch_cancels_every_call_and_releases_every_slot() -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(64, burst=8), max_concurrent=4)
    started = ended = 0

    async def call(x: int) -> int:
        nonlocal started, ended
        started += 1
        try:
            await anyio.sleep(1)
            return x
        finally:
            ended += 1

    with anyio.move_on_after(2.5):
        await run_batch(
            call, range(1000), max_concurrent=6, throttle=throttle, costs=lambda x: {"requests": 1}
        )
    assert started == ended  # every started call has ended before run_batch returned
    assert 0 < started < 1000
    stats = throttle.statistics()
    assert (stats.in_flight, stats.tasks_waiting) == (0, 0)


async def test_leaving_amap_early_cancels_the_rest() -> None:
    started = ended = 0

    async def call(x: int) -> int:
        nonlocal started, ended
        started += 1
        try:
            await anyio.sleep(x)
            return x
        finally:
            ended += 1

    baseline = live_tasks()
    async with amap(call, range(100), max_concurrent=5) as results:
        async for result in results:
            if result.index == 2:
                break
    assert live_tasks() == baseline
    assert started == ended  # the calls in flight were cancelled and have ended
    assert 7 <= started <= 8  # 0, 1, 2 finished; 3..6 (and maybe 7) were in flight
    assert anyio.current_time() == 2


async def test_throttle_costs_and_settle_from_usage() -> None:
    throttle = tt.Throttle(tokens=tt.TokenBucket(64, burst=128))

    async def call(x: int) -> dict[str, int]:
        return {"tokens": 10}

    results = await run_batch(
        call,
        range(4),
        throttle=throttle,
        costs=lambda x: {"tokens": 64},
        usage=lambda value: value,
    )
    assert len(results) == 4
    stats = throttle.statistics().limits["tokens"]
    assert stats.admitted_cost == 256
    assert stats.refunded == 4 * 54


async def test_stop_drains_calls_in_flight() -> None:
    stop = anyio.Event()

    async def call(x: int) -> int:
        if x == 5:
            stop.set()
        await anyio.sleep(1)
        return x

    results = await run_batch(call, range(100), max_concurrent=4, stop=stop)
    # Items 4 and 5 were taken when the first round ended; item 5 asked to stop, so the
    # other two workers took nothing more, and the calls in flight finished with results.
    assert [r.index for r in results] == list(range(6))
    assert all(r.ok for r in results)


async def test_progress_is_reported_after_each_item() -> None:
    seen: list[BatchProgress] = []

    async def call(x: int) -> int:
        if x == 1:
            raise RuntimeError
        return x

    await run_batch(call, range(3), max_concurrent=1, on_progress=seen.append)
    assert seen[-1] == BatchProgress(started=3, done=3, failed=1, in_flight=0)
    assert [p.done for p in seen] == [1, 2, 3]


async def test_bad_options() -> None:
    with pytest.raises(ValueError, match=r"^max_concurrent must be an int >= 1, got 0$"):
        await run_batch(double_later, [1], max_concurrent=0)
    with pytest.raises(ValueError, match=r"^errors must be 'collect' or 'raise', got 'ignore'$"):
        await run_batch(double_later, [1], errors="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^window must be an int >= 1, got 0$"):
        await run_batch(double_later, [1], ordered=True, window=0)


async def test_options_are_typed_keywords() -> None:
    """mypy checks every option (a stale ``type: ignore`` fails ``warn_unused_ignores``), and
    the results carry the item and value types; at run time a misspelled option is refused."""

    async def describe(x: int) -> str:
        return f"#{x}"

    results = await run_batch(describe, range(3), max_concurrent=2, errors="raise")
    assert_type(results, list[ItemResult[int, str]])
    assert [result.unwrap() for result in results] == ["#0", "#1", "#2"]
    async with amap(describe, range(3), ordered=True) as stream:
        assert_type(stream, "AsyncIterator[ItemResult[int, str]]")
        assert [result.value async for result in stream] == ["#0", "#1", "#2"]
    with pytest.raises(TypeError, match="max_concurent"):
        await run_batch(describe, range(3), max_concurent=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^max_concurrent must be an int >= 1, got str '2'$"):
        await run_batch(describe, range(3), max_concurrent="2")  # type: ignore[arg-type]


def test_item_result_repr_is_useful() -> None:
    assert repr(ItemResult(3, "x", value=1)) == "ItemResult(index=3, item='x', value=1, error=None)"


async def test_a_batch_runs_in_the_batch_lane_so_interactive_requests_go_first() -> None:
    """run_batch reserves in the batch lane: an interactive request that arrives while the
    batch's backlog waits is admitted before it (FIFO within the batch)."""
    throttle = tt.Throttle(requests=tt.TokenBucket(1, burst=1))
    order: list[str] = []

    async def call(item: int) -> int:
        order.append(f"batch-{item}")
        return item

    async def interactive() -> None:
        await anyio.sleep(0.5)  # the batch's first item went at 0; the rest wait
        async with throttle.reserve(requests=1):
            order.append("chat")

    async with anyio.create_task_group() as tg:
        tg.start_soon(interactive)
        results = await tt.run_batch(
            call, range(4), max_concurrent=4, throttle=throttle, costs=lambda _: {"requests": 1}
        )
    assert [r.unwrap() for r in results] == [0, 1, 2, 3]
    assert order == ["batch-0", "chat", "batch-1", "batch-2", "batch-3"]
    with pytest.raises(ValueError, match="lane must be 'interactive' or 'batch', got 'low'"):
        await tt.run_batch(call, [], throttle=throttle, lane="low")  # type: ignore[arg-type]
