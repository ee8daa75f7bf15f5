# The policies are annotated with float time; here they run on Fraction, which they support at
# run time so that these properties hold exactly, not up to rounding.
# mypy: disable-error-code="arg-type,call-overload,assignment"
"""Hypothesis properties of the pure policies, in exact arithmetic (``Fraction`` time).

* I1: whatever the arrival pattern and the weights, a token bucket (and GCRA) admits at most
  ``burst + rate/per * T`` in any interval of length ``T``; a sliding window at most ``limit``
  in any window.
* GCRA and the token bucket make the same decisions for the same operations.
* Refunds never raise a bucket above its burst.
* The retry promise: a denied cost fits at ``ready_at``, and not a moment earlier.
"""

from __future__ import annotations

import copy
from fractions import Fraction

from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from throttle_trio import GCRA, SlidingWindow, TokenBucket

rates = st.integers(1, 50).map(Fraction)
pers = st.sampled_from([Fraction(1), Fraction(1, 2), Fraction(60)])
bursts = st.integers(1, 20).map(Fraction)
gaps = st.integers(0, 3000).map(lambda ms: Fraction(ms, 1000))


def admitted_in_worst_interval(
    log: list[tuple[Fraction, Fraction]], fill: Fraction, burst: Fraction
) -> bool:
    """True if every interval [t_i, t_j] admitted at most burst + fill * (t_j - t_i)."""
    for i, (start, _) in enumerate(log):
        total = Fraction(0)
        for end, cost in log[i:]:
            total += cost
            if total > burst + fill * (end - start):
                note(f"interval [{start}, {end}] admitted {total}")
                return False
    return True


@given(
    rate=rates,
    per=pers,
    burst=bursts,
    ops=st.lists(st.tuples(gaps, st.integers(1, 20), st.booleans()), max_size=40),
    use_gcra=st.booleans(),
)
def test_bucket_rate_bound_for_any_arrivals_and_weights(
    rate: Fraction,
    per: Fraction,
    burst: Fraction,
    ops: list[tuple[Fraction, int, bool]],
    use_gcra: bool,
) -> None:
    policy = (GCRA if use_gcra else TokenBucket)(rate, per, burst=burst)
    now = Fraction(0)
    log: list[tuple[Fraction, Fraction]] = []
    for gap, weight, wait in ops:
        now += gap
        cost = Fraction(min(weight, burst))
        if wait:  # a limiter head: sleep until ready_at, then admit
            now = policy.ready_at(cost, now)
        if policy.try_admit(cost, now).allowed:
            log.append((now, cost))
        assert policy.available(now) <= burst
    assert admitted_in_worst_interval(log, rate / per, burst)


@given(
    limit=bursts,
    window=st.integers(1, 5000).map(lambda ms: Fraction(ms, 1000)),
    ops=st.lists(st.tuples(gaps, st.integers(1, 20), st.booleans()), max_size=40),
)
def test_sliding_window_bound_in_every_window(
    limit: Fraction, window: Fraction, ops: list[tuple[Fraction, int, bool]]
) -> None:
    policy = SlidingWindow(limit, window)
    now = Fraction(0)
    log: list[tuple[Fraction, Fraction]] = []
    for gap, weight, wait in ops:
        now += gap
        cost = Fraction(min(weight, limit))
        if wait:
            now = policy.ready_at(cost, now)
        if policy.try_admit(cost, now).allowed:
            log.append((now, cost))
    for start, _ in log:
        in_window = sum((c for t, c in log if start <= t < start + window), Fraction(0))
        assert in_window <= limit


operations = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), gaps),
        st.tuples(st.just("admit"), st.integers(1, 20).map(Fraction)),
        st.tuples(st.just("consume"), st.integers(1, 30).map(Fraction)),
        st.tuples(st.just("refund"), st.integers(0, 30).map(Fraction)),
        st.tuples(st.just("limit"), st.integers(-10, 30).map(Fraction)),
        st.tuples(st.just("rate"), rates),
        st.tuples(st.just("burst"), bursts),
    ),
    max_size=50,
)


@given(rate=rates, per=pers, burst=bursts, initial=st.none() | st.integers(0, 20), ops=operations)
def test_gcra_is_the_token_bucket(
    rate: Fraction,
    per: Fraction,
    burst: Fraction,
    initial: int | None,
    ops: list[tuple[str, Fraction]],
) -> None:
    initial_tokens = None if initial is None else Fraction(min(initial, burst))
    bucket = TokenBucket(rate, per, burst=burst, initial_tokens=initial_tokens)
    gcra = GCRA(rate, per, burst=burst, initial_tokens=initial_tokens)
    now = Fraction(0)
    for op, value in ops:
        if op == "advance":
            now += value
        elif op == "admit":
            cost = min(value, bucket.capacity)
            assert bucket.ready_at(cost, now) == gcra.ready_at(cost, now)
            assert bucket.try_admit(cost, now) == gcra.try_admit(cost, now)
        elif op == "consume":
            bucket.consume(value, now)
            gcra.consume(value, now)
        elif op == "refund":
            assert bucket.refund(value, now) == gcra.refund(value, now)
        elif op == "limit":
            bucket.limit_available(value, now)
            gcra.limit_available(value, now)
        else:
            bucket.reconfigure(now, **{op: value})
            gcra.reconfigure(now, **{op: value})
        assert bucket.available(now) == gcra.available(now)
        assert bucket.available(now) <= bucket.capacity
    assert bucket.dropped == gcra.dropped


class BucketMachine(RuleBasedStateMachine):
    """A token bucket driven by random steps; its admission log always meets I1."""

    @initialize(rate=rates, per=pers, burst=bursts, use_gcra=st.booleans())
    def start(self, rate: Fraction, per: Fraction, burst: Fraction, use_gcra: bool) -> None:
        self.policy = (GCRA if use_gcra else TokenBucket)(rate, per, burst=burst)
        self.fill, self.burst = rate / per, burst
        self.now = Fraction(0)
        self.log: list[tuple[Fraction, Fraction]] = []

    @rule(gap=gaps)
    def advance(self, gap: Fraction) -> None:
        self.now += gap

    @rule(weight=st.integers(1, 20))
    def acquire(self, weight: int) -> None:
        cost = Fraction(min(weight, self.burst))
        decision = self.policy.try_admit(cost, self.now)
        if decision.allowed:
            self.log.append((self.now, cost))
            return
        # The retry promise: it fits at ready_at, and not one microsecond before.
        assert decision.ready_at > self.now
        probe = copy.deepcopy(self.policy)
        assert probe.try_admit(cost, decision.ready_at).allowed
        earlier = copy.deepcopy(self.policy)
        assert not earlier.try_admit(cost, decision.ready_at - Fraction(1, 10**6)).allowed

    @invariant()
    def never_above_burst(self) -> None:
        if hasattr(self, "policy"):
            assert self.policy.available(self.now) <= self.burst

    @invariant()
    def rate_bound_holds(self) -> None:
        if hasattr(self, "log"):
            assert admitted_in_worst_interval(self.log, self.fill, self.burst)


TestBucketMachine = BucketMachine.TestCase
