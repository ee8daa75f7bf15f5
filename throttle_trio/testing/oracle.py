"""An independent rate oracle: did a log of admissions keep its limits, and was it work-conserving?

Give :func:`check` a log of admissions (each a time and a cost) and the limits the limiter
promised; it returns a :class:`Report` that lists every admission that came too early, each with
the window that proves it, and every admission that came later than a work-conserving limiter
would have let it go (the idle time).  It checks *any* limiter: throttle_trio's, a peer's, a
user's own, or the server side of a fake provider.

The module is written from the definitions alone, in exact arithmetic, with the standard
library only: it imports nothing from throttle_trio (a test checks it), so that it can referee
the library and cannot share its bugs.  You may copy this one file into another project.

The definitions
---------------
Times are seconds on one clock; costs are non-negative numbers.  Every number is converted to
:class:`fractions.Fraction` exactly (a float's exact binary value), so the oracle adds no
rounding of its own.

* **Token bucket** (:class:`TokenBucketLimit`, ``rate`` units per ``per`` seconds, bursts of
  ``burst``): the cost admitted at the instants of any closed interval ``[s, e]`` is at most
  ``burst + rate / per * (e - s)``.  This is the bound of a bucket that holds ``burst`` units
  when the log starts and refills continuously.
* **GCRA** (:class:`GCRALimit`): the generic cell rate algorithm's own definition.  With
  ``T = per / rate`` per unit, each admission moves the theoretical arrival time to
  ``TAT = max(TAT, t) + cost * T``, and conforms when ``TAT - t <= burst * T``.  A stream
  conforms to GCRA exactly when it conforms to the token bucket with the same parameters; the
  two are checked by separate code, which is itself a test of the oracle.
* **Sliding window** (:class:`SlidingWindowLimit`, ``limit`` units per ``window`` seconds): the
  cost admitted in any half-open window ``(e - window, e]`` is at most ``limit``.  An
  admission at ``t`` counts until ``t + window``, excluded.

An admission *violates* a limit when, given the admissions before it (as they happened), the
limit would have let it go only later: it came ``early_by`` seconds early.  An admission whose
cost exceeds the limit's capacity (``burst``, ``limit``) never fits: ``early_by`` is infinite.

An admission is *overtaken* when it went strictly after one that was requested strictly later
(not first come, first served).

An admission is *late* when it was requested (its :attr:`LogEntry.requested` time is known),
and every limit would have admitted it earlier than it went, after the admission before it
(first come, first served: a work-conserving FIFO limiter serving the same requests in the same
order).  Its delay is ``late_by`` seconds; :attr:`Report.idle` is their sum.  Entries without a
request time are never late.  A concurrency cap, a pause or a deliberate delay that the limits
passed to :func:`check` do not describe shows up as delay: pass the limits the limiter really
enforces.

``tolerance`` (seconds) forgives admissions early or late by at most that much: a float clock
rounds (throttle_trio's buckets admit up to ~1e-15 s early near 0, see its rounding rule), and
asyncio's ``looptime`` keeps whole microseconds, so each wait may end up to 1 µs late.

A limit may apply to part of the log only (``since <= time < until``, for a limit that was
reconfigured): it then judges those admissions alone, as if the log started at ``since`` with a
full bucket or an empty window.  A report computes delays only when no limit is partial.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, TypeAlias, final

__all__ = [
    "GCRALimit",
    "Limit",
    "LogEntry",
    "Overtake",
    "Report",
    "SlidingWindowLimit",
    "TokenBucketLimit",
    "Violation",
    "Wait",
    "check",
    "earliest",
]

_INF: Final = math.inf


def _exact(name: str, value: object) -> Fraction:
    """A finite real number as an exact Fraction; TypeError or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return Fraction(value)


def _positive(name: str, value: object) -> Fraction:
    exact = _exact(name, value)
    if exact <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return exact


def _show(value: float | Fraction) -> str:
    """A number for a message: short, and exact enough to see a 1 µs difference."""
    number = float(value)
    return f"{number:.10g}" if math.isfinite(number) else str(number)


