"""A concurrency cap sized from latency: ``max_concurrent="auto"``.

By Little's law, a throttle that admits ``R`` requests per second, each in flight for ``L``
seconds on average, has ``R * L`` requests in flight.  A cap below that wastes quota (requests
wait for a slot while the rate would let them go); a cap far above it lets a backlog burst
into the provider's own concurrency limit when a gate opens.  So the cap follows
``headroom * R * L``, rounded up, between ``floor`` and ``ceiling``:

* ``L``: the mean time a reservation holds its slot (from when its task ran again after
  admission to its release, a streaming body included), an exponentially weighted mean of
  the last few dozen.
* ``R``: the request rate the limits allow: for each limit, its rate (units per second)
  divided by the mean cost per request of its metric (weighted the same way); the smallest of
  them binds.  A throttle with no rate limit has no ``R``: the cap is the ceiling.

Until the first release the cap is ``initial``, by default the ceiling: the rates hold the
first requests back anyway, and a low cap there would hold back the rate while it waits for a
first measurement (100 requests at 10/s, 2 s each, took 11.1 s instead of 9.9 s with an
initial cap of 8).  The rule is pure (it takes numbers, reads no
clock): the throttle calls :meth:`AutoConcurrency.observe` at each release.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, final

from ._validate import check_positive

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["AutoConcurrency"]

#: The weight of a new observation in the means (about the last 20 count).
_WEIGHT = 0.1


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


@final
class AutoConcurrency:
    """The settings of ``max_concurrent="auto"``; pass an instance to tune them.

    Args:
        ceiling: the cap never goes above this (an int >= 1): the most you let in flight.
        floor: nor below this (an int, 1 <= floor <= ceiling).
        initial: the cap until the first request completes (floor <= initial <= ceiling;
            ``None``: the ceiling).
        headroom: the cap is this multiple of rate x latency (>= 1): room for latency jitter.
    """

    __slots__ = ("_cap", "_costs", "_latency", "ceiling", "floor", "headroom", "initial")

    def __init__(
        self,
        *,
        ceiling: int = 256,
        floor: int = 1,
        initial: int | None = None,
        headroom: float = 1.5,
    ) -> None:
        self.ceiling: int = _check_int("ceiling", ceiling, 1)
        self.floor: int = _check_int("floor", floor, 1)
        if self.floor > self.ceiling:
            raise ValueError(f"floor must be <= ceiling ({ceiling!r}), got {floor!r}")
        self.initial: int = self.ceiling if initial is None else _check_int("initial", initial, 1)
        if not self.floor <= self.initial <= self.ceiling:
            raise ValueError(
                f"initial must be between floor ({floor!r}) and ceiling ({ceiling!r}), "
                f"got {initial!r}"
            )
        self.headroom: float = check_positive("headroom", headroom)
        if self.headroom < 1:
            raise ValueError(f"headroom must be >= 1, got {headroom!r}")
        self._cap: int = self.initial
        self._latency: float = math.nan
        self._costs: dict[str, float] = {}  # metric -> mean cost per request

    def __repr__(self) -> str:
        return (
            f"AutoConcurrency(ceiling={self.ceiling}, floor={self.floor}, "
            f"initial={self.initial}, headroom={self.headroom})"
        )

    def fresh(self) -> AutoConcurrency:
        """A controller with the same settings and nothing measured (one per throttle)."""
        return AutoConcurrency(
            ceiling=self.ceiling, floor=self.floor, initial=self.initial, headroom=self.headroom
        )

    @property
    def cap(self) -> int:
        """The cap now."""
        return self._cap

    @property
    def latency(self) -> float:
        """The mean time in flight, in seconds (NaN before the first release)."""
        return self._latency

    def observe(
        self,
        held: float,
        costs: Mapping[str, float],
        rates: Iterable[tuple[str, float]],
    ) -> int:
        """A reservation held its slot ``held`` seconds and was charged ``costs``.

        Args:
            held: seconds in flight (a negative or NaN reading is ignored).
            costs: what it was charged, per metric.
            rates: (metric, units per second) of every rate limit (NaN rates are skipped).

        Returns:
            The new cap.
        """
        if held >= 0:  # False for NaN
            latency = self._latency
            self._latency = held if math.isnan(latency) else latency + _WEIGHT * (held - latency)
        means = self._costs
        for metric, cost in costs.items():
            mean = means.get(metric)
            means[metric] = cost if mean is None else mean + _WEIGHT * (cost - mean)
        requests_per_second = math.inf
        for metric, rate in rates:
            mean = means.get(metric, 0.0)
            if mean > 0 and rate > 0:  # False for NaN
                requests_per_second = min(requests_per_second, rate / mean)
        if math.isnan(self._latency) or requests_per_second == math.inf:
            wanted = float(self.ceiling)
        else:
            wanted = math.ceil(self.headroom * requests_per_second * self._latency)
        self._cap = int(min(self.ceiling, max(self.floor, wanted)))
        return self._cap
