"""Every limiter the benchmarks compare, behind one small interface.

A *rate peer* is opened inside a running event loop for a :class:`RateSpec` (a rate in units
per second and a burst) and yields ``acquire(cost)``: an awaitable that returns when the peer
admits ``cost`` units.  Each peer says how it maps the spec onto its own parameters, which
burst it really allows (``effective_burst``, used for the accuracy bounds) and whether it takes
a weight.  aiometer is not a limiter one can ``acquire`` from (it runs a function over a
sequence), so the benchmarks drive it themselves; see :mod:`bench.contended`.

How the peers are configured for ``rate`` r/s and burst b:

* throttle_trio ``TokenBucket(r, burst=b)`` and ``GCRA(r, burst=b)``; ``SlidingWindow(b, b/r)``
  (at most b in any b/r seconds, which implies the token-bucket bound b + r*T).
* aiolimiter ``AsyncLimiter(b, b/r)``: a leaky bucket of capacity b that drains at r/s.
* pyrate-limiter: its in-memory ``TokenBucket`` (a ``StateBucket``), ``Rate(r, 1000 ms,
  burst=b)``, ``Limiter(..., buffer_ms=0)`` with the leak thread off (a state bucket has nothing
  to leak).  ``buffer_ms`` defaults to 50 ms *added to every wait*, meant for clock drift
  between hosts; with it, every wait is 50 ms too long, so 0 is its best local setting.
* limits: ``MovingWindowRateLimiter`` over ``limits.aio.storage.MemoryStorage`` with
  ``RateLimitItemPerSecond(r)``.  Its windows are whole seconds, so the burst is r (a full
  window), not b.  It has no wait API; it is driven as a waiting limiter by a loop: ``hit()``;
  if refused, ``get_window_stats()`` and ``asyncio.sleep()`` until its ``reset_time`` (when
  the oldest entry in the window expires), then ``hit()`` again.
* the seed article's limiters (:mod:`bench.baselines`): ``TokenBucketRateLimiter(rate=r,
  capacity=b)`` and ``SlidingWindowLimiter(b, b/r)``; their asyncio code on asyncio, the anyio
  adaptation on trio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import throttle_trio as tt

from . import baselines

__all__ = [
    "BACKENDS",
    "OURS",
    "RATE_PEERS",
    "THROTTLE_PEER",
    "Acquire",
    "RatePeer",
    "RateSpec",
]

BACKENDS = ("asyncio", "trio")

#: ``await acquire(cost)`` returns when ``cost`` units were admitted.
Acquire = Callable[[int], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class RateSpec:
    """A rate limit as the benchmarks state it: ``rate`` units per second, bursts of ``burst``."""

    rate: int
    burst: int


@dataclass(frozen=True, slots=True)
class RatePeer:
    """One rate limiter under test.

    Attributes:
        name: the label in the tables.
        backends: where it runs.
        weighted: whether ``acquire`` honours a cost above 1.
        open: ``open(spec, backend)`` is an async context manager that builds the limiter inside
            the running loop, yields ``acquire`` and cleans up.
        effective_burst: the burst the peer really allows for ``spec`` (accuracy bounds).
        describe: how ``spec`` maps onto the peer's own parameters (for the report).
        ours: a throttle_trio limiter (ratios are taken against these).
        fairness_only: a weighted adaptation used only by the weighted-fairness benchmark.
        slow_start: seconds the peer may admit nothing after its initial burst (limits: one
            whole window), added to the time a contended run may take.
    """

    name: str
    backends: tuple[str, ...]
    weighted: bool
    open: Callable[[RateSpec, str], AbstractAsyncContextManager[Acquire]]
    effective_burst: Callable[[RateSpec], float]
    describe: Callable[[RateSpec], str]
    ours: bool = False
    fairness_only: bool = False
    slow_start: float = 0.0


def _configured_burst(spec: RateSpec) -> float:
    return spec.burst


# --- throttle_trio ---------------------------------------------------------------------------


@asynccontextmanager
async def _open_tt_bucket(spec: RateSpec, backend: str) -> AsyncIterator[Acquire]:
    yield tt.RateLimiter(tt.TokenBucket(spec.rate, burst=spec.burst)).acquire


@asynccontextmanager
async def _open_tt_gcra(spec: RateSpec, backend: str) -> AsyncIterator[Acquire]:
    yield tt.RateLimiter(tt.GCRA(spec.rate, burst=spec.burst)).acquire


@asynccontextmanager
async def _open_tt_window(spec: RateSpec, backend: str) -> AsyncIterator[Acquire]:
    yield tt.RateLimiter(tt.SlidingWindow(spec.burst, spec.burst / spec.rate)).acquire


@asynccontextmanager
async def _open_tt_throttle(spec: RateSpec, backend: str) -> AsyncIterator[Acquire]:
    # Two limits and a slot: the requests bucket binds; the tokens bucket (100 tokens a request)
    # and the concurrency cap are charged, and the slot given back, on every admission.
    throttle = tt.Throttle(
        requests=tt.TokenBucket(spec.rate, burst=spec.burst),
        tokens=tt.TokenBucket(100 * spec.rate, burst=100 * spec.burst),
        max_concurrent=10**6,
    )
    reserve = throttle.reserve

    async def acquire(cost: int) -> None:
        async with reserve(requests=cost, tokens=100 * cost):
            pass

    yield acquire


# --- aiolimiter ------------------------------------------------------------------------------


@asynccontextmanager
async def _open_aiolimiter(spec: RateSpec, backend: str) -> AsyncIterator[Acquire]:
    from aiolimiter import AsyncLimiter

    yield AsyncLimiter(spec.burst, spec.burst / spec.rate).acquire


# --- pyrate-limiter --------------------------------------------------------------------------


def make_pyrate_limiter(rate: int, burst: int) -> object:
    """pyrate-limiter's in-memory token bucket, configured as described in the module docstring."""
    from pyrate_limiter import Limiter, Rate, SingleBucketFactory, StateBucket, TokenBucket

    bucket = StateBucket([Rate(rate, 1000, burst=burst)], algorithm=TokenBucket())
    return Limiter(SingleBucketFactory(bucket, schedule_leak=False), buffer_ms=0)


