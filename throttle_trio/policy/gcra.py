"""GCRA, the generic cell rate algorithm: a token bucket that stores one timestamp.

GCRA keeps a *theoretical arrival time* (TAT): the time at which the bucket would be full
again.  A cost ``c`` fits at ``now`` when ``max(TAT, now) + c * T - now <= burst * T``, where
``T = per / rate`` is the time one unit takes to refill.  It admits exactly what a
:class:`TokenBucket` with the same ``rate``, ``per`` and ``burst`` admits (``available =
burst - max(0, TAT - now) / T``); its state is one number, which is why it is the algorithm
of choice for shared stores such as Redis.

In floating point this class keeps the TAT as two numbers: the time of its last change (a
clock reading) and how far the TAT is ahead of it.  The test above, written as it reads, adds
``c * T`` to a clock reading and subtracts the reading again, which at 1e5 s is off by up to
1.5e-11 s, enough to refuse a full burst; and a TAT stored as one float is rounded to the
clock's ulp at every admission.  Kept apart, ``TAT - now`` is a difference of nearby clock
readings (exact) plus a short interval, and the fit test is the token bucket's, with the
shared tolerance of :mod:`throttle_trio.policy.base` (its rounding rule).
"""

from __future__ import annotations

import math
from typing import final

from .._validate import check_cost, check_finite, check_non_negative, check_positive
from .base import SLACK, RatePolicy, refill_ready_at

__all__ = ["GCRA"]


