"""The throttle script's protocol: what Python sends it and what it answers, as typed records.

Theory of operation
-------------------
The Lua script (:mod:`throttle_trio._redis._script`) takes ``KEYS`` (the gate, then one key per
limit passed) and ``ARGV`` (the operation, ``n`` the number of limits passed, then the
operation's integers), and answers an array of integers.  This module is the only code that
writes those arguments or reads those replies: one frozen dataclass per request, whose
``encode()`` gives ``ARGV`` and whose ``decode(reply)`` gives its reply record (also a frozen
dataclass; the two records made per request of a batch, :class:`BookingRequest` and
:class:`Booked`, are named tuples, which are made in half the time).  Decoding checks
the reply's shape (its length, every element an ``int``) and bounds (every time within
``[INT64_MIN, MAX_US]``, every wait, code, flag, index and rate within its own range, and what
the request fixes: a charge is applied as sent, a credit is at most what was asked, a booking
is within its ``max_wait``), and raises :class:`MalformedReply` naming the first element that
does not fit; the shell turns it into :class:`~throttle_trio.redis.RedisBackendError`.

Every reply starts with a code and Redis's clock (``now``, µs).  A key that holds something
else answers ``{FOREIGN, now, index of the key (0: the gate), its Redis type}`` whatever the
operation (decoded as :class:`Foreign`); every other reply is ``{OK, now, ...}`` and ends with
each limit's adaptive rate ``r`` (``rates``, in millionths of the configured rate).  Between
them, per operation:

=========  ======================================================================  ==========
request    reply, between ``now`` and the rates                                    record
=========  ======================================================================  ==========
acquire    per request: code, wait (the limit's index for EXCEEDS and RANGE),      AcquireReply
           start, the gate's prior ``l``, then per limit: prior ``t``, ``f``,
           ``u`` (-1: absent) and the TAT it left (four 0 for a limit it does
           not use, and for a request not booked)
unbook     1 if the keys were restored exactly, else 0 and per limit the credit    UnbookReply
adjust     per limit: what was applied (a charge as sent, minus the credit)        AdjustReply
limit      nothing                                                                 Ack
pause      when the gate opens now                                                 PauseReply
state      the gate's ``p`` and ``l``, then per limit its TAT (-1: absent)         StateReply
cut        1 if any limit was cut                                                  CutReply
grow       nothing                                                                 Ack
learn      m, then per limit the fleet learned: its metric (a string), limit, per  LearnReply
           (µs); no rates (it passes no limit)
=========  ======================================================================  ==========

Pure: no coredis, no event loop; tested without a server (``tests/redis/test_protocol.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    ClassVar,
    Final,
    NamedTuple,
    NoReturn,
    Protocol,
    TypeAlias,
    TypeVar,
    final,
)

from ._script import EXCEEDS, FOREIGN, LATE, MAX_US, OK, RANGE, RATE_ONE, SPAN_US

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "INT64_MIN",
    "Ack",
    "Acquire",
    "AcquireReply",
    "Adjust",
    "AdjustReply",
    "Booked",
    "BookingRequest",
    "Cut",
    "CutReply",
    "Exceeds",
    "Foreign",
    "Grow",
    "Late",
    "Learn",
    "LearnReply",
    "LearnedSpec",
    "LimitBooking",
    "Lower",
    "MalformedReply",
    "OutOfRange",
    "Outcome",
    "Pause",
    "PauseReply",
    "ReadState",
    "Reply",
    "Request",
    "StateReply",
    "Unbook",
    "UnbookLimit",
    "UnbookReply",
]

INT64_MIN: Final = -(2**63)  # what an older version stored for an overflowed time (see the Lua)


class MalformedReply(Exception):
    """A reply that does not fit its request: the wrong length, type or bounds."""

    def __init__(self, op: str, detail: str) -> None:
        super().__init__(f"malformed reply to {op}: {detail}")
        self.op = op
        self.detail = detail


# -- replies ----------------------------------------------------------------------------------


class Reply(Protocol):
    """What every reply but :class:`Foreign` carries."""

    @property
    def now(self) -> int:
        """Redis's clock when the script ran (µs)."""
        ...

    @property
    def rates(self) -> tuple[int, ...]:
        """Each limit's adaptive rate, in millionths of its configured rate (``RATE_ONE``)."""
        ...


