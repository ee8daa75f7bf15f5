"""The sliding window: at most ``limit`` units in any window of ``window`` seconds.

This is the exact (log) variant, weighted: it remembers each admission's time and cost until
it leaves the window, so "at most ``limit`` in any ``window``" holds for every window, not
just for fixed or approximated ones.  An admission at ``t`` counts until ``t + window``
(excluded).  Memory is one entry per distinct admission time in the last window.

Pick it when a provider documents a hard count per window (and you want no burst above it);
pick :class:`TokenBucket` or :class:`GCRA` for a smooth rate with a controlled burst.  A
sliding window lets a whole window's ``limit`` go at once, then nothing until it slides.

``warmup=`` makes the first window count longer: what is admitted in the first ``window``
seconds after the first admission is recorded ``warmup`` seconds late, so it leaves the
window that much later.  It is for a provider that counts its windows from when requests
*arrive*: the first requests of a run arrive later after they were admitted than the ones
after them (the program's start-up work, new connections), and the provider still holds them
when the next window's requests arrive (:func:`~throttle_trio.openai_throttle` uses it).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, final

from .._validate import check_finite, check_non_negative, check_positive
from .base import RatePolicy

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["SlidingWindow"]


@final
class SlidingWindow(RatePolicy):
    """At most ``limit`` units admitted in any window of ``window`` seconds.

    With ``warmup``, the first window counts longer: what is admitted in the ``window``
    seconds from the first admission is recorded ``warmup`` seconds late, so it leaves the
    window ``window + warmup`` seconds after its admission; the windows after it are ``window``
    long.  That delays the second window's admissions by at most ``warmup``, once.  A later
    admission that comes before such a late record is recorded at its own time, before it,
    and ``refund(admitted_at=...)`` finds a first-window admission's record.

    Args:
        limit: units per window (> 0); also the largest cost admitted at once.
        window: the window length, in seconds (> 0).
        warmup: seconds longer the first window's admissions count (>= 0; default 0, none).
            The first window starts at the first :meth:`consume` (or admitting
            :meth:`try_admit`); :meth:`reconfigure` does not move it.

    Raises:
        TypeError: a parameter is not a real number.
        ValueError: a parameter is out of range (the message names it).
    """

    __slots__ = ("_dropped", "_entries", "_limit", "_used", "_warm_until", "_warmup", "_window")

    def __init__(self, limit: float, window: float = 1.0, *, warmup: float = 0.0) -> None:
        self._limit = check_positive("limit", limit)
        self._window = check_positive("window", window)
        self._warmup = check_non_negative("warmup", warmup)
        # The end of the first window (the first admission + window), once there was one.
        self._warm_until: float | None = None
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
    def warmup(self) -> float:
        """Seconds longer the first window's admissions count (0: none)."""
        return self._warmup

    @property
    def capacity(self) -> float:
        return self._limit

    @property
    def dropped(self) -> float:
        """Units whose refund came after they had left the window (nothing to give back)."""
        return self._dropped

    def __repr__(self) -> str:
        text = f"SlidingWindow(limit={self._limit!r}, window={self._window!r})"
        if self._warmup:
            text += f" (the first window counting {self._warmup!r} s longer)"
        return text

    def _recorded_at(self, now: float) -> float:
        """When an admission at ``now`` is recorded: ``warmup`` later in the first window."""
        if self._warm_until is None:
            self._warm_until = now + self._window
        return self._late(now)

    def _late(self, at: float) -> float:
        """When an admission at ``at`` was (or would be) recorded, once the first window began."""
        warm_until = self._warm_until
        return at + self._warmup if warm_until is not None and at < warm_until else at

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
        self._insert(cost, self._recorded_at(now) if self._warmup else now)

    def _insert(self, cost: float, at: float) -> None:
        """Record ``cost`` at ``at``, in time order: merged into an entry of the same time
        (units of one time leave together), else a new entry where it belongs (after the
        first window, an admission can come before a record its warm-up made late; a
        report on the wire moves units to its time, which may come before later ones)."""
        entries = self._entries
        if not entries or entries[-1][0] < at:
            entries.append([at, cost])
        else:
            index = len(entries)
            while index and entries[index - 1][0] > at:
                index -= 1
            if index and entries[index - 1][0] == at:
                entries[index - 1][1] += cost
            else:
                entries.insert(index, [at, cost])
        self._used += cost

    def _entry_at(self, at: float) -> list[float] | None:
        """The entry recorded at exactly ``at``, if it is still there (from the newest end:
        the times looked for are recent)."""
        for entry in reversed(self._entries):
            if entry[0] <= at:
                return entry if entry[0] == at else None
        return None

    def _take(self, amount: float, now: float, at: float | None) -> float:
        """Take up to ``amount`` units at ``now``: from the entry recorded at exactly ``at``,
        or (``None``) from the newest entries first; count what is left over as
        :attr:`dropped`, and return it."""
        self._expire(now)
        candidates: Iterable[list[float]]
        if at is None:
            candidates = reversed(self._entries)
        else:
            entry = self._entry_at(at)
            candidates = () if entry is None else (entry,)
        remaining = amount
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

    def refund(self, amount: float, now: float, *, admitted_at: float | None = None) -> float:
        """Give back units; with ``admitted_at``, from the entry recorded for that admission.

        Without ``admitted_at`` the newest entries are reduced first.  With it, only the
        entry recorded for it (at ``admitted_at``, or ``warmup`` later in the first window)
        gives units back: units of other times leave the window at other times, and taking
        them could leave it holding less than it should.  What that entry no longer holds
        (it left the window, or was refunded already) cannot be given back: it is counted
        in :attr:`dropped`.  After a :meth:`defer`, see :meth:`refund_sent`.
        """
        amount = check_non_negative("amount", amount)
        return self._take(amount, now, None if admitted_at is None else self._late(admitted_at))

    def refund_sent(
        self, amount: float, now: float, *, admitted_at: float, sent_at: float
    ) -> float:
        """Give back units of an admission that :meth:`defer` counted from ``sent_at``: from
        the entry it recorded them at (units of one time leave the window together, so any
        of them will do), while it is in the window; the rest is counted in :attr:`dropped`."""
        amount = check_non_negative("amount", amount)
        check_finite("admitted_at", admitted_at)
        check_finite("sent_at", sent_at)
        at = max(self._late(admitted_at), sent_at)  # where defer left them
        return self._take(amount, now, at)

    def defer(self, cost: float, admitted_at: float, now: float) -> None:
        """Count ``cost`` consumed at ``admitted_at`` from ``now``, when it was on the wire
        (see :meth:`RatePolicy.defer`): it leaves the window that much later.

        The units are taken from the entry recorded for ``admitted_at``, never more than it
        holds, and recorded at ``now``, but never earlier than that record: in the first
        window the ``warmup`` stays a floor (a report says when the request left, not when
        the provider read it, and the first requests of a run can wait for a provider as
        busy as the program).  Units admitted a whole window or more before ``now`` have
        left it: they are counted again from ``now``, as the provider counts them (the window
        may hold more than its limit for a while: a debt).  Refund a reported admission with
        :meth:`refund_sent`.
        """
        cost = check_non_negative("cost", cost)
        check_finite("admitted_at", admitted_at)
        check_finite("now", now)
        self._expire(now)
        recorded = self._late(admitted_at)
        if not cost or now <= recorded:
            return
        if recorded + self._window <= now:
            self._insert(cost, now)  # it left the window: count it from now
            return
        entry = self._entry_at(recorded)
        if entry is None or entry[1] <= 0:
            return  # refunded: nothing left of it
        taken = min(cost, entry[1])
        entry[1] -= taken  # an entry left at nothing expires with the others
        self._used -= taken
        self._insert(taken, now)

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
        if self._warm_until is not None:
            self._warm_until += delta

    def limit_available(self, tokens: float, now: float) -> None:
        """Lower the available units to at most ``tokens`` by recording the difference at ``now``.

        The phantom admission leaves the window after ``window`` seconds, like a real one, but
        never counts ``warmup`` longer (it is what a provider already counted, not a request
        on its way) and does not start the first window.
        """
        check_finite("tokens", tokens)
        excess = self.available(now) - tokens
        if excess > 0:
            self._expire(now)
            self._insert(self._checked_charge(excess), now)