@final
class GCRA(RatePolicy):
    """The generic cell rate algorithm: ``rate`` units per ``per`` seconds, bursts of ``burst``.

    Same parameters and same decisions as :class:`TokenBucket` (both follow the rounding rule
    of :mod:`throttle_trio.policy.base`); O(1) state: one timestamp, kept as two floats.

    Args:
        rate: units every ``per`` seconds (> 0).
        per: the period of ``rate``, in seconds (> 0).
        burst: the largest cost admitted at once (> 0); defaults to ``rate``.
        initial_tokens: units available when first used (0 <= x <= burst); defaults to ``burst``.

    Raises:
        TypeError: a parameter is not a real number.
        ValueError: a parameter is out of range (the message names it).
    """

    __slots__ = (
        "_ahead",
        "_at",
        "_burst",
        "_dropped",
        "_fill",
        "_initial",
        "_interval",
        "_per",
        "_rate",
        "_span",
    )

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
        self._fill = self._rate / self._per  # units per second
        self._span = self._burst * self._per / self._rate  # seconds to fill from empty
        if initial_tokens is None:
            self._initial = self._burst
        else:
            self._initial = check_non_negative("initial_tokens", initial_tokens)
            if self._initial > self._burst:
                raise ValueError(
                    f"initial_tokens must be <= burst ({self._burst!r}), got {initial_tokens!r}"
                )
        # TAT = _at + _ahead: _at is the time of the last change (None: not used yet, the clock
        # starts at the first use), _ahead how far the TAT was ahead of it (seconds).
        self._at: float | None = None
        self._ahead = (self._burst - self._initial) * self._interval
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
        return None if self._at is None else self._at + self._ahead

    def __repr__(self) -> str:
        return f"GCRA(rate={self._rate!r}, per={self._per!r}, burst={self._burst!r})"

    def _start(self, now: float) -> float:
        # The first use starts the clock: `initial_tokens` are what is there then.
        if self._at is None:
            self._at = now
        return self._at

    def _level(self, t: float, at: float) -> float:
        """Units at ``t`` if the TAT is ``at + _ahead``, not capped at the burst (a pure read)."""
        return self._burst - (self._ahead - (t - at)) * self._fill

    def _debt(self, now: float) -> float:
        """Seconds until the bucket is full again, ``max(0, TAT - now)`` (after `_start`)."""
        return max(0, self._ahead - (now - self._start(now)))

    def _set_tat(self, now: float, ahead: float) -> None:
        self._at, self._ahead = now, ahead

    # The hot methods below inline _start, _level, _debt and the common case of the shared rule
    # (policy.base.refill_ready_at): the same operations in the same order, so the same
    # answers, without the calls and closures (as TokenBucket does).

    def _ready(self, units: float, now: float) -> float:
        at = now if self._at is None else self._at  # not started: as if it started now
        level = self._burst - (self._ahead - (now - at)) * self._fill
        if level >= units:
            return now
        return self._refill_at(units, now, at, units - level)

    def _refill_at(self, units: float, now: float, at: float, shortfall: float) -> float:
        """:func:`refill_ready_at` past its first test: ``shortfall > 0`` units are missing."""
        fill, span = self._fill, self._span
        # clock_slack(now, span) and then clock_slack(t, span): annotated `float`, a time or a
        # parameter may be an int or a Fraction at run time (exact arithmetic, no slack).
        clock: object = now
        scale: object = span
        if isinstance(clock, float) or isinstance(scale, float):
            # max(1.0, abs(now), span), the same comparisons without the calls
            most = -now if now < 0 else now
            most = most if most > 1.0 else 1.0
            if span > most:
                most = span
            if shortfall <= SLACK * most * fill:
                return now
        t = now + shortfall / fill
        level = self._burst - (self._ahead - (t - at)) * fill
        later: object = t
        if isinstance(later, float) or isinstance(scale, float):
            most = -t if t < 0 else t
            most = most if most > 1.0 else 1.0
            if span > most:
                most = span
            if units - level <= SLACK * most * fill:
                return t  # the exact formula's time fits: first_time_at_or_after's first test
        elif units - level <= 0:
            return t
        # Rounding missed by a few ulps: the shared rule steps up from there (rare).
        return refill_ready_at(units, now, lambda x: self._level(x, at), fill, span)

    def available(self, now: float) -> float:
        at = self._at
        if at is None:
            at = now
        burst = self._burst
        level = burst - (self._ahead - (now - at)) * self._fill
        return level if level < burst else burst  # min(burst, level)

    def ready_at(self, cost: float, now: float) -> float:
        burst = self._burst
        if not ((cost.__class__ is int or cost.__class__ is float) and 0 < cost <= burst):
            cost = check_cost(cost, burst)
        at = self._at
        if at is None:  # a promise about the future needs a clock (see policy.base): start it
            self._at = at = now
        level = burst - (self._ahead - (now - at)) * self._fill
        if level >= cost:
            return now
        return self._refill_at(cost, now, at, cost - level)

    def queue_ready_at(self, ahead: float, cost: float, now: float) -> float:
        # While anyone waits the bucket never reaches its burst (the head takes its cost as
        # soon as it fits), so the units ahead and this cost accrue without a cap.
        return self._ready(ahead + self._checked_cost(cost), now)

    def consume(self, cost: float, now: float) -> None:
        if not ((cost.__class__ is int or cost.__class__ is float) and 0 < cost < math.inf):
            cost = check_positive("cost", cost)
        at = self._at
        if at is None:
            at = now
        debt = self._ahead - (now - at)  # _debt(now), then the charge
        self._at, self._ahead = now, (debt if debt > 0 else 0) + cost * self._interval

    def admit_or_ready_at(self, cost: float, now: float) -> float | None:
        # RatePolicy's default (available, ready_at, then consume) in one pass.
        at = self._at
        if at is None:
            at = now
        burst, ahead = self._burst, self._ahead
        level = burst - (ahead - (now - at)) * self._fill
        if level < cost or burst < cost:  # available(now) < cost: ready_at decides
            if not ((cost.__class__ is int or cost.__class__ is float) and 0 < cost <= burst):
                cost = check_cost(cost, burst)
            self._at = at  # ready_at starts the clock
            ready = self._refill_at(cost, now, at, cost - level)
            if ready > now:
                return ready
        debt = ahead - (now - at)
        self._at, self._ahead = now, (debt if debt > 0 else 0) + cost * self._interval
        return None

    def refund(self, amount: float, now: float, *, admitted_at: float | None = None) -> float:
        amount = check_non_negative("amount", amount)
        debt = self._debt(now)
        credited = min(amount, debt * self._fill)
        self._set_tat(now, max(0, debt - credited * self._interval))
        dropped = amount - credited
        self._dropped += dropped
        return dropped

    refills_continuously = True

    @property
    def units_per_second(self) -> float:
        return self._rate / self._per

    def set_units_per_second(self, rate: float, now: float) -> None:
        self.reconfigure(now, rate=check_positive("rate", rate) * self._per)

    def reconfigure(self, now: float, **changes: float) -> None:
        unknown = changes.keys() - {"rate", "per", "burst"}
        if unknown:
            raise TypeError(f"GCRA.reconfigure() got unknown parameters {sorted(unknown)}")
        rate = check_positive("rate", changes.get("rate", self._rate))
        per = check_positive("per", changes.get("per", self._per))
        burst = check_positive("burst", changes.get("burst", self._burst))
        level = min(self.available(now), burst)  # keep the level; change how it refills
        self._rate, self._per, self._burst = rate, per, burst
        self._interval, self._fill = per / rate, rate / per
        self._span = burst * per / rate
        self._set_tat(now, (burst - level) * self._interval)

    def shift_clock(self, delta: float) -> None:
        delta = check_finite("delta", delta)
        if self._at is not None:
            self._at += delta

    def limit_available(self, tokens: float, now: float) -> None:
        check_finite("tokens", tokens)
        self._start(now)
        if self.available(now) > tokens:
            self._set_tat(now, (self._burst - tokens) * self._interval)