R_co = TypeVar("R_co", bound=Reply, covariant=True)


@final
@dataclass(frozen=True, slots=True)
class Foreign:
    """A key holds data this module did not write: nothing was done."""

    now: int
    key: int  # its index in KEYS: 0 the gate, i the i-th limit passed
    kind: str  # its Redis type ("string", "list", ...)


@final
@dataclass(frozen=True, slots=True)
class LimitBooking:
    """What a booking did to one limit: its charge, the state before, the TAT it left."""

    inc: int  # the charge sent (µs at the configured rate), > 0
    prior_tat: int  # -1 (all three): the key was absent
    prior_floor: int
    prior_booked: int
    tat: int


class Booked(NamedTuple):
    """A request booked at ``start``: ``wait`` µs after ``now``.

    A named tuple, not a frozen dataclass as the other records: one is made per request of a
    batch, on the admission path, and a named tuple is made in half the time.
    """

    wait: int
    start: int
    prior_last: int  # the gate's latest booking before this one
    incs: tuple[int, ...]  # its charge per limit passed, as the request sent it (0: unused)
    # Per limit passed, as the script wrote them: prior t, f, u and the TAT it left (see
    # `limits`); kept flat, so that a booking costs one record (most are never given back).
    parts: tuple[int, ...]

    @property
    def limits(self) -> tuple[LimitBooking | None, ...]:
        """Per limit passed, what this booking did to it; ``None``: a limit it does not use."""
        parts = self.parts
        return tuple(
            LimitBooking(inc, parts[4 * i], parts[4 * i + 1], parts[4 * i + 2], parts[4 * i + 3])
            if inc
            else None
            for i, inc in enumerate(self.incs)
        )


@final
@dataclass(frozen=True, slots=True)
class Late:
    """Not booked: the earliest instant was ``wait`` µs away, beyond the request's max wait."""

    wait: int


@final
@dataclass(frozen=True, slots=True)
class Exceeds:
    """Not booked: its charge on limit ``limit`` (an index into the limits passed) is above
    that limit's burst, as this request sent it."""

    limit: int


@final
@dataclass(frozen=True, slots=True)
class OutOfRange:
    """Not booked: it would store a time after ``MAX_US``, on limit ``limit`` (an index into
    the limits passed), or on the gate (``None``)."""

    limit: int | None


Outcome: TypeAlias = Booked | Late | Exceeds | OutOfRange


@final
@dataclass(frozen=True, slots=True)
class AcquireReply:
    now: int
    outcomes: tuple[Outcome, ...]  # one per request, in booking order
    rates: tuple[int, ...]


@final
@dataclass(frozen=True, slots=True)
class UnbookReply:
    now: int
    exact: bool  # the keys were restored exactly (nothing was booked on them since)
    credited: tuple[int, ...]  # otherwise, per limit: what was credited (µs), else ()
    rates: tuple[int, ...]


@final
@dataclass(frozen=True, slots=True)
class AdjustReply:
    now: int
    applied: tuple[int, ...]  # per limit: the charge (> 0), minus the credit (<= 0)
    rates: tuple[int, ...]


@final
@dataclass(frozen=True, slots=True)
class PauseReply:
    now: int
    paused_until: int  # when the gate opens (µs), this pause or a longer one
    rates: tuple[int, ...]


@final
@dataclass(frozen=True, slots=True)
class StateReply:
    now: int
    paused_until: int  # the gate's p (0: never paused)
    last: int  # the gate's l: the latest booked admission (0: none)
    tats: tuple[int, ...]  # per limit: its TAT, -1 if the key is absent (a full bucket)
    rates: tuple[int, ...]