@final
@dataclass(frozen=True, slots=True)
class LogEntry:
    """One admission in a log: when it went, what it cost, and when it was asked for.

    Attributes:
        time: when it was admitted (seconds): when ``acquire()`` returned, or the request left.
        cost: its cost: a number, or a mapping of metric to cost (``{"requests": 1,
            "tokens": 350}``) for limits that name a ``metric``.
        requested: when it was asked for (seconds), if known; :func:`check` measures delays
            from it.
        label: anything that helps a reader find it (a request id, a task name).
    """

    time: float
    cost: float | Mapping[str, float] = 1
    requested: float | None = None
    label: str | None = None


@final
@dataclass(frozen=True, slots=True)
class TokenBucketLimit:
    """``rate`` units every ``per`` seconds, in bursts of at most ``burst`` (a token bucket).

    At most ``burst + rate / per * (e - s)`` in any closed interval ``[s, e]``.

    Attributes:
        rate: units every ``per`` seconds (> 0).
        per: the period of ``rate``, in seconds (> 0).
        burst: the largest cost at once (> 0); ``None``: ``rate``, as throttle_trio's buckets.
        metric: which cost of a mapping it counts (``None``: the entries' costs are numbers).
        since: it applies to admissions at or after this time only (``None``: from the start).
        until: it applies to admissions before this time only (``None``: to the end).
    """

    rate: float
    per: float = 1.0
    burst: float | None = None
    metric: str | None = None
    since: float | None = None
    until: float | None = None

    def __str__(self) -> str:
        return _describe(self, f"{_show(self.rate)} per {_show(self.per)} s, burst {_burst(self)}")


@final
@dataclass(frozen=True, slots=True)
class GCRALimit:
    """The generic cell rate algorithm, with the token bucket's parameters.

    Conforming means ``max(TAT, t) + cost * T - t <= burst * T`` at each admission, with
    ``T = per / rate``; every admission moves the TAT, conforming or not.

    Attributes:
        rate: units every ``per`` seconds (> 0).
        per: the period of ``rate``, in seconds (> 0).
        burst: the largest cost at once (> 0); ``None``: ``rate``.
        metric: which cost of a mapping it counts (``None``: the entries' costs are numbers).
        since: it applies to admissions at or after this time only (``None``: from the start).
        until: it applies to admissions before this time only (``None``: to the end).
    """

    rate: float
    per: float = 1.0
    burst: float | None = None
    metric: str | None = None
    since: float | None = None
    until: float | None = None

    def __str__(self) -> str:
        return _describe(
            self, f"GCRA {_show(self.rate)} per {_show(self.per)} s, burst {_burst(self)}"
        )


@final
@dataclass(frozen=True, slots=True)
class SlidingWindowLimit:
    """At most ``limit`` units in any window ``(e - window, e]``.

    Attributes:
        limit: units per window (> 0).
        window: the window's length, in seconds (> 0).
        metric: which cost of a mapping it counts (``None``: the entries' costs are numbers).
        since: it applies to admissions at or after this time only (``None``: from the start).
        until: it applies to admissions before this time only (``None``: to the end).
    """

    limit: float
    window: float = 1.0
    metric: str | None = None
    since: float | None = None
    until: float | None = None

    def __str__(self) -> str:
        return _describe(self, f"at most {_show(self.limit)} per {_show(self.window)} s window")


Limit: TypeAlias = TokenBucketLimit | GCRALimit | SlidingWindowLimit
"""Any of the limits :func:`check` knows."""


def _burst(limit: TokenBucketLimit | GCRALimit) -> str:
    return _show(limit.rate if limit.burst is None else limit.burst)


def _describe(limit: Limit, what: str) -> str:
    parts = [what]
    if limit.metric is not None:
        parts.insert(0, f"{limit.metric}:")
    if limit.since is not None or limit.until is not None:
        since = "-inf" if limit.since is None else _show(limit.since)
        until = "inf" if limit.until is None else _show(limit.until)
        parts.append(f"(admissions in [{since}, {until}))")
    return " ".join(parts)


@final
@dataclass(frozen=True, slots=True)
class Violation:
    """An admission that came before a limit allowed it, with the window that shows it.

    Attributes:
        limit: the limit it broke.
        index: its position in the log (0-based, in the order given).
        time: when it was admitted.
        early_by: how much later it should have gone, in seconds (``inf``: its cost is above
            the limit's capacity, it could never go).
        start: the start of the window that shows it.
        end: the end of that window (the admission's time).
        cost: what was admitted in the window, this admission included.
        allowed: what the limit allows in the window.
    """

    limit: Limit
    index: int
    time: float
    early_by: float
    start: float
    end: float
    cost: float
    allowed: float

    def __str__(self) -> str:
        opening = "(" if isinstance(self.limit, SlidingWindowLimit) else "["
        window = f"{opening}{_show(self.start)}, {_show(self.end)}]"
        return (
            f"{self.limit}: admission #{self.index} at {_show(self.time)} came "
            f"{_show(self.early_by)} s early: {_show(self.cost)} admitted in {window}, "
            f"{_show(self.allowed)} allowed"
        )


