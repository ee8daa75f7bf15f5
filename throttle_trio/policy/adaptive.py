"""AIMD: additive increase, multiplicative decrease of a rate between a floor and a ceiling.

The controller TCP uses for congestion, applied to a request rate: every overload signal (a
429, a 529, a 5xx) multiplies the rate by ``decrease``; every success adds ``increase``.  The
rate never exceeds ``ceiling`` (the configured limit) and never falls below ``floor``.  After a
decrease, further overload signals are ignored for ``cooldown`` seconds: the requests already in
flight were sent at the old rate, and their 429s say nothing about the new one.

Like every policy it is pure: it reads no clock; the caller passes ``now``.
"""

from __future__ import annotations

import math
from typing import final

from .._validate import check_non_negative, check_positive

__all__ = ["AIMD"]

# The defaults, named so that the Redis throttle's shared AIMD (in its script) uses the same.
#: An overload multiplies the rate by this.
DEFAULT_DECREASE = 0.5
#: The floor, and the step a success adds, are the ceiling divided by this.
DEFAULT_DIVISOR = 100
#: Seconds after a decrease during which overload signals are ignored.
DEFAULT_COOLDOWN = 1.0


@final
class AIMD:
    """Additive-increase/multiplicative-decrease control of a rate (units per second).

    Args:
        ceiling: the highest rate, normally the configured limit (> 0).
        floor: the lowest rate (0 < floor <= ceiling); defaults to ``ceiling / 100``.
        decrease: factor applied on overload (0 < decrease < 1); defaults to 0.5.
        increase: rate added per success (> 0); defaults to ``ceiling / 100``, so recovering
            from half the ceiling takes about 50 successes.
        cooldown: seconds after a decrease during which overload signals are ignored (>= 0).
    """

    __slots__ = (
        "_ceiling",
        "_cooldown",
        "_decrease",
        "_floor",
        "_increase",
        "_last_decrease",
        "_rate",
    )

    def __init__(
        self,
        ceiling: float,
        *,
        floor: float | None = None,
        decrease: float = DEFAULT_DECREASE,
        increase: float | None = None,
        cooldown: float = DEFAULT_COOLDOWN,
    ) -> None:
        self._ceiling = check_positive("ceiling", ceiling)
        self._floor = ceiling / DEFAULT_DIVISOR if floor is None else check_positive("floor", floor)
        if self._floor > self._ceiling:
            raise ValueError(f"floor must be <= ceiling ({ceiling!r}), got {floor!r}")
        self._decrease = check_positive("decrease", decrease)
        if not self._decrease < 1:
            raise ValueError(f"decrease must be < 1, got {decrease!r}")
        self._increase = (
            ceiling / DEFAULT_DIVISOR if increase is None else check_positive("increase", increase)
        )
        self._cooldown = check_non_negative("cooldown", cooldown)
        self._rate = self._ceiling
        self._last_decrease = -math.inf

    @property
    def rate(self) -> float:
        """The current rate."""
        return self._rate

    @property
    def ceiling(self) -> float:
        """The highest rate (the configured limit)."""
        return self._ceiling

    @property
    def floor(self) -> float:
        """The lowest rate."""
        return self._floor

    def __repr__(self) -> str:
        return f"AIMD(rate={self._rate!r}, floor={self._floor!r}, ceiling={self._ceiling!r})"

    def on_success(self) -> float:
        """A request succeeded: add ``increase``, up to the ceiling.  Returns the new rate."""
        self._rate = min(self._ceiling, self._rate + self._increase)
        return self._rate

    def on_overload(self, now: float) -> float:
        """The server is overloaded: multiply by ``decrease``, down to the floor (at most once
        per ``cooldown``).  Returns the new rate."""
        if now - self._last_decrease >= self._cooldown:
            self._rate = max(self._floor, self._rate * self._decrease)
            self._last_decrease = now
        return self._rate

    def shift_clock(self, delta: float) -> None:
        """Move the time of the last decrease by ``delta`` seconds (another event loop)."""
        self._last_decrease += delta

    def set_ceiling(self, ceiling: float) -> float:
        """Change the ceiling (a reconfiguration); the rate is lowered to it if above."""
        self._ceiling = check_positive("ceiling", ceiling)
        self._floor = min(self._floor, self._ceiling)
        self._rate = min(self._rate, self._ceiling)
        return self._rate
