"""SlidingWindow(warmup=...): the first window's admissions count longer.  Synchronous, exact.

Times and lengths are binary fractions, so float arithmetic is exact and answers compare with
``==``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttle_trio import SlidingWindow


def test_the_first_windows_admissions_leave_warmup_later() -> None:
    window = SlidingWindow(limit=2, window=1.0, warmup=0.25)
    assert window.try_admit(1, 0.5).allowed  # the first admission: the first window [0.5, 1.5)
    assert window.try_admit(1, 1.25).allowed
    assert not window.try_admit(1, 1.25).allowed
    # Without warmup the first would leave at 1.5; it leaves a quarter second later.
    assert window.ready_at(1, 1.25) == 1.75
    assert window.available(1.625) == 0
    assert window.available(1.75) == 1
    assert window.ready_at(2, 1.75) == 2.5  # the one admitted at 1.25: 1.25 + 1 + 0.25


def test_after_the_first_window_an_admission_counts_one_window() -> None:
    window = SlidingWindow(limit=2, window=1.0, warmup=0.25)
    window.consume(2, 0.0)  # the first window is [0, 1), recorded at 0.25
    assert window.ready_at(1, 0.5) == 1.25
    assert window.try_admit(2, 1.25).allowed  # 1.25 >= 1: an ordinary admission
    assert window.ready_at(1, 1.25) == 2.25  # it leaves one window later, no warmup


def test_an_admission_at_the_first_windows_end_is_not_warm() -> None:
    # The first window is half-open, [first, first + window), like the window itself.
    window = SlidingWindow(limit=3, window=1.0, warmup=0.5)
    window.consume(1, 0.0)  # recorded at 0.5
    window.consume(1, 1.0)  # at the first window's end: recorded at 1.0
    assert window.available(1.5) == 2  # the first left at 1.5
    assert window.available(2.0) == 3  # the second, at 1.0 + 1: not warm


def test_the_first_window_starts_at_the_first_admission_not_at_a_read() -> None:
    window = SlidingWindow(limit=1, window=1.0, warmup=0.25)
    assert window.ready_at(1, 10.0) == 10.0
    assert window.available(10.0) == 1
    assert window.try_admit(1, 20.0).allowed  # the first admission: its window starts here
    assert window.ready_at(1, 20.0) == 21.25


def test_an_admission_before_a_warm_record_is_recorded_at_its_own_time() -> None:
    # Until `warmup` has passed, a warm record sits later than the admissions that follow the
    # first window: they are recorded at their own times, before it (time order kept), and
    # leave the window on their own.
    window = SlidingWindow(limit=4, window=1.0, warmup=2.0)
    window.consume(1, 0.0)  # recorded at 2.0: leaves at 3.0
    window.consume(1, 1.5)  # after the first window, before 2.0: recorded at 1.5
    assert window.ready_at(4, 2.0) == 3.0  # the warm record leaves last
    assert window.ready_at(3, 2.0) == 2.5
    assert window.available(2.5) == 3  # admitted at 1.5: gone at 2.5
    assert window.available(3.0) == 4
    assert window.refund(1, 2.25, admitted_at=1.5) == 0  # found at its own time
    assert window.available(2.25) == 3


def test_refund_finds_a_first_window_admission_by_its_own_time() -> None:
    window = SlidingWindow(limit=10, window=1.0, warmup=0.25)
    window.consume(6, 0.0)
    window.consume(4, 0.5)
    assert window.refund(5, 0.75, admitted_at=0.0) == 0
    assert window.available(0.75) == 5
    assert window.available(1.25) == 6  # the 1 left from t=0 leaves at 0 + 1 + 0.25
    # An admission after the first window is refunded at its own time too.
    window.consume(3, 2.0)
    assert window.refund(3, 2.5, admitted_at=2.0) == 0
    assert window.available(2.5) == 10
    assert window.dropped == 0


def test_limit_available_is_not_warm_and_does_not_start_the_first_window() -> None:
    window = SlidingWindow(limit=4, window=1.0, warmup=0.5)
    window.limit_available(1, 0.0)  # a phantom of 3 at 0: what the provider counted already
    assert window.available(1.0) == 4  # it left one window later, not 1.5
    window.consume(1, 2.0)  # the first admission: the first window starts here
    assert window.available(3.0) == 3
    assert window.available(3.5) == 4


def test_shift_clock_moves_the_first_window_and_reconfigure_does_not() -> None:
    window = SlidingWindow(limit=4, window=1.0, warmup=0.5)
    window.consume(1, 0.0)  # the first window is [0, 1)
    window.shift_clock(100.0)  # now [100, 101), recorded at 100.5
    window.consume(1, 100.75)  # in the first window: recorded at 101.25
    assert window.available(101.5) == 3
    assert window.available(101.75) == 3  # still in: it leaves at 102.25, not 101.75
    assert window.available(102.25) == 4
    window.reconfigure(102.25, window=2.0)  # the entry recorded at 101.25 is back in
    window.consume(1, 102.5)  # long after the first window: no warmup
    assert window.ready_at(4, 102.5) == 104.5  # the last leaves at 102.5 + 2


def test_no_warmup_is_the_plain_window() -> None:
    plain, cold = SlidingWindow(2, 1.0), SlidingWindow(2, 1.0, warmup=0)
    for policy in (plain, cold):
        policy.consume(2, 0.0)
        assert policy.ready_at(1, 0.5) == 1.0
    assert cold.warmup == 0
    assert repr(cold) == "SlidingWindow(limit=2, window=1.0)"


def test_warmup_is_shown_and_readable() -> None:
    window = SlidingWindow(10.0, 1.03, warmup=1.0)
    assert window.warmup == 1.0
    assert repr(window) == (
        "SlidingWindow(limit=10.0, window=1.03) (the first window counting 1.0 s longer)"
    )


def exact(n: int, d: int = 1) -> float:
    return cast("float", Fraction(n, d))  # policies accept any Real at run time


def test_exact_arithmetic_with_fractions() -> None:
    window = SlidingWindow(exact(3), window=exact(1), warmup=exact(1, 3))
    window.consume(3, exact(1, 7))
    assert window.ready_at(1, exact(1, 2)) == Fraction(1, 7) + 1 + Fraction(1, 3)


@pytest.mark.parametrize("now", [0.1, 1e6 + 0.1, 123456.789, 1e9])
def test_ready_at_is_a_time_the_warm_window_accepts(now: float) -> None:
    window = SlidingWindow(3, window=1.03, warmup=0.7)
    window.consume(3, now)
    t = window.ready_at(1, now)
    assert t == now + 0.7 + 1.03
    assert window.ready_at(1, t) == t
    assert window.try_admit(1, t).allowed


@pytest.mark.parametrize(
    ("warmup", "error", "message"),
    [
        (-1, ValueError, "warmup must be a finite number >= 0, got -1"),
        (float("inf"), ValueError, "warmup must be a finite number >= 0, got inf"),
        (float("nan"), ValueError, "warmup must be a finite number >= 0, got nan"),
        ("1", TypeError, "warmup must be a real number, got str '1'"),
        (True, TypeError, "warmup must be a real number, got bool True"),
    ],
)
def test_a_bad_warmup_is_named(warmup: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        SlidingWindow(10, 1.0, warmup=warmup)
    assert str(caught.value) == message


def test_warmup_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        SlidingWindow(10, 1.0, 0.5)  # type: ignore[call-arg]


@given(
    limit=st.integers(1, 20),
    window=st.sampled_from([Fraction(1), Fraction(103, 100), Fraction(5, 2)]),
    warmup=st.integers(0, 2000).map(lambda ms: Fraction(ms, 1000)),
    ops=st.lists(
        st.tuples(st.integers(0, 1500).map(lambda ms: Fraction(ms, 1000)), st.integers(1, 20)),
        max_size=40,
    ),
)
def test_warmup_keeps_the_window_bound_and_the_retry_promise(
    limit: int, window: Fraction, warmup: Fraction, ops: list[tuple[Fraction, int]]
) -> None:
    """At most ``limit`` in any window, at most ``limit`` in the first window plus ``warmup``
    from the first admission, and a cost waits exactly until ``ready_at`` (exact arithmetic)."""
    policy = SlidingWindow(exact(limit), window=cast("float", window), warmup=cast("float", warmup))
    now = Fraction(0)
    log: list[tuple[Fraction, Fraction]] = []
    for gap, weight in ops:
        now += gap
        cost = Fraction(min(weight, limit))
        ready = policy.ready_at(cast("float", cost), cast("float", now))
        if ready > now:
            assert not policy.try_admit(cast("float", cost), cast("float", now)).allowed
            earlier = Fraction(ready) - Fraction(1, 10**6)
            if earlier > now:
                assert policy.ready_at(cast("float", cost), cast("float", earlier)) > earlier
            now = Fraction(ready)
        assert policy.try_admit(cast("float", cost), cast("float", now)).allowed
        log.append((now, cost))
    for start, _ in log:
        assert sum((c for t, c in log if start <= t < start + window), Fraction(0)) <= limit
    if log:
        first = log[0][0]
        warm = sum((c for t, c in log if t < first + window), Fraction(0))
        later = sum(
            (c for t, c in log if first + window <= t < first + window + warmup), Fraction(0)
        )
        assert warm + later <= limit
