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
    PendingLevel,
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


def lowered(pending: PendingLevel, available: float, level: float, *, first: bool = False) -> float:
    """What a store holding ``available`` holds after a report of ``level``: the store takes
    the minimum of what it holds and the target (nothing charged or elapsed in between)."""
    target = pending.target(level, charged=1.0, now=0.0, first=first)
    return available if target is None else min(available, target)


def test_a_cut_needs_two_reports_that_agree_and_takes_the_smaller() -> None:
    pending = PendingLevel()
    assert lowered(pending, 1000, 700) == 1000  # 300 asked for: wait for a second
    assert lowered(pending, 1000, 800) == 800  # 200 asked now: the smaller of the two
    assert lowered(pending, 800, 800) == 800


def test_a_report_that_asks_for_no_cut_clears_the_pending_one() -> None:
    pending = PendingLevel()
    assert lowered(pending, 1000, 600) == 1000
    assert lowered(pending, 1000, 1200) == 1000
    assert lowered(pending, 1000, 600) == 1000  # one report again: not yet
    assert lowered(pending, 1000, 600) == 600  # and a second that agrees


def test_the_first_report_of_a_limit_that_charged_nothing_is_taken_as_it_is() -> None:
    assert lowered(PendingLevel(), 1000, 250, first=True) == 250


@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(-1e6, 1e6)), min_size=1, max_size=20))
def test_no_cut_is_larger_than_either_of_two_consecutive_reports_asked(
    reports: list[tuple[float, float]],
) -> None:
    pending = PendingLevel()
    previous_level = math.inf
    for available, level in reports:
        cut = available - lowered(pending, available, level)
        assert 0 <= cut <= max(0.0, available - level)
        assert cut <= max(0.0, available - previous_level)
        previous_level = level


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
        (14_400, 14_370, 179.56, 14_400 * 179.56 / 30),  # Groq's requests per day
        (18_000, 17_997, 7.66, 60.0),  # Groq's tokens per minute: a short reset, a minute
        (1000, 1000, 30.0, 60.0),  # nothing spent: nothing to infer from
    ],
)
def test_learned_periods(
    limit: float, remaining: float | None, reset_after: float, period: float
) -> None:
    assert learned_period(limit, remaining, reset_after) == pytest.approx(period)


def test_pending_level_cuts_only_when_two_reports_agree() -> None:
    pending = PendingLevel()
    assert pending.target(700, charged=10, now=0.0, first=False) is None  # one report: wait
    assert pending.target(800, charged=10, now=0.0, first=False) == 800  # the higher level
    assert pending.target(250, charged=0, now=0.0, first=True) == 250  # nothing charged yet


def test_pending_level_carries_the_earlier_report_to_now() -> None:
    """The earlier level refills at the rate and loses what was charged since."""
    pending = PendingLevel()
    pending.target(500, charged=100, now=10.0, refill_rate=5.0, first=False)
    # 4 s later, 30 more charged: the earlier report says 500 + 20 - 30 = 490 now.
    assert pending.target(300, charged=130, now=14.0, refill_rate=5.0, first=False) == 490