@final
@dataclass(frozen=True, slots=True)
class CutReply:
    now: int
    changed: bool  # some limit was cut (the others were within their cooldown)
    rates: tuple[int, ...]


class LearnedSpec(NamedTuple):
    """A limit the fleet learned: ``limit`` units per ``per`` µs, for ``metric``."""

    metric: str
    limit: int
    per: int


@final
@dataclass(frozen=True, slots=True)
class LearnReply:
    now: int
    learned: tuple[LearnedSpec, ...]  # every limit the fleet has learned, the recorded ones first
    rates: tuple[int, ...]  # always empty: no limit is passed


@final
@dataclass(frozen=True, slots=True)
class Ack:
    now: int
    rates: tuple[int, ...]


# -- reading a reply --------------------------------------------------------------------------


_INT: Final = frozenset({int})


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(op: str, at: int, what: str, expected: str, value: object) -> MalformedReply:
    return MalformedReply(op, f"item {at} ({what}) must be {expected}, got {_shown(value)}")


def _int(
    op: str, items: Sequence[object], at: int, low: int, high: int, what: str, *args: object
) -> int:
    """``items[at]``, an ``int`` in ``[low, high]``; ``what`` it is: ``what.format(*args)``
    (formatted only for the error)."""
    value = items[at]
    if type(value) is not int or not low <= value <= high:
        raise _fail(op, at, what.format(*args), f"an integer in [{low}, {high}]", value)
    return value


def _ints(
    op: str,
    items: Sequence[object],
    start: int,
    stop: int,
    low: int,
    high: int,
    name: Callable[[int], str],
) -> Sequence[int]:
    """``items``, once ``items[start:stop]`` are checked to be ``int`` in ``[low, high]``: at C
    speed when they are (a batch's reply has hundreds); else the first that is not is named
    (``name(at)``)."""
    chunk: Sequence[int] = items[start:stop]  # type: ignore[assignment]  # checked here:
    if chunk and not (set(map(type, chunk)) == _INT and low <= min(chunk) and max(chunk) <= high):
        for at in range(start, stop):
            _int(op, items, at, low, high, name(at))
    return items  # type: ignore[return-value]


def _zeros(
    op: str, items: Sequence[object], start: int, stop: int, what: str, *args: object
) -> None:
    """``items[start:stop]`` are all 0."""
    for at in range(start, stop):
        value = items[at]
        if value != 0 or type(value) is not int:
            raise _fail(op, at, what.format(*args), "0", value)


def _head(op: str, reply: object, n: int) -> Sequence[object] | Foreign:
    """The checks every reply gets: an array whose code is OK or FOREIGN (read whole here)."""
    if not isinstance(reply, (list, tuple)):
        raise MalformedReply(op, f"the reply must be an array, got {_shown(reply)}")
    if len(reply) < 2:
        raise MalformedReply(op, f"the reply must have at least 2 items, got {_shown(reply)}")
    code = reply[0]
    if code == FOREIGN and type(code) is int:
        if len(reply) != 4:
            raise MalformedReply(op, f"a FOREIGN reply must have 4 items, got {len(reply)}")
        now = _int(op, reply, 1, 0, MAX_US, "now")
        key = _int(op, reply, 2, 0, n, "the index of the foreign key")
        kind = reply[3]
        if isinstance(kind, bytes):
            kind = kind.decode(errors="replace")
        if not isinstance(kind, str):
            raise _fail(op, 3, "the foreign key's type", "a string", kind)
        return Foreign(now, key, kind)
    if code != OK or type(code) is not int:
        raise _fail(op, 0, "the code", f"OK ({OK})", code)
    return reply


def _length(op: str, items: Sequence[object], expected: int, layout: str, *args: object) -> None:
    """``items`` has ``expected`` items, laid out as ``layout.format(*args)`` says."""
    if len(items) != expected:
        raise MalformedReply(
            op, f"the reply must have {expected} items ({layout.format(*args)}), got {len(items)}"
        )


