# The bucket is annotated with float time; here it also runs on Fraction (exact arithmetic).
# mypy: disable-error-code="arg-type"
"""The buckets' hot methods inline the shared rounding rule: they must answer as it does.

``ready_at``, ``available``, ``consume``, ``queue_ready_at`` and the limiter's
``admit_or_ready_at`` of :class:`TokenBucket` and :class:`GCRA` compute the level and the rule
of ``policy.base.refill_ready_at`` without its calls and closures (issue #15).  The reference
below is the code as it was (``refill_ready_at`` with a closure for the level, ``min``/``max``
for the cap and the clock, ``RatePolicy``'s default ``admit_or_ready_at``), run on a twin
bucket: after every operation both give the same answer, of the same type, and hold the same
state, bit for bit, in float at the clock readings loops have and in ``Fraction``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttle_trio import GCRA, CostExceedsCapacity, TokenBucket
from throttle_trio.policy.base import clock_slack, refill_ready_at

if TYPE_CHECKING:
    from collections.abc import Callable

# -- The reference: the shared rule as written, on a twin bucket's state ------------------------

Bucket = TokenBucket | GCRA


class Reference:
    """The methods as they were before inlining, for either bucket (its private state)."""

    def __init__(self, bucket: Bucket) -> None:
        self.b = bucket

    def level(self, t: float, since: float) -> float:
        b = self.b
        if isinstance(b, GCRA):
            return b._burst - (b._ahead - (t - since)) * b._fill
        if t <= since:
            return b._tokens
        return b._tokens + (t - since) * b._fill

    def since(self, now: float) -> float:
        b = self.b
        if isinstance(b, GCRA):
            return now if b._at is None else b._at
        return b._updated if b._started else now

    def start(self, now: float) -> None:
        b = self.b
        if isinstance(b, GCRA):
            if b._at is None:
                b._at = now
        elif not b._started:
            b._started = True
            b._updated = now

    def ready(self, units: float, now: float) -> float:
        since = self.since(now)
        if self.level(now, since) >= units:
            return now

        def level(t: float) -> float:
            return self.level(t, since)

        return refill_ready_at(units, now, level, self.b._fill, self.b._span)

    def available(self, cost: float, now: float) -> float:
        return min(self.b._burst, self.level(now, self.since(now)))

    def ready_at(self, cost: float, now: float) -> float:
        cost = self.b._checked_cost(cost)
        self.start(now)
        return self.ready(cost, now)

    def queue(self, cost: float, now: float) -> float:
        return self.ready(3 * cost + self.b._checked_cost(cost), now)

    def consume(self, cost: float, now: float) -> None:
        b = self.b
        cost = b._checked_charge(cost)
        self.start(now)
        if isinstance(b, GCRA):
            assert b._at is not None
            debt = max(0, b._ahead - (now - b._at))
            b._at, b._ahead = now, debt + cost * b._interval
        else:
            b._tokens = min(b._burst, self.level(now, b._updated))
            b._updated = max(b._updated, now)
            b._tokens -= cost

    def admit(self, cost: float, now: float) -> float | None:
        if self.available(cost, now) < cost:
            ready = self.ready_at(cost, now)
            if ready > now:
                return ready
        self.consume(cost, now)
        return None


def state(bucket: Bucket) -> tuple[object, ...]:
    if isinstance(bucket, GCRA):
        values: tuple[object, ...] = (bucket._at, bucket._ahead, bucket._burst)
    else:
        values = (bucket._tokens, bucket._updated, bucket._started, bucket._burst)
    return (*values, *(type(v) for v in values))


def call(bucket: Bucket, op: str, cost: float, now: float) -> object:
    if op == "admit":
        return bucket.admit_or_ready_at(cost, now)
    if op == "ready_at":
        return bucket.ready_at(cost, now)
    if op == "available":
        return bucket.available(now)
    if op == "queue":
        return bucket.queue_ready_at(3 * cost, cost, now)
    assert op == "consume"
    bucket.consume(cost, now)
    return None


SAME = ("admit", "ready_at", "available", "queue", "consume")


def same(op: str, fast: Bucket, slow: Bucket, cost: float, now: float) -> None:
    """Both answer the same (or raise the same), and hold the same state after."""
    try:
        got: object = call(fast, op, cost, now)
    except (ValueError, TypeError) as error:
        got = type(error)
    try:
        expected: object = getattr(Reference(slow), op)(cost, now)
    except (ValueError, TypeError) as error:
        expected = type(error)
    assert got == expected
    assert type(got) is type(expected)
    assert state(fast) == state(slow)


def run(make: Callable[[], Bucket], start: float, ops: list[tuple[str, float, float]]) -> None:
    fast, slow = make(), make()
    now = start
    for op, gap, cost in ops:
        if op != "near":  # its gap says how early its timer fires
            now += gap
        cost = min(cost, fast.burst) if op != "consume" else cost
        if op in ("ready", "near"):  # a limiter's head: sleep until ready_at, ask again
            ready = fast.ready_at(cost, now)
            assert ready == Reference(slow).ready_at(cost, now)
            if op == "near" and ready > now:  # a timer that fires up to 4 slacks early
                now = max(now, ready - (gap % 1) * 4 * clock_slack(ready, fast._span))
            else:
                now = ready
            same("admit", fast, slow, cost, now)
        elif op in SAME:
            same(op, fast, slow, cost, now)
        elif op == "back":  # a clock that steps back refills nothing
            now -= 2 * gap
        else:  # the cold paths (TokenBucket: they share _advance)
            assert op == "refund"
            assert fast.refund(cost, now) == slow.refund(cost, now)
            assert state(fast) == state(slow)


OPS = ["admit", "ready", "near", "ready_at", "available", "queue", "consume", "refund", "back"]

# Clock readings a loop can have (see test_float_time.py): near 0, trio's real clock, uptime.
float_clocks = st.sampled_from([0.0, 0.5, 12345.678, 123456.789, 1e6 + 0.1, 1e9]) | st.floats(
    0, 1e9
)
float_gaps = st.integers(0, 3000).map(lambda ms: ms / 1000) | st.floats(0, 1e-3)
float_costs = st.sampled_from([1.0, 2.0, 0.5, 5.0]) | st.floats(0.01, 20)


@given(
    cls=st.sampled_from([TokenBucket, GCRA]),
    rate=st.sampled_from([1.0, 3.0, 7.0, 100.0, 2000.0]) | st.floats(0.05, 1e4),
    per=st.sampled_from([1.0, 0.5, 60.0, 0.1]),
    burst=st.integers(1, 20).map(float) | st.floats(0.5, 20),
    initial=st.none() | st.floats(0, 1),
    start=float_clocks,
    ops=st.lists(st.tuples(st.sampled_from(OPS), float_gaps, float_costs), max_size=30),
)
def test_inlined_rule_is_the_shared_rule_in_float(
    cls: type[Bucket],
    rate: float,
    per: float,
    burst: float,
    initial: float | None,
    start: float,
    ops: list[tuple[str, float, float]],
) -> None:
    tokens = None if initial is None else initial * burst
    run(lambda: cls(rate, per, burst=burst, initial_tokens=tokens), start, ops)


@given(
    cls=st.sampled_from([TokenBucket, GCRA]),
    rate=st.integers(1, 50).map(Fraction),
    per=st.sampled_from([Fraction(1), Fraction(1, 2), Fraction(60)]),
    burst=st.integers(1, 20).map(Fraction),
    start=st.integers(0, 10**6).map(Fraction),
    ops=st.lists(
        st.tuples(
            st.sampled_from(OPS),
            st.integers(0, 3000).map(lambda ms: Fraction(ms, 1000)),
            st.integers(1, 20).map(Fraction),
        ),
        max_size=30,
    ),
)
def test_inlined_rule_is_the_shared_rule_in_fractions(
    cls: type[Bucket],
    rate: Fraction,
    per: Fraction,
    burst: Fraction,
    start: Fraction,
    ops: list[tuple[str, Fraction, Fraction]],
) -> None:
    run(lambda: cls(rate, per, burst=burst), start, ops)


@pytest.mark.parametrize("cls", [TokenBucket, GCRA])
def test_contended_rate_at_real_clock_readings(cls: type[Bucket]) -> None:
    """The benchmark's bucket (2,000/s, burst 5) with its head always waiting, at an uptime."""
    run(
        lambda: cls(2000, burst=5),
        123456.789,
        [("ready", 0.0, 1.0)] * 500 + [("ready", 1e-4, 1.0), ("near", 0.3, 1.0)] * 500,
    )


