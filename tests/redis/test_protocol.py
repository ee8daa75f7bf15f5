"""The script's protocol without a server: requests as ARGV, replies as records, and every
malformed reply refused with a message that names the item (by the shell too, as a
RedisBackendError).

The replies here are laid out by hand, as the Lua script writes them (its comments in
``throttle_trio/_redis/_script.py``), independently of the decoder; the tests against a real
server (``test_script.py``, and every test of the shell) check that the script answers so.
"""

from __future__ import annotations

import re
from typing import Any, cast

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttle_trio._redis._protocol import (
    INT64_MIN,
    Ack,
    Acquire,
    AcquireReply,
    Adjust,
    AdjustReply,
    Booked,
    BookingRequest,
    Cut,
    CutReply,
    Exceeds,
    Foreign,
    Grow,
    Late,
    Learn,
    LearnedSpec,
    LearnReply,
    LimitBooking,
    Lower,
    MalformedReply,
    Outcome,
    OutOfRange,
    Pause,
    PauseReply,
    ReadState,
    StateReply,
    Unbook,
    UnbookLimit,
    UnbookReply,
)
from throttle_trio._redis._script import (
    EXCEEDS,
    FOREIGN,
    LATE,
    MAX_US,
    OK,
    RANGE,
    RATE_ONE,
    SPAN_US,
)
from throttle_trio.redis import GCRALimit, RedisBackendError, RedisThrottle

NOW = 1_800_000_000_000_000  # a Redis clock reading in µs (2027)
S = 1_000_000


def acquire_reply(request: Acquire, outcomes: list[Outcome], rates: list[int]) -> list[Any]:
    """The reply the script writes for ``request`` with these outcomes (see its comments)."""
    n = len(request.taus)
    reply: list[Any] = [OK, NOW]
    for outcome in outcomes:
        if isinstance(outcome, Booked):
            reply += [OK, outcome.wait, outcome.start, outcome.prior_last]
            for part in outcome.limits:
                if part is None:
                    reply += [0, 0, 0, 0]
                else:
                    reply += [part.prior_tat, part.prior_floor, part.prior_booked, part.tat]
        else:
            if isinstance(outcome, Late):
                reply += [LATE, outcome.wait]
            elif isinstance(outcome, Exceeds):
                reply += [EXCEEDS, outcome.limit + 1]
            else:
                reply += [RANGE, 0 if outcome.limit is None else outcome.limit + 1]
            reply += [0] * (2 + 4 * n)
    return reply + rates


# -- requests as ARGV -------------------------------------------------------------------------


def test_every_request_encodes_as_the_script_reads_its_arguments() -> None:
    acquire = Acquire(
        taus=(10 * S, 5 * S),
        requests=(BookingRequest(-1, (S, 0)), BookingRequest(2 * S, (S, 3 * S))),
    )
    assert acquire.encode() == ["acquire", 2, 2, 10 * S, 5 * S, -1, S, 0, 2 * S, S, 3 * S]
    unbook = Unbook(NOW + S, NOW, (UnbookLimit(S, NOW + 2 * S, -1, -1, -1),))
    assert unbook.encode() == ["unbook", 1, NOW + S, NOW, S, NOW + 2 * S, -1, -1, -1]
    assert Adjust((S, -S, 0)).encode() == ["adjust", 3, S, -S, 0]
    assert Lower((S, 2 * S)).encode() == ["limit", 2, S, 2 * S]
    assert Pause(60 * S).encode() == ["pause", 0, 60 * S]
    assert ReadState(2).encode() == ["state", 2]
    assert Cut(2, 500_000, 10_000, S, 3600 * S).encode() == [
        "cut",
        2,
        500_000,
        10_000,
        S,
        3600 * S,
    ]
    assert Grow(2, 10_000, 3600 * S).encode() == ["grow", 2, 10_000, 3600 * S]
    learn = Learn((LearnedSpec("tokens", 10_000, 60 * S), LearnedSpec("requests", 500, S)), 9)
    assert learn.encode() == ["learn", 0, 2, "tokens", 10_000, 60 * S, "requests", 500, S, 9]
    assert Learn((), 9).encode() == ["learn", 0, 0, 9]