@final
@dataclass(frozen=True, slots=True)
class Wait:
    """An admission that went later than a work-conserving limiter would have let it go.

    Attributes:
        index: its position in the log (0-based, in the order given).
        time: when it was admitted.
        ready: the earliest it could have gone: every limit admitted it, it had been requested
            and the admission before it had gone.
        late_by: ``time - ready``, in seconds.
    """

    index: int
    time: float
    ready: float
    late_by: float

    def __str__(self) -> str:
        return (
            f"admission #{self.index} at {_show(self.time)} could have gone at "
            f"{_show(self.ready)}: {_show(self.late_by)} s late"
        )


@final
@dataclass(frozen=True, slots=True)
class Overtake:
    """An admission that went after one that was requested later (not first come, first served).

    Attributes:
        index: its position in the log.
        time: when it was admitted.
        requested: when it was requested.
        by: the position in the log of an admission requested later but admitted earlier (the
            latest-requested such one).
        by_requested: when that one was requested.
    """

    index: int
    time: float
    requested: float
    by: int
    by_requested: float

    def __str__(self) -> str:
        return (
            f"admission #{self.index} (requested at {_show(self.requested)}, admitted at "
            f"{_show(self.time)}) was overtaken by #{self.by}, requested at "
            f"{_show(self.by_requested)}"
        )


@final
@dataclass(frozen=True, slots=True)
class Report:
    """What :func:`check` found: every violation, every needless wait.

    Attributes:
        admissions: the number of log entries checked.
        limits: the limits they were checked against.
        violations: admissions that came too early, in log order, then by limit.
        waits: admissions that went later than they could have (only when every admission
            has a request time and no limit is partial; else empty).
        idle: the sum of the waits' ``late_by``: the time a work-conserving limiter would have
            spent admitting instead of waiting (seconds).
        overtaken: admissions that went strictly after one requested later (only when every
            admission has a request time; admissions at the same instant are not ordered).
    """

    admissions: int
    limits: tuple[Limit, ...]
    violations: tuple[Violation, ...]
    waits: tuple[Wait, ...]
    idle: float
    overtaken: tuple[Overtake, ...] = ()

    @property
    def ok(self) -> bool:
        """No violation (waits do not count: see :meth:`assert_ok`)."""
        return not self.violations

    def __str__(self) -> str:
        lines = [
            f"{self.admissions} admissions checked against {len(self.limits)} limit(s): "
            f"{len(self.violations)} violation(s), {len(self.waits)} needless wait(s) "
            f"({_show(self.idle)} s idle), {len(self.overtaken)} overtaken"
        ]
        lines += [f"  {violation}" for violation in self.violations[:20]]
        if len(self.violations) > 20:
            lines.append(f"  ... and {len(self.violations) - 20} more violations")
        lines += [f"  {wait}" for wait in self.waits[:20]]
        if len(self.waits) > 20:
            lines.append(f"  ... and {len(self.waits) - 20} more waits")
        lines += [f"  {overtake}" for overtake in self.overtaken[:20]]
        if len(self.overtaken) > 20:
            lines.append(f"  ... and {len(self.overtaken) - 20} more overtaken")
        return "\n".join(lines)

    def assert_ok(self, *, work_conserving: bool = False, fifo: bool = False) -> None:
        """Raise ``AssertionError`` (the report as its message) if a limit was broken.

        Args:
            work_conserving: also fail if an admission waited needlessly.
            fifo: also fail if an admission was overtaken.
        """
        if self.violations or (work_conserving and self.waits) or (fifo and self.overtaken):
            raise AssertionError(str(self))


# -- the checks --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    index: int
    time: Fraction
    cost: Mapping[str, Fraction] | Fraction
    requested: Fraction | None