def _rates(op: str, items: Sequence[object], n: int) -> tuple[int, ...]:
    """The rates at the end of ``items``, one per limit passed."""
    start = len(items) - n
    rates: tuple[int, ...] = tuple(items[start:])  # type: ignore[arg-type]  # checked here:
    if rates and not (set(map(type, rates)) == _INT and min(rates) >= 1 and max(rates) <= RATE_ONE):
        for i in range(n):
            _int(op, items, start + i, 1, RATE_ONE, "the rate of limit {}", i)
    return rates


def _ack(op: str, reply: object, n: int) -> Ack | Foreign:
    items = _head(op, reply, n)
    if isinstance(items, Foreign):
        return items
    _length(op, items, 2 + n, "OK, now, a rate per limit")
    return Ack(_int(op, items, 1, 0, MAX_US, "now"), _rates(op, items, n))


# -- requests ---------------------------------------------------------------------------------


class Request(Protocol[R_co]):
    """A request to the script: its ``ARGV``, and how to read its reply."""

    op: ClassVar[str]

    def encode(self) -> list[int | str]:
        """``ARGV``: the operation, the number of limits passed, then its integers."""
        ...

    def decode(self, reply: object) -> R_co | Foreign:
        """The reply as a record (see the module docstring).

        Raises:
            MalformedReply: the reply does not fit this request.
        """
        ...


class BookingRequest(NamedTuple):
    """One request of an :class:`Acquire` batch (a named tuple, as :class:`Booked`)."""

    max_wait: int  # µs; -1: none
    incs: tuple[int, ...]  # its charge per limit passed (µs at the configured rate); 0: unused


