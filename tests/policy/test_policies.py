"""Unit tests of the pure policies: no event loop, explicit `now`."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import cast

import pytest

from throttle_trio import GCRA, CostExceedsCapacity, SlidingWindow, TokenBucket
from throttle_trio.policy import Decision, RatePolicy

BUCKETS = [TokenBucket, GCRA]


@pytest.mark.parametrize("cls", BUCKETS)
def test_bucket_starts_full_and_burst_defaults_to_one_period(cls: type[TokenBucket]) -> None:
    bucket = cls(rate=60, per=60.0)
    assert bucket.burst == 60
    assert bucket.capacity == 60
    assert bucket.available(100.0) == 60
    assert bucket.try_admit(60, 100.0) == Decision(True, 100.0, 0)
    # Then one unit per second.
    assert bucket.ready_at(1, 100.0) == 101.0
    assert bucket.ready_at(3, 100.5) == 103.0


@pytest.mark.parametrize("cls", BUCKETS)
def test_burst_is_separate_from_rate(cls: type[TokenBucket]) -> None:
    bucket = cls(rate=10, per=1.0, burst=2)
    assert bucket.try_admit(2, 0.0).allowed
    assert not bucket.try_admit(1, 0.0).allowed
    # After a long quiet spell the bucket holds the burst, not more.
    assert bucket.available(1000.0) == 2
    with pytest.raises(CostExceedsCapacity):
        bucket.ready_at(3, 0.0)


@pytest.mark.parametrize("cls", BUCKETS)
def test_initial_tokens_start_a_drained_bucket(cls: type[TokenBucket]) -> None:
    bucket = cls(rate=4, per=1.0, burst=8, initial_tokens=0)
    assert bucket.available(1.0) == 0  # a read does not start the clock
    assert bucket.ready_at(1, 5.0) == 5.25  # the first request does
    assert bucket.available(5.0) == 0
    assert bucket.available(6.0) == 4
    assert bucket.available(7.0) == 8


@pytest.mark.parametrize("cls", BUCKETS)
def test_refund_never_rises_above_burst(cls: type[TokenBucket]) -> None:
    bucket = cls(rate=1, per=1.0, burst=10)
    bucket.consume(4, 0.0)
    assert bucket.refund(6, 0.0) == 2  # only 4 fit back
    assert bucket.available(0.0) == 10
    assert bucket.dropped == 2


@pytest.mark.parametrize("cls", BUCKETS)
def test_overdraft_is_a_debt_repaid_first(cls: type[TokenBucket]) -> None:
    bucket = cls(rate=2, per=1.0, burst=4)
    bucket.consume(4, 0.0)
    bucket.consume(2, 0.0)  # settled above the estimate: debt of 2
    assert bucket.available(0.0) == -2
    assert bucket.ready_at(1, 0.0) == 1.5  # repay 2, then 1 more, at 2/s


@pytest.mark.parametrize("cls", BUCKETS)
def test_reconfigure_keeps_the_level_and_changes_the_refill(cls: type[TokenBucket]) -> None:
    bucket = cls(rate=1, per=1.0, burst=4)
    bucket.consume(4, 0.0)
    bucket.reconfigure(2.0, rate=4)  # 2 units accrued at the old rate
    assert bucket.available(2.0) == 2
    assert bucket.ready_at(4, 2.0) == 2.5
    bucket.reconfigure(2.0, burst=1)
    assert bucket.available(2.0) == 1
    assert bucket.capacity == 1
    with pytest.raises(TypeError, match=r"unknown parameters \['limit'\]"):
        bucket.reconfigure(2.0, limit=3)


@pytest.mark.parametrize("cls", BUCKETS)
def test_limit_available_only_lowers(cls: type[TokenBucket]) -> None:
    bucket = cls(rate=1, per=1.0, burst=10)
    bucket.limit_available(3, 0.0)
    assert bucket.available(0.0) == 3
    bucket.limit_available(7, 0.0)
    assert bucket.available(0.0) == 3
    bucket.limit_available(-2, 0.0)
    assert bucket.available(0.0) == -2


@pytest.mark.parametrize("cls", BUCKETS)
def test_a_clock_that_steps_back_refills_nothing(cls: type[TokenBucket]) -> None:
    bucket = cls(rate=1, per=1.0, burst=2)
    bucket.consume(2, 10.0)
    assert bucket.available(5.0) <= 0
    assert bucket.ready_at(1, 5.0) >= 11.0


def _full_policy(kind: str, rate: float) -> RatePolicy:
    if kind == "window":
        return SlidingWindow(3, window=3 / rate)
    return (TokenBucket if kind == "bucket" else GCRA)(rate, burst=3)


@pytest.mark.parametrize("kind", ["bucket", "gcra", "window"])
@pytest.mark.parametrize(
    ("now", "rate"),
    [(0.1, 3.0), (1e6 + 0.1, 7.0), (123456.789, 1 / 3), (1e9, 1e-3), (0.3, 1e7)],
)
@pytest.mark.parametrize("cost", [1, 2, 3, 0.1])
def test_ready_at_is_a_time_the_policy_accepts(
    kind: str, now: float, rate: float, cost: float
) -> None:
    """The rounding rule: sleeping until ready_at() admits, so virtual time never freezes."""
    policy = _full_policy(kind, rate)
    policy.consume(3, now)
    t = policy.ready_at(cost, now)
    assert t > now
    assert policy.ready_at(cost, t) == t
    assert policy.try_admit(cost, t).allowed


def test_sliding_window_counts_an_admission_for_exactly_one_window() -> None:
    window = SlidingWindow(limit=3, window=10.0)
    assert window.try_admit(2, 0.0).allowed
    assert window.try_admit(1, 4.0).allowed
    assert not window.try_admit(1, 9.0).allowed
    assert window.ready_at(1, 9.0) == 10.0  # the entry at 0 leaves at 0 + 10
    assert window.ready_at(3, 9.0) == 14.0
    assert window.available(10.0) == 2
    assert window.available(14.0) == 3


def test_sliding_window_refund_targets_the_admission() -> None:
    window = SlidingWindow(limit=10, window=10.0)
    window.consume(6, 0.0)
    window.consume(4, 5.0)
    assert window.refund(5, 9.0, admitted_at=0.0) == 0
    assert window.available(9.0) == 5
    # The 1 unit left from t=0 leaves at 10; the 4 from t=5 stay until 15.
    assert window.available(10.0) == 6
    # A refund for an admission that already left the window has nothing to give back.
    assert window.refund(2, 16.0, admitted_at=0.0) == 2
    assert window.dropped == 2


def test_sliding_window_refund_without_time_reduces_the_newest() -> None:
    window = SlidingWindow(limit=10, window=10.0)
    window.consume(6, 0.0)
    window.consume(4, 5.0)
    assert window.refund(5, 6.0) == 0
    assert window.available(6.0) == 5
    # Newest first: the whole t=5 entry (4), then 1 of the t=0 entry, which leaves at 10.
    assert window.available(10.0) == 10


def test_sliding_window_reconfigure_and_limit_available() -> None:
    window = SlidingWindow(limit=10, window=10.0)
    window.consume(4, 0.0)
    window.reconfigure(1.0, limit=5)
    assert window.available(1.0) == 1
    window.limit_available(0, 1.0)
    assert window.available(1.0) == 0
    assert window.available(11.0) == 5  # the phantom admission at 1 has left
    with pytest.raises(TypeError, match=r"unknown parameters \['rate'\]"):
        window.reconfigure(1.0, rate=3)


def test_fractions_give_exact_arithmetic() -> None:
    def exact(n: int, d: int = 1) -> float:
        return cast("float", Fraction(n, d))  # policies accept any Real at run time

    bucket = TokenBucket(exact(1, 3), per=1, burst=1)
    bucket.consume(1, exact(0))
    ready = bucket.ready_at(1, exact(1, 7))
    assert ready == 3
    assert isinstance(bucket.available(exact(5, 2)), Fraction)


def test_repr_shows_parameters() -> None:
    assert repr(TokenBucket(5, per=2.0, burst=3)) == "TokenBucket(rate=5, per=2.0, burst=3)"
    assert repr(GCRA(5)) == "GCRA(rate=5, per=1.0, burst=5)"
    assert repr(SlidingWindow(100, 60.0)) == "SlidingWindow(limit=100, window=60.0)"


def test_gcra_stores_one_timestamp() -> None:
    gcra = GCRA(rate=2, burst=2)
    gcra.consume(1, 10.0)
    assert gcra.theoretical_arrival_time == 10.5
    assert not math.isnan(gcra.available(10.0))


# -- what a throttle asks of a policy (no isinstance dispatch) --------------------------------


@pytest.mark.parametrize(
    ("policy", "rate", "continuous"),
    [
        (TokenBucket(rate=600, per=60.0, burst=10), 10.0, True),
        (GCRA(rate=600, per=60.0, burst=10), 10.0, True),
        (SlidingWindow(limit=10, window=2.0), 5.0, False),
    ],
    ids=["TokenBucket", "GCRA", "SlidingWindow"],
)
def test_policies_say_their_rate_and_change_it(
    policy: RatePolicy, rate: float, continuous: bool
) -> None:
    assert policy.units_per_second == rate
    assert policy.refills_continuously is continuous
    assert policy.is_full(0.0)
    capacity = policy.capacity
    policy.set_units_per_second(rate / 2, 0.0)
    assert policy.units_per_second == rate / 2
    assert policy.capacity == capacity  # the rate changes, not the capacity
    policy.consume(1, 0.0)
    assert not policy.is_full(0.0)


def test_a_policy_of_ones_own_knows_no_rate_by_default() -> None:
    class Fixed(RatePolicy):
        @property
        def capacity(self) -> float:
            return 1.0

        @property
        def dropped(self) -> float:
            return 0.0

        def available(self, now: float) -> float:
            return 1.0

        def ready_at(self, cost: float, now: float) -> float:
            return now

        def consume(self, cost: float, now: float) -> None:
            pass

        def refund(self, amount: float, now: float, *, admitted_at: float | None = None) -> float:
            return 0.0

        def reconfigure(self, now: float, **changes: float) -> None:
            pass

        def limit_available(self, tokens: float, now: float) -> None:
            pass

    policy = Fixed()
    assert math.isnan(policy.units_per_second)
    assert not policy.refills_continuously
    assert policy.is_full(0.0)
    with pytest.raises(
        NotImplementedError, match=r"^Fixed does not implement set_units_per_second\(\)$"
    ):
        policy.set_units_per_second(1.0, 0.0)
