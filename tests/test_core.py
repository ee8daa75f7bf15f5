"""The throttle's rules on numbers (``throttle_trio._core``): no event loop, no clock, no store.

What both shells decide is decided here; the shells' tests (tests/test_throttle.py,
tests/redis/, tests/redis/test_both_shells.py) check that they apply the decisions.  Every
``now`` below is a plain number.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttle_trio import CostExceedsCapacity
from throttle_trio._core import (
    CONCURRENCY,
    PAUSE,
    Adjustment,
    Booking,
    Ledger,
    ReservationError,
    ReservationState,
    ThrottleCore,
)
from throttle_trio._headers import LimitReport, RateLimitHeaders

CAPACITY = {"requests": 10.0, "tokens": 1000.0, "tokens_per_day": 50_000.0}


def make_core(
    *, refund: bool = True, learn: bool = False, names: tuple[str, ...] = ("requests", "tokens")
) -> ThrottleCore[Ledger]:
    return ThrottleCore((Ledger(name) for name in names), refund_unused=refund, learn_limits=learn)


def capacity(limit: Ledger) -> float:
    return CAPACITY[limit.name]


def report(**remaining: float | None) -> RateLimitHeaders:
    return RateLimitHeaders(
        limits={
            m: LimitReport(limit=None, remaining=r, reset_after=None) for m, r in remaining.items()
        },
        retry_after=None,
        should_retry=None,
    )


def admit(
    core: ThrottleCore[Ledger], now: float = 0.0, *, resumed: float | None = None, **costs: float
) -> Booking:
    booking = Booking(dict(costs), ticket=0)
    core.admitted_now(booking, now, arrived=now)
    if resumed is not None:
        core.resumed(booking, resumed)
    return booking


# -- rule 1: costs ----------------------------------------------------------------------------


def test_costs_are_checked_by_name_sign_and_capacity() -> None:
    core = make_core(names=("requests", "tokens", "tokens_per_day"))
    assert core.check_costs({"requests": 1, "tokens": 900}, capacity) == {
        "requests": 1,
        "tokens": 900,
    }
    with pytest.raises(
        ValueError, match="unknown cost 'images': this throttle counts requests, tokens"
    ):
        core.check_costs({"images": 1}, capacity)
    with pytest.raises(ValueError, match="tokens"):
        core.check_costs({"tokens": -1}, capacity)
    with pytest.raises(ValueError, match="tokens"):
        core.check_costs({"tokens": math.nan}, capacity)
    with pytest.raises(CostExceedsCapacity, match=r"capacity 1000\.0 of limit 'tokens', got 1001"):
        core.check_costs({"tokens": 1001}, capacity)


def test_a_learning_core_accepts_the_metrics_headers_report_before_it_counts_them() -> None:
    core = make_core(learn=True, names=())
    assert core.accepts("tokens")
    assert core.accepts("input_tokens")
    assert not core.accepts("images")
    assert not make_core(names=()).accepts("tokens")


# -- rule 2: a reservation ends once ----------------------------------------------------------


def test_a_booking_is_pending_then_active_then_released() -> None:
    core = make_core()
    booking = Booking({"requests": 1.0}, ticket=3)
    assert booking.state is ReservationState.PENDING
    with pytest.raises(
        ReservationError, match=r"settle\(\) called on a reservation before it was admitted"
    ):
        booking.check_settle()
    core.admitted_now(booking, 5.0, arrived=2.0)
    assert booking.state.value == "active"
    assert (booking.admitted_at, core.admitted, core.wait_time) == (5.0, 1, 3.0)
    booking.check_settle()
    booking.settled = True
    with pytest.raises(ReservationError, match="called twice"):
        booking.check_settle()
    booking.state = ReservationState.RELEASED
    with pytest.raises(
        ReservationError, match=r"cancel\(\) called on a reservation after it was released"
    ):
        booking.check_active("cancel")


def test_an_undone_admission_leaves_no_trace_and_names_every_credit() -> None:
    core = make_core()
    booking = Booking({"requests": 1.0, "tokens": 300.0}, ticket=0)
    core.admitted_now(booking, 4.0, arrived=1.0)
    credits = core.undone(booking, arrived=1.0)
    assert sorted((c.limit.name, c.delta) for c in credits) == [
        ("requests", -1.0),
        ("tokens", -300.0),
    ]
    assert (core.admitted, core.wait_time) == (0, 0.0)
    for limit in core.limits.values():
        assert (limit.admitted_cost, limit.unsent, limit.net_charged) == (0, 0, 0)
    assert booking.state is ReservationState.RELEASED


# -- marks: what the server had counted when a request reached it ------------------------------


def test_marks_follow_the_order_in_which_admitted_tasks_run_again() -> None:
    """Admitted A (100) then B (200); B's task runs first, then A's.  A's request reached the
    server after B's: its mark counts B's 200 as sent before it, not A's own cost."""
    core = make_core()
    a = admit(core, tokens=100)
    b = admit(core, tokens=200)
    tokens = core.limits["tokens"]
    assert tokens.unsent == 300
    core.resumed(b, 1.0)
    assert b.marks["tokens"] == 300 - 100  # A was admitted, not sent yet
    core.resumed(a, 2.0)
    assert a.marks["tokens"] == 300
    assert tokens.unsent == 0


