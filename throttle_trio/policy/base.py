"""What every rate policy answers, and the arithmetic they share.

A policy is a plain object: it never sleeps, never reads a clock and never imports anyio.  Every
method that depends on time takes ``now`` (seconds on any monotonic clock, the same clock for
every call).  The async limiters turn its answers into one sleep on one timer.

Rounding rule (invariant I2): :meth:`RatePolicy.ready_at` returns a time ``t`` such that
``ready_at(cost, t) == t`` *exactly*, in the floating-point arithmetic the policy itself uses.  A
waiter that sleeps until ``t`` is therefore admitted when it wakes, and virtual time can never
freeze in a loop of zero-length sleeps caused by a remainder like ``now + 1e-13 == now``.
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
        """Units that could be admitted at ``now`` (negative while a debt is being repaid)."""

    @abstractmethod
    def ready_at(self, cost: float, now: float) -> float:
        """The earliest time >= ``now`` at which ``cost`` fits, if nothing else is admitted.

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

    def shift_clock(self, delta: float) -> None:
        """Move every time this policy remembers by ``delta`` seconds.

        A limiter calls it when it is used from another event loop than before: each loop's
        clock has its own origin (trio's starts at a random offset, a ``MockClock`` at 0), and
        the limiter carries on where it was, as if no time passed between the two loops.
        The default raises ``NotImplementedError``; the limiter then logs a warning and keeps
        the times as they are.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement shift_clock()")

    def queue_ready_at(self, ahead: float, cost: float, now: float) -> float:
        """A lower bound on when ``cost`` fits if ``ahead`` units are admitted before it (FIFO).

        Used to fail a request at once when even this bound exceeds its timeout.  The default
        is conservative; buckets override it with the exact answer.
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
    steps, whatever the magnitudes.  With exact arithmetic (``fractions.Fraction``) the loop
    never runs.
    """
    if fits(t):
        return t
    step = math.ulp(t) if t else math.ulp(1.0)
    while True:
        t = t + step
        if fits(t):
            return t
        step *= 2
