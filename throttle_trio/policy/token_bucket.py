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
``until_sent``          a pace for what is between admission and the wire: a request
                        reported on the wire gives its units back (default ``False``)
======================  ==========================================================
"""

from __future__ import annotations

import math
from typing import final

from .._validate import check_cost, check_finite, check_non_negative, check_positive
from .base import SLACK, RatePolicy, refill_ready_at

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
        until_sent: hold a request's units only until it is on the wire: a
            :class:`~throttle_trio.Throttle` gives them back when the request is reported sent
            (:meth:`~throttle_trio.Reservation.sent`, which the httpx transports call), so
            at most ``burst`` units (plus the refill) are between admission and the wire,
            and requests that report go as fast as they leave.  Requests that never report
            are paced at the rate.  :func:`~throttle_trio.openai_throttle` paces with one.
            A :class:`~throttle_trio.redis.RedisThrottle` has no reports: it keeps them.

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
        "_until_sent",
        "_updated",
    )

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: float | None = None,
        initial_tokens: float | None = None,
        until_sent: bool = False,
    ) -> None:
        if not isinstance(until_sent, bool):
            raise TypeError(
                f"until_sent must be a bool, got {type(until_sent).__name__} {until_sent!r}"
            )
        self._until_sent = until_sent
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

    @property
    def until_sent(self) -> bool:
        """Whether a request reported on the wire gives its units back (a pace)."""
        return self._until_sent

    def __repr__(self) -> str:
        until_sent = ", until_sent=True" if self._until_sent else ""
        return (
            f"TokenBucket(rate={self._rate!r}, per={self._per!r}, burst={self._burst!r}"
            f"{until_sent})"
        )

    def _start(self, now: float) -> float:
        """Start the clock at the first use (``initial_tokens`` are what is there then);
        return when the level was last set."""
        if self._started:
            return self._updated
        self._started = True
        self._updated = now
        return now

    def _since(self, now: float) -> float:
        # When the level was last set; a bucket not yet started reads as if it started now.
        return self._updated if self._started else now

    def _level(self, t: float, since: float) -> float:
        """Units at ``t``, not capped at the burst (a pure read)."""
        if t <= since:  # a clock that steps back refills nothing
            return self._tokens
        return self._tokens + (t - since) * self._fill

    # The hot methods below inline _start, _level and the common case of the shared rule
    # (policy.base.refill_ready_at): the same operations in the same order, so the same
    # answers, without the calls and closures (about a fifth of a contended admission).

    def _ready(self, units: float, now: float, since: float) -> float:
        """When ``units`` fit: :func:`refill_ready_at` with ``level = _level(., since)``."""
        tokens = self._tokens
        level = tokens + (now - since) * self._fill if now > since else tokens
        if level >= units:
            return now
        return self._refill_at(units, now, since, units - level)

    def _refill_at(self, units: float, now: float, since: float, shortfall: float) -> float:
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
        tokens = self._tokens
        level = tokens + (t - since) * fill if t > since else tokens
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
        return refill_ready_at(units, now, lambda x: self._level(x, since), fill, span)

    def _advance(self, now: float) -> None:
        self._tokens = min(self._burst, self._level(now, self._start(now)))
        self._updated = max(self._updated, now)

    def available(self, now: float) -> float:
        tokens = self._tokens
        if self._started:
            since = self._updated
            if now > since:
                tokens = tokens + (now - since) * self._fill
        burst = self._burst
        return tokens if tokens < burst else burst  # min(burst, level)

    def ready_at(self, cost: float, now: float) -> float:
        burst = self._burst
        if not ((cost.__class__ is int or cost.__class__ is float) and 0 < cost <= burst):
            cost = check_cost(cost, burst)
        # A promise about the future needs a clock (see policy.base): start it.
        if self._started:
            since = self._updated
        else:
            self._started = True
            self._updated = since = now
        tokens = self._tokens
        level = tokens + (now - since) * self._fill if now > since else tokens
        if level >= cost:
            return now
        return self._refill_at(cost, now, since, cost - level)

    def queue_ready_at(self, ahead: float, cost: float, now: float) -> float:
        # While anyone waits the bucket never reaches its burst (the head takes its cost as
        # soon as it fits), so the units ahead and this cost accrue without a cap.
        return self._ready(ahead + self._checked_cost(cost), now, self._since(now))

    def consume(self, cost: float, now: float) -> None:
        if not ((cost.__class__ is int or cost.__class__ is float) and 0 < cost < math.inf):
            cost = check_positive("cost", cost)
        # _advance, then the charge.
        if self._started:
            since = self._updated
        else:
            self._started = True
            self._updated = since = now
        tokens = self._tokens
        if now > since:
            tokens = tokens + (now - since) * self._fill
            self._updated = now
        burst = self._burst
        self._tokens = (tokens if tokens < burst else burst) - cost

    def admit_or_ready_at(self, cost: float, now: float) -> float | None:
        # RatePolicy's default (available, ready_at, then consume) in one pass.
        started = self._started
        since = self._updated if started else now
        tokens = self._tokens
        level = tokens + (now - since) * self._fill if now > since else tokens
        burst = self._burst
        if level < cost or burst < cost:  # available(now) < cost: ready_at decides
            if not ((cost.__class__ is int or cost.__class__ is float) and 0 < cost <= burst):
                cost = check_cost(cost, burst)
            if not started:
                self._started = started = True
                self._updated = now
            ready = self._refill_at(cost, now, since, cost - level)
            if ready > now:
                return ready
        if not started:
            self._started = True
            self._updated = now
        elif now > since:
            self._updated = now
        self._tokens = (level if level < burst else burst) - cost
        return None

    def refund(self, amount: float, now: float, *, admitted_at: float | None = None) -> float:
        amount = check_non_negative("amount", amount)
        self._advance(now)
        credited = min(amount, max(0, self._burst - self._tokens))
        self._tokens += credited
        dropped = amount - credited
        self._dropped += dropped
        return dropped

    def defer(self, cost: float, admitted_at: float, now: float) -> None:
        """With ``until_sent``, give ``cost`` back: the request is on the wire (what fits
        below the burst; nothing is counted as dropped).  Otherwise nothing: a bucket has no
        admission times to move."""
        cost = check_non_negative("cost", cost)
        check_finite("admitted_at", admitted_at)
        check_finite("now", now)
        if self._until_sent and cost:
            self._advance(now)
            self._tokens = min(self._burst, self._tokens + cost)

    def refund_sent(
        self, amount: float, now: float, *, admitted_at: float, sent_at: float
    ) -> float:
        """With ``until_sent``, nothing: the units came back when the request was on the wire
        (``0`` is returned: nothing was lost).  Otherwise as :meth:`refund`."""
        if self._until_sent:
            check_non_negative("amount", amount)
            return 0.0
        return self.refund(amount, now, admitted_at=admitted_at)

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