@asynccontextmanager
async def _open_pyrate(spec: RateSpec, backend: str) -> AsyncIterator[Acquire]:
    limiter = make_pyrate_limiter(spec.rate, spec.burst)
    try_acquire = limiter.try_acquire_async  # type: ignore[attr-defined]

    async def acquire(cost: int) -> None:
        if not await try_acquire("bench", weight=cost):
            raise RuntimeError(f"pyrate-limiter refused weight={cost}")

    try:
        yield acquire
    finally:
        limiter.close()  # type: ignore[attr-defined]


# --- limits ----------------------------------------------------------------------------------


@asynccontextmanager
async def _open_limits(spec: RateSpec, backend: str) -> AsyncIterator[Acquire]:
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import MemoryStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    storage = MemoryStorage()
    strategy = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(spec.rate)

    async def acquire(cost: int) -> None:
        # limits has no wait API: hit, and when refused sleep until the window's reset time.
        while not await strategy.hit(item, "bench", cost=cost):
            stats = await strategy.get_window_stats(item, "bench")
            await asyncio.sleep(max(0.0, stats.reset_time - time.time()))

    try:
        yield acquire
    finally:
        timer = storage.timer  # its background expiry task
        if timer is not None and not timer.done():
            timer.cancel()


# --- the seed article ------------------------------------------------------------------------


@asynccontextmanager
async def _open_blog_bucket(spec: RateSpec, backend: str) -> AsyncIterator[Acquire]:
    limiter: baselines.BlogTokenBucket | baselines.AnyioBlogTokenBucket
    if backend == "asyncio":
        limiter = baselines.BlogTokenBucket(spec.rate, spec.burst)
    else:
        limiter = baselines.AnyioBlogTokenBucket(spec.rate, spec.burst)
    acquire_one = limiter.acquire

    async def acquire(cost: int) -> None:
        await acquire_one()  # unweighted: every call takes one token

    yield acquire


