"""SlidingWindow.defer: an admission reported on the wire late counts from then.  Synchronous,
exact (binary fractions).

A provider counts its windows from when requests arrive; a throttle that learns a request left
only at ``now`` (``Reservation.sent``) moves its units there, so they leave the window later.
"""

from __future__ import annotations

import pytest
from hypothesis import given
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


def test_refund_after_a_defer_frees_no_more_than_the_admission_held() -> None:
    window = SlidingWindow(limit=10, window=1.0)
    window.consume(4, 0.0)
    window.consume(2, 0.125)
    window.defer(4, 0.0, 0.25)
    # From the entries after 0, the oldest first: the 2 of 0.125, then 1 of the moved 4.
    assert window.refund(3, 0.5, admitted_at=0.0) == 0
    assert window.available(0.5) == 7
    assert window.available(1.125) == 7  # the 3 left leave with the moved admission
    assert window.available(1.25) == 10


def test_a_refund_of_an_admission_that_left_the_window_is_still_dropped() -> None:
    window = SlidingWindow(limit=10, window=1.0)
    window.consume(4, 0.0)
    window.consume(3, 0.5)
    assert window.refund(4, 1.25, admitted_at=0.0) == 4  # gone: nothing to give back
    assert window.available(1.25) == 7
    assert window.dropped == 4


def test_a_report_replaces_the_first_windows_warmup_with_the_send() -> None:
    """The warm-up is a guess at how late the first requests leave; a report is the fact, so
    the units count from the send, earlier than their record."""
    window = SlidingWindow(limit=10, window=1.0, warmup=0.25)
    window.consume(4, 0.0)  # recorded at 0.25
    window.consume(2, 0.0625)  # recorded at 0.3125
    window.defer(4, 0.0, 0.125)  # sent at 0.125: counted from then, before the 2
    assert window.ready_at(7, 0.5) == 1.125
    assert window.ready_at(10, 0.5) == 1.3125
    window.defer(4, 0.0, 0.1875)  # a second report of the same admission finds nothing
    assert window.ready_at(7, 0.5) == 1.125
    window.defer(2, 0.0625, 0.5)  # sent after its record: counted from the send, later
    assert window.ready_at(10, 0.5) == 1.5
    # The first window's later admissions keep their warm-up until they report.
    window.consume(1, 0.75)  # recorded at 1.0
    assert window.ready_at(10, 1.25) == 2.0


def test_an_admission_merged_into_a_later_record_never_moves_earlier() -> None:
    """After the first window, an admission before the last warm-up record is merged into it:
    that entry holds a first-window admission's units too, so a report never takes it
    earlier."""
    window = SlidingWindow(limit=10, window=1.0, warmup=0.5)
    window.consume(4, 0.0)  # recorded at 0.5; the first window runs to 1.0
    window.consume(2, 0.875)  # recorded at 1.375
    window.consume(3, 1.0)  # after the first window, before the last record: merged at 1.375
    assert window.available(2.125) == 5
    window.defer(3, 1.0, 1.0)  # its entry holds the 2 as well: nothing moves earlier
    assert window.available(2.125) == 5
    assert window.available(2.375) == 10
    window.defer(3, 1.0, 1.5)  # later is always safe
    assert window.available(2.375) == 7
    assert window.available(2.5) == 10


def test_a_bucket_has_nothing_to_defer() -> None:
    bucket = TokenBucket(8, burst=8)
    bucket.consume(8, 0.0)
    bucket.defer(8, 0.0, 0.5)
    assert bucket.available(0.5) == 4


def test_a_refund_after_a_report_moved_it_earlier_takes_its_own_units() -> None:
    window = SlidingWindow(limit=10, window=1.0, warmup=0.5)
    window.consume(4, 0.0)  # recorded at 0.5
    window.consume(4, 0.25)  # recorded at 0.75
    window.defer(4, 0.0, 0.125)  # the first, on the wire at 0.125
    assert window.refund(4, 0.5, admitted_at=0.0) == 0
    # Its own units, not the second's (which stay until 1.75): taking those would leave
    # the window holding less than the provider once the first's time passed.
    assert window.available(1.25) == 6
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


@given(
    st.lists(
        st.tuples(
            st.integers(1, 4),  # cost
            st.integers(0, 8),  # sixteenths of a second after the previous report
            st.integers(0, 24),  # sixteenths of a second from admission to the report
        ),
        max_size=20,
    ),
    st.sampled_from([0.0, 0.25]),
)
def test_a_deferred_window_never_holds_less_than_what_was_sent(
    admissions: list[tuple[int, int, int]], warmup: float
) -> None:
    """At every instant the window with the reports holds at least what a provider counting
    from the sends holds; without a warm-up, at least what the window without reports holds
    too (defers only keep units longer).  (A report a whole window late counts its units
    again, even when they were merged into a later entry: at most twice.)"""
    plain = SlidingWindow(limit=1_000, window=1.0, warmup=warmup)
    deferred = SlidingWindow(limit=1_000, window=1.0, warmup=warmup)
    sends: list[tuple[float, int]] = []
    now, total = 0.0, 0
    for cost, gap, delay in admissions:
        now += gap / 16  # the calls come in time order, as a throttle makes them
        plain.consume(cost, now)
        deferred.consume(cost, now)
        total += cost
        now += delay / 16
        deferred.defer(cost, now - delay / 16, now)
        sends.append((now, cost))
        for step in range(64):
            t = now + step / 16
            on_the_wire = sum(c for sent, c in sends if sent <= t < sent + 1.0)
            assert 1_000 - on_the_wire >= deferred.available(t) >= 1_000 - 2 * total
            if not warmup:
                assert plain.available(t) >= deferred.available(t)


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
    assert window.refund(4, sent + 0.5, admitted_at=base) == 0  # found after its admission
    assert window.available(sent + 0.5) == 10