def test_unbook_gives_back_the_limits_a_booking_charged_in_order() -> None:
    """Unbook.of takes the charged limits' parts of a booking, in the order passed, and sends
    what the script needs to restore them: inc, the TAT it left, the priors."""
    booked = Booked(
        wait=S,
        start=NOW + S,
        prior_last=NOW,
        incs=(2 * S, 0, S),
        parts=(NOW, NOW, NOW - S, NOW + 3 * S, 0, 0, 0, 0, -1, -1, -1, NOW + 2 * S),
    )
    assert booked.limits == (
        LimitBooking(2 * S, NOW, NOW, NOW - S, NOW + 3 * S),
        None,
        LimitBooking(S, -1, -1, -1, NOW + 2 * S),
    )
    assert Unbook.of(booked) == Unbook(
        NOW + S,
        NOW,
        (
            UnbookLimit(2 * S, NOW + 3 * S, NOW, NOW, NOW - S),
            UnbookLimit(S, NOW + 2 * S, -1, -1, -1),
        ),
    )
    assert Unbook.of(booked).encode() == [
        "unbook",
        2,
        NOW + S,
        NOW,
        *(2 * S, NOW + 3 * S, NOW, NOW, NOW - S),
        *(S, NOW + 2 * S, -1, -1, -1),
    ]


# -- replies as records -----------------------------------------------------------------------


