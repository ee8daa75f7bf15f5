"""SlidingWindow.defer: an admission reported on the wire late counts from then.  Synchronous,
exact (binary fractions).

A provider counts its windows from when requests arrive; a throttle that learns a request left
only at ``now`` (``Reservation.sent``) moves its units there, so they leave the window later.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from throttle_trio import SlidingWindow, TokenBucket


def test_a_deferred_admission_leaves_the_window_later() -> None:
    window = SlidingWindow(limit=10, window=1.0)
    window.consume(4, 0.0)
    window.consume(3, 0.125)
    window.defer(4, 0.0, 0.25)  # the first request reached the wire a quarter second late
    assert window.available(0.25) == 3  # nothing more is admitted meanwhile
    assert window.available(1.0) == 3  # without the move, 4 would have left at 1.0
    assert window.ready_at(4, 1.0) == 1.125
    assert window.available(1.125) == 6
    assert window.available(1.25) == 10


def test_never_before_the_admission_and_never_more_than_the_entry_holds() -> None:
    window = SlidingWindow(limit=10, window=1.0)
    window.consume(4, 0.5)
    window.defer(4, 0.5, 0.25)  # before its admission (a clock stepped back): nothing moves
    window.defer(0, 0.5, 0.75)
    assert window.ready_at(10, 0.5) == 1.5
    window.defer(9, 0.5, 0.75)  # more than was admitted then: only the 4 move
    assert window.available(0.75) == 6
    assert window.ready_at(10, 0.75) == 1.75
    window.defer(4, 0.5, 0.625)  # a second, earlier report: counted from 0.75 already
    assert window.ready_at(10, 0.75) == 1.75


def test_units_that_left_the_window_before_the_report_count_again() -> None:
    """Admitted at 0 but sent at 1.5, after its units left the window: the provider counts
    it from 1.5, so the window holds it again (above the limit for a while: a debt)."""
    window = SlidingWindow(limit=4, window=1.0)
    window.consume(4, 0.0)
    window.consume(4, 1.0)
    window.defer(4, 0.0, 1.5)
    assert window.available(1.5) == -4
    assert window.available(2.0) == 0
    assert window.available(2.5) == 4


def test_a_refund_after_a_defer_takes_the_units_where_they_moved() -> None:
    window = SlidingWindow(limit=10, window=1.0)
    window.consume(4, 0.0)
    window.consume(2, 0.125)
    window.defer(4, 0.0, 0.25)
    assert window.refund_sent(3, 0.5, admitted_at=0.0, sent_at=0.25) == 0
    assert window.available(0.5) == 7
    assert window.available(1.125) == 9  # the 2 of 0.125 leave at their own time
    assert window.available(1.25) == 10
    # Refunded from its admission instead, it finds nothing there: dropped, never another's.
    assert window.refund(1, 0.5, admitted_at=0.0) == 1
    assert window.available(0.5) == 7


def test_a_refund_after_a_report_leaves_the_next_admission_whole() -> None:
    """A rejected request's refund takes its own units, not those of the one admitted after
    it: that one's report then moves all of its units, and the window holds what the
    provider does."""
    window = SlidingWindow(limit=100, window=1.0)
    window.consume(5, 0.125)  # A
    window.consume(10, 0.25)  # B
    window.defer(5, 0.125, 0.5)  # A on the wire
    assert window.refund_sent(5, 0.5625, admitted_at=0.125, sent_at=0.5) == 0  # A rejected
    window.defer(10, 0.25, 0.625)  # B on the wire
    assert window.available(1.5625) == 90  # the provider holds B until 1.625
    assert window.available(1.625) == 100


def test_a_refund_of_an_admission_that_left_the_window_is_still_dropped() -> None:
    window = SlidingWindow(limit=10, window=1.0)
    window.consume(4, 0.0)
    window.consume(3, 0.5)
    assert window.refund(4, 1.25, admitted_at=0.0) == 4  # gone: nothing to give back
    assert window.available(1.25) == 7
    assert window.dropped == 4


def test_a_report_in_the_first_window_never_comes_before_its_warm_up_record() -> None:
    """A report says when the request left, not when the provider read it: in the first
    window the units move to the send only when it comes after their ``warmup`` record (the
    provider may be as busy as the program at the start of a run)."""
    window = SlidingWindow(limit=10, window=1.0, warmup=0.25)
    window.consume(4, 0.0)  # recorded at 0.25
    window.consume(2, 0.0625)  # recorded at 0.3125
    window.defer(4, 0.0, 0.125)  # sent before its record: it stays at 0.25
    assert window.ready_at(5, 0.5) == 1.25
    window.defer(2, 0.0625, 0.375)  # sent after its record: counted from the send
    assert window.ready_at(10, 0.5) == 1.375
    window.consume(1, 1.25)  # after the first window: no warm-up
    assert window.ready_at(10, 1.25) == 2.25


def test_an_admission_after_the_first_window_is_recorded_at_its_own_time() -> None:
    """After the first window, an admission can come before the last warm-up record: it is
    recorded at its own time, before that record, and its report moves its own units."""
    window = SlidingWindow(limit=10, window=1.0, warmup=0.5)
    window.consume(4, 0.0)  # recorded at 0.5; the first window runs to 1.0
    window.consume(2, 0.875)  # recorded at 1.375
    window.consume(3, 1.0)  # after the first window: at 1.0, before the 1.375 record
    assert window.available(1.9375) == 5
    assert window.available(2.0) == 8
    window.defer(3, 1.0, 1.5)
    assert window.available(2.0) == 5
    assert window.available(2.375) == 7
    assert window.available(2.5) == 10


def test_reports_of_admissions_around_a_warm_up_record_move_each_its_own() -> None:
    """X is admitted in the first window (recorded a quarter second late), Z after it but
    before X's record; each report moves only the units of its own admission."""
    window = SlidingWindow(limit=10_000, window=1.0, warmup=0.25)
    window.consume(1, 0.0)  # the first window runs to 1.0
    window.consume(100, 0.875)  # X, recorded at 1.125
    window.consume(800, 1.0625)  # Z, at 1.0625
    window.defer(100, 0.875, 1.09375)  # X on the wire, before its record: stays there
    window.defer(800, 1.0625, 1.3125)  # Z on the wire: its own 800 move, not X's
    assert window.available(2.0625) == 10_000 - 900
    assert window.available(2.25) == 10_000 - 800  # the provider holds Z until 2.3125
    assert window.available(2.3125) == 10_000


