"""The token bucket: a steady refill rate and a separate burst size.

Think of a bucket that holds at most ``burst`` units and refills at ``rate`` units every
``per`` seconds.  A request of cost ``c`` goes when the bucket holds at least ``c`` units and
takes them out.  Over any interval of length ``T`` it admits at most ``burst + rate / per * T``
units (invariant I1).

======================  ==========================================================
parameter               meaning
======================  ==========================================================
``rate``, ``per``       the sustained rate: ``rate`` units every ``per`` seconds
``burst``               how much can go at once after a quiet spell (the bucket size);
                        defaults to ``rate`` (one period's worth, as aiolimiter does)
``initial_tokens``      what the bucket holds the first time it is used; defaults to
                        ``burst`` (a full bucket, as Go's ``x/time/rate``); set it to 0
                        when a restarted worker must not fire a burst into a drained key
======================  ==========================================================
"""

from __future__ import annotations

from typing import final

from .._validate import check_finite, check_non_negative, check_positive
from .base import RatePolicy, refill_ready_at

__all__ = ["TokenBucket"]


@final
class TokenBucket(RatePolicy):
    """A token bucket: ``rate`` units per ``per`` seconds, bursts of up to ``burst`` units.

    A pure policy: no clock, no I/O; every time-dependent method takes ``now`` (seconds).
    Equivalent to :class:`GCRA` with the same parameters, which stores one number instead of two.

    Args:
        rate: units added every ``per`` seconds (> 0).
        per: the period of ``rate``, in seconds (> 0).  ``TokenBucket(500, per=60)`` is 500/min.
        burst: bucket size, the largest cost admitted at once (> 0); defaults to ``rate``.
        initial_tokens: units in the bucket when it is first used (0 <= x <= burst);
            defaults to ``burst``.

    Raises:
        TypeError: a parameter is not a real number.
        ValueError: a parameter is out of range (the message names it).
    """

    __slots__ = (
        "_burst",
        "_dropped",
        "_fill",
        "_per",
        "_rate",
        "_span",
        "_started",
        "_tokens",
        "_updated",
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
        self._fill = self._rate / self._per  # units per second
        self._span = self._burst * self._per / self._rate  # seconds to fill from empty
        if initial_tokens is None:
            self._tokens = self._burst
        else:
            self._tokens = check_non_negative("initial_tokens", initial_tokens)
            if self._tokens > self._burst:
                raise ValueError(
                    f"initial_tokens must be <= burst ({self._burst!r}), got {initial_tokens!r}"
                )
        self._started = False  # the clock starts at the first use (see policy.base)
        self._updated = 0.0
        self._dropped = 0.0

    @property
    def rate(self) -> float:
        """Units added every :attr:`per` seconds."""
        return self._rate

    @property
    def per(self) -> float:
        """The period of :attr:`rate`, in seconds."""
        return self._per

    @property
    def burst(self) -> float:
        """The bucket size: the most units that can go at once."""
        return self._burst

    @property
    def capacity(self) -> float:
        return self._burst

    @property
    def dropped(self) -> float:
        """Units refunded into a full bucket and therefore lost (never above the burst)."""
        return self._dropped

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self._rate!r}, per={self._per!r}, burst={self._burst!r})"

    def _start(self, now: float) -> None:
        # The first use starts the clock: `initial_tokens` are what is there then.
        if not self._started:
            self._started = True
            self._updated = now

    def _since(self, now: float) -> float:
        # When the level was last set; a bucket not yet started reads as if it started now.
        return self._updated if self._started else now

    def _level(self, t: float, since: float) -> float:
        """Units at ``t``, not capped at the burst (a pure read)."""
        if t <= since:  # a clock that steps back refills nothing
            return self._tokens
        return self._tokens + (t - since) * self._fill

    def _ready(self, units: float, now: float) -> float:
        since = self._since(now)
        if self._level(now, since) >= units:
            return now  # the hot path; every other case follows the shared rule
        return refill_ready_at(units, now, lambda t: self._level(t, since), self._fill, self._span)

    def _advance(self, now: float) -> None:
        self._start(now)
        self._tokens = min(self._burst, self._level(now, self._updated))
        self._updated = max(self._updated, now)

    def available(self, now: float) -> float:
        return min(self._burst, self._level(now, self._since(now)))

    def ready_at(self, cost: float, now: float) -> float:
        cost = self._checked_cost(cost)
        self._start(now)  # a promise about the future needs a clock (see policy.base)
        return self._ready(cost, now)

    def queue_ready_at(self, ahead: float, cost: float, now: float) -> float:
        # While anyone waits the bucket never reaches its burst (the head takes its cost as
        # soon as it fits), so the units ahead and this cost accrue without a cap.
        return self._ready(ahead + self._checked_cost(cost), now)

    def consume(self, cost: float, now: float) -> None:
        cost = self._checked_charge(cost)
        self._advance(now)
        self._tokens -= cost

    def refund(self, amount: float, now: float, *, admitted_at: float | None = None) -> float:
        amount = check_non_negative("amount", amount)
        self._advance(now)
        credited = min(amount, max(0, self._burst - self._tokens))
        self._tokens += credited
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
            raise TypeError(f"TokenBucket.reconfigure() got unknown parameters {sorted(unknown)}")
        rate = check_positive("rate", changes.get("rate", self._rate))
        per = check_positive("per", changes.get("per", self._per))
        burst = check_positive("burst", changes.get("burst", self._burst))
        self._advance(now)  # what accrued so far accrued at the old rate
        self._rate, self._per, self._burst = rate, per, burst
        self._fill = rate / per
        self._span = burst * per / rate
        self._tokens = min(self._tokens, burst)

    def shift_clock(self, delta: float) -> None:
        self._updated += check_finite("delta", delta)

    def limit_available(self, tokens: float, now: float) -> None:
        check_finite("tokens", tokens)
        self._advance(now)
        self._tokens = min(self._tokens, tokens)
