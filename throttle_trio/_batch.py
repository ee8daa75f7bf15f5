"""Batch runners: many calls in one task group, nothing lost, nothing left running.

Theory of operation
-------------------
``max_concurrent`` *worker* tasks share one lazy iterator over the input (an iterable or an
async iterable of unknown length).  A worker reads the next item only when it is free, under
a lock, so live tasks are ``max_concurrent + 1`` whatever the input size, nothing is read
ahead, and a stop request leaves no item read but not run.  Each worker runs ``fn(item)``
(inside a throttle reservation if a throttle is given) and sends an :class:`ItemResult` to
the consumer.

In input order, results wait in a reorder buffer; a worker takes a token from a semaphore of
``window`` tokens before reading an item and the consumer gives it back when it emits that
item, so the buffer holds at most ``window`` results and intake pauses while the oldest item
is slow.

Everything runs in a task group owned by :func:`amap`'s ``async with``: leaving the block
(normally, by an exception, or by cancellation) cancels every call in flight, releases every
reservation and waits for all of it before returning (invariant I10).
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeAlias, TypeVar, final

import anyio

from ._reserve import Lane, check_lane
from ._shell import shell_for

if TYPE_CHECKING:
    from anyio.abc import ObjectReceiveStream, ObjectSendStream

    from ._throttle import Throttle
    from .redis import RedisThrottle

__all__ = ["BatchProgress", "ItemResult", "amap", "run_batch"]

T = TypeVar("T")
R = TypeVar("R")


@final
@dataclass(frozen=True, slots=True)
class ItemResult(Generic[T, R]):
    """The outcome of one input item: its value, or the exception its call raised.

    Attributes:
        index: the item's position in the input (from 0).
        item: the input item.
        value: what ``fn(item)`` returned (``None`` if it raised).
        error: the exception ``fn(item)`` raised, or ``None``.
    """

    index: int
    item: T
    value: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """The call returned (``error`` is ``None``)."""
        return self.error is None

    def unwrap(self) -> R:
        """The value, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # R may itself include None


