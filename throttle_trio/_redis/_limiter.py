"""The façade of :class:`~throttle_trio.redis.RedisRateLimiter`: one limit of a
:class:`~throttle_trio.redis.RedisThrottle`, with the API of :class:`~throttle_trio.RateLimiter`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, final

from .._validate import check_cost, check_non_negative
from ._throttle import RedisThrottle, refund, try_acquire
from ._types import DEFAULT_MAX_BATCH, LocalFallback, WindowLimit, as_limit

if TYPE_CHECKING:
    from types import TracebackType

    from coredis.client import Client

    from ..policy.gcra import GCRA
    from ..policy.token_bucket import TokenBucket
    from ._types import GCRALimit, RedisThrottleStatistics

__all__ = ["RedisRateLimiter"]


@final
class RedisRateLimiter:
    """One rate limit shared through Redis: the distributed :class:`~throttle_trio.RateLimiter`.

    ``async with limiter:`` takes one unit, ``await limiter.acquire(5)`` a weighted cost, and
    ``await limiter.try_acquire()`` takes units only if they fit now (one round trip; unlike the
    local limiter's, it is async).  Built on :class:`RedisThrottle` (one limit named ``rate``,
    key ``prefix:{name}:rate``), with the same queueing, booking and failure behaviour.

    Args:
        client: an entered coredis client (see :class:`RedisThrottle`).
        name: the limiter's name, shared by every process.
        limit: the rate: a :class:`GCRALimit` (a GCRA or TokenBucket is read as one).
        prefix: the first part of every key, as for :class:`RedisThrottle`.
        on_unavailable: what to do when Redis cannot be reached, as for :class:`RedisThrottle`.
        redis_timeout: seconds a round trip may take, as for :class:`RedisThrottle`.
    """

    __slots__ = ("_capacity", "_throttle")

    def __init__(
        self,
        client: Client[Any],
        name: str,
        limit: GCRALimit | GCRA | TokenBucket,
        *,
        prefix: str = "throttle_trio",
        on_unavailable: Literal["raise"] | LocalFallback = "raise",
        redis_timeout: float | None = 5.0,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        checked = as_limit("limit", limit)
        if isinstance(checked, WindowLimit):  # its refunds would not be credited
            raise TypeError(
                f"limit must be a GCRALimit (or a GCRA or TokenBucket, read as one), got "
                f"{type(limit).__name__} {limit!r}: a RedisRateLimiter is a bucket"
            )
        self._capacity = checked.burst
        self._throttle = RedisThrottle(
            client,
            name,
            {"rate": checked},
            max_batch=max_batch,
            prefix=prefix,
            on_unavailable=on_unavailable,
            redis_timeout=redis_timeout,
        )

    def __repr__(self) -> str:
        return f"RedisRateLimiter({self._throttle.name!r}, capacity={self._capacity!r})"

    @property
    def throttle(self) -> RedisThrottle:
        """The :class:`RedisThrottle` underneath (its ``state()``, ``pause_for()``, keys)."""
        return self._throttle

    # `timeout=` as in RateLimiter.acquire: it fails at once when the wait is known to be longer.
    async def acquire(self, cost: float = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until ``cost`` units may go, then take them (see :meth:`RedisThrottle.reserve`).

        Raises:
            CostExceedsCapacity: ``cost`` is above the burst.
            RateLimitTimeout: not admitted within ``timeout``.
            BackendUnavailable: Redis cannot be reached and there is no fallback.
        """
        cost = check_cost(cost, self._capacity)
        (await self._throttle.acquire(rate=cost, timeout=timeout)).release()

    async def try_acquire(self, cost: float = 1) -> bool:
        """Take ``cost`` units if they fit now and nobody in this process waits.

        Never books a future instant.  One round trip (none if someone here waits).  A
        checkpoint for cancellation only when the round trip is made.
        """
        cost = check_cost(cost, self._capacity)
        reservation = await try_acquire(self._throttle, {"rate": cost})
        if reservation is None:
            return False
        reservation.release()
        return True

    async def refund(self, amount: float) -> float:
        """Give back ``amount`` units that were acquired but not used; returns the units dropped.

        A refund never lifts the bucket above its burst, nor frees room that a request booked
        in the future relies on.  One shielded round trip.
        """
        return await refund(self._throttle, check_non_negative("amount", amount))

    def statistics(self) -> RedisThrottleStatistics:
        """This process's view of the limiter (the limit is named ``"rate"``)."""
        return self._throttle.statistics()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