@asynccontextmanager
async def _open_blog_window(spec: RateSpec, backend: str) -> AsyncIterator[Acquire]:
    limiter: baselines.BlogSlidingWindow | baselines.AnyioBlogSlidingWindow
    window = spec.burst / spec.rate
    if backend == "asyncio":
        limiter = baselines.BlogSlidingWindow(spec.burst, window)
    else:
        limiter = baselines.AnyioBlogSlidingWindow(spec.burst, window)
    acquire_one = limiter.acquire

    async def acquire(cost: int) -> None:
        await acquire_one()  # unweighted

    yield acquire


@asynccontextmanager
async def _open_blog_weighted_window(spec: RateSpec, backend: str) -> AsyncIterator[Acquire]:
    limiter: baselines.BlogWeightedSlidingWindow | baselines.AnyioBlogWeightedSlidingWindow
    window = spec.burst / spec.rate
    if backend == "asyncio":
        limiter = baselines.BlogWeightedSlidingWindow(spec.burst, window)
    else:
        limiter = baselines.AnyioBlogWeightedSlidingWindow(spec.burst, window)
    yield limiter.acquire


def _window_describe(name: str) -> Callable[[RateSpec], str]:
    return lambda s: f"{name}({s.burst}, {s.burst / s.rate:g} s)"


OURS = "throttle_trio TokenBucket"

#: The Throttle over two limits and a concurrency slot (benchmark 2 only: its rate is its
#: requests bucket's, so it would add nothing to the accuracy and fairness rows).
THROTTLE_PEER = RatePeer(
    "throttle_trio Throttle (2 limits + slot)",
    BACKENDS,
    True,
    _open_tt_throttle,
    _configured_burst,
    lambda s: (
        f"Throttle(requests=TokenBucket({s.rate}, burst={s.burst}), "
        f"tokens=TokenBucket({100 * s.rate}, burst={100 * s.burst}), max_concurrent=10**6)"
    ),
    ours=True,
)

RATE_PEERS: tuple[RatePeer, ...] = (
    RatePeer(
        OURS,
        BACKENDS,
        True,
        _open_tt_bucket,
        _configured_burst,
        lambda s: f"TokenBucket({s.rate}, burst={s.burst})",
        ours=True,
    ),
    RatePeer(
        "throttle_trio GCRA",
        BACKENDS,
        True,
        _open_tt_gcra,
        _configured_burst,
        lambda s: f"GCRA({s.rate}, burst={s.burst})",
        ours=True,
    ),
    RatePeer(
        "throttle_trio SlidingWindow",
        BACKENDS,
        True,
        _open_tt_window,
        _configured_burst,
        _window_describe("SlidingWindow"),
        ours=True,
    ),
    RatePeer(
        "aiolimiter",
        ("asyncio",),
        True,
        _open_aiolimiter,
        _configured_burst,
        lambda s: f"AsyncLimiter({s.burst}, {s.burst / s.rate:g})",
    ),
    RatePeer(
        "pyrate-limiter",
        ("asyncio",),
        True,
        _open_pyrate,
        _configured_burst,
        lambda s: f"TokenBucket Rate({s.rate}, 1000 ms, burst={s.burst}), buffer_ms=0",
    ),
    RatePeer(
        "limits (moving window)",
        ("asyncio",),
        True,
        _open_limits,
        lambda s: s.rate,
        lambda s: f"{s.rate} per 1 second (burst = {s.rate})",
        slow_start=1.0,
    ),
    RatePeer(
        "blog TokenBucket",
        BACKENDS,
        False,
        _open_blog_bucket,
        _configured_burst,
        lambda s: f"TokenBucketRateLimiter(rate={s.rate}, capacity={s.burst})",
    ),
    RatePeer(
        "blog SlidingWindow",
        BACKENDS,
        False,
        _open_blog_window,
        _configured_burst,
        _window_describe("SlidingWindowLimiter"),
    ),
    RatePeer(
        "blog SlidingWindow (weighted)",
        BACKENDS,
        True,
        _open_blog_weighted_window,
        _configured_burst,
        _window_describe("weighted SlidingWindowLimiter"),
        fairness_only=True,
    ),
)
