"""The recorder: wrap a limiter, a throttle, a transport or any acquire function, get a log.

Each admission becomes a :class:`~throttle_trio.testing.oracle.LogEntry`: when it was admitted
(read in the caller's task, the moment the wrapped call returned, or the moment a request
reached the wrapped transport), its cost, and when it was asked for.  The log is what
:func:`throttle_trio.testing.oracle.check` reads.  The clock is ``anyio.current_time`` by
default: virtual time on a virtual clock, the loop's real clock otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, final

import anyio

from ..oracle import (
    GCRALimit,
    Limit,
    LogEntry,
    Report,
    SlidingWindowLimit,
    TokenBucketLimit,
    check,
)

if TYPE_CHECKING:
    from types import TracebackType

    from ...policy import RatePolicy

__all__ = ["Recorder", "RecordingLimiter", "RecordingThrottle", "limit_for", "limits_for"]

P = ParamSpec("P")
R = TypeVar("R")


class _Acquiring(Protocol):
    """A limiter: ``await limiter.acquire(cost, timeout=...)`` (throttle_trio's, or alike)."""

    def acquire(self, cost: float = ..., *, timeout: float | None = ...) -> Awaitable[object]: ...


class _Reserving(Protocol):
    """A throttle: ``async with throttle.reserve(costs, timeout=..., ticket=...) as slot:``.

    (Costs as keywords, and options such as a Throttle's ``lane=``, are passed through too;
    the protocol names only what every throttle takes.)
    """

    def reserve(
        self,
        costs: Mapping[str, float] | None = ...,
        /,
        *,
        timeout: float | None = ...,
        ticket: int | None = ...,
    ) -> AbstractAsyncContextManager[Any]: ...


L = TypeVar("L", bound=_Acquiring)
Th = TypeVar("Th", bound=_Reserving)


@final
class Recorder:
    """Records admissions into a log for :func:`~throttle_trio.testing.oracle.check`.

    Wrap what admits requests (:meth:`limiter`, :meth:`throttle`, :meth:`transport`,
    :meth:`wrap`), use the wrapper in its place, then read :attr:`log` or call :meth:`check`::

        recorder = Recorder()
        limiter = recorder.limiter(tt.RateLimiter(tt.TokenBucket(8, burst=2)))
        ...  # the code under test acquires from `limiter`
        recorder.check(TokenBucketLimit(8, burst=2)).assert_ok()

    Args:
        clock: returns the time in seconds (``anyio.current_time`` by default, which follows
            trio's ``MockClock`` and looptime).
    """

    __slots__ = ("_clock", "_entries")

    def __init__(self, clock: Callable[[], float] = anyio.current_time) -> None:
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        self._clock = clock
        self._entries: list[LogEntry] = []

    def __repr__(self) -> str:
        return f"Recorder(entries={len(self._entries)})"

    @property
    def log(self) -> tuple[LogEntry, ...]:
        """Every admission recorded so far, in the order they happened."""
        return tuple(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(tuple(self._entries))

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def now(self) -> float:
        """The recorder's clock, now."""
        return self._clock()

    def record(
        self,
        cost: float | Mapping[str, float] = 1,
        *,
        requested: float | None = None,
        label: str | None = None,
    ) -> LogEntry:
        """Record one admission now (for code the wrappers do not fit), and return it.

        Args:
            cost: its cost, or costs per metric.
            requested: when it was asked for (``None``: unknown).
            label: a name for reports.
        """
        entry = LogEntry(
            self._clock(),
            dict(cost) if isinstance(cost, Mapping) else cost,
            requested,
            label,
        )
        self._entries.append(entry)
        return entry

    def check(self, *limits: Limit, tolerance: float = 0.0) -> Report:
        """:func:`~throttle_trio.testing.oracle.check` the log against ``limits``."""
        return check(self._entries, *limits, tolerance=tolerance)

    # -- wrappers --------------------------------------------------------------------------

    def limiter(self, limiter: L) -> RecordingLimiter[L]:
        """Wrap a limiter: ``acquire()``, ``try_acquire()`` and ``async with`` are recorded.

        Works with anything that has ``async acquire(cost, timeout=...)``: a
        :class:`~throttle_trio.RateLimiter`, a Redis limiter, your own.  Other attributes
        (``statistics()``, ``reconfigure()``) are the wrapped limiter's.
        """
        return RecordingLimiter(limiter, self)

    def throttle(self, throttle: Th) -> RecordingThrottle[Th]:
        """Wrap a throttle: each ``reserve()`` admission is recorded with its costs.

        The entry's cost is the mapping of metric to estimate at admission (the reservation's
        ``costs`` then), for limits with a ``metric=``.
        """
        return RecordingThrottle(throttle, self)

    def transport(self, transport: Any, *, label: Callable[[Any], str] | None = None) -> Any:
        """Wrap an httpx (or httpx2) async transport: each request that reaches it is recorded.

        Put it *under* the throttled transport, so that the log holds the instants at which
        requests left (what a provider sees): ``ThrottledTransport(recorder.transport(inner),
        throttle=...)``.  Each entry costs 1 (a request).

        Args:
            transport: the transport to wrap.
            label: names each entry from the request (default: its method and path).

        Returns:
            An ``httpx.AsyncBaseTransport`` (or ``httpx2.AsyncBaseTransport``) that forwards to
            ``transport``.

        Raises:
            TypeError: ``transport`` is neither library's ``AsyncBaseTransport``.
        """
        from .recording_transport import recording_transport

        return recording_transport(transport, self, label)

    def wrap(
        self,
        acquire: Callable[P, Awaitable[R]],
        *,
        cost: float | Callable[P, float] = 1,
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """Wrap any async function that admits (a peer's ``acquire``): each return is recorded.

        Args:
            acquire: the function; it is called with the same arguments.
            cost: the cost of each call: a number, or a function of the call's arguments.
        """

        @functools.wraps(acquire)
        async def recorded(*args: P.args, **kwargs: P.kwargs) -> R:
            requested = self._clock()
            result = await acquire(*args, **kwargs)
            self.record(cost(*args, **kwargs) if callable(cost) else cost, requested=requested)
            return result

        return recorded


@final
class RecordingLimiter(Generic[L]):
    """A limiter whose admissions a :class:`Recorder` logs (from :meth:`Recorder.limiter`).

    Attributes:
        inner: the wrapped limiter.
    """

    __slots__ = ("_recorder", "inner")

    def __init__(self, inner: L, recorder: Recorder) -> None:
        self.inner: L = inner
        self._recorder = recorder

    def __repr__(self) -> str:
        return f"RecordingLimiter({self.inner!r})"

    async def acquire(self, cost: float = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """The wrapped limiter's ``acquire()``; recorded when it returns."""
        requested = self._recorder.now()
        if timeout is None:
            await self.inner.acquire(cost)
        else:
            await self.inner.acquire(cost, timeout=timeout)
        self._recorder.record(cost, requested=requested)

    def try_acquire(self, cost: float = 1) -> bool:
        """The wrapped limiter's ``try_acquire()``; recorded when it admits."""
        admitted = bool(self.inner.try_acquire(cost))  # type: ignore[attr-defined]
        if admitted:
            now = self._recorder.now()
            self._recorder.record(cost, requested=now)
        return admitted

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@final
class RecordingThrottle(Generic[Th]):
    """A throttle whose admissions a :class:`Recorder` logs (from :meth:`Recorder.throttle`).

    Attributes:
        inner: the wrapped throttle.
    """

    __slots__ = ("_recorder", "inner")

    def __init__(self, inner: Th, recorder: Recorder) -> None:
        self.inner: Th = inner
        self._recorder = recorder

    def __repr__(self) -> str:
        return f"RecordingThrottle({self.inner!r})"

    @asynccontextmanager
    async def reserve(
        self,
        costs: Mapping[str, float] | None = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the throttle's own (fails at once)
        ticket: int | None = None,
        lane: str | None = None,
        **more_costs: float,
    ) -> AsyncIterator[Any]:
        """The wrapped throttle's ``reserve()``; the admission is recorded on entry.

        ``lane`` is passed on when given (a :class:`~throttle_trio.Throttle`'s priority lane).
        """
        requested = self._recorder.now()
        inner: Any = self.inner  # its reserve() may take more than the protocol names
        options: dict[str, Any] = {} if lane is None else {"lane": lane}
        reserving = inner.reserve(costs, timeout=timeout, ticket=ticket, **options, **more_costs)
        async with reserving as slot:
            self._recorder.record(dict(slot.costs), requested=requested)
            yield slot

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def limit_for(policy: RatePolicy, *, metric: str | None = None) -> Limit:
    """The oracle's limit for a throttle_trio policy, with the policy's current parameters.

    ``TokenBucket`` -> :class:`~throttle_trio.testing.oracle.TokenBucketLimit`, ``GCRA`` ->
    :class:`~throttle_trio.testing.oracle.GCRALimit`, ``SlidingWindow`` ->
    :class:`~throttle_trio.testing.oracle.SlidingWindowLimit`.  (The oracle itself never
    imports the policies; this bridge lives outside it.)

    Args:
        policy: the policy.
        metric: the metric the limit counts, for logs whose costs are mappings.

    Raises:
        TypeError: another kind of policy (an adaptive one has no fixed limit).
    """
    from ...policy import GCRA, SlidingWindow, TokenBucket

    if isinstance(policy, TokenBucket):
        return TokenBucketLimit(policy.rate, policy.per, policy.burst, metric=metric)
    if isinstance(policy, GCRA):
        return GCRALimit(policy.rate, policy.per, policy.burst, metric=metric)
    if isinstance(policy, SlidingWindow):
        return SlidingWindowLimit(policy.limit, policy.window, metric=metric)
    raise TypeError(
        f"limit_for() knows TokenBucket, GCRA and SlidingWindow, got {type(policy).__name__}"
    )


def limits_for(throttle: Any) -> list[Limit]:
    """The oracle's limits for every limit of a :class:`~throttle_trio.Throttle`.

    Each counts its limit's metric (``tokens_per_day`` counts ``tokens``), so that they check
    the log of :meth:`Recorder.throttle`.
    """
    limits: Mapping[str, RatePolicy] = throttle.limits
    return [limit_for(policy, metric=name.partition("_per_")[0]) for name, policy in limits.items()]