def _entries(log: Iterable[object]) -> list[_Entry]:
    entries: list[_Entry] = []
    for index, item in enumerate(log):
        requested: object = None
        if isinstance(item, tuple):
            if len(item) not in (2, 3):
                raise ValueError(f"log entry #{index} must be (time, cost[, requested]): {item!r}")
            time, cost, *rest = item
            requested = rest[0] if rest else None
        else:
            try:
                time, cost = getattr(item, "time"), getattr(item, "cost")  # noqa: B009
            except AttributeError:
                raise TypeError(
                    f"log entry #{index} must be a LogEntry, a (time, cost) pair or have "
                    f"time and cost attributes, got {item!r}"
                ) from None
            requested = getattr(item, "requested", None)
        exact_cost: Mapping[str, Fraction] | Fraction
        if isinstance(cost, Mapping):
            exact_cost = {str(k): _exact(f"log entry #{index} cost", v) for k, v in cost.items()}
            if any(v < 0 for v in exact_cost.values()):
                raise ValueError(f"log entry #{index} has a negative cost: {cost!r}")
        else:
            exact_cost = _exact(f"log entry #{index} cost", cost)
            if exact_cost < 0:
                raise ValueError(f"log entry #{index} has a negative cost: {cost!r}")
        entries.append(
            _Entry(
                index,
                _exact(f"log entry #{index} time", time),
                exact_cost,
                None if requested is None else _exact(f"log entry #{index} requested", requested),
            )
        )
    # In time order; admissions at the same instant keep the log's order.
    entries.sort(key=lambda entry: entry.time)
    return entries


def _cost_of(entry: _Entry, limit: Limit) -> Fraction:
    if limit.metric is None:
        if isinstance(entry.cost, Mapping):
            raise TypeError(
                f"log entry #{entry.index} has costs per metric {dict(entry.cost)!r}: "
                f"give {type(limit).__name__} a metric= to count"
            )
        return entry.cost
    if not isinstance(entry.cost, Mapping):
        raise TypeError(
            f"{type(limit).__name__} counts metric {limit.metric!r}, but log entry "
            f"#{entry.index} has a single cost {float(entry.cost)!r}"
        )
    return entry.cost.get(limit.metric, Fraction(0))


def _applies(limit: Limit, entry: _Entry) -> bool:
    if limit.since is not None and entry.time < _exact("since", limit.since):
        return False
    return limit.until is None or entry.time < _exact("until", limit.until)


class _Judge:
    """One limit, fed the admissions in time order: when could each go, and was it early?"""

    def ready(self, cost: Fraction) -> Fraction | float:
        """The earliest time ``cost`` fits after the admissions so far (``-inf``: any time)."""
        raise NotImplementedError

    def admit(self, entry: _Entry, cost: Fraction, tolerance: Fraction) -> Violation | None:
        """Record the admission; the violation it is, if any."""
        raise NotImplementedError


class _Bucket(_Judge):
    """The token bucket, by its interval definition (a running minimum of prefix sums)."""

    def __init__(self, limit: TokenBucketLimit) -> None:
        self.limit = limit
        self.fill = _positive("rate", limit.rate) / _positive("per", limit.per)  # units per s
        self.burst = _positive("burst", limit.rate if limit.burst is None else limit.burst)
        self.total = Fraction(0)  # the cost admitted so far
        # min over admissions i of (cost before i) - fill * t_i: the best window start.
        self.best: Fraction | None = None
        self.best_time = Fraction(0)
        self.best_total = Fraction(0)  # the cost admitted before the best start

    def ready(self, cost: Fraction) -> Fraction | float:
        if cost > self.burst:
            return _INF
        if self.best is None:
            return -_INF
        # total + cost - (fill * t - ...) <= burst over the best window [best_time, t].
        return (self.total + cost - self.burst - self.best) / self.fill

    def admit(self, entry: _Entry, cost: Fraction, tolerance: Fraction) -> Violation | None:
        start_here = self.total - self.fill * entry.time
        if self.best is None or start_here < self.best:
            self.best, self.best_time, self.best_total = start_here, entry.time, self.total
        self.total += cost
        window = self.total - self.best_total
        allowed = self.burst + self.fill * (entry.time - self.best_time)
        if cost > self.burst:
            early: Fraction | float = _INF
        else:
            early = (window - allowed) / self.fill
        if early <= tolerance:
            return None
        return Violation(
            self.limit, entry.index, float(entry.time), float(early), float(self.best_time),
            float(entry.time), float(window), float(allowed),
        )  # fmt: skip


