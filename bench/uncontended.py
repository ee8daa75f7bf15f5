"""Benchmark 1: the cost of an uncontended acquire (one task, an effectively infinite rate).

Each peer runs a tight loop of ``n`` acquisitions in one task (acquire + release for the
capacity limiters and semaphores); the result is wall-clock nanoseconds per iteration, loop
overhead included, after a warm-up.  Every peer of one backend runs in the same event loop,
one after the other; full mode repeats the whole sweep and reports medians.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import anyio

import throttle_trio as tt

from . import baselines
from ._peers import BACKENDS, make_pyrate_limiter
from ._report import Check, Section, Table, fmt, median, ratio

if TYPE_CHECKING:
    from ._settings import Settings

__all__ = ["run"]

Loop = Callable[[int], Awaitable[None]]

INFINITE = 10**9  # "effectively infinite": never reached by the loops below
OURS = "throttle_trio RateLimiter(TokenBucket)"
OURS_CAPACITY = "throttle_trio CapacityLimiter"
ANYIO = "anyio.CapacityLimiter"
LIMITS_OPS = 10_000
AIOMETER_OPS = 10_000


@dataclass(frozen=True, slots=True)
class LoopPeer:
    """A peer for this benchmark: ``open(backend)`` yields ``loop(n)``, which does n acquires."""

    name: str
    what: str
    backends: tuple[str, ...]
    open: Callable[[str], AbstractAsyncContextManager[Loop]]
    max_ops: int | None = None


def _acquire_loop(acquire: Callable[[], Awaitable[object]]) -> Loop:
    async def loop(n: int) -> None:
        for _ in range(n):
            await acquire()

    return loop


def _pair_loop(acquire: Callable[[], Awaitable[object]], release: Callable[[], object]) -> Loop:
    async def loop(n: int) -> None:
        for _ in range(n):
            await acquire()
            release()

    return loop


@asynccontextmanager
async def _tt_bucket(backend: str) -> AsyncIterator[Loop]:
    limiter = tt.RateLimiter(tt.TokenBucket(INFINITE, burst=INFINITE))
    yield _acquire_loop(limiter.acquire)


@asynccontextmanager
async def _tt_gcra(backend: str) -> AsyncIterator[Loop]:
    limiter = tt.RateLimiter(tt.GCRA(INFINITE, burst=INFINITE))
    yield _acquire_loop(limiter.acquire)


@asynccontextmanager
async def _tt_window(backend: str) -> AsyncIterator[Loop]:
    limiter = tt.RateLimiter(tt.SlidingWindow(INFINITE, 1.0))
    yield _acquire_loop(limiter.acquire)


@asynccontextmanager
async def _tt_capacity(backend: str) -> AsyncIterator[Loop]:
    limiter = tt.CapacityLimiter(INFINITE)
    yield _pair_loop(limiter.acquire, limiter.release)


def _ignore(event: object) -> None:
    """A listener that does nothing: the cost of making the events, not of using them."""


@asynccontextmanager
async def _tt_throttle(backend: str, *, listen: bool = False) -> AsyncIterator[Loop]:
    throttle = tt.Throttle(
        requests=tt.TokenBucket(INFINITE, burst=INFINITE),
        tokens=tt.TokenBucket(INFINITE, burst=INFINITE),
        max_concurrent=INFINITE,
        on_event=_ignore if listen else None,
    )
    reserve = throttle.reserve

    async def loop(n: int) -> None:
        for _ in range(n):
            async with reserve(requests=1, tokens=100):
                pass

    yield loop


@asynccontextmanager
async def _anyio_capacity(backend: str) -> AsyncIterator[Loop]:
    limiter = anyio.CapacityLimiter(INFINITE)
    yield _pair_loop(limiter.acquire, limiter.release)


@asynccontextmanager
async def _trio_capacity(backend: str) -> AsyncIterator[Loop]:
    import trio

    limiter = trio.CapacityLimiter(INFINITE)
    yield _pair_loop(limiter.acquire, limiter.release)


@asynccontextmanager
async def _asyncio_semaphore(backend: str) -> AsyncIterator[Loop]:
    semaphore = asyncio.Semaphore(INFINITE)
    yield _pair_loop(semaphore.acquire, semaphore.release)


@asynccontextmanager
async def _aiolimiter(backend: str) -> AsyncIterator[Loop]:
    from aiolimiter import AsyncLimiter

    yield _acquire_loop(AsyncLimiter(INFINITE, 1.0).acquire)


@asynccontextmanager
async def _pyrate(backend: str) -> AsyncIterator[Loop]:
    limiter = make_pyrate_limiter(INFINITE, INFINITE)
    try_acquire = limiter.try_acquire_async  # type: ignore[attr-defined]

    async def loop(n: int) -> None:
        for _ in range(n):
            await try_acquire("bench", weight=1)

    try:
        yield loop
    finally:
        limiter.close()  # type: ignore[attr-defined]


@asynccontextmanager
async def _limits(backend: str) -> AsyncIterator[Loop]:
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import MemoryStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    storage = MemoryStorage()
    strategy = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(INFINITE)

    async def loop(n: int) -> None:
        for _ in range(n):
            await strategy.hit(item, "bench")

    try:
        yield loop
    finally:
        if storage.timer is not None and not storage.timer.done():
            storage.timer.cancel()


@asynccontextmanager
async def _aiometer(backend: str) -> AsyncIterator[Loop]:
    import aiometer

    async def noop(_: int) -> None:
        pass

    async def loop(n: int) -> None:
        await aiometer.run_on_each(noop, range(n), max_per_second=INFINITE)

    yield loop


@asynccontextmanager
async def _blog_bucket(backend: str) -> AsyncIterator[Loop]:
    if backend == "asyncio":
        yield _acquire_loop(baselines.BlogTokenBucket(INFINITE, INFINITE).acquire)
    else:
        yield _acquire_loop(baselines.AnyioBlogTokenBucket(INFINITE, INFINITE).acquire)


@asynccontextmanager
async def _blog_window(backend: str) -> AsyncIterator[Loop]:
    if backend == "asyncio":
        yield _acquire_loop(baselines.BlogSlidingWindow(INFINITE, 1.0).acquire)
    else:
        yield _acquire_loop(baselines.AnyioBlogSlidingWindow(INFINITE, 1.0).acquire)


PEERS: tuple[LoopPeer, ...] = (
    LoopPeer(OURS, "acquire", BACKENDS, _tt_bucket),
    LoopPeer("throttle_trio RateLimiter(GCRA)", "acquire", BACKENDS, _tt_gcra),
    LoopPeer("throttle_trio RateLimiter(SlidingWindow)", "acquire", BACKENDS, _tt_window),
    LoopPeer(OURS_CAPACITY, "acquire+release", BACKENDS, _tt_capacity),
    LoopPeer(
        "throttle_trio Throttle (2 limits + slot)", "reserve: enter+exit", BACKENDS, _tt_throttle
    ),
    LoopPeer(
        "throttle_trio Throttle, a no-op on_event",
        "reserve: enter+exit",
        BACKENDS,
        partial(_tt_throttle, listen=True),
    ),
    LoopPeer(ANYIO, "acquire+release", BACKENDS, _anyio_capacity),
    LoopPeer("trio.CapacityLimiter", "acquire+release", ("trio",), _trio_capacity),
    LoopPeer("asyncio.Semaphore", "acquire+release", ("asyncio",), _asyncio_semaphore),
    LoopPeer("aiolimiter", "acquire", ("asyncio",), _aiolimiter),
    LoopPeer("pyrate-limiter", "try_acquire_async", ("asyncio",), _pyrate),
    LoopPeer("limits (moving window)", "hit", ("asyncio",), _limits, max_ops=LIMITS_OPS),
    LoopPeer("aiometer", "per item of run_on_each", BACKENDS, _aiometer, max_ops=AIOMETER_OPS),
    LoopPeer("blog TokenBucket", "acquire", BACKENDS, _blog_bucket),
    LoopPeer("blog SlidingWindow", "acquire", BACKENDS, _blog_window),
)


async def _sweep(backend: str, ops: int) -> dict[str, float]:
    """Time every peer of ``backend`` once; nanoseconds per iteration by name."""
    results: dict[str, float] = {}
    for peer in PEERS:
        if backend not in peer.backends:
            continue
        n = min(ops, peer.max_ops or ops)
        async with peer.open(backend) as loop:
            await loop(min(n, 2_000))  # warm-up
            gc.collect()
            start = time.perf_counter_ns()
            await loop(n)
            results[peer.name] = (time.perf_counter_ns() - start) / n
    return results


def run(settings: Settings) -> Section:
    section = Section(
        "1. Uncontended acquire cost",
        "One task, an effectively infinite rate (10^9/s, burst 10^9): wall-clock ns per "
        "acquire (acquire + release for capacity limiters and semaphores), loop included. "
        f"{settings.uncontended_ops:,} iterations per peer"
        + (f", medians of {settings.reps} sweeps." if settings.reps > 1 else ", one sweep."),
    )
    started = time.perf_counter()
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(settings.reps):
        for backend in BACKENDS:
            sweep = anyio.run(_sweep, backend, settings.uncontended_ops, backend=backend)
            for name, ns in sweep.items():
                samples.setdefault((backend, name), []).append(ns)
    result = {key: median(values) for key, values in samples.items()}

    def get(backend: str, name: str) -> float:
        return result.get((backend, name), float("nan"))

    table = Table(
        [
            "peer",
            "measures",
            "asyncio ns",
            "x throttle_trio",
            "x anyio CL",
            "trio ns",
            "x throttle_trio",
            "x anyio CL",
        ]
    )
    for peer in PEERS:
        cells = [peer.name, peer.what]
        for backend in BACKENDS:
            value = get(backend, peer.name)
            cells += [
                fmt(value, 0),
                ratio(value, get(backend, OURS)),
                ratio(value, get(backend, ANYIO)),
            ]
        table.add(*cells)
    section.tables.append(table)
    section.notes += [
        "Ratios are this row divided by throttle_trio RateLimiter(TokenBucket), or by "
        "anyio.CapacityLimiter acquire+release, on the same backend in the same run.",
        "throttle_trio Throttle: `async with throttle.reserve(requests=1, tokens=100)` over two "
        "limits of 10^9/s and max_concurrent=10^9: one admission charges both and takes a "
        "slot, the exit gives the slot back.  The row below it adds a listener that does "
        "nothing (on_event=): the cost of making an Admitted record per admission; the row "
        "above, with no listener, pays one `is None` test per place an event could be made.",
        "throttle_trio, anyio and trio acquisitions are checkpoints (they yield to the "
        "scheduler on every call); asyncio.Semaphore, aiolimiter, pyrate-limiter, limits and "
        "the blog limiters do not yield when they need not wait.",
        f"limits: {LIMITS_OPS:,} hits only. Its moving window keeps one list entry per hit "
        "for the window's length (1 s), inserted at the front, so the cost grows with the "
        "number of hits in the last second.",
        "aiometer is not an acquire API: the row is the cost per item of "
        f"`run_on_each(noop, range({AIOMETER_OPS:,}), max_per_second=10^9)`, which starts one "
        "task per item.",
    ]
    for backend in BACKENDS:
        ours, reference = get(backend, OURS), get(backend, ANYIO)
        section.checks.append(
            Check(
                f"[{backend}] uncontended acquire <= anyio.CapacityLimiter acquire+release",
                ours <= reference,
                f"{fmt(ours, 0)} ns vs {fmt(reference, 0)} ns ({ratio(ours, reference)})",
            )
        )
        capacity = get(backend, OURS_CAPACITY)
        section.checks.append(
            Check(
                f"[{backend}] throttle_trio CapacityLimiter <= anyio.CapacityLimiter "
                "(acquire+release)",
                capacity <= reference,
                f"{fmt(capacity, 0)} ns vs {fmt(reference, 0)} ns ({ratio(capacity, reference)})",
            )
        )
    section.seconds = time.perf_counter() - started
    return section