@pytest.mark.parametrize("cls", [TokenBucket, GCRA])
@pytest.mark.parametrize("used", [False, True])
def testadmit_or_ready_at_refuses_a_cost_above_the_capacity(cls: type[Bucket], used: bool) -> None:
    """As ``ready_at`` would, once the bucket was reconfigured under a waiting cost: before
    anything changed (a bucket never used keeps its clock stopped)."""
    bucket = cls(10, burst=2)
    if used:
        bucket.consume(1, 0.0)
    before = state(bucket)
    with pytest.raises(CostExceedsCapacity):
        bucket.admit_or_ready_at(5, 100.0)
    assert state(bucket) == before


@pytest.mark.parametrize("cls", [TokenBucket, GCRA])
@pytest.mark.parametrize("start", [0.0, 0.25, 3.0, 123456.789])
@pytest.mark.parametrize(
    ("rate", "per", "burst"),
    [(2000.0, 1.0, 5.0), (1.0, 1.0, 20.0), (3.0, 60.0, 7.0), (0.1, 1.0, 0.5)],
    ids=["span 2.5 ms", "span 20 s", "span 140 s", "span 5 s"],
)
def test_timers_that_fire_within_the_slack(
    cls: type[Bucket], start: float, rate: float, per: float, burst: float
) -> None:
    """Every term of the slack matters somewhere: the 1 s floor near 0, the clock reading at
    an uptime, the span when the bucket takes longer to fill than the clock has run."""
    near = [("near", k / 16, min(1.0, burst)) for k in range(16)]
    run(lambda: cls(rate, per, burst=burst), start, [("consume", 0.0, burst), *near * 4])