# -- rule 3: settle, cancel, reject -----------------------------------------------------------


def test_settling_above_the_estimate_charges_an_overdraft_and_below_refunds_if_refunding() -> None:
    for refund, expected in ((True, [("tokens", -200.0)]), (False, [])):
        core = make_core(refund=refund)
        booking = admit(core, requests=1, tokens=500)
        checked, changes = core.adjustments(booking, {"tokens": 300}, refund=refund)
        assert checked == {"tokens": 300}
        assert [(c.limit.name, c.delta) for c in changes] == expected
    core = make_core()
    booking = admit(core, requests=1, tokens=500)
    _, changes = core.adjustments(booking, {"tokens": 800}, refund=True)
    assert [(c.limit.name, c.delta) for c in changes] == [("tokens", 300.0)]


def test_applied_changes_are_counted_with_what_did_not_fit() -> None:
    core = make_core()
    booking = admit(core, tokens=500)
    tokens = core.limits["tokens"]
    core.applied(Adjustment(tokens, 300.0), 300.0)
    core.applied(Adjustment(tokens, -200.0), 150.0)  # the store credited only 150
    assert (tokens.overdraft, tokens.refunded, tokens.dropped) == (300.0, 150.0, 50.0)
    assert tokens.net_charged == 500 + 300 - 150
    core.settled(booking, {"tokens": 600.0}, refund=True)
    assert booking.costs["tokens"] == 600.0


def test_a_usage_is_checked_before_anything_changes() -> None:
    core = make_core()
    booking = admit(core, tokens=500)
    with pytest.raises(
        ValueError, match="unknown usage 'images': this throttle counts requests, tokens"
    ):
        core.adjustments(booking, {"tokens": 1, "images": 2}, refund=True)
    with pytest.raises(ValueError, match="tokens"):
        core.adjustments(booking, {"tokens": -5}, refund=True)
    assert booking.costs == {"tokens": 500}


def test_a_limit_learned_after_the_admission_is_not_adjusted() -> None:
    core = make_core(names=("requests",))
    booking = admit(core, requests=1)
    core.add_limit(Ledger("tokens"))
    _, changes = core.adjustments(booking, {"tokens": 50}, refund=True)
    assert changes == []


def test_a_rejected_attempt_keeps_only_what_it_keeps() -> None:
    booking = Booking({"requests": 1.0, "tokens": 400.0}, ticket=0)
    assert ThrottleCore.all_but(booking, {"requests": 1}) == {"requests": 1, "tokens": 0.0}


# -- rule 4: header feedback --------------------------------------------------------------------


def test_a_report_is_carried_to_now_and_needs_a_second_to_agree() -> None:
    """The arithmetic the local throttle used to test with an instrumented clock.

    A admitted at 0 (100 tokens), its task ran again at 1; B (120) admitted and sent after.
    At 3 the response to A says 500 left: the server's bucket holds 500 - 120 + 10 * 2 = 400
    now.  One report is not enough.  B's response says 390 left when B arrived: 410 now.  The
    limit is lowered to the higher of the two levels (the smaller cut).
    """
    core = make_core()
    a = admit(core, tokens=100, resumed=1.0)
    b = admit(core, 1.0, tokens=120, resumed=1.0)
    first = core.feedback(report(tokens=500), a, 3.0, lambda limit: 10.0)
    assert first == []  # one report: wait for a second
    # B's response: 390 left when B arrived (after A's report was counted), nothing since.
    second = core.feedback(report(tokens=390), b, 3.0, lambda limit: 10.0)
    assert [t.limit.name for t in second] == ["tokens"]
    assert second[0].level == pytest.approx(410.0)


def test_the_first_report_of_a_limit_that_charged_nothing_is_taken_as_it_is() -> None:
    core = make_core()
    targets = core.feedback(report(requests=3, tokens=None), None, 0.0, lambda limit: math.nan)
    assert [(t.limit.name, t.level) for t in targets] == [("requests", 3)]


def test_a_report_without_a_booking_is_taken_at_its_word_and_unknown_metrics_are_ignored() -> None:
    core = make_core()
    admit(core, requests=1)
    assert core.feedback(report(requests=5, images=1), None, 0.0, lambda limit: math.nan) == []
    targets = core.feedback(report(requests=6), None, 0.0, lambda limit: math.nan)
    assert [(t.limit.name, t.level) for t in targets] == [("requests", 6)]


