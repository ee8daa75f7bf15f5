"""The local fallback of a :class:`~throttle_trio.redis.RedisThrottle`: while Redis cannot be
reached, a local :class:`~throttle_trio.Throttle` admits at a share of each limit.

Theory of operation
-------------------
The outage state machine, per throttle and process:

* **up** (``until`` in the past): every head books in Redis.
* A round trip fails with :class:`~throttle_trio.redis.BackendUnavailable`: :meth:`Fallback.enter`
  sets ``until`` to now plus ``retry_interval`` and, on the first failure of an outage, logs a
  warning and counts the outage.  Until then every head admits through the local throttle, one
  request at a time, without asking Redis (:meth:`Fallback.admit`).
* Once ``until`` is past, the next head tries Redis again: another failure starts another
  interval of the same outage; an answer ends the outage (:meth:`Fallback.redis_is_back`, logged).

The local throttle is created full (its share of each burst) and kept between outages; the
shared pause, header feedback and adaptive rate reach it too (the shell forwards them to
:attr:`Fallback.local`).  See :class:`~throttle_trio.redis.LocalFallback` for the bound.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, final

import anyio

from .._events import FallbackEntered, FallbackExited, emit
from .._exceptions import CostExceedsCapacity
from .._throttle import Throttle
from ..policy.gcra import GCRA
from ..policy.sliding_window import SlidingWindow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .._events import EventHook
    from .._headers import RateLimitHeaders
    from .._throttle import Reservation
    from ..policy.base import RatePolicy
    from ._types import BackendUnavailable, LocalFallback

__all__ = ["Fallback", "SharedLimit"]

logger = logging.getLogger("throttle_trio.redis")


class SharedLimit(Protocol):
    """What the fallback needs to know of each limit of its throttle."""

    @property
    def name(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def rate(self) -> float:
        """Units per second, as configured."""
        ...

    @property
    def burst(self) -> float: ...
    @property
    def window(self) -> float | None:
        """A sliding window's length (seconds); ``None`` for a bucket."""
        ...


def _local_policy(limit: SharedLimit, share: float) -> RatePolicy:
    """``share`` of ``limit``, as a local policy of the same kind."""
    if limit.window is not None:
        return SlidingWindow(limit.burst * share, window=limit.window)
    return GCRA(limit.rate * share, burst=limit.burst * share)


@final
class Fallback:
    """A throttle's local fallback and its outage state (see the module docstring)."""

    __slots__ = (
        "_capacities",
        "_on_event",
        "_owner",
        "_source",
        "admissions",
        "entered_at",
        "fraction",
        "in_outage",
        "local",
        "outages",
        "retry_interval",
        "until",
    )

    def __init__(
        self,
        config: LocalFallback,
        limits: Sequence[SharedLimit],
        *,
        refund_unused: bool,
        adaptive: bool,
        learn_limits: bool = False,
        owner: object,
        on_event: EventHook | None = None,
        source: str = "",
    ) -> None:
        share = self.fraction = config.fraction
        self.retry_interval = config.retry_interval
        # Its share of the rate *and* of the burst: N processes at 1/N hold one burst between
        # them, whatever they did before the outage and however long they idle in it.
        self.local = Throttle(
            {limit.name: _local_policy(limit, share) for limit in limits},
            refund_unused=refund_unused,
            adaptive=adaptive,
            learn_limits=learn_limits,
        )
        self._capacities = [(limit.name, limit.metric, limit.burst) for limit in limits]
        self._owner = owner  # the throttle, for the log records
        self._on_event = on_event  # and its listener, with the name its events carry
        self._source = source
        self.entered_at = math.nan  # when the current outage began (anyio clock)
        self.until = -math.inf  # the fallback admits until then (anyio clock)
        self.in_outage = False
        self.outages = 0
        self.admissions = 0

    def observe(self, report: RateLimitHeaders) -> None:
        """Sync the local throttle with a response's headers, at its share: of what the fleet
        has left (``remaining``) and of a limit it learns (``limit``), each process holds
        ``fraction``, as it holds that share of each configured rate and burst."""
        share = self.fraction
        if share != 1.0 and report.limits:
            report = replace(
                report,
                limits={
                    metric: replace(
                        info,
                        limit=None if info.limit is None else info.limit * share,
                        remaining=None if info.remaining is None else info.remaining * share,
                    )
                    for metric, info in report.limits.items()
                },
            )
        self.local.observe(report)

    def active(self, now: float) -> bool:
        """Whether the fallback admits at ``now`` (Redis is not asked)."""
        return now < self.until

    def enter(self, exc: BackendUnavailable) -> None:
        """Redis failed (``exc``): admit locally for ``retry_interval`` seconds from now."""
        now = anyio.current_time()
        self.until = now + self.retry_interval
        if not self.in_outage:
            self.in_outage = True
            self.outages += 1
            self.entered_at = now
            if self._on_event is not None:
                emit(self._on_event, FallbackEntered(self._source, now, str(exc)))
            logger.warning(
                "%s; %r admits through a local fallback at %g of its rates until Redis is back",
                str(exc),  # the text: a handler that keeps records would pin the dead connection
                self._owner,
                self.fraction,
            )

    def redis_is_back(self) -> None:
        """Redis answered during an outage: it admits again."""
        self.in_outage = False
        logger.warning("Redis is back for %r: admitting through it again", self._owner)
        if self._on_event is not None:
            now = anyio.current_time()
            emit(self._on_event, FallbackExited(self._source, now, now - self.entered_at))

    async def admit(self, costs: Mapping[str, float], deadline: float) -> Reservation:
        """Admit ``costs`` through the local throttle, by ``deadline`` (anyio clock; ``inf``:
        none).

        Raises:
            CostExceedsCapacity: a cost above the fallback's share of its limit's burst.
            RateLimitTimeout: not admitted by ``deadline``.
        """
        share = self.fraction
        for name, metric, burst in self._capacities:  # its share of each burst
            cost, capacity = costs.get(metric, 0.0), burst * share
            if cost > capacity:
                raise CostExceedsCapacity(
                    f"{metric} must be <= {capacity!r} while Redis is unavailable (the local "
                    f"fallback holds fraction={share!r} of the burst {burst!r} of limit "
                    f"{name!r}), got {cost!r}"
                )
        remaining = None
        if deadline != math.inf:
            remaining = max(0.0, deadline - anyio.current_time())
        reservation = await self.local.acquire(costs, timeout=remaining)
        self.admissions += 1
        return reservation
