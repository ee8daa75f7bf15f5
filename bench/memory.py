"""Benchmark 5: memory per waiting task, and what cancelled waiters leave behind.

Measured with ``tracemalloc`` (every Python allocation, current size), after ``gc.collect()``,
on both backends, each subject in its own event loop.  Every subject is *blocked* first (a
drained bucket that refills in an hour, a capacity limiter whose one token is held), so each
acquire waits:

* **Per waiting task.**  N tasks each call ``acquire`` once; once all N wait, the traced memory
  minus what it was before they started, divided by N.  That includes the task itself (its
  coroutine frames, the task group's bookkeeping), so the same N tasks parked on a bare
  ``anyio.Event`` are measured too: the difference is what waiting *in the limiter* costs.  A
  warm-up round first grows the loop's own tables, so that they are not charged to anyone.
* **Cancelled waiters.**  One task waits at the head and stays; 20,000 tasks (2,000 in a quick
  run) queue behind it and are all cancelled; once they are gone, the traced memory minus what
  it was before they came (*left behind*).  A warm-up round first, as above.  A queue that
  drops cancelled waiters only when they reach the front keeps them all, since the head never
  leaves.
"""

from __future__ import annotations

import gc
import math
import time
import tracemalloc
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

import throttle_trio as tt

from ._peers import BACKENDS
from ._report import Check, Section, Table, fmt, ratio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ._settings import Settings

__all__ = ["run"]

ANYIO = "anyio.CapacityLimiter"
BARE = "bare task on anyio.Event"
OURS_RATE = "throttle_trio RateLimiter"
OURS_CAPACITY = "throttle_trio CapacityLimiter"
OURS_THROTTLE = "throttle_trio Throttle (2 limits + slot)"
#: "Back to baseline": what cancelled waiters may leave behind, as a share of what they took.
LEFT_BEHIND_SHARE = 0.01


@dataclass(slots=True)
class Blocked:
    """A subject whose ``acquire()`` waits, and how many tasks wait in it."""

    acquire: Callable[[], Any]
    waiting: Callable[[], int]


@dataclass(frozen=True, slots=True)
class Subject:
    name: str
    open: Callable[[], AbstractAsyncContextManager[Blocked]]


@asynccontextmanager
async def _rate_limiter() -> AsyncIterator[Blocked]:
    limiter = tt.RateLimiter(tt.TokenBucket(1, per=3600.0, burst=1))
    assert limiter.try_acquire()  # drained: the next unit comes in an hour
    yield Blocked(limiter.acquire, lambda: limiter.statistics().tasks_waiting)


@asynccontextmanager
async def _capacity_limiter() -> AsyncIterator[Blocked]:
    limiter = tt.CapacityLimiter(1)
    limiter.acquire_on_behalf_of_nowait("holder")
    yield Blocked(limiter.acquire, lambda: limiter.statistics().tasks_waiting)


@asynccontextmanager
async def _throttle() -> AsyncIterator[Blocked]:
    throttle = tt.Throttle(
        requests=tt.TokenBucket(1, per=3600.0, burst=1),
        tokens=tt.TokenBucket(10**9, per=3600.0, burst=10**9),
        max_concurrent=1,
    )
    held = await throttle.acquire(requests=1, tokens=1)  # the slot and the hour's unit

    async def acquire() -> None:
        await throttle.acquire(requests=1, tokens=1)

    try:
        yield Blocked(acquire, lambda: throttle.statistics().tasks_waiting)
    finally:
        held.cancel()


@asynccontextmanager
async def _anyio_capacity_limiter() -> AsyncIterator[Blocked]:
    limiter = anyio.CapacityLimiter(1)
    await limiter.acquire_on_behalf_of("holder")
    yield Blocked(limiter.acquire, lambda: limiter.statistics().tasks_waiting)


@asynccontextmanager
async def _bare() -> AsyncIterator[Blocked]:
    event = anyio.Event()
    parked = 0

    async def acquire() -> None:
        nonlocal parked
        parked += 1
        try:
            await event.wait()
        finally:
            parked -= 1

    yield Blocked(acquire, lambda: parked)


SUBJECTS = (
    Subject(OURS_RATE, _rate_limiter),
    Subject(OURS_CAPACITY, _capacity_limiter),
    Subject(OURS_THROTTLE, _throttle),
    Subject(ANYIO, _anyio_capacity_limiter),
    Subject(BARE, _bare),
)


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _until(condition: Callable[[], bool]) -> None:
    # Polls a count while thousands of tasks start or unwind: each pass lets them all run.
    with anyio.fail_after(120):
        while not condition():
            await anyio.lowlevel.checkpoint()
    for _ in range(3):  # let the last arrivals settle into their waits
        await anyio.lowlevel.checkpoint()