def test_a_refund_after_a_report_that_moved_nothing_takes_the_record() -> None:
    window = SlidingWindow(limit=1_000, window=1.0, warmup=0.25)
    window.consume(1, 0.0)  # the first window runs to 1.0
    window.consume(100, 0.875)  # recorded at 1.125
    window.defer(100, 0.875, 1.09375)  # sent before its record: nothing moves
    assert window.refund_sent(100, 1.5, admitted_at=0.875, sent_at=1.09375) == 0
    assert window.available(1.5) == 1_000


def test_a_bucket_has_nothing_to_defer() -> None:
    bucket = TokenBucket(8, burst=8)
    bucket.consume(8, 0.0)
    bucket.defer(8, 0.0, 0.5)
    assert bucket.available(0.5) == 4


def test_a_refund_after_a_first_window_report_takes_its_own_units() -> None:
    window = SlidingWindow(limit=10, window=1.0, warmup=0.5)
    window.consume(4, 0.0)  # recorded at 0.5
    window.consume(4, 0.25)  # recorded at 0.75
    window.defer(4, 0.0, 0.625)  # the first, on the wire at 0.625, after its record
    assert window.refund_sent(4, 0.75, admitted_at=0.0, sent_at=0.625) == 0
    # Its own units, not the second's (which stay until 1.75): taking those would leave
    # the window holding less than the provider once the first's time passed.
    assert window.available(1.625) == 6
    assert window.available(1.75) == 10


