"""What the local and the Redis throttles share: costs per metric, their checks, and the
``async with throttle.reserve(...)`` block."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeAlias, TypeVar, final

from ._exceptions import CostExceedsCapacity
from ._validate import check_non_negative, check_optional_timeout

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from types import TracebackType

__all__ = [
    "Lane",
    "ReserveContext",
    "check_costs",
    "check_lane",
    "check_max_concurrent",
    "check_recost",
    "check_share",
    "checked_admission",
    "merge_costs",
    "metric_of",
]

#: The lanes of a throttle's line: interactive requests go before a batch backlog.
Lane: TypeAlias = Literal["interactive", "batch"]

#: What computes a queued request's costs again when its admission is decided (``recost=``).
Recost: TypeAlias = "Callable[[], Mapping[str, float]]"


class _Releasable(Protocol):
    def release(self) -> None: ...


R = TypeVar("R", bound=_Releasable)


def metric_of(limit_name: str) -> str:
    """The metric a limit counts: its name, or the part before ``_per_`` (``tokens_per_day``)."""
    metric, sep, _ = limit_name.partition("_per_")
    return metric if sep else limit_name


def merge_costs(costs: Mapping[str, float] | None, more: dict[str, float]) -> dict[str, float]:
    """Costs given as a mapping and as keywords, together (keywords win)."""
    return {**costs, **more} if costs else more


def check_max_concurrent(value: object) -> float:
    """Accept ``None`` (no cap: ``math.inf``) or an int >= 1."""
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_concurrent must be an int or None, got {value!r}")
    if value < 1:
        raise ValueError(f"max_concurrent must be >= 1, got {value!r}")
    return value


def check_lane(value: object) -> Lane:
    """Accept ``"interactive"`` or ``"batch"`` (``lane``)."""
    if value == "interactive":
        return "interactive"
    if value == "batch":
        return "batch"
    raise ValueError(f"lane must be 'interactive' or 'batch', got {value!r}")


def check_share(value: object) -> float:
    """Accept a number strictly between 0 and 1 (``batch_share``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"batch_share must be a number with 0 < batch_share < 1, got {value!r}")
    return float(value)


def check_costs(
    costs: Mapping[str, float],
    *,
    accepts: Callable[[str], bool],
    metrics: Iterable[str],
    capacities: Iterable[tuple[str, str, float]],
) -> dict[str, float]:
    """Check a request's costs per metric.

    Args:
        costs: metric -> cost.
        accepts: whether a metric may be given a cost.
        metrics: the metrics counted (for the message).
        capacities: (limit name, metric, capacity) of every limit.

    Raises:
        ValueError: an unknown metric, or a cost that is not a finite number >= 0.
        CostExceedsCapacity: a cost above its limit's capacity.
    """
    checked: dict[str, float] = {}
    for metric, cost in costs.items():
        if not accepts(metric):
            known = ", ".join(sorted(metrics)) or "nothing (only concurrency)"
            raise ValueError(f"unknown cost {metric!r}: this throttle counts {known}")
        checked[metric] = check_non_negative(metric, cost)
    for name, metric, capacity in capacities:
        cost = checked.get(metric, 0.0)
        if cost > capacity:
            raise CostExceedsCapacity(
                f"{metric} must be <= the capacity {capacity!r} of limit {name!r}, got {cost!r}"
            )
    return checked


def checked_admission(
    acquire: Callable[
        [dict[str, float], float | None, int | None, Lane, Recost | None], Awaitable[R]
    ],
    check: Callable[[dict[str, float]], dict[str, float]],
    costs: Mapping[str, float] | None,
    more_costs: dict[str, float],
    timeout: float | None,
    ticket: int | None,
    lane: Lane,
    recost: Recost | None,
) -> Callable[[], Awaitable[R]]:
    """A ``reserve()`` or ``acquire()`` of either throttle, its arguments checked (the costs by
    ``check``): the call that waits for the admission, which the ``async with`` block enters
    or ``acquire`` awaits.  Anything wrong raises here, in the caller's frame."""
    return partial(
        acquire,
        check(merge_costs(costs, more_costs)),
        check_optional_timeout(timeout),
        ticket,
        check_lane(lane),
        None if recost is None else check_recost(recost),
    )


def check_recost(value: Callable[[], Mapping[str, float]]) -> Callable[[], Mapping[str, float]]:
    """Accept a callable (``recost``; the callers let ``None`` through themselves)."""
    if not callable(value):
        raise TypeError(
            f"recost must be a callable returning costs per metric, or None, got "
            f"{type(value).__name__} {value!r}"
        )
    return value


def recosted(
    recost: Callable[[], Mapping[str, float]],
    check: Callable[[dict[str, float]], dict[str, float]],
) -> dict[str, float]:
    """Call a queued request's ``recost()`` and check its result as ``check`` checks costs.

    An exception ``recost`` raises propagates as it is (it is the caller's code).  A result
    that is not a mapping raises :class:`TypeError`; one that ``check`` refuses raises the
    same type of error, its message saying that ``recost()`` returned it.
    """
    costs = recost()
    if not isinstance(costs, Mapping):
        raise TypeError(
            f"recost() must return a mapping of costs per metric, got "
            f"{type(costs).__name__} {costs!r}"
        )
    copy = dict(costs)  # the caller's, which it may change; a check may return it as it is
    try:
        return check(copy)
    except (TypeError, ValueError) as exc:  # CostExceedsCapacity too
        raise type(exc)(f"recost() returned {copy!r}: {exc}") from exc


@final
class ReserveContext(Generic[R]):
    """``async with throttle.reserve(...) as slot:``: admission on entry, release on exit."""

    __slots__ = ("_acquire", "_reservation")

    def __init__(self, acquire: Callable[[], Awaitable[R]]) -> None:
        self._acquire = acquire
        self._reservation: R | None = None

    async def __aenter__(self) -> R:
        self._reservation = await self._acquire()
        return self._reservation

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._reservation is not None
        self._reservation.release()