@final
@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Counters passed to ``on_progress`` after each item completes.

    Attributes:
        started: items taken from the input so far.
        done: items completed (succeeded or failed).
        failed: items whose call raised.
        in_flight: calls running now.
    """

    started: int
    done: int
    failed: int
    in_flight: int


Errors: TypeAlias = Literal["collect", "raise"]
"""What a failed call does: yield a failed :class:`ItemResult`, or cancel the batch and raise."""


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


async def _iterate(items: Iterable[T] | AsyncIterable[T]) -> AsyncGenerator[T, None]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
            await anyio.lowlevel.checkpoint()  # a long sync iterable must not starve the loop


@asynccontextmanager
async def amap(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_concurrent: int = 16,
    throttle: Throttle | RedisThrottle | None = None,
    costs: Callable[[T], Mapping[str, float]] | None = None,
    usage: Callable[[R], Mapping[str, float] | None] | None = None,
    ordered: bool = False,
    window: int | None = None,
    errors: Errors = "collect",
    on_progress: Callable[[BatchProgress], None] | None = None,
    stop: anyio.Event | None = None,
    lane: Lane = "batch",
) -> AsyncIterator[AsyncIterator[ItemResult[T, R]]]:
    """Run ``fn`` on every item, concurrently, and iterate over the results.

    ::

        async with tt.amap(call, prompts, max_concurrent=32, throttle=throttle) as results:
            async for result in results:
                ...

    Leaving the block cancels what is still running and returns only once every call has
    ended (no task outlives it).  Errors are yielded as failed :class:`ItemResult` values
    (``errors="collect"``), or cancel the whole batch and propagate as an
    ``ExceptionGroup`` (``errors="raise"``).

    Args:
        fn: the async function to call on each item.
        items: an iterable or async iterable, read lazily (it may be endless).
        max_concurrent: calls running at once (int >= 1); also bounds the live tasks.
        throttle: if given, each call runs inside ``throttle.reserve(**costs(item))``: a
            :class:`~throttle_trio.Throttle`, or a :class:`~throttle_trio.redis.RedisThrottle`
            that several processes share.
        costs: the reservation's costs for an item (default: none; only a concurrency slot).
        usage: the real usage from a call's value, to settle the reservation (default: the
            estimate stands).
        ordered: yield results in input order instead of as they complete.
        window: with ``ordered``, the most results held back while an earlier one is still
            running (int >= 1, default ``2 * max_concurrent``); intake pauses at the limit.
        errors: ``"collect"`` or ``"raise"``.
        on_progress: called (synchronously) after each item with a :class:`BatchProgress`.
        stop: when this event is set, no more items are taken from the input; calls already
            running finish and their results are still yielded (a graceful drain).
        lane: the throttle's lane for the calls: ``"batch"`` (the default), so that
            interactive requests on the same throttle go before the batch's backlog, or
            ``"interactive"``.
    """
    workers = _check_positive_int("max_concurrent", max_concurrent)
    lane = check_lane(lane)
    if errors not in ("collect", "raise"):
        raise ValueError(f"errors must be 'collect' or 'raise', got {errors!r}")
    reorder = ordered
    tokens = _check_positive_int("window", window if window is not None else 2 * workers)
    gate = anyio.Semaphore(tokens) if reorder else None
    counters = {"started": 0, "done": 0, "failed": 0}
    source = _iterate(items)
    reading = anyio.Lock()
    result_send: ObjectSendStream[ItemResult[T, R]]
    result_receive: ObjectReceiveStream[ItemResult[T, R]]
    result_send, result_receive = anyio.create_memory_object_stream[ItemResult[T, R]](workers)

    async def next_item() -> tuple[int, T] | None:
        """The next item and its index, or ``None`` when the input is over or stopped."""
        if gate is not None:
            await gate.acquire()
        async with reading:
            if stop is not None and stop.is_set():
                return None
            try:
                item = await source.__anext__()
            except StopAsyncIteration:
                return None
            index = counters["started"]
            counters["started"] += 1
            return index, item

    shell = shell_for(throttle) if throttle is not None else None

    async def call(item: T) -> R:
        if shell is None:
            return await fn(item)
        async with shell.reserve(costs(item) if costs is not None else None, lane=lane) as slot:
            value = await fn(item)
            if usage is not None:
                actual = usage(value)
                if actual:
                    await shell.settle(slot, actual)
            return value

    async def work(results: ObjectSendStream[ItemResult[T, R]]) -> None:
        async with results:
            while (taken := await next_item()) is not None:
                index, item = taken
                try:
                    value = await call(item)
                except Exception as exc:
                    if errors == "raise":
                        raise
                    result: ItemResult[T, R] = ItemResult(index, item, error=exc)
                    counters["failed"] += 1
                else:
                    result = ItemResult(index, item, value=value)
                counters["done"] += 1
                if on_progress is not None:
                    on_progress(
                        BatchProgress(
                            started=counters["started"],
                            done=counters["done"],
                            failed=counters["failed"],
                            in_flight=counters["started"] - counters["done"],
                        )
                    )
                await results.send(result)

    async def results_in_order() -> AsyncGenerator[ItemResult[T, R], None]:
        held: dict[int, ItemResult[T, R]] = {}
        next_index = 0
        with result_receive:
            async for result in result_receive:
                if not reorder:
                    yield result
                    continue
                held[result.index] = result
                while next_index in held:
                    ready = held.pop(next_index)
                    next_index += 1
                    assert gate is not None
                    gate.release()
                    yield ready

    async with aclosing(source), anyio.create_task_group() as tg:
        with result_send:  # each worker holds its own clone
            for _ in range(workers):
                tg.start_soon(work, result_send.clone())
        iterator = results_in_order()
        try:
            yield iterator
        finally:
            tg.cancel_scope.cancel()  # whatever is left: the consumer is gone
            await iterator.aclose()
            result_receive.close()  # also when the consumer never started iterating


async def run_batch(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_concurrent: int = 16,
    throttle: Throttle | RedisThrottle | None = None,
    costs: Callable[[T], Mapping[str, float]] | None = None,
    usage: Callable[[R], Mapping[str, float] | None] | None = None,
    ordered: bool = False,
    window: int | None = None,
    errors: Errors = "collect",
    on_progress: Callable[[BatchProgress], None] | None = None,
    stop: anyio.Event | None = None,
    lane: Lane = "batch",
) -> list[ItemResult[T, R]]:
    """Run ``fn`` on every item and return one :class:`ItemResult` per item, in input order.

    The options are :func:`amap`'s, with the same meaning.  With ``errors="collect"`` (the
    default) it returns exactly one result per item taken from the input; with ``"raise"`` the
    first error cancels the batch and propagates in an ``ExceptionGroup`` (so every result
    returned is a success: ``result.unwrap()`` gives its value, typed ``R``).  The list is in
    input order either way; ``ordered=True`` also bounds how far intake runs ahead of the
    slowest call still running (``window`` results), at the cost of pausing it.

    Args:
        fn: the async function to call on each item.
        items: an iterable or async iterable, read lazily.
        max_concurrent: calls running at once (int >= 1).
        throttle: if given, each call runs inside ``throttle.reserve(**costs(item))``: a
            :class:`~throttle_trio.Throttle`, or a :class:`~throttle_trio.redis.RedisThrottle`
            that several processes share.
        costs: the reservation's costs for an item (default: none; only a concurrency slot).
        usage: the real usage from a call's value, to settle the reservation.
        ordered: run with :func:`amap`'s reorder window (see above).
        window: with ``ordered``, the most results held back (int >= 1, default
            ``2 * max_concurrent``).
        errors: ``"collect"`` or ``"raise"``.
        on_progress: called (synchronously) after each item with a :class:`BatchProgress`.
        stop: when set, no more items are taken; calls already running finish and are
            returned.
        lane: the throttle's lane for the calls (``"batch"``, the default, or
            ``"interactive"``).

    Raises:
        ValueError: ``max_concurrent`` or ``window`` below 1, or an unknown ``errors``.
        ExceptionGroup: with ``errors="raise"``, the errors of the calls that failed.
    """
    collected: list[ItemResult[T, R]] = []
    async with amap(
        fn,
        items,
        max_concurrent=max_concurrent,
        throttle=throttle,
        costs=costs,
        usage=usage,
        ordered=ordered,
        window=window,
        errors=errors,
        on_progress=on_progress,
        stop=stop,
        lane=lane,
    ) as results:
        async for result in results:
            collected.append(result)
    collected.sort(key=lambda r: r.index)
    return collected