def test_an_acquire_reply_as_records() -> None:
    """A batch of four: booked at once (an absent key: priors -1), booked later on one of two
    limits, late, and above a burst; the rates at the end."""
    request = Acquire(
        taus=(2 * S, 5 * S),
        requests=(
            BookingRequest(-1, (S, 5 * S)),
            BookingRequest(-1, (S, 0)),
            BookingRequest(S // 2, (S, 0)),
            BookingRequest(-1, (3 * S, 0)),
        ),
    )
    reply = [OK, NOW]
    reply += [OK, 0, NOW, 0, NOW, NOW, 0, NOW + S, -1, -1, -1, NOW + 5 * S]
    reply += [OK, S, NOW + S, 0, NOW + S, NOW + S, NOW, NOW + 2 * S, 0, 0, 0, 0]
    reply += [LATE, 2 * S, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    reply += [EXCEEDS, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    reply += [RATE_ONE, RATE_ONE // 2]
    decoded = request.decode(reply)
    assert decoded == AcquireReply(
        now=NOW,
        outcomes=(
            Booked(0, NOW, 0, (S, 5 * S), (NOW, NOW, 0, NOW + S, -1, -1, -1, NOW + 5 * S)),
            Booked(S, NOW + S, 0, (S, 0), (NOW + S, NOW + S, NOW, NOW + 2 * S, 0, 0, 0, 0)),
            Late(2 * S),
            Exceeds(0),
        ),
        rates=(RATE_ONE, RATE_ONE // 2),
    )
    assert isinstance(decoded, AcquireReply)
    first, second = decoded.outcomes[:2]
    assert isinstance(first, Booked)
    assert isinstance(second, Booked)
    assert first.limits == (
        LimitBooking(S, NOW, NOW, 0, NOW + S),
        LimitBooking(5 * S, -1, -1, -1, NOW + 5 * S),
    )
    assert second.limits == (LimitBooking(S, NOW + S, NOW + S, NOW, NOW + 2 * S), None)


def test_the_other_replies_as_records() -> None:
    unbook = Unbook(NOW + S, NOW, (UnbookLimit(S, NOW + 2 * S, -1, -1, -1),))
    assert unbook.decode([OK, NOW, 1, RATE_ONE]) == UnbookReply(NOW, True, (), (RATE_ONE,))
    assert unbook.decode([OK, NOW, 0, S // 2, RATE_ONE]) == UnbookReply(
        NOW, False, (S // 2,), (RATE_ONE,)
    )
    assert Adjust((S, -S, 0)).decode([OK, NOW, S, -S // 4, 0, 1, 2, 3]) == AdjustReply(
        NOW, (S, -S // 4, 0), (1, 2, 3)
    )
    assert Lower((S,)).decode([OK, NOW, RATE_ONE]) == Ack(NOW, (RATE_ONE,))
    assert Pause(S).decode([OK, NOW, NOW + 60 * S]) == PauseReply(NOW, NOW + 60 * S, ())
    assert ReadState(2).decode([OK, NOW, 0, NOW + S, NOW - S, -1, RATE_ONE, 10_000]) == (
        StateReply(NOW, 0, NOW + S, (NOW - S, -1), (RATE_ONE, 10_000))
    )
    assert Cut(1, 500_000, 10_000, S, S).decode([OK, NOW, 1, 500_000]) == CutReply(
        NOW, True, (500_000,)
    )
    assert Grow(1, 10_000, S).decode([OK, NOW, 510_000]) == Ack(NOW, (510_000,))
    # What the fleet learned: metrics as bytes or str (a client that decodes responses).
    assert Learn((), S).decode([OK, NOW, 2, b"tokens", 10_000, 60 * S, "requests", 1, S]) == (
        LearnReply(NOW, (LearnedSpec("tokens", 10_000, 60 * S), LearnedSpec("requests", 1, S)), ())
    )
    assert Learn((), S).decode([OK, NOW, 0]) == LearnReply(NOW, (), ())


def test_a_foreign_learned_record() -> None:
    """The learned limits' key is the one after the limits passed (none): index 1."""
    assert Learn((), S).decode([FOREIGN, NOW, 1, b"string"]) == Foreign(NOW, 1, "string")


@pytest.mark.parametrize(
    "request_",
    [
        Acquire((S,), (BookingRequest(-1, (S,)),)),
        Unbook(NOW, 0, (UnbookLimit(S, NOW + S, -1, -1, -1),)),
        Adjust((S,)),
        Lower((S,)),
        ReadState(1),
        Cut(1, 500_000, 10_000, S, S),
        Grow(1, 10_000, S),
    ],
    ids=lambda request: type(request).__name__,
)
@pytest.mark.parametrize("kind", [b"string", "list"])
def test_a_foreign_key_whatever_the_request(request_: Any, kind: bytes | str) -> None:
    """Any operation may find a key this module did not write: {FOREIGN, now, index, type},
    with the type as bytes or str (a client that decodes responses)."""
    assert request_.decode([FOREIGN, NOW, 1, kind]) == Foreign(
        NOW, 1, "string" if kind == b"string" else "list"
    )
    assert request_.decode([FOREIGN, NOW, 0, kind]).key == 0  # the gate


def test_a_foreign_gate_on_a_pause() -> None:
    assert Pause(S).decode([FOREIGN, NOW, 0, b"hash"]) == Foreign(NOW, 0, "hash")


@st.composite
def acquire_and_reply(draw: st.DrawFn) -> tuple[Acquire, AcquireReply]:
    """A batch request and outcomes that the script could answer for it."""
    n = draw(st.integers(0, 3))
    taus = tuple(draw(st.lists(st.integers(1, 10 * S), min_size=n, max_size=n)))
    requests, outcomes = [], []
    for _ in range(draw(st.integers(1, 5))):
        incs = tuple(draw(st.integers(0, tau + 1)) for tau in taus)
        max_wait = draw(st.sampled_from([-1, 0, S]))
        choices = ["booked"]
        if max_wait >= 0:
            choices.append("late")
        if any(inc > tau for inc, tau in zip(incs, taus, strict=True)):
            choices = ["exceeds"]  # the script checks the burst first
        choices.append("range")
        choice = draw(st.sampled_from(choices))
        outcome: Outcome
        if choice == "booked":
            wait = draw(st.integers(0, 10 * S if max_wait < 0 else max_wait))
            start = NOW + wait
            parts: list[int] = []
            for inc in incs:
                if inc:
                    parts.append(draw(st.sampled_from([-1, NOW - S, INT64_MIN])))
                    parts.append(draw(st.sampled_from([-1, NOW])))
                    parts.append(draw(st.sampled_from([-1, 0, NOW])))
                    parts.append(start + inc)
                else:
                    parts += [0, 0, 0, 0]
            outcome = Booked(
                wait, start, draw(st.sampled_from([0, INT64_MIN, NOW, start])), incs, tuple(parts)
            )
        elif choice == "late":
            outcome = Late(draw(st.integers(max_wait + 1, MAX_US - NOW)))
        elif choice == "exceeds":
            outcome = Exceeds(draw(st.sampled_from([i for i in range(n) if incs[i] > taus[i]])))
        else:
            outcome = OutOfRange(draw(st.sampled_from([None, *(i for i in range(n) if incs[i])])))
        requests.append(BookingRequest(max_wait, incs))
        outcomes.append(outcome)
    rates = tuple(draw(st.lists(st.integers(1, RATE_ONE), min_size=n, max_size=n)))
    return Acquire(taus, tuple(requests)), AcquireReply(NOW, tuple(outcomes), rates)


@given(acquire_and_reply())
def test_acquire_replies_round_trip(case: tuple[Acquire, AcquireReply]) -> None:
    """Whatever the script may answer for a batch, laid out as it writes it, decodes to the
    records it came from; a booking gives back the limits its request charged, in order, with
    what the script wrote for each (the unbook arguments the Lua reads)."""
    request, expected = case
    decoded = request.decode(acquire_reply(request, list(expected.outcomes), list(expected.rates)))
    assert decoded == expected
    assert isinstance(decoded, AcquireReply)
    for asked, outcome in zip(request.requests, decoded.outcomes, strict=True):
        if isinstance(outcome, Booked):
            args = Unbook.of(outcome).encode()
            charged = [(i, inc) for i, inc in enumerate(asked.incs) if inc]
            assert args[:4] == ["unbook", len(charged), outcome.start, outcome.prior_last]
            for k, (i, inc) in enumerate(charged):
                part = outcome.limits[i]
                assert part is not None
                assert args[4 + 5 * k : 9 + 5 * k] == [
                    inc,
                    part.tat,
                    part.prior_tat,
                    part.prior_floor,
                    part.prior_booked,
                ]


# -- malformed replies ------------------------------------------------------------------------

ONE = Acquire((2 * S,), (BookingRequest(S, (S,)),))
ONE_BOOKED = [OK, NOW, OK, 0, NOW, 0, -1, -1, -1, NOW + S, RATE_ONE]


def malformed(request: Any, reply: object) -> str:
    with pytest.raises(MalformedReply) as raised:
        request.decode(reply)
    return str(raised.value)


def with_item(reply: list[Any], at: int, value: object) -> list[Any]:
    changed = list(reply)
    changed[at] = value
    return changed


def test_the_valid_reply_of_the_malformed_cases_decodes() -> None:
    assert ONE.decode(ONE_BOOKED) == AcquireReply(
        NOW, (Booked(0, NOW, 0, (S,), (-1, -1, -1, NOW + S)),), (RATE_ONE,)
    )


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            ONE_BOOKED[:-1],
            "the reply must have 11 items (OK, now, 8 per request, a rate per limit), got 10",
        ),
        (
            [*ONE_BOOKED, 0],
            "the reply must have 11 items (OK, now, 8 per request, a rate per limit), got 12",
        ),
        ([], "the reply must have at least 2 items, got []"),
        ([OK], "the reply must have at least 2 items, got [0]"),
        (b"OK", "the reply must be an array, got b'OK'"),
        (None, "the reply must be an array, got None"),
        ({"ok": 1}, "the reply must be an array, got {'ok': 1}"),
        (with_item(ONE_BOOKED, 0, 9), "item 0 (the code) must be OK (0), got 9"),
        (with_item(ONE_BOOKED, 0, "0"), "item 0 (the code) must be OK (0), got '0'"),
        (with_item(ONE_BOOKED, 1, -1), f"item 1 (now) must be an integer in [0, {MAX_US}], got -1"),
        (
            with_item(ONE_BOOKED, 1, 2**63),
            f"item 1 (now) must be an integer in [0, {MAX_US}], got {2**63}",
        ),
        (
            with_item(ONE_BOOKED, 1, float(NOW)),
            f"item 1 (now) must be an integer in [0, {MAX_US}], got {float(NOW)!r}",
        ),
        (
            with_item(ONE_BOOKED, 2, 7),
            "item 2 (request 0: the code) must be OK, LATE, EXCEEDS or RANGE (0, 1, 2, 4), got 7",
        ),
        (
            with_item(ONE_BOOKED, 2, FOREIGN),
            "item 2 (request 0: the code) must be OK, LATE, EXCEEDS or RANGE (0, 1, 2, 4), got 3",
        ),
        (
            with_item(ONE_BOOKED, 3, -5),
            f"item 3 (request 0: the wait) must be an integer in [0, {S}], got -5",
        ),
        (
            with_item(ONE_BOOKED, 3, S + 1),
            f"item 3 (request 0: the wait) must be an integer in [0, {S}], got {S + 1}",
        ),
        (
            with_item(ONE_BOOKED, 3, True),
            f"item 3 (request 0: its wait or index) must be an integer in [{INT64_MIN}, {MAX_US}], "
            "got True",
        ),
        (
            with_item(ONE_BOOKED, 4, NOW + 1),
            f"item 4 (request 0: the start) must be an integer in [{NOW}, {NOW}], got {NOW + 1}",
        ),
        (
            with_item(ONE_BOOKED, 5, MAX_US + 1),
            f"item 5 (request 0: the gate's prior l) must be an integer in "
            f"[{INT64_MIN}, {MAX_US}], got {MAX_US + 1}",
        ),
        (with_item(ONE_BOOKED, 6, INT64_MIN - 1), "item 6 (request 0, limit 0: prior t)"),
        (with_item(ONE_BOOKED, 7, None), "item 7 (request 0, limit 0: prior f) must be an integer"),
        (with_item(ONE_BOOKED, 8, b"1"), "item 8 (request 0, limit 0: prior u) must be an integer"),
        (
            with_item(ONE_BOOKED, 9, NOW - 1),
            f"item 9 (request 0, limit 0: its new TAT) must be an integer in "
            f"[{NOW}, {MAX_US}], got {NOW - 1}",
        ),
        (
            with_item(ONE_BOOKED, 10, 0),
            f"item 10 (the rate of limit 0) must be an integer in [1, {RATE_ONE}], got 0",
        ),
        (
            with_item(ONE_BOOKED, 10, RATE_ONE + 1),
            f"item 10 (the rate of limit 0) must be an integer in [1, {RATE_ONE}], "
            f"got {RATE_ONE + 1}",
        ),
        (
            [OK, NOW, LATE, S, 0, 0, 0, 0, 0, 0, RATE_ONE],
            f"item 3 (request 0: the wait) must be an integer in [{S + 1}, {MAX_US}], got {S}",
        ),
        (
            [OK, NOW, LATE, 2 * S, 0, 0, 0, 9, 0, 0, RATE_ONE],
            "item 7 (request 0: not booked) must be 0, got 9",
        ),
        (
            [OK, NOW, EXCEEDS, 1, 0, 0, 0, 0, 0, 0, RATE_ONE],
            f"item 2 (request 0): EXCEEDS on limit 0, but its charge {S} is within the "
            f"burst {2 * S}",
        ),
        (
            [OK, NOW, EXCEEDS, 2, 0, 0, 0, 0, 0, 0, RATE_ONE],
            "item 3 (request 0: the limit exceeded) must be an integer in [1, 1], got 2",
        ),
        (
            [OK, NOW, RANGE, 2, 0, 0, 0, 0, 0, 0, RATE_ONE],
            "item 3 (request 0: where it is out of range) must be an integer in [0, 1], got 2",
        ),
        (
            [FOREIGN, NOW, 2, b"list"],
            "item 2 (the index of the foreign key) must be an integer in [0, 1], got 2",
        ),
        ([FOREIGN, NOW, 1], "a FOREIGN reply must have 4 items, got 3"),
        ([FOREIGN, NOW, 1, 7], "item 3 (the foreign key's type) must be a string, got 7"),
    ],
)
def test_a_malformed_acquire_reply_is_refused(reply: object, message: str) -> None:
    got = malformed(ONE, reply)
    assert got.startswith("malformed reply to acquire: ")
    assert message in got


def test_late_and_range_must_fit_the_request() -> None:
    no_wait = Acquire((2 * S, 2 * S), (BookingRequest(-1, (S, 0)),))
    padding = [0] * 10
    assert malformed(no_wait, [OK, NOW, LATE, S, *padding, 1, 1]) == (
        "malformed reply to acquire: item 2 (request 0): LATE, but it has no max wait"
    )
    assert malformed(no_wait, [OK, NOW, RANGE, 2, *padding, 1, 1]) == (
        "malformed reply to acquire: item 2 (request 0): RANGE on limit 1, which it does not use"
    )
    assert no_wait.decode([OK, NOW, RANGE, 0, *padding, 1, 1]) == AcquireReply(
        NOW, (OutOfRange(None),), (1, 1)
    )
    booked = [OK, NOW, OK, 0, NOW, 0, -1, -1, -1, NOW + S, 5, 0, 0, 0, 1, 1]
    assert malformed(no_wait, booked) == (
        "malformed reply to acquire: item 10 (request 0, limit 1: not used) must be 0, got 5"
    )


@pytest.mark.parametrize(
    ("request_", "reply", "message"),
    [
        (
            Adjust((S,)),
            [OK, NOW, S - 1, 1],
            f"item 2 (what limit 0 applied) must be an integer in [{S}, {S}], got {S - 1}",
        ),
        (
            Adjust((-S,)),
            [OK, NOW, -S - 1, 1],
            f"item 2 (what limit 0 applied) must be an integer in [{-S}, 0], got {-S - 1}",
        ),
        (
            Adjust((-S,)),
            [OK, NOW, 1, 1],
            f"item 2 (what limit 0 applied) must be an integer in [{-S}, 0], got 1",
        ),
        (
            Adjust((0,)),
            [OK, NOW, 1, 1],
            "item 2 (what limit 0 applied) must be an integer in [0, 0], got 1",
        ),
        (
            Adjust((S, S)),
            [OK, NOW, S, S, 1],
            "the reply must have 6 items (OK, now, one per limit, a rate per limit), got 5",
        ),
        (
            Unbook(NOW, 0, (UnbookLimit(S, NOW + S, -1, -1, -1),)),
            [OK, NOW, 2, 1],
            "item 2 (restored exactly (1) or not (0)) must be an integer in [0, 1], got 2",
        ),
        (
            Unbook(NOW, 0, (UnbookLimit(S, NOW + S, -1, -1, -1),)),
            [OK, NOW, 0, S + 1, 1],
            f"item 3 (the credit of limit 0) must be an integer in [0, {S}], got {S + 1}",
        ),
        (
            Unbook(NOW, 0, (UnbookLimit(S, NOW + S, -1, -1, -1),)),
            [OK, NOW, 0, 1],
            "the reply must have 5 items (OK, now, 0, a credit per limit, a rate per limit), got 4",
        ),
        (
            Unbook(NOW, 0, (UnbookLimit(S, NOW + S, -1, -1, -1),)),
            [OK, NOW],
            "the reply must have 4 items (OK, now, 1, a rate per limit), got 2",
        ),
        (
            Unbook(NOW, 0, (UnbookLimit(S, NOW + S, -1, -1, -1),)),
            [OK, NOW, 1, S, 1],
            "the reply must have 4 items (OK, now, 1, a rate per limit), got 5",
        ),
        (
            Pause(S),
            [OK, NOW, NOW],
            f"item 2 (when the gate opens) must be an integer in [{NOW + S}, {MAX_US}], got {NOW}",
        ),
        (
            Pause(S),
            [OK, NOW, NOW + S, 1],
            "the reply must have 3 items (OK, now, when the gate opens), got 4",
        ),
        (
            ReadState(1),
            [OK, NOW, 0, 0, -1],
            "the reply must have 6 items (OK, now, p, l, a TAT per limit, a rate per limit), got 5",
        ),
        (
            ReadState(1),
            [OK, NOW, 0, 0, "-1", 1],
            f"item 4 (the TAT of limit 0) must be an integer in [{INT64_MIN}, {MAX_US}], got '-1'",
        ),
        (
            Cut(1, 1, 1, 1, 1),
            [OK, NOW, 2, 1],
            "item 2 (cut (1) or not (0)) must be an integer in [0, 1], got 2",
        ),
        (
            Cut(1, 1, 1, 1, 1),
            [OK, NOW, 1, -1],
            f"item 3 (the rate of limit 0) must be an integer in [1, {RATE_ONE}], got -1",
        ),
        (
            Grow(2, 1, 1),
            [OK, NOW, 1],
            "the reply must have 4 items (OK, now, a rate per limit), got 3",
        ),
        (
            Learn((LearnedSpec("tokens", 1, S),), S),
            [OK, NOW, 0],
            "item 2 (the number of limits) must be an integer in [1, 1000000], got 0",
        ),
        (
            Learn((), S),
            [OK, NOW, 1, b"tokens", 10],
            "the reply must have 6 items (OK, now, m, then m times metric, limit, per), got 5",
        ),
        (
            Learn((), S),
            [OK, NOW, 1, 7, 10, S],
            "item 3 (the metric of learned limit 0) must be a string, got 7",
        ),
        (
            Learn((), S),
            [OK, NOW, 1, "tokens", 0, S],
            f"item 4 (the limit of learned limit 0) must be an integer in [1, {MAX_US}], got 0",
        ),
        (
            Learn((), S),
            [OK, NOW, 1, "tokens", 10, SPAN_US + 1],
            f"item 5 (the period of learned limit 0) must be an integer in [1, {SPAN_US}], "
            f"got {SPAN_US + 1}",
        ),
        (
            Learn((), S),
            [OK, NOW],
            "the reply must have at least 3 items, got 2",
        ),
        (
            Lower((S,)),
            [OK, -NOW, 1],
            f"item 1 (now) must be an integer in [0, {MAX_US}], got {-NOW}",
        ),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, list | str) else None,
)
def test_a_malformed_reply_to_any_request_is_refused(
    request_: Any, reply: list[Any], message: str
) -> None:
    assert malformed(request_, reply) == f"malformed reply to {request_.op}: {message}"


def test_a_long_value_is_shown_cut() -> None:
    got = malformed(Lower((S,)), [OK, "x" * 500, 1])
    assert re.fullmatch(
        r"malformed reply to limit: item 1 \(now\) must be an integer in \[0, \d+\], "
        r"got 'x{76}\.\.\.",
        got,
    )


# -- the shell --------------------------------------------------------------------------------


class ScriptedClient:
    """Stands for a coredis client: its one script answers each call with the next reply."""

    def __init__(self, *replies: object) -> None:
        self.replies = list(replies)
        self.calls: list[list[Any]] = []

    def register_script(self, script: str) -> Any:
        async def call(*, keys: list[str], args: list[Any]) -> object:
            self.calls.append(args)
            return self.replies.pop(0)

        return call


@pytest.mark.anyio
async def test_the_shell_raises_a_malformed_reply_as_a_backend_error() -> None:
    """No server: a reply that does not fit is RedisBackendError naming the throttle, the
    operation and the item, never an IndexError from deep inside the shell."""
    start_mismatch = [OK, NOW, OK, S, NOW, 0, -1, -1, -1, NOW + 2 * S, RATE_ONE]
    client = ScriptedClient(start_mismatch, [OK, NOW, 0, 0, RATE_ONE])
    throttle = RedisThrottle(cast("Any", client), "fake", requests=GCRALimit(1, burst=2))
    with anyio.fail_after(5), pytest.raises(RedisBackendError) as raised:
        await throttle.acquire(requests=1)
    assert str(raised.value) == (
        "Redis answered the throttle script for 'fake' (acquire) with a malformed reply: "
        f"item 4 (request 0: the start) must be an integer in [{NOW + S}, {NOW + S}], got {NOW}"
    )
    assert client.calls == [["acquire", 1, 1, 2 * S, -1, S]]
    with anyio.fail_after(5), pytest.raises(RedisBackendError) as raised:
        await throttle.state()
    assert str(raised.value) == (
        "Redis answered the throttle script for 'fake' (state) with a malformed reply: "
        "the reply must have 6 items (OK, now, p, l, a TAT per limit, a rate per limit), got 5"
    )
    assert throttle.statistics().in_flight == 0


def test_an_item_of_a_later_request_is_named() -> None:
    """The whole batch is checked at once; the first item that does not fit is named by its
    place: the request, the limit, the field."""
    two = Acquire((2 * S,), (BookingRequest(-1, (S,)), BookingRequest(-1, (S,))))
    first = [OK, 0, NOW, 0, -1, -1, -1, NOW + S]
    second = [OK, S, NOW + S, NOW, NOW + S, "x", NOW, NOW + 2 * S]
    assert malformed(two, [OK, NOW, *first, *second, RATE_ONE]) == (
        "malformed reply to acquire: item 15 (request 1, limit 0: prior f) must be an integer "
        f"in [{INT64_MIN}, {MAX_US}], got 'x'"
    )
    second[5] = NOW
    second[7] = NOW
    assert malformed(two, [OK, NOW, *first, *second, RATE_ONE]) == (
        "malformed reply to acquire: item 17 (request 1, limit 0: its new TAT) must be an "
        f"integer in [{NOW + S}, {MAX_US}], got {NOW}"
    )
