"""The public values of :mod:`throttle_trio.redis`: its errors, the limit and fallback
settings, and the statistics and state snapshots.  Plain data: no coredis, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, final

from .._exceptions import ThrottleTrioError
from .._validate import check_positive
from ..policy.gcra import GCRA
from ..policy.sliding_window import SlidingWindow
from ..policy.token_bucket import TokenBucket
from ._script import SPAN_US, Interval

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._throttle import ThrottleStatistics

__all__ = [
    "DEFAULT_MAX_BATCH",
    "MAX_SPAN",
    "BackendUnavailable",
    "GCRALimit",
    "LocalFallback",
    "RedisBackendError",
    "RedisLimitStatistics",
    "RedisThrottleState",
    "RedisThrottleStatistics",
    "WindowLimit",
    "as_limit",
]

DEFAULT_MAX_BATCH = 16
"""How many requests of one process a head books in one round trip, by default (``max_batch``).

It is also the overshoot a process may cause when its event loop stalls: up to 16 requests (the
costs of one batch) beyond ``burst + rate * T``; see :class:`RedisThrottle`."""

MAX_SPAN: float = SPAN_US / 1e6
"""The longest span one call may carry to Redis: 31,536,000 seconds (365 days).

The script works in integer microseconds held in Lua's doubles, exact up to 2**53 (the year 2255
on Redis's clock); every amount it is sent stays within this span so that its arithmetic stays
exact.  A pause longer than this, a settle's overdraft or a refund worth more than this much of
a limit's time, and a header-feedback level lower than that, are clamped to it: logged once per
throttle and kind, counted in :attr:`RedisThrottleStatistics.clamped`.  A :class:`GCRALimit`
whose burst takes longer than this to refill is refused."""


# The most units a WindowLimit holds: the script counts them in thousandths, each amount at
# most SPAN_US (as every amount it is sent).
MAX_WINDOW_LIMIT = SPAN_US // 1_000


class RedisBackendError(ThrottleTrioError):
    """Redis answered, but not as this module expects: a key holds foreign data, a script error.

    Added to the hierarchy of :mod:`throttle_trio._exceptions`::

        ThrottleTrioError
         └── RedisBackendError
              └── BackendUnavailable    Redis cannot be reached, or did not answer in time
    """


class BackendUnavailable(RedisBackendError):
    """Redis cannot be reached, or did not answer within ``redis_timeout``; nothing was admitted."""


@final
@dataclass(frozen=True, slots=True)
class GCRALimit:
    """A shared rate limit: ``rate`` units every ``per`` seconds, bursts of ``burst``.

    The same decisions as :class:`~throttle_trio.GCRA` and :class:`~throttle_trio.TokenBucket`
    with these parameters, but the state is kept in Redis.  Times are whole microseconds: each
    charge is rounded up, so one unit costs at least 1 µs (rates above 10⁶ units per second are
    rounded down to that).

    Args:
        rate: units every ``per`` seconds (> 0).
        per: the period of ``rate``, in seconds (> 0).
        burst: the largest cost admitted at once (> 0); defaults to ``rate``.

    Raises:
        ValueError: a parameter out of range, or a burst that takes longer than
            :data:`MAX_SPAN` (365 days) to refill (``burst * per / rate``).
    """

    rate: float
    per: float = 1.0
    burst: float = math.nan  # NaN: "same as rate", resolved in __post_init__

    def __post_init__(self) -> None:
        check_positive("rate", self.rate)
        check_positive("per", self.per)
        if isinstance(self.burst, float) and math.isnan(self.burst):
            object.__setattr__(self, "burst", self.rate)
        check_positive("burst", self.burst)
        refill = Interval(self.rate, self.per).charge(self.burst)
        if refill > SPAN_US:
            raise ValueError(
                f"burst must refill within MAX_SPAN={MAX_SPAN:.0f} s (365 days), but "
                f"burst * per / rate = {refill / 1e6:g} s, got burst={self.burst!r}, "
                f"per={self.per!r}, rate={self.rate!r}"
            )


@final
@dataclass(frozen=True, slots=True)
class WindowLimit:
    """A shared sliding window: at most ``limit`` units admitted in any ``window`` seconds.

    The same decisions as :class:`~throttle_trio.SlidingWindow` with these parameters, but the
    log of admissions is kept in Redis (one hash per limit, holding the instants and amounts
    still inside the window).  What a provider's per-second slices need (OpenAI's), where a
    bucket would let a slice and its refill through in one second.  A settle's refund is not
    credited to a window (it is counted as dropped); a booking given back is.

    Args:
        limit: units per window (> 0); also the largest cost admitted at once.
        window: its length, in seconds (> 0, at most :data:`MAX_SPAN`).

    Raises:
        ValueError: a parameter out of range.
    """

    limit: float
    window: float = 1.0

    def __post_init__(self) -> None:
        check_positive("limit", self.limit)
        check_positive("window", self.window)
        if self.window > MAX_SPAN:
            raise ValueError(
                f"window must be <= MAX_SPAN={MAX_SPAN:.0f} s (365 days), got {self.window!r}"
            )
        if self.limit > MAX_WINDOW_LIMIT:
            raise ValueError(
                f"limit must be <= {MAX_WINDOW_LIMIT:.0f} units per window (Redis counts a "
                f"window's units in thousandths, up to MAX_SPAN's count), got {self.limit!r}"
            )


@final
@dataclass(frozen=True, slots=True)
class LocalFallback:
    """While Redis is unavailable, admit through a local throttle at a share of each limit.

    Each process falls back on its own :class:`~throttle_trio.Throttle` whose limits admit
    ``fraction`` of the configured rates *and* hold ``fraction`` of each burst: set it to
    1 / the number of processes, and the fleet together admits at most ``burst + rate * T`` in
    any window of length T inside an outage, however long it idled before.  (Across the moment
    Redis fails or comes back, one more burst: neither side knows what the other admitted, as
    after a Redis restart.)  A request whose cost is above its share of a burst cannot go
    through the fallback: it fails with :class:`~throttle_trio.CostExceedsCapacity` while Redis
    is unavailable, so choose ``fraction * burst`` at least the largest cost you send.  The
    fallback is created full and kept between outages.  A warning is logged once per outage;
    :attr:`RedisThrottleStatistics.fallback_admissions` counts what went through it.

    Args:
        fraction: the share of each rate and burst this process may use alone
            (0 < fraction <= 1).
        retry_interval: seconds to stay on the fallback before the next request tries Redis
            again (> 0); requests in between do not pay for a failing connection attempt.
    """

    fraction: float = 0.5
    retry_interval: float = 1.0

    def __post_init__(self) -> None:
        fraction = check_positive("fraction", self.fraction)
        if fraction > 1:
            raise ValueError(f"fraction must be <= 1, got {self.fraction!r}")
        check_positive("retry_interval", self.retry_interval)


@dataclass(frozen=True, slots=True)
class RedisLimitStatistics:
    """One limit of a :class:`RedisThrottle`, as this process saw it (no round trip).

    Attributes:
        metric: the cost this limit counts.
        key: the Redis key holding its state.
        capacity: the largest cost it admits at once (its burst).
        rate: units per second it admits now, as the last round trip that concerned it saw
            (below ``configured_rate`` while the shared adaptive rate backs off).
        configured_rate: units per second, as configured.
        admitted_cost: units this process was charged at admission, summed.
        refunded: units this process got back from settles and cancellations.
        overdraft: units this process was charged by settles above the estimate.
        dropped: refunds that could not be credited (the bucket was full, or a request booked
            in the future needed the room).
        learned: the limit was learned from response headers (by this process or another one
            of the fleet), not configured.
    """

    metric: str
    key: str
    capacity: float
    rate: float
    configured_rate: float
    admitted_cost: float
    refunded: float
    overdraft: float
    dropped: float
    learned: bool = False


@dataclass(frozen=True, slots=True)
class RedisThrottleStatistics:
    """A snapshot of a :class:`RedisThrottle` in this process, from ``statistics()``.

    Attributes:
        tasks_waiting: requests queued in this process, those booked in Redis included.
        booked: of which, requests whose instant Redis has booked, sleeping until it: at most
            ``max_batch`` (the most that may leave late after an event loop stall).
        in_flight: admitted reservations holding a concurrency slot.
        max_concurrent: the cap on slots in this process (``math.inf``: none).
        admitted: reservations admitted so far (through Redis or the fallback).
        total_wait_time: seconds the admitted requests spent waiting, summed.
        booked_wait_time: of which, seconds spent sleeping until a booked instant.
        round_trips: script calls made (admissions, settles, pauses, headers, state).
        unbooked: booked requests cancelled before their instant and given back.
        pauses: pauses this process asked for.
        rate_cuts: overloads this process reported that cut the shared rates (the others fell
            within the cooldown of a cut, by any process).
        rejections: attempts rejected by the server (:meth:`RedisReservation.reject`).
        timeouts: requests that gave up because of their ``timeout``.
        unavailable: :class:`BackendUnavailable` errors raised to callers.
        outages: times this process switched to the local fallback.
        fallback_active: requests are admitted by the fallback now.
        fallback_admissions: reservations the fallback admitted.
        fallback: the local fallback throttle's own statistics (``None`` without one).
        clamped: values this process clamped to :data:`MAX_SPAN` before sending them to Redis
            (pauses, settles' overdrafts and refunds, header-feedback levels); the first of
            each kind is logged as a warning.
        limits: per-limit statistics, by limit name.
    """

    tasks_waiting: int
    booked: int
    in_flight: int
    max_concurrent: float
    admitted: int
    total_wait_time: float
    booked_wait_time: float
    round_trips: int
    unbooked: int
    pauses: int
    rate_cuts: int
    rejections: int
    timeouts: int
    unavailable: int
    outages: int
    fallback_active: bool
    fallback_admissions: int
    fallback: ThrottleStatistics | None
    clamped: int = 0
    limits: Mapping[str, RedisLimitStatistics] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RedisThrottleState:
    """What Redis holds for a throttle right now, from :meth:`RedisThrottle.state`.

    Attributes:
        server_time: Redis's clock (Unix seconds).
        paused_for: seconds until the shared pause ends, or ``None`` if there is none.
        booked_for: seconds until the latest booked admission, or ``None`` if none is ahead.
        available: units available now, by limit name (negative while a debt is repaid).
        rates: units per second each limit admits now, by limit name (the shared adaptive
            rate; the configured rate unless an overload cut it).
    """

    server_time: float
    paused_for: float | None
    booked_for: float | None
    available: Mapping[str, float]
    rates: Mapping[str, float]


def as_limit(name: str, value: object) -> GCRALimit | WindowLimit:
    """``value`` as a shared limit: a GCRA or TokenBucket is read as a :class:`GCRALimit`, a
    SlidingWindow as a :class:`WindowLimit` (limit ``name``).

    A local policy's start (a bucket's ``initial_tokens``, a window's ``warmup``) is not
    shared: the fleet's limit starts as Redis holds it.
    """
    if isinstance(value, GCRALimit | WindowLimit):
        return value
    if isinstance(value, GCRA | TokenBucket):
        return GCRALimit(value.rate, value.per, value.burst)
    if isinstance(value, SlidingWindow):
        return WindowLimit(value.limit, value.window)
    raise TypeError(
        f"limit {name!r} must be a GCRALimit or a WindowLimit (or a GCRA, TokenBucket or "
        f"SlidingWindow, read as one), got {type(value).__name__} {value!r}"
    )