class _GCRA(_Judge):
    """GCRA by its virtual-scheduling definition: one theoretical arrival time."""

    def __init__(self, limit: GCRALimit) -> None:
        self.limit = limit
        self.interval = _positive("per", limit.per) / _positive("rate", limit.rate)  # T
        self.burst = _positive("burst", limit.rate if limit.burst is None else limit.burst)
        self.tat: Fraction | None = None
        self.start = Fraction(0)  # when the TAT last caught up with the clock
        self.since_start = Fraction(0)  # the cost admitted since then

    def ready(self, cost: Fraction) -> Fraction | float:
        if cost > self.burst:
            return _INF
        if self.tat is None:
            return -_INF
        return self.tat + cost * self.interval - self.burst * self.interval

    def admit(self, entry: _Entry, cost: Fraction, tolerance: Fraction) -> Violation | None:
        if self.tat is None or self.tat < entry.time:
            self.tat, self.start, self.since_start = entry.time, entry.time, Fraction(0)
        self.tat += cost * self.interval
        self.since_start += cost
        early: Fraction | float = (
            _INF if cost > self.burst else self.tat - entry.time - self.burst * self.interval
        )
        if early <= tolerance:
            return None
        allowed = self.burst + (entry.time - self.start) / self.interval
        return Violation(
            self.limit, entry.index, float(entry.time), float(early), float(self.start),
            float(entry.time), float(self.since_start), float(allowed),
        )  # fmt: skip


class _Window(_Judge):
    """The sliding window, by its definition: the cost in ``(t - window, t]``."""

    def __init__(self, limit: SlidingWindowLimit) -> None:
        self.limit = limit
        self.cap = _positive("limit", limit.limit)
        self.window = _positive("window", limit.window)
        self.times: list[Fraction] = []
        self.prefix: list[Fraction] = [Fraction(0)]  # prefix[k]: the cost of the first k
        self.oldest = 0  # the first admission still in the window of the latest one

    def _leaves(self, cost: Fraction) -> Fraction | float:
        """When enough has left the window for ``cost`` to fit (``-inf``: it fits now)."""
        need = self.prefix[-1] + cost - self.cap  # this much must have left
        if need <= 0:
            return -_INF
        # The first k whose leaving (with all before it) frees enough: prefix[k + 1] >= need.
        k = bisect_left(self.prefix, need) - 1
        return self.times[k] + self.window

    def ready(self, cost: Fraction) -> Fraction | float:
        return _INF if cost > self.cap else self._leaves(cost)

    def admit(self, entry: _Entry, cost: Fraction, tolerance: Fraction) -> Violation | None:
        ready = self.ready(cost)
        self.times.append(entry.time)
        self.prefix.append(self.prefix[-1] + cost)
        while self.times[self.oldest] + self.window <= entry.time:
            self.oldest += 1
        early = ready - entry.time
        if early <= tolerance:
            return None
        return Violation(
            self.limit, entry.index, float(entry.time), float(early),
            float(entry.time - self.window), float(entry.time),
            float(self.prefix[-1] - self.prefix[self.oldest]), float(self.cap),
        )  # fmt: skip


def _judge(limit: Limit) -> _Judge:
    if isinstance(limit, TokenBucketLimit):
        return _Bucket(limit)
    if isinstance(limit, GCRALimit):
        return _GCRA(limit)
    if isinstance(limit, SlidingWindowLimit):
        return _Window(limit)
    raise TypeError(
        "limits must be TokenBucketLimit, GCRALimit or SlidingWindowLimit, "
        f"got {type(limit).__name__} {limit!r}"
    )


