"""What a throttle does, as events: one typed hook, free when nobody listens.

Pass ``on_event=`` (any callable taking one event) to a :class:`~throttle_trio.Throttle`, a
``RedisThrottle`` or a :class:`~throttle_trio.RateLimiter` (the transports, ``call_with_retries``
and the batch runners report through their throttle's, with the HTTP status of each
rejection); it is called synchronously, in the task that caused the event, with a frozen record.  A
listener must be quick and must not await (hand the record to a queue or a metrics library);
an exception it raises is logged (logger ``throttle_trio.events``) and counted in
:func:`listener_errors`, never raised into the request that caused it.  With no listener, the
only cost is one ``is None`` test at each place an event could be made: the records are not
built.

Every record carries ``source``: the ``repr`` of the limiter or throttle, or a name you give it
(``Throttle(..., name="openai:gpt-4o")``) so that one listener can serve several.  Times are on
the emitter's clock: the event loop's for local throttles (``anyio.current_time()``), seconds
for durations.

The adapters in :mod:`throttle_trio.otel` and :mod:`throttle_trio.prometheus` are listeners.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias, cast

__all__ = [
    "Admitted",
    "Event",
    "EventHook",
    "FallbackEntered",
    "FallbackExited",
    "LimitLearned",
    "LimitLowered",
    "Paused",
    "RateChanged",
    "Rejected",
    "Settled",
    "TimedOut",
    "listener_errors",
]

logger = logging.getLogger("throttle_trio.events")

_errors = [0]


def listener_errors() -> int:
    """How many times a listener raised (each was logged and swallowed), in this process."""
    return _errors[0]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request was admitted (or, in shadow mode, would have been at ``at + would_wait``).

    Attributes:
        source: what emitted it.
        at: when it was admitted.
        waited: seconds it waited in line (0 in shadow mode: it never waits).
        binding: what held it back last while it was first in line: a limit's name,
            ``"concurrency"`` or ``"pause"``; ``None`` when nothing did.
        ticket: its place in line.
        costs: what it was charged, per metric.
        would_wait: shadow mode only: the seconds an enforcing throttle would have made it
            wait (0 when it would have gone at once); ``None`` when enforcing.
    """

    source: str
    at: float
    waited: float
    binding: str | None
    ticket: int
    costs: Mapping[str, float] = field(default_factory=dict)
    would_wait: float | None = None


@dataclass(frozen=True, slots=True)
class TimedOut:
    """A request gave up waiting: its ``timeout`` passed, or was known at once to be too short.

    Attributes:
        waited: seconds it waited (0 when it failed at once).
        timeout: the timeout it was given.
    """

    source: str
    at: float
    waited: float
    timeout: float | None
    costs: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Settled:
    """A reservation was settled to the real usage: ``estimate`` and ``usage`` per metric."""

    source: str
    at: float
    ticket: int
    estimate: Mapping[str, float]
    usage: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Rejected:
    """The server rejected an attempt (a 429 or 529, or :meth:`Reservation.reject`).

    Attributes:
        status: the HTTP status when known (the transports and ``call_with_retries`` know it;
            a direct :meth:`~throttle_trio.Reservation.reject` does not: ``None``).
        shortfall: per limit, what the rejection proved this throttle was ahead of the server
            (charged at once); empty when the response reported nothing.
        retry_after: the server's Retry-After, seconds, when given.
    """

    source: str
    at: float
    ticket: int
    status: int | None = None
    shortfall: Mapping[str, float] = field(default_factory=dict)
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Paused:
    """The gate was closed (or its closing extended) until ``until``: ``seconds`` from ``at``.

    Attributes:
        reason: ``"retry-after"`` (a server's Retry-After), ``"user"`` (``pause_for`` or
            ``pause_until`` called by your code) or ``"fleet"`` (another process's pause).
    """

    source: str
    at: float
    until: float
    seconds: float
    reason: str = "user"


@dataclass(frozen=True, slots=True)
class RateChanged:
    """The adaptive controller changed a limit's rate (units per second).

    Attributes:
        cause: ``"overload"`` (a cut) or ``"recovery"`` (a success raising it back).
        ceiling: the configured rate, which recovery never exceeds.
    """

    source: str
    at: float
    limit: str
    rate: float
    previous: float
    ceiling: float
    cause: str


@dataclass(frozen=True, slots=True)
class LimitLowered:
    """Header feedback lowered a limit to what the server's reports imply (``available``)."""

    source: str
    at: float
    limit: str
    available: float
    previous: float


@dataclass(frozen=True, slots=True)
class LimitLearned:
    """A learning throttle added a limit from headers: ``limit`` units per ``per`` seconds."""

    source: str
    at: float
    metric: str
    limit: float
    per: float


@dataclass(frozen=True, slots=True)
class FallbackEntered:
    """The Redis throttle lost Redis and admits through its local fallback (``reason``)."""

    source: str
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class FallbackExited:
    """The Redis throttle reached Redis again after ``seconds`` on its fallback."""

    source: str
    at: float
    seconds: float


Event: TypeAlias = (
    Admitted
    | TimedOut
    | Settled
    | Rejected
    | Paused
    | RateChanged
    | LimitLowered
    | LimitLearned
    | FallbackEntered
    | FallbackExited
)
#: A listener: called with each event, synchronously; must not await or block.
EventHook: TypeAlias = Callable[[Event], None]


def check_hook(value: object) -> EventHook | None:
    """Accept ``None`` or a callable (``on_event``)."""
    if value is not None and not callable(value):
        raise TypeError(
            f"on_event must be a callable taking one event, or None, got "
            f"{type(value).__name__} {value!r}"
        )
    return cast("EventHook | None", value)


def emit(hook: EventHook, event: Event) -> None:
    """Call ``hook`` with ``event``; what it raises is logged and counted, never propagated.

    Only for ``Exception``: a ``BaseException`` (a cancellation, KeyboardInterrupt) goes on.
    """
    try:
        hook(event)
    except Exception:
        _errors[0] += 1
        logger.exception("on_event listener %r raised on %r (ignored)", hook, event)
