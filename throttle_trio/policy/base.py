"""What every rate policy answers, and the arithmetic they share.

A policy is a plain object: it never sleeps, never reads a clock and never imports anyio.  Every
method that depends on time takes ``now`` (seconds on any monotonic clock, the same clock for
every call).  The async limiters turn its answers into one sleep on one timer.

The rounding rule
-----------------
Policies decide in the arithmetic of the numbers they are given: ``float`` on an event loop's
clock, exactly with ``fractions.Fraction`` (or ``int``) time and parameters.  The rule holds at
any clock reading a loop can have, 0 to 1e9 s (trio's real clock starts at a random offset of
about 1e4 to 1e6 s; ``time.monotonic()`` is the machine's uptime):

1. **Sleeping until the answer admits.**  :meth:`RatePolicy.ready_at` returns a time ``t`` such
   that ``ready_at(cost, t) == t`` *exactly*, so a waiter that sleeps until ``t`` is admitted
   when it wakes, and virtual time never freezes in a loop of zero-length sleeps caused by a
   remainder like ``now + 1e-13 == now``.
2. **Differences, not sums.**  A bucket's level at ``now`` is computed from ``now`` minus the
   time of its last change (exact for nearby clock readings) and quantities the size of the
   bucket, never by adding an interval to a clock reading and subtracting the reading again:
   at 1e5 s ``(now + 0.1) - now`` is 0.1 give or take 1.5e-11, which once made a full
   :class:`GCRA` refuse its burst until the clock crossed the next power of two.  The fit test
   is therefore monotone in ``now``, and ``ready_at`` lands within the tolerance below of the
   exact answer.
3. **A stated tolerance.**  A bucket admits a cost that is short by at most what it refills in
   ``clock_slack(now, span)`` seconds, ``SLACK * max(1 s, |now|, span)`` with ``SLACK =
   2**-48`` and ``span`` the bucket's time to fill from empty (``burst * per / rate``).  That
   is 16 to 32 ulps of the larger of the clock reading and the span: 3.6e-15 s near 0, 36 ps at
   1e4 s, 3.6 ns at 1e6 s, 3.6 µs at 1e9 s: more than the rounding of the operations of one
   decision (so a cost that fits a bucket's state exactly fits it in float too; the state
   itself carries the rounding of past updates, a fraction of an ulp of the bucket each, as
   any float accumulator does), far less than any timer's resolution.  In exact arithmetic
   (no ``float`` among ``now`` and the parameters) it is 0.
   The rate bound I1 therefore holds in float up to that slack: over an interval of length
   ``T`` at most ``burst + rate / per * (T + slack)``.
4. **One rule, so the answers agree.**  :class:`TokenBucket` and :class:`GCRA` both decide with
   :func:`refill_ready_at`, so they agree except when a cost's exact shortfall lies within
   rounding of the tolerance's edge.  For one policy: ``ready_at(cost, now) == now`` exactly
   when :meth:`RatePolicy.try_admit` admits; ``available(now) >= cost`` implies it, and an
   admitted cost is at most ``available(now)`` plus the slack's refill; a bucket's
   ``queue_ready_at(0, cost, now) == ready_at(cost, now)``, so ``acquire(timeout=)`` refuses
   at once only what it could not admit in time.  A full bucket admits ``cost == burst`` at
   once.  :class:`SlidingWindow` needs no tolerance: an admission at ``t`` leaves at
   ``t + window``, one addition computed the same way wherever it is compared.

Reading changes nothing
-----------------------
:meth:`RatePolicy.available`, :meth:`RatePolicy.queue_ready_at`, the properties and ``repr``
never change a policy, so ``statistics()`` can be called at any time.  A bucket's clock starts
at its first use: the first write (:meth:`~RatePolicy.consume`, :meth:`~RatePolicy.refund`,
...) or the first :meth:`~RatePolicy.ready_at`, whose answer is a promise that rule 1 must
keep (a bucket that had not started would answer "``cost / rate`` from now" at every ``now``,
and a waiter would never be admitted).  Until then a bucket holds ``initial_tokens`` at
whatever time it is asked.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._validate import check_cost, check_positive

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Decision", "RatePolicy"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of :meth:`RatePolicy.try_admit`.

    Attributes:
        allowed: the cost was admitted (and recorded) at ``now``.
        ready_at: when the cost fits: ``now`` if allowed, otherwise the earliest later time
            (seconds, same clock as ``now``) at which it would, if nothing else is admitted.
        available: units available right after the decision (negative while in debt).
    """

    allowed: bool
    ready_at: float
    available: float