def check(log: Iterable[object], *limits: Limit, tolerance: float = 0.0) -> Report:
    """Check a log of admissions against limits: every violation, every needless wait.

    Args:
        log: the admissions: :class:`LogEntry` objects, ``(time, cost)`` or ``(time, cost,
            requested)`` tuples, or any objects with ``time`` and ``cost`` attributes (and
            optionally ``requested``), in the order they were admitted.
        *limits: the limits to check, all at once (a request passes only if it fits them all).
        tolerance: seconds an admission may be early or late without being reported (>= 0).

    Returns:
        A :class:`Report`; ``report.assert_ok()`` raises with every finding.

    Raises:
        TypeError, ValueError: a malformed entry or limit (the message names it).
    """
    slack = _exact("tolerance", tolerance)
    if slack < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    if not limits:
        raise ValueError("check() needs at least one limit")
    entries = _entries(log)
    judges = [(limit, _judge(limit)) for limit in limits]
    partial = any(limit.since is not None or limit.until is not None for limit in limits)
    timed = not partial and all(entry.requested is not None for entry in entries)
    violations: list[Violation] = []
    waits: list[Wait] = []
    idle = Fraction(0)
    previous: Fraction | None = None
    for entry in entries:
        ready: Fraction | float = -_INF
        for limit, judge in judges:
            if not _applies(limit, entry):
                continue
            cost = _cost_of(entry, limit)
            ready = max(ready, judge.ready(cost))
            if (violation := judge.admit(entry, cost, slack)) is not None:
                violations.append(violation)
        if timed and entry.requested is not None and ready != _INF:
            # First come, first served: not before it was asked for, nor before the last one.
            floor = entry.requested if previous is None else max(entry.requested, previous)
            earliest_time = ready if isinstance(ready, Fraction) and ready > floor else floor
            late = entry.time - earliest_time
            if late > slack:
                waits.append(
                    Wait(entry.index, float(entry.time), float(earliest_time), float(late))
                )
                idle += late
        previous = entry.time
    violations.sort(key=lambda violation: violation.index)
    waits.sort(key=lambda wait: wait.index)
    overtaken = _overtaken(entries) if all(e.requested is not None for e in entries) else []
    return Report(
        len(entries), tuple(limits), tuple(violations), tuple(waits), float(idle), tuple(overtaken)
    )


def _overtaken(entries: list[_Entry]) -> list[Overtake]:
    """Entries admitted strictly after an entry requested strictly later (time order)."""
    found: list[Overtake] = []
    latest: _Entry | None = None  # the latest-requested entry admitted before this instant
    position = 0
    while position < len(entries):
        end = position
        while end < len(entries) and entries[end].time == entries[position].time:
            end += 1
        group = entries[position:end]
        for entry in group:
            assert entry.requested is not None
            if (
                latest is not None
                and latest.requested is not None
                and latest.requested > entry.requested
            ):
                found.append(
                    Overtake(entry.index, float(entry.time), float(entry.requested), latest.index,
                             float(latest.requested))
                )  # fmt: skip
        for entry in group:
            if latest is None or (entry.requested or 0) > (latest.requested or 0):
                latest = entry
        position = end
    found.sort(key=lambda overtake: overtake.index)
    return found


def earliest(log: Iterable[object], cost: float | Mapping[str, float], *limits: Limit) -> float:
    """When a request of ``cost`` could go next, after the log's admissions, under ``limits``.

    What an exact limiter that has admitted exactly the log's entries must answer: a probe of
    ``cost`` acquired after the log should be admitted at ``max(now, earliest(...))``.  A
    limiter that leaked capacity (kept a cancelled waiter's units, say) admits it later; one
    that granted extra admits it earlier.  Limits that ended (``until``) do not count; a limit
    that starts late (``since``) assumes a full bucket (or an empty window) there, so after a
    reconfiguration the answer is a lower bound.

    Returns:
        A time on the log's clock, ``-inf`` if the cost fits at any time, ``inf`` if it never
        fits.
    """
    if not limits:
        raise ValueError("earliest() needs at least one limit")
    entries = _entries(log)
    judges = [(limit, _judge(limit)) for limit in limits]
    zero = Fraction(0)
    for entry in entries:
        for limit, judge in judges:
            if _applies(limit, entry):
                judge.admit(entry, _cost_of(entry, limit), zero)
    probe = _Entry(len(entries), entries[-1].time if entries else zero, _probe_cost(cost), None)
    # A limit that ended (``until``) does not judge what comes after it.
    current = [(limit, judge) for limit, judge in judges if limit.until is None]
    return float(max((judge.ready(_cost_of(probe, limit)) for limit, judge in current),
                     default=-_INF))  # fmt: skip


def _probe_cost(cost: float | Mapping[str, float]) -> Mapping[str, Fraction] | Fraction:
    if isinstance(cost, Mapping):
        return {str(k): _exact("cost", v) for k, v in cost.items()}
    return _exact("cost", cost)
