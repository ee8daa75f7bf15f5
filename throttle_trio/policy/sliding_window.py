"""The sliding window: at most ``limit`` units in any window of ``window`` seconds.

This is the exact (log) variant, weighted: it remembers each admission's time and cost until
it leaves the window, so "at most ``limit`` in any ``window``" holds for every window, not
just for fixed or approximated ones.  An admission at ``t`` counts until ``t + window``
(excluded).  Memory is one entry per distinct admission time in the last window.

Pick it when a provider documents a hard count per window (and you want no burst above it);
pick :class:`TokenBucket` or :class:`GCRA` for a smooth rate with a controlled burst.  A
sliding window lets a whole window's ``limit`` go at once, then nothing until it slides.
"""

from __future__ import annotations

from collections import deque
from typing import final

from .._validate import check_finite, check_non_negative, check_positive
from .base import RatePolicy

__all__ = ["SlidingWindow"]


@final
class SlidingWindow(RatePolicy):
    """At most ``limit`` units admitted in any window of ``window`` seconds.

    Args:
        limit: units per window (> 0); also the largest cost admitted at once.
        window: the window length, in seconds (> 0).

    Raises:
        TypeError: a parameter is not a real number.
        ValueError: a parameter is out of range (the message names it).
    """

    __slots__ = ("_dropped", "_entries", "_limit", "_used", "_window")

    def __init__(self, limit: float, window: float = 1.0) -> None:
        self._limit = check_positive("limit", limit)
        self._window = check_positive("window", window)
        # [admitted_at, cost] in time order; costs admitted at the same instant are merged.
        self._entries: deque[list[float]] = deque()
        self._used: float = 0  # the sum of the costs in _entries
        self._dropped = 0.0

    @property
    def limit(self) -> float:
        """Units per window."""
        return self._limit

    @property
    def window(self) -> float:
        """The window length, in seconds."""
        return self._window

    @property
    def capacity(self) -> float:
        return self._limit

    @property
    def dropped(self) -> float:
        """Units whose refund came after they had left the window (nothing to give back)."""
        return self._dropped

    def __repr__(self) -> str:
        return f"SlidingWindow(limit={self._limit!r}, window={self._window!r})"

    def _expire(self, now: float) -> None:
        entries, window = self._entries, self._window
        while entries and entries[0][0] + window <= now:
            self._used -= entries.popleft()[1]
        if not entries:
            self._used = 0  # no drift from repeated float subtraction

    def _used_at(self, now: float) -> float:
        """The units still in the window at ``now`` (a pure read: expired entries stay).

        The same subtractions, in the same order, as :meth:`_expire` makes when it drops them,
        so a read and a later write at the same ``now`` see the same number.
        """
        used, window = self._used, self._window
        for admitted_at, cost in self._entries:
            if admitted_at + window > now:
                return used
            used -= cost
        return 0  # all gone: no drift from repeated float subtraction

    def available(self, now: float) -> float:
        return self._limit - self._used_at(now)

    def ready_at(self, cost: float, now: float) -> float:
        cost = self._checked_cost(cost)
        excess = self._used_at(now) + cost - self._limit
        if excess <= 0:
            return now
        # Walk from the oldest entry still in the window until enough has left it.  The
        # comparison `t + window <= now` in _used_at uses the same sum, so the answer is exact.
        freed: float = 0
        window = self._window
        for admitted_at, entry_cost in self._entries:
            if admitted_at + window <= now:
                continue  # already left the window (a read does not drop it)
            freed += entry_cost
            if freed >= excess:
                return admitted_at + window
        raise AssertionError("unreachable: cost <= limit, so emptying the window fits it")

    def consume(self, cost: float, now: float) -> None:
        cost = self._checked_charge(cost)
        self._expire(now)
        entries = self._entries
        if entries and entries[-1][0] >= now:
            entries[-1][1] += cost  # same instant (or a clock that stepped back): merge
        else:
            entries.append([now, cost])
        self._used += cost

    def refund(self, amount: float, now: float, *, admitted_at: float | None = None) -> float:
        """Give back units; with ``admitted_at``, from the entry admitted then.

        Without ``admitted_at`` the newest entries are reduced first.  Units whose entry has
        already left the window cannot be given back: they are counted in :attr:`dropped`.
        """
        amount = check_non_negative("amount", amount)
        self._expire(now)
        remaining = amount
        if admitted_at is None:
            candidates = reversed(self._entries)
        else:
            candidates = iter([e for e in self._entries if e[0] == admitted_at][:1])
        for entry in candidates:
            taken = min(remaining, entry[1])
            entry[1] -= taken
            remaining -= taken
            if remaining <= 0:
                break
        self._used -= amount - remaining
        # Drop entries that were refunded to nothing, wherever they are.
        if any(entry[1] <= 0 for entry in self._entries):
            self._entries = deque(e for e in self._entries if e[1] > 0)
            if not self._entries:
                self._used = 0
        self._dropped += remaining
        return remaining

    @property
    def units_per_second(self) -> float:
        return self._limit / self._window

    def set_units_per_second(self, rate: float, now: float) -> None:
        # The limit is the capacity: keep it, and stretch or shrink the window.
        self.reconfigure(now, window=self._limit / check_positive("rate", rate))

    def reconfigure(self, now: float, **changes: float) -> None:
        unknown = changes.keys() - {"limit", "window"}
        if unknown:
            raise TypeError(f"SlidingWindow.reconfigure() got unknown parameters {sorted(unknown)}")
        limit = check_positive("limit", changes.get("limit", self._limit))
        window = check_positive("window", changes.get("window", self._window))
        self._limit, self._window = limit, window
        self._expire(now)

    def shift_clock(self, delta: float) -> None:
        delta = check_finite("delta", delta)
        for entry in self._entries:
            entry[0] += delta

    def limit_available(self, tokens: float, now: float) -> None:
        """Lower the available units to at most ``tokens`` by recording the difference at ``now``.

        The phantom admission leaves the window after ``window`` seconds, like a real one.
        """
        check_finite("tokens", tokens)
        excess = self.available(now) - tokens
        if excess > 0:
            self.consume(excess, now)