class RatePolicy(ABC):
    """The interface shared by :class:`TokenBucket`, :class:`GCRA` and :class:`SlidingWindow`.

    Subclass it to plug your own policy into :class:`~throttle_trio.RateLimiter`; every method
    must be synchronous, must not block and must follow the rounding rule of this module.
    """

    __slots__ = ()

    @property
    @abstractmethod
    def capacity(self) -> float:
        """The largest cost this policy can ever admit at once (units)."""

    @property
    @abstractmethod
    def dropped(self) -> float:
        """Units refunded that could not be credited (above the capacity, or already expired)."""

    @abstractmethod
    def available(self, now: float) -> float:
        """Units that could be admitted at ``now`` (negative while a debt is being repaid).

        A pure read: it never changes the policy.  A cost up to this fits at ``now``.
        """

    @abstractmethod
    def ready_at(self, cost: float, now: float) -> float:
        """The earliest time >= ``now`` at which ``cost`` fits, if nothing else is admitted.

        "Earliest" is up to the rounding rule's tolerance (see the module docstring), and the
        answer keeps the rule: ``ready_at(cost, t) == t`` for the returned ``t``.  A bucket
        that was never used starts its clock here (the one read that may change a policy).

        Raises:
            CostExceedsCapacity: ``cost`` is above :attr:`capacity`.
            TypeError, ValueError: ``cost`` is not a finite number > 0.
        """

    @abstractmethod
    def consume(self, cost: float, now: float) -> None:
        """Record ``cost`` units as admitted at ``now``, whether or not they fit.

        A cost that does not fit leaves a debt: it is repaid before anything else fits.  Use
        :meth:`try_admit` to admit only what fits.
        """

    @abstractmethod
    def refund(self, amount: float, now: float, *, admitted_at: float | None = None) -> float:
        """Give back ``amount`` units that were consumed but not used.

        A refund never raises the available units above :attr:`capacity`.

        Args:
            amount: units to give back (>= 0).
            now: the current time (seconds).
            admitted_at: when the refunded units were consumed, for policies that remember
                admission times (:class:`SlidingWindow`); buckets ignore it.

        Returns:
            The part of ``amount`` that could not be credited (dropped).
        """

    def refund_sent(
        self, amount: float, now: float, *, admitted_at: float, sent_at: float
    ) -> float:
        """Give back ``amount`` units of a request admitted at ``admitted_at`` that
        :meth:`defer` counted from ``sent_at`` (it was reported on the wire then).

        A throttle calls it instead of :meth:`refund` once a request was reported on the
        wire.  The default refunds as from the admission: a policy whose :meth:`defer` moves
        nothing keeps the units there.  Returns the part that could not be credited.
        """
        return self.refund(amount, now, admitted_at=admitted_at)

    @abstractmethod
    def reconfigure(self, now: float, **changes: float) -> None:
        """Change parameters at ``now``, keeping what was admitted before.

        The keywords are the constructor's (for example ``rate=``, ``burst=``).  Lowering the
        capacity below a queued cost makes that request fail; the limiter takes care of that.
        """

    @abstractmethod
    def limit_available(self, tokens: float, now: float) -> None:
        """Lower the units available at ``now`` to at most ``tokens``; never raise them.

        Used when a server reports fewer remaining units than the policy believes (another
        process shares the key).  ``tokens`` may be negative: the difference is a debt.
        """

    # -- what a throttle needs to know (header feedback, adaptive rates) ----------------------

    #: Whether the policy frees units steadily at :attr:`units_per_second` (a bucket), rather
    #: than in steps as old admissions expire (a window).  Header feedback credits the refill
    #: since a request was sent only to a policy that refills continuously.
    refills_continuously: bool = False

    @property
    def units_per_second(self) -> float:
        """The long-run rate, in units per second; ``math.nan`` if unknown (the default).

        A throttle's adaptive controller (AIMD) scales it; header feedback credits it.
        """
        return math.nan

    def set_units_per_second(self, rate: float, now: float) -> None:
        """Admit ``rate`` units per second from ``now`` on; the capacity stays as it is.

        The default raises ``NotImplementedError``: a throttle then leaves the rate of this
        policy alone (no adaptive backoff for it).
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement set_units_per_second()"
        )

    def is_full(self, now: float) -> bool:
        """Whether the policy holds its whole capacity at ``now`` (a pure read)."""
        return self.available(now) >= self.capacity

    def shift_clock(self, delta: float) -> None:
        """Move every time this policy remembers by ``delta`` seconds.

        A limiter calls it when it is used from another event loop than before: each loop's
        clock has its own origin (trio's starts at a random offset, a ``MockClock`` at 0), and
        the limiter carries on where it was, as if no time passed between the two loops.
        The default raises ``NotImplementedError``; the limiter then logs a warning and keeps
        the times as they are.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement shift_clock()")

    def defer(self, cost: float, admitted_at: float, now: float) -> None:
        """Count ``cost`` units consumed at ``admitted_at`` as consumed at ``now``, when the
        request was on the wire.

        A throttle calls it when a request admitted at ``admitted_at`` is reported on the
        wire at ``now`` (:meth:`~throttle_trio.Reservation.sent`): a provider counts its
        windows from when requests arrive.  A policy that remembers admission times
        (:class:`SlidingWindow`) moves them there, so they leave the window that much later
        (never earlier than they were recorded).  A bucket has nothing to move (the default
        does nothing), unless it paces what is between admission and the wire
        (``TokenBucket(..., until_sent=True)`` gives the units back: the throttle asks its
        line again after each report).
        """
        return

    def queue_ready_at(self, ahead: float, cost: float, now: float) -> float:
        """A lower bound on when ``cost`` fits if ``ahead`` units are admitted before it (FIFO).

        Used to fail a request at once when even this bound exceeds its timeout.  The default
        is conservative; buckets override it with the exact answer, which for ``ahead == 0`` is
        :meth:`ready_at`'s.  A pure read: it never changes the policy.
        """
        cost = self._checked_cost(cost)
        return self.ready_at(min(ahead + cost, self.capacity), now)

    def try_admit(self, cost: float, now: float) -> Decision:
        """Admit ``cost`` at ``now`` if it fits, and say when it would otherwise."""
        ready = self.ready_at(cost, now)
        if ready <= now:
            self.consume(cost, now)
            return Decision(True, now, self.available(now))
        return Decision(False, ready, self.available(now))

    def admit_or_ready_at(self, cost: float, now: float) -> float | None:
        """Consume ``cost`` at ``now`` and return ``None`` if it fits, else return
        :meth:`ready_at`'s answer (a time after ``now``): what a limiter's waiting request
        asks on every turn.

        ``cost`` has been checked by the caller (a finite number > 0).  The default asks
        :meth:`available`, then :meth:`ready_at` only when that does not settle it (rule 4:
        ``available(now) >= cost`` implies ``ready_at(cost, now) == now``), then
        :meth:`consume`; the buckets override it with the same decision in one pass.  A policy
        of your own need not: override it only to make the same decision faster.
        """
        if self.available(now) < cost:
            ready = self.ready_at(cost, now)
            if ready > now:
                return ready
        self.consume(cost, now)
        return None

    def _checked_charge(self, cost: float) -> float:
        # consume() takes any finite cost > 0, even above the capacity (a debt).
        if (cost.__class__ is int or cost.__class__ is float) and 0 < cost < math.inf:
            return cost
        return check_positive("cost", cost)

    def _checked_cost(self, cost: float) -> float:
        # The fast path keeps validation off the hot path; anything unusual goes to the checker.
        if (cost.__class__ is int or cost.__class__ is float) and 0 < cost <= self.capacity:
            return cost
        return check_cost(cost, self.capacity)


def first_time_at_or_after(t: float, fits: Callable[[float], bool]) -> float:
    """Round ``t`` up until ``fits(t)`` holds in floating point.

    ``t`` comes from an exact formula that floating point may miss by a few ulps; stepping up
    by a doubling number of ulps reaches a time that the policy itself accepts in at most ~60
    steps, whatever the magnitudes.  ``fits`` must be monotone (false, then true for good):
    then the answer overshoots the first time that fits by less than twice the distance from
    ``t`` to it, plus one ulp.  With exact arithmetic (``fractions.Fraction``) the loop never
    runs.
    """
    if fits(t):
        return t
    step = math.ulp(t) if t else math.ulp(1.0)
    while True:
        t = t + step
        if fits(t):
            return t
        step *= 2


SLACK = 2.0**-48
"""The relative tolerance of the rounding rule (see the module docstring): 16 to 32 ulps."""


def clock_slack(now: float, span: float) -> float:
    """How many seconds short of fitting a cost may be and still fit at ``now`` (rule 3).

    Args:
        now: the clock reading (seconds).
        span: the longest interval the policy's arithmetic handles, in seconds (a bucket's time
            to fill from empty).

    Returns:
        ``SLACK * max(1, |now|, span)`` when either is a ``float``; 0 in exact arithmetic.  It
        never decreases as ``now`` grows from 0, so a fit test that uses it stays monotone.
    """
    if _is_float(now) or _is_float(span):
        return SLACK * max(1.0, abs(now), span)
    return 0


def _is_float(value: object) -> bool:
    # Annotated `float`, a time may be an int or a Fraction at run time (exact arithmetic).
    return isinstance(value, float)


def refill_ready_at(
    units: float, now: float, level: Callable[[float], float], fill: float, span: float
) -> float:
    """When a refilling bucket holds ``units``: the rounding rule of every bucket.

    :class:`TokenBucket` and :class:`GCRA` both answer with it, so they decide the same.  Their
    hot methods inline its common case (the same operations in the same order, without the
    closures: a contended admission asks it twice), and call it when the formula's time misses
    by a few ulps; ``tests/policy/test_token_bucket_inlined.py`` holds them to it bit for bit.

    ``units`` fit at ``t`` when ``units - level(t) <= clock_slack(t, span) * fill``: the
    shortfall (a difference of quantities the size of the bucket) is at most what refills in
    the slack.  The test is monotone in ``t`` because ``level`` is and the slack is, so the
    answer is ``now`` if they fit now, otherwise the exact formula's time rounded up to the
    first one that passes the same test (a few ulps at most).

    Args:
        units: the units wanted (may exceed the burst, for a bound on a queue).
        now: the current time (seconds).
        level: the bucket's units at time ``t``, not capped at the burst; non-decreasing in
            ``t`` and pure.
        fill: units per second.
        span: the bucket's time to fill from empty (seconds), the scale of the slack.
    """
    shortfall = units - level(now)
    if shortfall <= 0 or shortfall <= clock_slack(now, span) * fill:
        return now

    def fits(t: float) -> bool:
        return units - level(t) <= clock_slack(t, span) * fill

    return first_time_at_or_after(now + shortfall / fill, fits)
