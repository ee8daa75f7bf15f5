"""The header-feedback rules on numbers, without an event loop (``throttle_trio._feedback``).

These are the rules both throttle shells apply; the shells' own tests check that they apply
them (tests/test_throttle.py, tests/redis/test_throttle.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttle_trio._feedback import (
    MAX_LEARNED_PERIOD,
    PendingCut,
    learned_period,
    reported_level,
    shortfall,
)


def test_reported_level_subtracts_what_was_charged_since_and_credits_refill() -> None:
    # 500 left when the request arrived; 120 sent since; 2 s at 10/s refilled since it left.
    assert reported_level(500, charged_since=120, refill_rate=10, resumed_at=1.0, now=3.0) == 400


@pytest.mark.parametrize(
    ("rate", "resumed_at", "now"),
    [(math.nan, 1.0, 3.0), (10.0, math.nan, 3.0), (10.0, 5.0, 3.0), (0.0, 1.0, 3.0)],
    ids=["no-continuous-refill", "never-resumed", "resumed-later", "zero-rate"],
)
def test_reported_level_credits_no_refill_it_cannot_vouch_for(
    rate: float, resumed_at: float, now: float
) -> None:
    assert (
        reported_level(500, charged_since=120, refill_rate=rate, resumed_at=resumed_at, now=now)
        == 380
    )


def test_a_cut_needs_two_reports_that_agree_and_takes_the_smaller() -> None:
    pending = PendingCut()
    assert pending.decide(1000, 700, first=False) == 0  # 300 asked for: wait for a second
    assert pending.amount == 300
    assert pending.decide(1000, 800, first=False) == 200  # 200 asked now: the smaller of the two
    assert pending.amount == 0
    assert pending.decide(800, 800, first=False) == 0


def test_a_report_that_asks_for_no_cut_clears_the_pending_one() -> None:
    pending = PendingCut()
    pending.decide(1000, 600, first=False)
    assert pending.decide(1000, 1200, first=False) == 0
    assert pending.amount == 0
    assert pending.decide(1000, 600, first=False) == 0  # one report again: not yet


def test_the_first_report_of_a_limit_that_charged_nothing_is_taken_as_it_is() -> None:
    pending = PendingCut()
    assert pending.decide(1000, 250, first=True) == 750
    assert pending.amount == 0


@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(-1e6, 1e6)), min_size=1, max_size=20))
def test_no_cut_is_larger_than_either_of_two_consecutive_reports_asked(
    reports: list[tuple[float, float]],
) -> None:
    pending = PendingCut()
    previous = 0.0
    for available, level in reports:
        asked = max(0.0, available - level)
        cut = pending.decide(available, level, first=False)
        assert 0 <= cut <= asked
        assert cut <= previous + 1e-9 * max(1.0, previous)
        previous = asked


def test_a_429_proves_its_cost_minus_what_was_left() -> None:
    assert shortfall(120, 20) == 100
    assert shortfall(120, 500) == 0
    assert shortfall(120, None) == 0


@pytest.mark.parametrize(
    ("limit", "remaining", "reset_after", "period"),
    [
        (1000, 400, 36.0, 60.0),  # 600 spent, back in 36 s: 1000 in 60 s
        (1000, 950, 3.0, 60.0),  # a twentieth spent: a minute
        (1000, None, 3.0, 60.0),
        (1000, 0, 1e9, MAX_LEARNED_PERIOD),
        (1000, 0, 1e-6, 1.0),
    ],
)
def test_learned_periods(
    limit: float, remaining: float | None, reset_after: float, period: float
) -> None:
    assert learned_period(limit, remaining, reset_after) == pytest.approx(period)