@final
@dataclass(frozen=True, slots=True)
class Acquire:
    """Book ``requests`` in this order, each at the earliest instant every limit admits it."""

    op: ClassVar[str] = "acquire"
    taus: tuple[int, ...]  # per limit passed: its burst (µs at the configured rate)
    requests: tuple[BookingRequest, ...]

    def encode(self) -> list[int | str]:
        args: list[int | str] = ["acquire", len(self.taus), len(self.requests), *self.taus]
        for request in self.requests:
            args.append(request.max_wait)
            args += request.incs
        return args

    def decode(self, reply: object) -> AcquireReply | Foreign:
        op, n = "acquire", len(self.taus)
        checked = _head(op, reply, n)
        if isinstance(checked, Foreign):
            return checked
        stride = 4 + 4 * n
        length = 2 + stride * len(self.requests) + n
        _length(op, checked, length, "OK, now, {} per request, a rate per limit", stride)
        now = _int(op, checked, 1, 0, MAX_US, "now")
        # The others but the rates are times, waits, codes or indices: first all of them at
        # once, within the widest bounds; then each within its own.
        items = _ints(op, checked, 2, length - n, INT64_MIN, MAX_US, self._item)
        rates = _rates(op, items, n)
        outcomes: list[Outcome] = []
        base = 2
        for j, request in enumerate(self.requests):
            if items[base] == OK:
                # The usual case, checked inline (a batch books up to max_batch requests):
                # the wait within the request's max wait, the start ``now + wait``, each limit
                # it uses left with a TAT after the start, the others all 0.
                wait = items[base + 1]
                start = now + wait
                parts = tuple(items[base + 4 : base + stride])
                fits = wait >= 0 and (request.max_wait < 0 or wait <= request.max_wait)
                fits = fits and items[base + 2] == start
                at = 0
                for inc in request.incs:
                    if not fits:
                        break
                    fits = (
                        parts[at + 3] >= start
                        if inc
                        else not (parts[at] or parts[at + 1] or parts[at + 2] or parts[at + 3])
                    )
                    at += 4
                if not fits:
                    self._misbooked(items, base, j, request, now)
                outcomes.append(Booked(wait, start, items[base + 3], request.incs, parts))
            else:
                outcomes.append(self._refused(items, base, j, request))
            base += stride
        return AcquireReply(now, tuple(outcomes), rates)

    def _item(self, at: int) -> str:
        """What item ``at`` (>= 2) of an OK reply is, but the rates (for an error message)."""
        j, k = divmod(at - 2, 4 + 4 * len(self.taus))
        if k < 4:
            return (
                f"request {j}: "
                + ("the code", "its wait or index", "the start", "the gate's prior l")[k]
            )
        i, field = divmod(k - 4, 4)
        return f"request {j}, limit {i}: " + ("prior t", "prior f", "prior u", "its new TAT")[field]

    def _misbooked(
        self, items: Sequence[int], base: int, j: int, request: BookingRequest, now: int
    ) -> NoReturn:
        """Raise for the first item of a booked request's part that does not fit."""
        op = "acquire"
        longest = MAX_US if request.max_wait < 0 else request.max_wait
        wait = _int(op, items, base + 1, 0, longest, "request {}: the wait", j)
        start = _int(op, items, base + 2, now + wait, now + wait, "request {}: the start", j)
        for i, inc in enumerate(request.incs):
            at = base + 4 + 4 * i
            if inc:
                _int(op, items, at + 3, start, MAX_US, self._item(at + 3))
            else:
                _zeros(op, items, at, at + 4, "request {}, limit {}: not used", j, i)
        raise AssertionError("a booked request that fits, found not to")  # pragma: no cover

    def _refused(
        self, items: Sequence[int], base: int, j: int, request: BookingRequest
    ) -> Late | Exceeds | OutOfRange:
        op, n = "acquire", len(self.taus)
        code = items[base]
        outcome: Late | Exceeds | OutOfRange
        if code == LATE:
            if request.max_wait < 0:
                raise MalformedReply(op, f"item {base} (request {j}): LATE, but it has no max wait")
            wait = _int(
                op, items, base + 1, request.max_wait + 1, MAX_US, "request {}: the wait", j
            )
            outcome = Late(wait)
        elif code == EXCEEDS:
            index = _int(op, items, base + 1, 1, n, "request {}: the limit exceeded", j) - 1
            if request.incs[index] <= self.taus[index]:
                raise MalformedReply(
                    op,
                    f"item {base} (request {j}): EXCEEDS on limit {index}, but its charge "
                    f"{request.incs[index]} is within the burst {self.taus[index]}",
                )
            outcome = Exceeds(index)
        elif code == RANGE:  # 0 is the gate
            index = _int(op, items, base + 1, 0, n, "request {}: where it is out of range", j) - 1
            if index >= 0 and not request.incs[index]:
                raise MalformedReply(
                    op, f"item {base} (request {j}): RANGE on limit {index}, which it does not use"
                )
            outcome = OutOfRange(index if index >= 0 else None)
        else:
            raise _fail(
                op,
                base,
                f"request {j}: the code",
                f"OK, LATE, EXCEEDS or RANGE ({OK}, {LATE}, {EXCEEDS}, {RANGE})",
                code,
            )
        _zeros(op, items, base + 2, base + 4 + 4 * n, "request {}: not booked", j)
        return outcome


@final
@dataclass(frozen=True, slots=True)
class UnbookLimit:
    """One limit of an :class:`Unbook`: what the booking charged it, and what it found."""

    inc: int
    tat: int  # the TAT the booking left
    prior_tat: int
    prior_floor: int
    prior_booked: int