def test_a_pace_until_sent_gives_units_back_up_to_its_burst() -> None:
    bucket = TokenBucket(4, burst=2, until_sent=True)
    bucket.consume(2, 0.0)
    bucket.defer(1, 0.0, 0.125)  # half a unit refilled, one given back
    assert bucket.available(0.125) == 1.5
    bucket.defer(1, 0.0, 0.25)  # 2.0 refilled and given back: the burst, no more
    assert bucket.available(0.25) == 2
    assert bucket.dropped == 0  # not a refund into a full bucket: nothing is lost
    bucket.defer(0, 0.0, 0.25)
    assert repr(bucket) == "TokenBucket(rate=4, per=1.0, burst=2, until_sent=True)"
    with pytest.raises(TypeError, match="until_sent must be a bool, got int 1"):
        TokenBucket(4, until_sent=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost"):
        bucket.defer(-1, 0.0, 0.25)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 0.0, 1.0), "cost"),
        ((1, float("nan"), 1.0), "admitted_at"),
        ((1, 0.0, float("inf")), "now"),
    ],
)
def test_bad_numbers_are_named(args: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SlidingWindow(limit=10).defer(*args)


@st.composite
def _admissions(draw: st.DrawFn) -> list[tuple[int, float, float | None, float | None, int]]:
    """Admissions as a throttle makes them, on sixteenths of a second: (cost, admitted at,
    sent at or None, refunded at or None, units refunded).  A sent request may be refunded
    after its send (a rejection, a settle); one never sent is cancelled (all refunded)."""
    out: list[tuple[int, float, float | None, float | None, int]] = []
    at = 0.0
    for _ in range(draw(st.integers(0, 12))):
        at += draw(st.integers(0, 8)) / 16
        cost = draw(st.integers(1, 4))
        kind = draw(st.sampled_from(["sent", "sent, refunded", "cancelled"]))
        later = draw(st.integers(0, 24)) / 16
        refund_after = draw(st.integers(0, 24)) / 16
        if kind == "cancelled":
            out.append((cost, at, None, at + refund_after, cost))
        elif kind == "sent":
            out.append((cost, at, at + later, None, 0))
        else:
            units = draw(st.integers(0, cost))
            out.append((cost, at, at + later, at + later + refund_after, units))
    return out


@settings(max_examples=400)
@given(_admissions(), st.sampled_from([0.0, 0.25]))
@example([(1, 0.0, 0.0, None, 0), (1, 0.9375, 1.125, None, 0), (4, 0.9375, 1.125, None, 0)], 0.25)
def test_a_deferred_window_never_holds_less_than_what_was_sent(
    admissions: list[tuple[int, float, float | None, float | None, int]], warmup: float
) -> None:
    """At every instant, whatever the order of the reports and refunds, the window holds at
    least what a provider counting from the sends holds (less what was refunded after the
    send, while the send was in the window), and at most twice what was admitted (a report
    a whole window late counts its units again)."""
    window = SlidingWindow(limit=1_000, window=1.0, warmup=warmup)
    events: list[tuple[float, int, int]] = []  # (time, 0 admit / 1 send / 2 refund, index)
    for index, (_, admitted, sent, refunded, _) in enumerate(admissions):
        events.append((admitted, 0, index))
        if sent is not None:
            events.append((sent, 1, index))
        if refunded is not None:
            events.append((refunded, 2, index))
    events.sort()
    kept = [cost for cost, *_ in admissions]  # what the provider counts of each, once sent
    on_wire: set[int] = set()
    total = 0
    for now, kind, index in events:
        cost, admitted, sent, _, units = admissions[index]
        if kind == 0:
            window.consume(cost, now)
            total += cost
        elif kind == 1:
            window.defer(cost, admitted, now)
            on_wire.add(index)
        elif sent is None:
            window.refund(units, now, admitted_at=admitted)
        else:
            window.refund_sent(units, now, admitted_at=admitted, sent_at=sent)
            if now < sent + 1.0:  # a refund after its units left the window gives nothing
                kept[index] -= units
        for step in range(40):
            t = now + step / 16
            provider = sum(
                kept[i]
                for i in on_wire
                if (at := admissions[i][2]) is not None and at <= t < at + 1.0
            )
            assert 1_000 - provider >= window.available(t) >= 1_000 - 2 * total


@pytest.mark.parametrize("base", [54_123.456789, 2_419_200.987654321])  # a day, four weeks up
def test_a_defer_at_real_clock_magnitudes(base: float) -> None:
    """``time.monotonic()`` of a machine up for a day or for weeks: the moved entry leaves at
    the report's time plus the window, to the float, and not at the admission's."""
    window = SlidingWindow(limit=10, window=1.03)
    window.consume(4, base)
    sent = base + 0.047
    window.defer(4, base, sent)
    assert window.available(base + 1.03) == 6
    assert window.ready_at(10, base + 0.5) == sent + 1.03
    assert window.available(sent + 1.03) == 10
    assert window.refund_sent(4, sent + 0.5, admitted_at=base, sent_at=sent) == 0
    assert window.available(sent + 0.5) == 10


@pytest.mark.parametrize("base", [54_123.456789, 2_419_200.987654321])  # a day, four weeks up
def test_a_pace_until_sent_at_real_clock_magnitudes(base: float) -> None:
    bucket = TokenBucket(20, burst=4, until_sent=True)
    bucket.consume(4, base)
    bucket.defer(1, base, base + 0.047)  # refilled 0.94, one given back
    # (base + 0.047) - base is exact to about 5e-10 s at four weeks: 20 a second of that.
    assert bucket.available(base + 0.047) == pytest.approx(1.94, abs=1e-7)
    bucket.defer(3, base, base + 0.1)  # never above the burst
    assert bucket.available(base + 0.1) == 4
    assert bucket.dropped == 0
