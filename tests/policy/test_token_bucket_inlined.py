# The bucket is annotated with float time; here it also runs on Fraction (exact arithmetic).
# mypy: disable-error-code="arg-type"
"""The token bucket's hot methods inline the shared rounding rule: they must answer as it does.

``TokenBucket.ready_at``, ``available``, ``consume``, ``queue_ready_at`` and the limiter's
``_admit_or_ready_at`` compute the level and the rule of ``policy.base.refill_ready_at``
without its calls and closures (issue #15).  The reference below is the rule as written
(``refill_ready_at`` with a closure for the level, ``min``/``max`` for the cap and the clock,
``RatePolicy``'s default ``_admit_or_ready_at``), run on a twin bucket: after every operation
both give the same answer, of the same type, and hold the same state, bit for bit, in float at
the clock readings loops have and in ``Fraction``.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttle_trio import CostExceedsCapacity, TokenBucket
from throttle_trio.policy.base import clock_slack, refill_ready_at

# -- The reference: the shared rule as written, on a twin bucket's state ------------------------


def ref_level(bucket: TokenBucket, t: float, since: float) -> float:
    if t <= since:
        return bucket._tokens
    return bucket._tokens + (t - since) * bucket._fill


def ref_since(bucket: TokenBucket, now: float) -> float:
    return bucket._updated if bucket._started else now


def ref_start(bucket: TokenBucket, now: float) -> None:
    if not bucket._started:
        bucket._started = True
        bucket._updated = now


def ref_ready(bucket: TokenBucket, units: float, now: float) -> float:
    since = ref_since(bucket, now)
    if ref_level(bucket, now, since) >= units:
        return now

    def level(t: float) -> float:
        return ref_level(bucket, t, since)

    return refill_ready_at(units, now, level, bucket._fill, bucket._span)


def ref_available(bucket: TokenBucket, now: float) -> float:
    return min(bucket._burst, ref_level(bucket, now, ref_since(bucket, now)))


def ref_ready_at(bucket: TokenBucket, cost: float, now: float) -> float:
    cost = bucket._checked_cost(cost)
    ref_start(bucket, now)
    return ref_ready(bucket, cost, now)


def ref_queue_ready_at(bucket: TokenBucket, ahead: float, cost: float, now: float) -> float:
    return ref_ready(bucket, ahead + bucket._checked_cost(cost), now)


def ref_consume(bucket: TokenBucket, cost: float, now: float) -> None:
    cost = bucket._checked_charge(cost)
    ref_start(bucket, now)
    bucket._tokens = min(bucket._burst, ref_level(bucket, now, bucket._updated))
    bucket._updated = max(bucket._updated, now)
    bucket._tokens -= cost


def ref_admit(bucket: TokenBucket, cost: float, now: float) -> float | None:
    if ref_available(bucket, now) < cost:
        ready = ref_ready_at(bucket, cost, now)
        if ready > now:
            return ready
    ref_consume(bucket, cost, now)
    return None


def state(bucket: TokenBucket) -> tuple[object, ...]:
    values = (bucket._tokens, bucket._updated, bucket._started, bucket._burst)
    return (*values, *(type(v) for v in values))


def new_admit(bucket: TokenBucket, cost: float, now: float) -> object:
    return bucket._admit_or_ready_at(cost, now)


def new_queue(bucket: TokenBucket, cost: float, now: float) -> object:
    return bucket.queue_ready_at(3 * cost, cost, now)


def ref_queue(bucket: TokenBucket, cost: float, now: float) -> object:
    return ref_queue_ready_at(bucket, 3 * cost, cost, now)


def new_available(bucket: TokenBucket, cost: float, now: float) -> object:
    return bucket.available(now)


def old_available(bucket: TokenBucket, cost: float, now: float) -> object:
    return ref_available(bucket, now)


Method = Callable[[TokenBucket, float, float], object]

#: operation: (the bucket's method, the reference), both called as f(bucket, cost, now)
PAIRS: dict[str, tuple[Method, Method]] = {
    "admit": (new_admit, ref_admit),
    "ready_at": (TokenBucket.ready_at, ref_ready_at),
    "available": (new_available, old_available),
    "queue": (new_queue, ref_queue),
    "consume": (TokenBucket.consume, ref_consume),
}


def same(op: str, fast: TokenBucket, slow: TokenBucket, cost: float, now: float) -> None:
    """Both answer the same (or raise the same), and hold the same state after."""
    new, old = PAIRS[op]
    try:
        got: object = new(fast, cost, now)
    except (ValueError, TypeError) as error:
        got = type(error)
    try:
        expected: object = old(slow, cost, now)
    except (ValueError, TypeError) as error:
        expected = type(error)
    assert got == expected
    assert type(got) is type(expected)
    assert state(fast) == state(slow)


def run(make: Callable[[], TokenBucket], start: float, ops: list[tuple[str, float, float]]) -> None:
    fast, slow = make(), make()
    now = start
    for op, gap, cost in ops:
        now += gap
        cost = min(cost, fast.burst) if op != "consume" else cost
        if op in ("ready", "near"):  # a limiter's head: sleep until ready_at, ask again
            ready = fast.ready_at(cost, now)
            assert ready == ref_ready_at(slow, cost, now)
            if op == "near" and ready > now:  # a timer that fires up to 4 slacks early
                now = max(now, ready - (gap % 1) * 4 * clock_slack(ready, fast._span))
            else:
                now = ready
            same("admit", fast, slow, cost, now)
        elif op in PAIRS:
            same(op, fast, slow, cost, now)
        elif op == "back":  # a clock that steps back refills nothing
            now -= 2 * gap
        else:  # the cold paths share _advance
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
    rate=st.sampled_from([1.0, 3.0, 7.0, 100.0, 2000.0]) | st.floats(0.05, 1e4),
    per=st.sampled_from([1.0, 0.5, 60.0, 0.1]),
    burst=st.integers(1, 20).map(float) | st.floats(0.5, 20),
    initial=st.none() | st.floats(0, 1),
    start=float_clocks,
    ops=st.lists(st.tuples(st.sampled_from(OPS), float_gaps, float_costs), max_size=30),
)
def test_inlined_rule_is_the_shared_rule_in_float(
    rate: float,
    per: float,
    burst: float,
    initial: float | None,
    start: float,
    ops: list[tuple[str, float, float]],
) -> None:
    tokens = None if initial is None else initial * burst
    run(lambda: TokenBucket(rate, per, burst=burst, initial_tokens=tokens), start, ops)


@given(
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
    rate: Fraction,
    per: Fraction,
    burst: Fraction,
    start: Fraction,
    ops: list[tuple[str, Fraction, Fraction]],
) -> None:
    run(lambda: TokenBucket(rate, per, burst=burst), start, ops)


def test_contended_rate_at_real_clock_readings() -> None:
    """The benchmark's bucket (2,000/s, burst 5) with its head always waiting, at an uptime."""
    run(
        lambda: TokenBucket(2000, burst=5),
        123456.789,
        [("ready", 0.0, 1.0)] * 500 + [("ready", 1e-4, 1.0), ("near", 0.3, 1.0)] * 500,
    )


def test_admit_or_ready_at_refuses_a_cost_above_the_capacity() -> None:
    """As ``ready_at`` would, once the bucket was reconfigured under a waiting cost."""
    bucket = TokenBucket(10, burst=10)
    bucket.reconfigure(0.0, burst=2)
    before = state(bucket)
    with pytest.raises(CostExceedsCapacity):
        bucket._admit_or_ready_at(5, 100.0)
    assert state(bucket) == before  # refused before anything changed, as ready_at does
    fresh = TokenBucket(10, burst=2)
    with pytest.raises(CostExceedsCapacity):
        fresh._admit_or_ready_at(5, 100.0)
    assert not fresh._started