@final
@dataclass(frozen=True, slots=True)
class Unbook:
    """Give back a booking whose caller was cancelled before its instant: restore the keys
    exactly if nothing was booked on them since, else credit what is safe."""

    op: ClassVar[str] = "unbook"
    start: int
    prior_last: int
    limits: tuple[UnbookLimit, ...]  # the limits it charged, in the order passed

    @classmethod
    def of(cls, booked: Booked) -> Unbook:
        """The request that gives ``booked`` back (the limits it charged, in order)."""
        return cls(
            booked.start,
            booked.prior_last,
            tuple(
                UnbookLimit(part.inc, part.tat, part.prior_tat, part.prior_floor, part.prior_booked)
                for part in booked.limits
                if part is not None
            ),
        )

    def encode(self) -> list[int | str]:
        args: list[int | str] = ["unbook", len(self.limits), self.start, self.prior_last]
        for part in self.limits:
            args += [part.inc, part.tat, part.prior_tat, part.prior_floor, part.prior_booked]
        return args

    def decode(self, reply: object) -> UnbookReply | Foreign:
        op, n = "unbook", len(self.limits)
        items = _head(op, reply, n)
        if isinstance(items, Foreign):
            return items
        if len(items) < 3:
            _length(op, items, 3 + n, "OK, now, 1, a rate per limit")
        exact = _int(op, items, 2, 0, 1, "restored exactly (1) or not (0)")
        credited: tuple[int, ...] = ()
        if exact:
            _length(op, items, 3 + n, "OK, now, 1, a rate per limit")
        else:
            _length(op, items, 3 + 2 * n, "OK, now, 0, a credit per limit, a rate per limit")
            credited = tuple(
                _int(op, items, 3 + i, 0, part.inc, "the credit of limit {}", i)
                for i, part in enumerate(self.limits)
            )
        now = _int(op, items, 1, 0, MAX_US, "now")
        return UnbookReply(now, bool(exact), credited, _rates(op, items, n))


@final
@dataclass(frozen=True, slots=True)
class Adjust:
    """Per limit: charge an amount (> 0) or credit one (< 0), in µs at the configured rate."""

    op: ClassVar[str] = "adjust"
    amounts: tuple[int, ...]

    def encode(self) -> list[int | str]:
        return ["adjust", len(self.amounts), *self.amounts]

    def decode(self, reply: object) -> AdjustReply | Foreign:
        op, n = "adjust", len(self.amounts)
        items = _head(op, reply, n)
        if isinstance(items, Foreign):
            return items
        _length(op, items, 2 + 2 * n, "OK, now, one per limit, a rate per limit")
        # A charge is applied as sent; of a credit, at most what was asked.
        applied = tuple(
            _int(op, items, 2 + i, min(amount, 0), max(amount, 0), "what limit {} applied", i)
            if amount <= 0
            else _int(op, items, 2 + i, amount, amount, "what limit {} applied", i)
            for i, amount in enumerate(self.amounts)
        )
        return AdjustReply(_int(op, items, 1, 0, MAX_US, "now"), applied, _rates(op, items, n))


@final
@dataclass(frozen=True, slots=True)
class Lower:
    """Header feedback: per limit, at most ``burst - level`` available now (``levels``, µs)."""

    op: ClassVar[str] = "limit"
    levels: tuple[int, ...]

    def encode(self) -> list[int | str]:
        return ["limit", len(self.levels), *self.levels]

    def decode(self, reply: object) -> Ack | Foreign:
        return _ack("limit", reply, len(self.levels))


@final
@dataclass(frozen=True, slots=True)
class Pause:
    """Close the gate for ``us`` µs from now (a longer pause stands)."""

    op: ClassVar[str] = "pause"
    us: int

    def encode(self) -> list[int | str]:
        return ["pause", 0, self.us]

    def decode(self, reply: object) -> PauseReply | Foreign:
        op = "pause"
        items = _head(op, reply, 0)
        if isinstance(items, Foreign):
            return items
        _length(op, items, 3, "OK, now, when the gate opens")
        now = _int(op, items, 1, 0, MAX_US, "now")
        until = _int(op, items, 2, now + self.us, MAX_US, "when the gate opens")
        return PauseReply(now, until, ())


