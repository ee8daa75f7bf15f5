"""GCRA, the generic cell rate algorithm: a token bucket that stores one timestamp.

GCRA keeps a *theoretical arrival time* (TAT): the time at which the bucket would be full
again.  A cost ``c`` fits at ``now`` when ``max(TAT, now) + c * T - now <= burst * T``, where
``T = per / rate`` is the time one unit takes to refill.  It admits exactly what a
:class:`TokenBucket` with the same ``rate``, ``per`` and ``burst`` admits (``available =
burst - max(0, TAT - now) / T``); its state is one number, which is why it is the algorithm
of choice for shared stores such as Redis.
"""

from __future__ import annotations

from typing import final

from .._validate import check_finite, check_non_negative, check_positive
from .base import RatePolicy, first_time_at_or_after

__all__ = ["GCRA"]


@final
class GCRA(RatePolicy):
    """The generic cell rate algorithm: ``rate`` units per ``per`` seconds, bursts of ``burst``.

    Same parameters and same decisions as :class:`TokenBucket`; O(1) state (one timestamp).

    Args:
        rate: units every ``per`` seconds (> 0).
        per: the period of ``rate``, in seconds (> 0).
        burst: the largest cost admitted at once (> 0); defaults to ``rate``.
        initial_tokens: units available when first used (0 <= x <= burst); defaults to ``burst``.

    Raises:
        TypeError: a parameter is not a real number.
        ValueError: a parameter is out of range (the message names it).
    """

    __slots__ = ("_burst", "_dropped", "_initial", "_interval", "_per", "_rate", "_tat")

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: float | None = None,
        initial_tokens: float | None = None,
    ) -> None:
        self._rate = check_positive("rate", rate)
        self._per = check_positive("per", per)
        self._burst = self._rate if burst is None else check_positive("burst", burst)
        self._interval = self._per / self._rate  # seconds per unit (T)
        if initial_tokens is None:
            self._initial = self._burst
        else:
            self._initial = check_non_negative("initial_tokens", initial_tokens)
            if self._initial > self._burst:
                raise ValueError(
                    f"initial_tokens must be <= burst ({self._burst!r}), got {initial_tokens!r}"
                )
        self._tat: float | None = None  # set from `initial_tokens` at first use
        self._dropped = 0.0

    @property
    def rate(self) -> float:
        """Units every :attr:`per` seconds."""
        return self._rate

    @property
    def per(self) -> float:
        """The period of :attr:`rate`, in seconds."""
        return self._per

    @property
    def burst(self) -> float:
        """The most units that can go at once."""
        return self._burst

    @property
    def capacity(self) -> float:
        return self._burst

    @property
    def dropped(self) -> float:
        """Units refunded into a full bucket and therefore lost."""
        return self._dropped

    @property
    def theoretical_arrival_time(self) -> float | None:
        """The TAT: when the bucket is full again (``None`` before first use)."""
        return self._tat

    def __repr__(self) -> str:
        return f"GCRA(rate={self._rate!r}, per={self._per!r}, burst={self._burst!r})"

    def _tat_at(self, now: float) -> float:
        # The first question starts the clock: `initial_tokens` are what is there at that time.
        if self._tat is None:
            self._tat = now + (self._burst - self._initial) * self._interval
        return self._tat

    def _fits(self, cost: float, now: float) -> bool:
        tat = self._tat_at(now)
        return max(tat, now) + cost * self._interval - now <= self._burst * self._interval

    def available(self, now: float) -> float:
        return self._burst - max(0, self._tat_at(now) - now) / self._interval

    def ready_at(self, cost: float, now: float) -> float:
        cost = self._checked_cost(cost)
        if self._fits(cost, now):
            return now
        earliest = self._tat_at(now) + (cost - self._burst) * self._interval
        return first_time_at_or_after(max(earliest, now), lambda t: self._fits(cost, t))

    def queue_ready_at(self, ahead: float, cost: float, now: float) -> float:
        # While anyone waits the bucket never reaches its burst (the head takes its cost as
        # soon as it fits), so the units ahead and this cost accrue without a cap.
        deficit = ahead + self._checked_cost(cost) - self.available(now)
        return now if deficit <= 0 else now + deficit * self._interval

    def consume(self, cost: float, now: float) -> None:
        cost = self._checked_charge(cost)
        self._tat = max(self._tat_at(now), now) + cost * self._interval

    def refund(self, amount: float, now: float, *, admitted_at: float | None = None) -> float:
        amount = check_non_negative("amount", amount)
        tat = self._tat_at(now)
        credited = min(amount, max(0, tat - now) / self._interval)
        self._tat = tat - credited * self._interval
        dropped = amount - credited
        self._dropped += dropped
        return dropped

    def reconfigure(self, now: float, **changes: float) -> None:
        unknown = changes.keys() - {"rate", "per", "burst"}
        if unknown:
            raise TypeError(f"GCRA.reconfigure() got unknown parameters {sorted(unknown)}")
        rate = check_positive("rate", changes.get("rate", self._rate))
        per = check_positive("per", changes.get("per", self._per))
        burst = check_positive("burst", changes.get("burst", self._burst))
        level = min(self.available(now), burst)  # keep the level; change how it refills
        self._rate, self._per, self._burst = rate, per, burst
        self._interval = per / rate
        self._tat = now + (burst - level) * self._interval

    def shift_clock(self, delta: float) -> None:
        delta = check_finite("delta", delta)
        if self._tat is not None:
            self._tat += delta

    def limit_available(self, tokens: float, now: float) -> None:
        check_finite("tokens", tokens)
        if self.available(now) > tokens:
            self._tat = now + (self._burst - tokens) * self._interval