def test_the_reports_of_an_opening_wave_cut_nothing() -> None:
    """A shell marked the limit's opening wave (its first admission at 0, the first response
    at 2): the reports of requests sent in it cut nothing however low and however many agree;
    the same reports for requests admitted after the wave do (two agreeing, as always).
    """
    core = make_core()
    tokens = core.limits["tokens"]
    wave = [admit(core, 0.0, tokens=100, resumed=0.0) for _ in range(3)]
    tokens.wave = (0.0, 2.0)
    for booking in wave:
        assert core.feedback(report(tokens=10), booking, 2.0, lambda limit: 10.0) == []
    assert math.isnan(tokens.pending.level)  # not even kept for the next report to confirm
    after = [admit(core, 2.5, tokens=100, resumed=2.5) for _ in range(2)]
    assert core.feedback(report(tokens=10), after[0], 3.0, lambda limit: 10.0) == []
    targets = core.feedback(report(tokens=10), after[1], 3.0, lambda limit: 10.0)
    assert [t.limit.name for t in targets] == ["tokens"]


def test_a_limit_admitted_from_full_refills_from_the_first_request_on_the_wire() -> None:
    """A booking admitted from a full limit (leaving 600 of 1000): the first report that a
    request admitted since is on the wire lowers the limit to 600 less what was charged
    since, once; a request admitted before does not; one that ends unreported cancels it."""
    core = make_core()
    tokens = core.limits["tokens"]
    earlier = admit(core, 0.0, tokens=100)
    opening = admit(core, 1.0, tokens=400)
    core.admitted_from_full(tokens, opening, 600.0)
    later = admit(core, 1.0, tokens=50)
    assert core.on_the_wire(earlier) == []
    (target,) = core.on_the_wire(later)
    assert (target.limit.name, target.level) == ("tokens", 550.0)
    assert core.on_the_wire(opening) == []  # once
    core.admitted_from_full(tokens, later, 550.0)
    core.ended(earlier)  # admitted before: nothing changes
    assert [t.level for t in core.on_the_wire(later)] == [550.0]
    core.admitted_from_full(tokens, later, 550.0)
    core.ended(later)  # ended without a report: the server may have counted it
    assert core.on_the_wire(later) == []


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=12))
def test_no_target_is_below_either_of_two_consecutive_reports(levels: list[float]) -> None:
    core = make_core()
    admit(core, requests=1)
    previous = math.nan
    for level in levels:
        targets = core.feedback(report(requests=level), None, 0.0, lambda limit: math.nan)
        if targets:
            (target,) = targets
            assert target.level >= level
            assert target.level >= previous
        else:
            assert math.isnan(previous)
        previous = level


# -- rule 5: a 429 ------------------------------------------------------------------------------


def test_a_429_charges_the_shortfall_it_proves_at_once() -> None:
    core = make_core()
    booking = admit(core, requests=1, tokens=500)
    charges = core.shortfalls(report(tokens=120, requests=4), booking)
    assert [(c.limit.name, c.delta) for c in charges] == [("tokens", 380.0)]
    core.add_limit(Ledger("tokens_per_day"))  # learned after: not charged at admission
    assert core.shortfalls(report(tokens_per_day=0), booking) == []


# -- rule 6: learned limits ---------------------------------------------------------------------


def test_a_learning_core_learns_a_limit_per_period_the_headers_imply() -> None:
    core = make_core(learn=True, names=("requests",))
    headers = RateLimitHeaders(
        limits={
            "requests": LimitReport(limit=60, remaining=10, reset_after=5),
            "tokens": LimitReport(limit=1000, remaining=400, reset_after=36),
            "input_tokens": LimitReport(limit=0, remaining=0, reset_after=None),
        },
        retry_after=None,
        should_retry=None,
    )
    (learned,) = core.to_learn(headers)
    assert (learned.metric, learned.limit) == ("tokens", 1000)
    assert learned.per == pytest.approx(60.0)
    assert make_core(names=("requests",)).to_learn(headers) == []
    # A metric counted under another name (requests_per_minute counts requests) is counted.
    counted = make_core(learn=True, names=("requests_per_minute", "tokens_per_day"))
    assert counted.to_learn(headers) == []


# -- statistics ---------------------------------------------------------------------------------


def test_binding_time_goes_to_what_held_the_first_waiter() -> None:
    core = make_core()
    core.note_binding(0.0, PAUSE)
    core.note_binding(2.0, CONCURRENCY)
    core.note_binding(5.0, "tokens")
    core.note_binding(9.5, None)
    core.note_binding(20.0, None)  # nobody waited: nothing counted
    assert (core.pause_wait, core.concurrency_wait, core.limits["tokens"].wait_time) == (
        2.0,
        3.0,
        4.5,
    )


# -- layering -------------------------------------------------------------------------------------


def test_the_core_imports_no_event_loop_and_no_store() -> None:
    """Sans-IO: the core imports only pure modules (no anyio, no policy objects, no Redis)."""
    source = Path(__file__).parents[1] / "throttle_trio" / "_core.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert imported <= {
        "__future__",
        "enum",
        "math",
        "dataclasses",
        "typing",
        "collections.abc",
        "._exceptions",
        "._feedback",
        "._reserve",
        "._validate",
        "._headers",  # under TYPE_CHECKING only: the report's type
    }