@final
@dataclass(frozen=True, slots=True)
class ReadState:
    """Read the gate and ``limits`` limits; changes nothing."""

    op: ClassVar[str] = "state"
    limits: int

    def encode(self) -> list[int | str]:
        return ["state", self.limits]

    def decode(self, reply: object) -> StateReply | Foreign:
        op, n = "state", self.limits
        items = _head(op, reply, n)
        if isinstance(items, Foreign):
            return items
        _length(op, items, 4 + 2 * n, "OK, now, p, l, a TAT per limit, a rate per limit")
        return StateReply(
            _int(op, items, 1, 0, MAX_US, "now"),
            _int(op, items, 2, INT64_MIN, MAX_US, "the gate's p"),
            _int(op, items, 3, INT64_MIN, MAX_US, "the gate's l"),
            tuple(
                _int(op, items, 4 + i, INT64_MIN, MAX_US, "the TAT of limit {}", i)
                for i in range(n)
            ),
            _rates(op, items, n),
        )


@final
@dataclass(frozen=True, slots=True)
class Cut:
    """Overload: cut each limit's rate by ``factor`` (millionths), not below ``floor``,
    unless it was cut less than ``cooldown`` µs ago; keep the state ``memory`` µs."""

    op: ClassVar[str] = "cut"
    limits: int
    factor: int
    floor: int
    cooldown: int
    memory: int

    def encode(self) -> list[int | str]:
        return ["cut", self.limits, self.factor, self.floor, self.cooldown, self.memory]

    def decode(self, reply: object) -> CutReply | Foreign:
        op, n = "cut", self.limits
        items = _head(op, reply, n)
        if isinstance(items, Foreign):
            return items
        _length(op, items, 3 + n, "OK, now, cut (1) or not (0), a rate per limit")
        return CutReply(
            _int(op, items, 1, 0, MAX_US, "now"),
            bool(_int(op, items, 2, 0, 1, "cut (1) or not (0)")),
            _rates(op, items, n),
        )


@final
@dataclass(frozen=True, slots=True)
class Grow:
    """Success: raise each limit's rate by ``step`` (millionths), never above the configured
    rate; keep the state ``memory`` µs."""

    op: ClassVar[str] = "grow"
    limits: int
    step: int
    memory: int

    def encode(self) -> list[int | str]:
        return ["grow", self.limits, self.step, self.memory]

    def decode(self, reply: object) -> Ack | Foreign:
        return _ack("grow", reply, self.limits)


@final
@dataclass(frozen=True, slots=True)
class Learn:
    """Record the limits ``specs`` (unless their metric is recorded already) in the fleet's
    learned limits, keep the record ``memory`` µs, and read back every recorded one.  ``()``
    only reads.  Its one key after the gate is the learned limits' hash (index 1 in a
    :class:`Foreign` reply)."""

    op: ClassVar[str] = "learn"
    specs: tuple[LearnedSpec, ...]
    memory: int

    def encode(self) -> list[int | str]:
        args: list[int | str] = ["learn", 0, len(self.specs)]
        for spec in self.specs:
            args += spec
        args.append(self.memory)
        return args

    def decode(self, reply: object) -> LearnReply | Foreign:
        op = "learn"
        items = _head(op, reply, 1)
        if isinstance(items, Foreign):
            return items
        if len(items) < 3:
            raise MalformedReply(op, f"the reply must have at least 3 items, got {len(items)}")
        now = _int(op, items, 1, 0, MAX_US, "now")
        m = _int(op, items, 2, 1 if self.specs else 0, 1_000_000, "the number of limits")
        _length(op, items, 3 + 3 * m, "OK, now, m, then m times metric, limit, per")
        learned = []
        for i in range(m):
            at = 3 + 3 * i
            metric = items[at]
            if isinstance(metric, bytes):
                metric = metric.decode(errors="replace")
            if not isinstance(metric, str) or not metric:
                raise _fail(op, at, f"the metric of learned limit {i}", "a string", metric)
            limit = _int(op, items, at + 1, 1, MAX_US, "the limit of learned limit {}", i)
            per = _int(op, items, at + 2, 1, SPAN_US, "the period of learned limit {}", i)
            learned.append(LearnedSpec(metric, limit, per))
        return LearnReply(now, tuple(learned), ())
