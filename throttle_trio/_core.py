"""The throttle's rules without I/O: what both throttle shells decide, as plain calls.

Theory of operation
-------------------
A throttle is two things.  Its *rules*: which costs a request may name, what a reservation is
charged and when it may be settled, what a response's rate-limit headers or a 429 say about
each limit, which limits a learning throttle adds, and the counters that statistics report.
And its *store and shell*: where the levels of the limits live (policy objects in this process,
or a Lua script's keys on Redis's clock) and how a task waits its turn (the wait queue, or
bookings in Redis).  This module is the first half, in the manner of h11's ``Connection``:
synchronous methods that take ``now`` as a number, change only the core's own records, and
return their decisions as data (:class:`Adjustment`, :class:`LevelTarget`,
:class:`LearnedLimit`) for the shell to apply to its store.  It reads no clock, does no I/O and
imports no event loop, so its hardest rules are tested as arithmetic (``tests/test_core.py``).

The two shells over it, with one interface (``_shell.ThrottleShell``):

* :class:`~throttle_trio.Throttle`: levels in :class:`~throttle_trio.policy.RatePolicy`
  objects, the FIFO wait queue, the loop's clock;
* ``throttle_trio.redis.RedisThrottle``: levels in Redis (the script is the store of the same
  state), bookings in batches, the local fallback.

Rules (each once, here or in :mod:`throttle_trio._feedback`, which holds the arithmetic):

1. **Costs**: a cost names a metric the throttle counts (or, learning, one headers report), is
   finite and >= 0, and fits every capacity of its metric: a larger cost fails at once.
2. **A reservation ends once** (:class:`ReservationState`): pending, then active at admission,
   then released.  Settle, cancel and reject need it active; settle only once.
3. **Settle** charges what was used above the estimate (an overdraft, a debt) and, where the
   provider refunds, credits what was not used; a credit never lifts a limit above full (the
   store reports what it dropped).  Cancel and reject credit everything not kept.
4. **Header feedback** lowers a limit to what the server's report implies now, only when two
   consecutive reports agree, by the smaller cut; a limit that charged nothing takes its first
   report as it is; a limit is never raised (:class:`~throttle_trio._feedback.PendingLevel`).
5. **A 429 proves a shortfall**: the cost above what the server had left, charged at once.
6. **Learned limits**: with ``learn_limits``, a metric the headers report and nothing counts
   yet gets a limit of ``limit`` per the period the headers imply.
7. **Lanes** (:class:`Lanes`): interactive requests go before a batch backlog, FIFO within
   each lane, and the batch lane keeps its share while both wait.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from ._exceptions import ThrottleTrioError
from ._feedback import PendingLevel, learned_period, reported_level, shortfall
from ._reserve import Lane, check_costs, check_share, metric_of
from ._validate import check_non_negative

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ._headers import RateLimitHeaders

# The public names; the rest (ThrottleCore, Booking, Ledger and the decisions) is the shells'
# internal API.
__all__ = ["ReservationError", "ReservationState"]

#: What holds a waiter back besides a limit (:attr:`ThrottleCore.binding`).
CONCURRENCY = "concurrency"
PAUSE = "pause"
#: What rate-limit headers report (see ``_headers``): a learning throttle accepts their costs
#: before it knows their limits.
LEARNABLE_METRICS = frozenset({"requests", "tokens", "input_tokens", "output_tokens"})


class ReservationError(ThrottleTrioError, RuntimeError):
    """A reservation was used out of order (settled twice, settled after release)."""


class ReservationState(enum.Enum):
    """Where a reservation is in its life (rule 2)."""

    PENDING = "pending"
    """Waiting for admission."""
    ACTIVE = "active"
    """Admitted: charged, holding its concurrency slot."""
    RELEASED = "released"
    """Its slot is given back (after a settle, a cancel, a reject, or as it was)."""


class Booking:
    """What one reservation is, as data: its costs, its marks, its state and its times.

    The shells' reservation classes keep one and delegate to it; the core reads and changes
    nothing else of them.
    """

    __slots__ = (
        "admitted_at",
        "costs",
        "marks",
        "resumed_at",
        "retry_after",
        "sent_at",
        "settled",
        "shortfall",
        "state",
        "ticket",
    )

    def __init__(self, costs: dict[str, float], ticket: int) -> None:
        self.costs = costs  # metric -> cost charged now (estimate, then settled value)
        self.ticket = ticket
        self.state = ReservationState.PENDING
        self.settled = False
        self.admitted_at = math.nan  # the shell's clock
        # When the admitted task ran again: its request cannot reach the server before this.
        self.resumed_at = math.nan
        # When it was reported on the wire (the shell's clock); NaN until then.
        self.sent_at = math.nan
        # limit name -> the limit's net charge when this request was sent: header feedback
        # counts what was charged since from here.
        self.marks: dict[str, float] = {}
        # limit name -> what a 429 answering it proved (rule 5), for the event that reports it.
        self.shortfall: dict[str, float] = {}
        self.retry_after: float | None = None  # the 429's Retry-After, likewise

    def __repr__(self) -> str:
        return f"<Booking {self.state.value} ticket={self.ticket} costs={self.costs}>"

    def check_active(self, method: str) -> None:
        """Raise :class:`ReservationError` unless active (rule 2)."""
        if self.state is not ReservationState.ACTIVE:
            when = (
                "before it was admitted"
                if self.state is ReservationState.PENDING
                else "after it was released"
            )
            raise ReservationError(f"{method}() called on a reservation {when}")

    def check_settle(self) -> None:
        """Raise :class:`ReservationError` unless it may be settled now (rule 2)."""
        self.check_active("settle")
        if self.settled:
            raise ReservationError("settle() called twice on the same reservation")


class Ledger:
    """One limit's counters and its header-feedback memory, whatever store holds its level.

    The shells subclass it with what their store needs (a policy object; a Redis key and the
    script's units).
    """

    __slots__ = (
        "admitted_cost",
        "dropped",
        "learned",
        "metric",
        "name",
        "overdraft",
        "pending",
        "refunded",
        "sending",
        "unsent",
        "wait_time",
        "wave",
    )

    def __init__(self, name: str, *, learned: bool = False) -> None:
        self.name = name
        self.metric = metric_of(name)
        self.learned = learned
        self.admitted_cost = 0.0  # monotonic: also the mark used by header feedback
        self.refunded = 0.0
        self.overdraft = 0.0
        self.dropped = 0.0  # credits that did not fit below the capacity
        self.wait_time = 0.0  # seconds the first waiter spent blocked by this limit
        # Admitted, but the admitted task has not run again yet: the request is not on the wire.
        self.unsent = 0.0
        self.pending = PendingLevel()  # the last report, which the next must confirm (rule 4)
        # A run's opening wave, (first admission, first response), if a shell marked one: the
        # requests admitted in it left together, before any response, most on new
        # connections, and reached the server in any order, so which of the others the server
        # had counted when one arrived is a guess (off by thousands of tokens after a burst of
        # 64), and two such reports in a row can agree on a cut that is not real.  Their
        # reports cut nothing (:meth:`ThrottleCore.feedback`); a 429 among them still does.
        self.wave: tuple[float, float] | None = None
        # After an admission from full, until a request admitted since is on the wire or
        # ends: (when it was admitted, the level right after it, the net charge then).  The
        # server's bucket, full too, refills only from when such a request arrives
        # (:meth:`ThrottleCore.on_the_wire`).
        self.sending: tuple[float, float, float] | None = None

    @property
    def net_charged(self) -> float:
        """Units charged so far, net: admissions and overdrafts, minus refunds."""
        return self.admitted_cost + self.overdraft - self.refunded


L = TypeVar("L", bound=Ledger)


@dataclass(frozen=True, slots=True)
class Adjustment(Generic[L]):
    """A change of one limit's level that the shell applies to its store.

    Attributes:
        limit: the limit.
        delta: units; > 0 charges (an overdraft, a proven shortfall), < 0 credits (a refund).
    """

    limit: L
    delta: float


@dataclass(frozen=True, slots=True)
class LevelTarget(Generic[L]):
    """Header feedback's decision: lower ``limit`` to at most ``level`` units now (rule 4)."""

    limit: L
    level: float


@dataclass(frozen=True, slots=True)
class LearnedLimit:
    """A limit to add, learned from headers (rule 6): ``limit`` units per ``per`` seconds."""

    metric: str
    limit: float
    per: float


class ThrottleCore(Generic[L]):
    """The rules and counters of one throttle, over the shell's limits (see the module doc).

    Args:
        limits: the shell's limits (its :class:`Ledger` subclass), in order.
        refund_unused: whether settling below the estimate credits the difference (rule 3).
        learn_limits: whether headers add limits for metrics not counted yet (rule 6).
    """

    __slots__ = (
        "admitted",
        "binding",
        "binding_since",
        "clamped",
        "concurrency_wait",
        "learn_limits",
        "limits",
        "metrics",
        "pause_wait",
        "pauses",
        "refund_unused",
        "rejections",
        "timeouts",
        "wait_time",
    )

    def __init__(self, limits: Iterable[L], *, refund_unused: bool, learn_limits: bool) -> None:
        self.limits: dict[str, L] = {limit.name: limit for limit in limits}
        self.metrics = frozenset(limit.metric for limit in self.limits.values())
        self.refund_unused = refund_unused
        self.learn_limits = learn_limits
        self.admitted = 0
        self.wait_time = 0.0  # seconds the admitted requests waited, summed
        self.timeouts = 0
        self.rejections = 0
        self.clamped = 0
        self.pauses = 0
        self.binding: str | None = None  # what held the first waiter back at the last step
        self.binding_since = 0.0
        self.concurrency_wait = 0.0
        self.pause_wait = 0.0

    # -- rule 1: costs -------------------------------------------------------------------------

    def accepts(self, metric: str) -> bool:
        """Whether a request may name a cost for ``metric`` (counted, or learnable)."""
        return metric in self.metrics or (self.learn_limits and metric in LEARNABLE_METRICS)

    def check_costs(
        self, costs: Mapping[str, float], capacity: Callable[[L], float]
    ) -> dict[str, float]:
        """Check a request's costs; ``capacity(limit)`` is each limit's largest cost."""
        return check_costs(
            costs,
            accepts=self.accepts,
            metrics=self.metrics,
            capacities=[
                (limit.name, limit.metric, capacity(limit)) for limit in self.limits.values()
            ],
        )

    def add_limit(self, limit: L) -> None:
        """Count ``limit`` from now on (a learned one)."""
        self.limits[limit.name] = limit
        self.metrics = self.metrics | {limit.metric}

    # -- admission -----------------------------------------------------------------------------

    def admitted_now(
        self,
        booking: Booking,
        now: float,
        arrived: float,
        *,
        charged: bool = True,
        limits: Iterable[L] | None = None,
    ) -> None:
        """Record an admission the store has charged: the state, the counters, the marks.

        Every limit is marked, even at cost 0: a settle may charge it, and header feedback
        counts from its mark (set again by :meth:`resumed` when the task runs again).
        ``charged=False``: another store admitted it (the Redis throttle's local fallback), so
        these limits were not charged and are not marked.  ``limits``: the limits the store
        charged it against, when some were added since (the Redis throttle books before it
        admits, and a limit learned meanwhile was not charged); default: every limit.
        """
        costs, marks = booking.costs, booking.marks
        if charged:
            for limit in self.limits.values() if limits is None else limits:
                cost = costs.get(limit.metric)
                if cost:
                    limit.admitted_cost += cost
                    limit.unsent += cost
                marks[limit.name] = limit.net_charged
        self.admitted += 1
        self.wait_time += now - arrived
        booking.state = ReservationState.ACTIVE
        booking.admitted_at = now

    def undone(self, booking: Booking, arrived: float) -> list[Adjustment[L]]:
        """An admission that could not be delivered, as if it never happened.

        Returns the credits the store must apply (every charge, as it was charged).
        """
        credits = []
        for limit in self.limits.values():
            cost = booking.costs.get(limit.metric)
            if cost and limit.name in booking.marks:
                limit.admitted_cost -= cost
                limit.unsent -= cost
                credits.append(Adjustment(limit, -cost))
        self.admitted -= 1
        self.wait_time -= booking.admitted_at - arrived
        booking.state = ReservationState.RELEASED  # nobody holds it: settle and cancel refuse it
        return credits

    def resumed(self, booking: Booking, now: float) -> None:
        """The admitted task runs again: from now on its request may be on the wire.

        Its marks become what the server had probably counted when the request reached it: the
        net charge now, less what was admitted and has not run again yet (admission order is
        not send order: after a burst, the admitted tasks run again in the scheduler's order).
        """
        booking.resumed_at = now
        costs, marks = booking.costs, booking.marks
        for limit in self.limits.values():
            if limit.name in marks:
                limit.unsent -= costs.get(limit.metric, 0.0)
                marks[limit.name] = limit.net_charged - limit.unsent

    @staticmethod
    def admitted_from_full(limit: L, booking: Booking, level: float) -> None:
        """``booking`` was admitted while ``limit`` was full, and left it at ``level``.

        Until a request admitted since is on the wire, what the limit refills is a lead over
        the server, whose bucket stays full until that request arrives.  Call it before
        :meth:`resumed` (which moves the booking's marks).
        """
        limit.sending = (booking.admitted_at, level, booking.marks[limit.name])

    def on_the_wire(self, booking: Booking) -> list[LevelTarget[L]]:
        """``booking``'s request is on the wire now: the levels to lower limits to.

        Each limit admitted from full at or before ``booking``'s admission, whose requests
        since were not on the wire yet, refills from now: its level is what it was right
        after that admission less what was charged since.  The store lowers each to it.  A
        first connection's set-up (tens of milliseconds on a busy loop) is what this takes
        back, once per limit that was full; without it, the client would lead the server by
        that refill and meet 429s when its burst runs out.
        """
        targets: list[LevelTarget[L]] = []
        for limit in self.limits.values():
            sending = limit.sending
            if sending is None or booking.admitted_at < sending[0]:
                continue
            limit.sending = None
            _, level, mark = sending
            targets.append(LevelTarget(limit, level - (limit.net_charged - mark)))
        return targets

    def ended(self, booking: Booking) -> None:
        """``booking`` ended (released, rejected or cancelled).

        A request admitted since a limit was full that ends without a report that it was on
        the wire (sent by other means, or never) leaves the refill as it is: the server may
        have counted it, and a later report would take back the refill of its whole life.
        """
        for limit in self.limits.values():
            sending = limit.sending
            if sending is not None and booking.admitted_at >= sending[0]:
                limit.sending = None

    def note_binding(self, now: float, binding: str | None) -> None:
        """Account the time since the last step to what held the first waiter, then switch."""
        previous = self.binding
        if previous is not None:
            spent = max(0.0, now - self.binding_since)
            if previous == PAUSE:
                self.pause_wait += spent
            elif previous == CONCURRENCY:
                self.concurrency_wait += spent
            else:
                limit = self.limits.get(previous)
                if limit is not None:
                    limit.wait_time += spent
        self.binding, self.binding_since = binding, now

    # -- rule 3: settle, cancel, reject ---------------------------------------------------------

    def adjustments(
        self, booking: Booking, usage: Mapping[str, float], *, refund: bool
    ) -> tuple[dict[str, float], list[Adjustment[L]]]:
        """What settling ``booking`` to ``usage`` changes, before anything changes.

        Returns the checked usage and the adjustments for the store: an overdraft for a usage
        above the estimate; a credit below it, if ``refund``.  Only limits charged at
        admission are adjusted (one learned since was not charged: nothing to give back).

        Raises:
            ValueError: an unknown metric, or a usage that is not a finite number >= 0.
        """
        checked: dict[str, float] = {}
        for metric, value in usage.items():
            if metric not in self.metrics and metric not in booking.costs:
                known = ", ".join(sorted(self.metrics)) or "nothing (only concurrency)"
                raise ValueError(f"unknown usage {metric!r}: this throttle counts {known}")
            checked[metric] = check_non_negative(metric, value)
        changes: list[Adjustment[L]] = []
        for metric, actual in checked.items():
            delta = actual - booking.costs.get(metric, 0.0)
            if delta == 0 or (delta < 0 and not refund):
                continue
            for limit in self.limits.values():
                if limit.metric == metric and limit.name in booking.marks:
                    changes.append(Adjustment(limit, delta))
        return checked, changes

    def applied(self, change: Adjustment[L], done: float) -> None:
        """The store applied ``change``, ``done`` units of it (a credit may not all fit)."""
        limit = change.limit
        if change.delta > 0:
            limit.overdraft += done
        else:
            limit.refunded += done
            limit.dropped += -change.delta - done

    def settled(self, booking: Booking, checked: Mapping[str, float], *, refund: bool) -> None:
        """Record the settled usage as the booking's costs (what it is charged now)."""
        costs = booking.costs
        for metric, actual in checked.items():
            if refund or actual > costs.get(metric, 0.0):
                costs[metric] = actual

    @staticmethod
    def all_but(booking: Booking, kept: Mapping[str, float]) -> dict[str, float]:
        """The usage of a rejected attempt: ``kept``, and nothing of every other cost."""
        usage = dict.fromkeys(booking.costs, 0.0)
        usage.update(kept)
        return usage

    @staticmethod
    def settled_usage(
        estimate: Mapping[str, float], actual: Mapping[str, float]
    ) -> dict[str, float]:
        """What a settle reports as used (its event): ``actual``, and the estimate of every
        metric it does not name."""
        return {**estimate, **{metric: float(value) for metric, value in actual.items()}}

    # -- rules 4 to 6: what responses say ---------------------------------------------------------

    def feedback(
        self,
        report: RateLimitHeaders,
        booking: Booking | None,
        now: float,
        refill_rate: Callable[[L], float],
    ) -> list[LevelTarget[L]]:
        """The levels a response's rate-limit report lowers the limits to (rule 4).

        For each metric the server reports, the level it implies now is ``remaining``, plus
        what the limit refilled since the answered request's task ran again, minus what this
        throttle charged since (:func:`~throttle_trio._feedback.reported_level`).  Without
        ``booking``, ``remaining`` as it is.  A target is returned only when the report before
        also asked for a cut (the smaller of the two), or for a limit's first report while it
        has charged nothing; the store lowers the limit to it, never raises it.

        Args:
            refill_rate: units per second a limit refills continuously (``nan``: it does not).
        """
        targets: list[LevelTarget[L]] = []
        for metric, info in report.limits.items():
            limit = self.limits.get(metric)
            if limit is None or info.remaining is None:
                continue
            wave = limit.wave
            if (
                wave is not None
                and booking is not None
                and wave[0] <= booking.admitted_at
                and booking.resumed_at <= wave[1]
            ):
                continue  # sent in the opening wave: its report is a guess (Ledger.wave)
            rate = refill_rate(limit)
            if booking is not None and limit.name in booking.marks:
                level = reported_level(
                    info.remaining,
                    charged_since=limit.net_charged - booking.marks[limit.name],
                    refill_rate=rate,
                    resumed_at=booking.resumed_at,
                    now=now,
                )
            else:
                level = info.remaining
            target = limit.pending.target(
                level,
                charged=limit.net_charged,
                now=now,
                refill_rate=rate,
                first=not limit.admitted_cost,
            )
            if target is not None:
                targets.append(LevelTarget(limit, target))
        return targets

    def shortfalls(self, report: RateLimitHeaders, booking: Booking) -> list[Adjustment[L]]:
        """What a 429 answering ``booking`` proves each limit is short: charge it (rule 5).

        Call it before the reject, while the costs are the estimate.
        """
        charges: list[Adjustment[L]] = []
        for metric, info in report.limits.items():
            limit = self.limits.get(metric)
            if limit is None or limit.name not in booking.marks:
                continue
            proven = shortfall(booking.costs.get(limit.metric, 0.0), info.remaining)
            if proven > 0:
                charges.append(Adjustment(limit, proven))
                booking.shortfall[limit.name] = proven
        booking.retry_after = report.retry_after
        return charges

    def to_learn(self, report: RateLimitHeaders) -> list[LearnedLimit]:
        """The limits a learning throttle adds for ``report`` (rule 6; none if not learning)."""
        if not self.learn_limits:
            return []
        return [
            LearnedLimit(
                metric, info.limit, learned_period(info.limit, info.remaining, info.reset_after)
            )
            for metric, info in report.limits.items()
            if metric not in self.metrics and info.limit and info.limit > 0
        ]


class Lanes:
    """Priority lanes as tickets: stride scheduling on the places in line (rule 7).

    An interactive ticket is one place after the later of the last interactive ticket and
    the last admitted one; a batch ticket ``stride`` places after the later of the last batch
    ticket and the last admitted one, where ``stride = (1 - batch_share) / batch_share``.  So
    each lane is first come, first served; an interactive request goes before a batch
    backlog; and while both lanes wait, one batch request goes for every ``stride``
    interactive ones.  Only interactive requests: tickets 0, 1, 2, ... as without lanes.
    """

    __slots__ = ("_admitted", "_stride", "_tags")

    def __init__(self, batch_share: float) -> None:
        share = check_share(batch_share)
        self._stride = (1.0 - share) / share
        self._admitted = -1.0  # the ticket of the last admitted request
        self._tags = [-1.0, -1.0]  # each lane's last ticket, exactly

    def take(self, lane: Lane) -> int:
        """A new place in line for a request of ``lane``."""
        base = self._admitted
        if lane == "interactive":
            tag = max(base, self._tags[0]) + 1.0
            self._tags[0] = tag
        else:
            tag = max(base, self._tags[1]) + self._stride
            self._tags[1] = tag
        return math.ceil(tag)

    def admitted(self, ticket: int) -> None:
        """The request with ``ticket`` was admitted (the lanes count from the latest)."""
        if ticket > self._admitted:
            self._admitted = ticket