async def _wave(blocked: Blocked, tasks: int, already: int) -> int:
    """Start ``tasks`` waiters; once all wait, measure; cancel them; return the measurement."""
    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(blocked.acquire)
        await _until(lambda: blocked.waiting() >= already + tasks)
        peak = _traced()
        tg.cancel_scope.cancel()
    await _until(lambda: blocked.waiting() <= already)
    return peak


async def _per_waiting_task(subject: Subject, tasks: int) -> float:
    async with subject.open() as blocked:
        await _wave(blocked, tasks, 0)  # warm-up: the loop's own tables grow once
        before = _traced()
        peak = await _wave(blocked, tasks, 0)
    return (peak - before) / tasks


async def _left_behind(subject: Subject, tasks: int) -> tuple[float, float]:
    """(bytes left behind after ``tasks`` waiters were cancelled, bytes they took at peak)."""
    async with subject.open() as blocked, anyio.create_task_group() as head:
        head.start_soon(blocked.acquire)  # waits at the front for the whole measurement
        await _until(lambda: blocked.waiting() >= 1)
        await _wave(blocked, tasks, 1)  # warm-up
        before = _traced()
        peak = await _wave(blocked, tasks, 1)
        after = _traced()
        head.cancel_scope.cancel()
    return after - before, peak - before


def run(settings: Settings) -> Section:
    tasks = settings.memory_tasks
    cancelled = settings.memory_cancelled
    section = Section(
        "5. Memory",
        f"*Per waiting task*: {tasks:,} tasks wait in one blocked limiter; traced memory "
        "(`tracemalloc`, after `gc.collect()`) minus what it was before they started, per task "
        "(the task itself included), after a warm-up round. *Left behind*: one task waits at "
        f"the head while {cancelled:,} tasks queue behind it and are cancelled; traced memory "
        "once they are gone minus before they came, after a warm-up round.",
    )
    started = time.perf_counter()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        per_task: dict[tuple[str, str], float] = {}
        left: dict[tuple[str, str], tuple[float, float]] = {}
        for backend in BACKENDS:
            for subject in SUBJECTS:
                key = (backend, subject.name)
                per_task[key] = anyio.run(_per_waiting_task, subject, tasks, backend=backend)
                left[key] = anyio.run(_left_behind, subject, cancelled, backend=backend)
    finally:
        if not was_tracing:
            tracemalloc.stop()

    table = Table(
        [
            "subject",
            "backend",
            "B per waiting task",
            "x anyio CL",
            "B above a bare task",
            f"left behind by {cancelled:,} cancelled",
            "B per cancelled",
            "they took at peak",
        ]
    )
    for backend in BACKENDS:
        for subject in SUBJECTS:
            value = per_task[backend, subject.name]
            kept, peak = left[backend, subject.name]
            table.add(
                subject.name,
                backend,
                fmt(value, 0),
                ratio(value, per_task[backend, ANYIO]),
                fmt(value - per_task[backend, BARE], 0),
                f"{fmt(kept / 1024, 1)} KiB",
                fmt(kept / cancelled, 1),
                f"{fmt(peak / 1024, 0)} KiB",
            )
    section.tables.append(table)
    section.notes += [
        "A waiting task's memory is mostly the task: its coroutine frames, the task group's "
        "and the event loop's bookkeeping. *B above a bare task* is what waiting in the "
        "subject costs beyond a task parked on an `anyio.Event`.",
        "*Left behind* is measured while the head still waits: a queue that drops cancelled "
        "waiters only when they reach its front keeps every one of them. A few KiB either way "
        "are the allocator's and the interpreter's free lists.",
    ]
    for backend in BACKENDS:
        reference = per_task[backend, ANYIO]
        for name in (OURS_RATE, OURS_CAPACITY):
            value = per_task[backend, name]
            section.checks.append(
                Check(
                    f"[{backend}] memory per waiting task, {name} <= anyio.CapacityLimiter",
                    value <= reference,
                    f"{fmt(value, 0)} B vs {fmt(reference, 0)} B ({ratio(value, reference)})",
                )
            )
        for name in (OURS_RATE, OURS_CAPACITY, OURS_THROTTLE):
            kept, peak = left[backend, name]
            section.checks.append(
                Check(
                    f"[{backend}] {name}: {cancelled:,} cancelled waiters give their memory "
                    "back (left behind <= 1% of what they took)",
                    kept <= LEFT_BEHIND_SHARE * peak,
                    f"{fmt(kept / 1024, 1)} KiB left of {fmt(peak / 1024, 0)} KiB "
                    f"({fmt(100 * kept / peak if peak else math.nan, 2)}%)",
                )
            )
    section.seconds = time.perf_counter() - started
    return section
