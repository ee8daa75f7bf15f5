"""One interface to either throttle, for everything built on top of them.

The local :class:`~throttle_trio.Throttle` keeps its state in this process and answers at once;
:class:`throttle_trio.redis.RedisThrottle` keeps the same state in Redis, so everything that
changes it is a round trip.  The transports, :func:`~throttle_trio.call_with_retries`, the
batch runners and the CLI take either, through :class:`ThrottleShell`: async wherever the Redis
side does I/O.  The Redis throttle implements it itself; the local one through
:class:`LocalShell`, whose ``acquire`` and ``reserve`` *are* the throttle's (no cost added on
the admission path) and whose other methods call the synchronous ones.

What an admitted request holds, the :class:`Slot`, is the throttle's own reservation: the shell
takes it back in :meth:`ThrottleShell.settle`, :meth:`~ThrottleShell.reject` and
:meth:`~ThrottleShell.cancel` (the reservations' own methods differ: synchronous on one,
async on the other).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, final, runtime_checkable

from ._reserve import Lane  # noqa: TC001  (a runtime protocol's annotation)
from ._throttle import Throttle

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from ._headers import RateLimitHeaders
    from ._throttle import Reservation

__all__ = ["LocalShell", "Slot", "ThrottleShell", "shell_for"]


class Slot(Protocol):
    """An admitted request, as the layers above see it."""

    @property
    def ticket(self) -> int: ...
    @property
    def costs(self) -> Mapping[str, float]: ...
    def release(self) -> None: ...


@runtime_checkable
class ThrottleShell(Protocol):
    """What the transports, retries, batch runners and CLI need from a throttle."""

    @property
    def metrics(self) -> frozenset[str]: ...
    def accepts(self, metric: str) -> bool: ...

    async def acquire(
        self,
        costs: Mapping[str, float] | None = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        ticket: int | None = None,
        lane: Lane = "interactive",
        recost: Callable[[], Mapping[str, float]] | None = None,
    ) -> Any:
        """Wait for admission (see ``Throttle.acquire``).

        ``recost()``, if given, computes the costs again when the throttle decides the
        admission (the local throttle at each step of the head of its line, the Redis one
        when it books); its result is checked like ``costs`` and charged instead.  What it
        raises, or a result that fails the checks, fails this request alone.
        """
        ...

    def reserve(
        self,
        costs: Mapping[str, float] | None = None,
        /,
        *,
        timeout: float | None = None,
        lane: Lane = "interactive",
        recost: Callable[[], Mapping[str, float]] | None = None,
    ) -> AbstractAsyncContextManager[Any]: ...

    async def settle(self, slot: Any, usage: Mapping[str, float]) -> None:
        """Adjust ``slot``'s charges to the real usage (the throttle's refund rule applies)."""
        ...

    async def reject(
        self,
        slot: Any,
        kept: Mapping[str, float],
        report: RateLimitHeaders | None,
        status: int | None = None,
    ) -> None:
        """The server rejected ``slot``'s attempt (HTTP ``status``): keep ``kept``, refund
        the rest, release.

        With ``report`` (the 429's headers), first cut each limit by the shortfall it proves.
        """
        ...

    async def cancel(self, slot: Any) -> None:
        """``slot``'s request was never sent: refund everything and release."""
        ...

    async def observe(self, report: RateLimitHeaders, slot: Any | None = None) -> None:
        """Feed a response's rate-limit headers back (see ``Throttle.observe``)."""
        ...

    async def record_success(self) -> None: ...
    async def record_overload(self) -> None: ...
    async def pause_for(self, seconds: float, *, reason: str = "user") -> None: ...

    @property
    def paused_until(self) -> float | None:
        """When the gate opens (anyio clock) as far as this process knows, or ``None``."""
        ...

    @property
    def rejections(self) -> int:
        """Attempts the server rejected, seen by this process."""
        ...

    def record_clamped(self, count: int) -> None:
        """Count numbers a response reported out of range (clamped)."""
        ...


@final
class LocalShell:
    """:class:`ThrottleShell` over a local :class:`~throttle_trio.Throttle`."""

    __slots__ = ("accepts", "acquire", "record_clamped", "reserve", "throttle")

    def __init__(self, throttle: Throttle) -> None:
        self.throttle = throttle
        # The throttle's own methods: the admission path pays for no wrapper.
        self.acquire = throttle.acquire
        self.reserve = throttle.reserve
        self.accepts = throttle.accepts
        self.record_clamped = throttle.record_clamped

    def __repr__(self) -> str:
        return f"LocalShell({self.throttle!r})"

    @property
    def metrics(self) -> frozenset[str]:
        return self.throttle.metrics

    async def settle(self, slot: Reservation, usage: Mapping[str, float]) -> None:
        slot.settle(**usage)

    async def reject(
        self,
        slot: Reservation,
        kept: Mapping[str, float],
        report: RateLimitHeaders | None,
        status: int | None = None,
    ) -> None:
        if report is not None:
            self.throttle.rejected(report, slot)
        slot.reject(status, **kept)

    async def cancel(self, slot: Reservation) -> None:
        slot.cancel()

    async def observe(self, report: RateLimitHeaders, slot: Reservation | None = None) -> None:
        self.throttle.observe(report, slot)

    async def record_success(self) -> None:
        self.throttle.record_success()

    async def record_overload(self) -> None:
        self.throttle.record_overload()

    async def pause_for(self, seconds: float, *, reason: str = "user") -> None:
        self.throttle.pause_for(seconds, reason=reason)

    @property
    def paused_until(self) -> float | None:
        return self.throttle.paused_until

    @property
    def rejections(self) -> int:
        return self.throttle.rejections


def shell_for(throttle: object) -> ThrottleShell:
    """The :class:`ThrottleShell` for a local throttle or a Redis one.

    Raises:
        TypeError: ``throttle`` is neither.
    """
    if isinstance(throttle, Throttle):
        return LocalShell(throttle)
    if isinstance(throttle, ThrottleShell):
        return throttle
    raise TypeError(
        "throttle must be a throttle_trio.Throttle or a throttle_trio.redis.RedisThrottle, "
        f"got {type(throttle).__name__} {throttle!r}"
    )
