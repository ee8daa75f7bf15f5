"""The rounding rule of ``throttle_trio.policy.base`` in float, at the clock readings loops have.

The exact properties (``test_properties.py``) run on ``Fraction`` time; the limiters run on
``anyio.current_time()``, a float that is 1e4 to 1e6 s on trio's real clock (a random offset)
and the machine's uptime on asyncio.  At 1e5 s one ulp is 1.5e-11 s, and a fit test that adds
an interval to the clock reading and subtracts it again refused a full GCRA's burst until the
clock crossed the next power of two (issue #10, item 2).  Here, in float at 0 to 1e9 s:

* a full bucket admits ``cost == burst`` at once;
* ``ready_at`` is the exact answer within the stated slack, never a power of two later;
* ``try_admit``, ``available``, ``ready_at`` and ``queue_ready_at`` agree;
* GCRA and the token bucket decide the same for the same history, within the slack;
* Go's ``x/time/rate`` tests ``TestLimiterBurst1``, ``TestLimiterBurst3`` and ``TestReserveMax``
  pass at any clock offset;
* reading a policy changes nothing (issue #10, item 6).

Tolerances are stated in slacks: ``clock_slack(t, span)`` seconds, ``2**-48`` of the largest time
involved (16 to 32 ulps of it), or that many seconds' refill in units.
"""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import TYPE_CHECKING, cast

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from throttle_trio import GCRA, SlidingWindow, TokenBucket
from throttle_trio.policy.base import clock_slack

if TYPE_CHECKING:
    from throttle_trio.policy import RatePolicy

BUCKETS = [TokenBucket, GCRA]
Bucket = TokenBucket | GCRA

# How far GCRA and the token bucket may be apart: they compute the same quantities in a different
# order (GCRA in seconds, the bucket in units), so a few ulps of the largest time involved.
AGREE = 4  # slacks

# Clock readings a loop can have: MockClock and looptime near 0, trio's real clock at a random
# offset (about 1e4 to 1e6 s), time.monotonic() the machine's uptime; up to 1e9 s (31 years).
CLOCKS = [0.0, 0.5, 1.141, 12345.678, 100_000.0, 123456.789, 1e6 + 0.1, 2.0**20 - 1e-3, 1e9]
clocks = st.one_of(
    st.sampled_from(CLOCKS),
    st.floats(0, 16),
    st.floats(1e4, 1e6),  # trio's real clock
    st.floats(1e5, 1e8),  # time.monotonic(): uptime
    st.floats(0, 1e9),
)
rates = st.sampled_from([1.0, 3.0, 7.0, 10.0, 100.0, 500.0, 1e4]) | st.floats(0.05, 1e4)
pers = st.sampled_from([1.0, 0.5, 60.0, 0.1])
bursts = st.integers(1, 20).map(float) | st.floats(0.5, 20)
costs = st.sampled_from([1.0, 2.0, 3.0, 0.5, 20.0]) | st.floats(0.01, 20)
gaps = st.integers(0, 3000).map(lambda ms: ms / 1000)


def span(policy: Bucket) -> float:
    """Seconds the bucket takes to fill from empty: the slack's scale besides the clock."""
    return policy.burst * policy.per / policy.rate


def slack(policy: Bucket, t: float) -> float:
    return clock_slack(t, span(policy))


def fill(policy: Bucket) -> float:
    return policy.rate / policy.per


def make(cls: type[Bucket], rate: float, per: float, burst: float, initial: float | None) -> Bucket:
    return cls(rate, per, burst=burst, initial_tokens=None if initial is None else initial * burst)


# -- A full bucket admits its burst at once -----------------------------------------------------


@pytest.mark.parametrize("cls", BUCKETS)
@pytest.mark.parametrize("now", [0.5, 1.141, 12345.678])
@pytest.mark.parametrize(("rate", "burst"), [(100.0, 4), (100.0, 8), (3.0, 2)])
def test_full_bucket_admits_its_burst_at_once_issue_10(
    cls: type[Bucket], now: float, rate: float, burst: int
) -> None:
    """The repro's cases: GCRA(100, burst=4) waited 8 s at 1.141 and 65,536 s at 12345.678."""
    bucket = cls(rate, burst=burst)
    assert bucket.ready_at(burst, now) == now
    assert bucket.try_admit(burst, now).allowed


@given(
    cls=st.sampled_from(BUCKETS),
    clock=clocks,
    rate=rates,
    per=pers,
    burst=bursts,
    history=st.lists(st.tuples(gaps, costs), max_size=10),
    idle=st.floats(1, 100),
)
def test_full_bucket_admits_its_burst_at_once(
    cls: type[Bucket],
    clock: float,
    rate: float,
    per: float,
    burst: float,
    history: list[tuple[float, float]],
    idle: float,
) -> None:
    """Fresh, or idle long enough to refill whatever was taken: ``cost == burst`` goes now."""
    bucket = make(cls, rate, per, burst, None)
    now = clock
    assert bucket.ready_at(burst, now) == now
    taken = 0.0
    for gap, cost in history:
        now += gap
        bucket.consume(cost, now)
        taken += cost
    now += idle * (taken / fill(bucket) + span(bucket))  # more than the time to repay it all
    assert bucket.available(now) == burst
    assert bucket.ready_at(burst, now) == now
    assert bucket.try_admit(burst, now).allowed


# -- ready_at is the exact answer, at any clock reading ----------------------------------------


def exact_twin(policy: Bucket) -> Bucket:
    """The same bucket in exact arithmetic: every float parameter as the rational it is."""
    cls = type(policy)
    return cls(
        cast("float", Fraction(policy.rate)),
        cast("float", Fraction(policy.per)),
        burst=cast("float", Fraction(policy.burst)),
    )


def check_ready_at_is_exact(
    cls: type[Bucket],
    clock: float,
    rate: float,
    per: float,
    burst: float,
    ops: list[tuple[float, float]],
) -> None:
    bucket = make(cls, rate, per, burst, None)
    exact = exact_twin(bucket)
    now = clock
    for gap, cost in ops:
        now += gap
        bucket.consume(cost, now)
        exact.consume(cast("float", Fraction(cost)), cast("float", Fraction(now)))
    for want in (burst, burst / 2, min(1.0, burst)):
        got = bucket.ready_at(want, now)
        truth = exact.ready_at(cast("float", Fraction(want)), cast("float", Fraction(now)))
        error = abs(Fraction(got) - Fraction(truth))
        assert error <= Fraction(slack(bucket, float(truth))), (
            f"ready_at({want!r}, {now!r}) = {got!r}, exactly {float(truth)!r}"
        )
        assert bucket.ready_at(want, got) == got  # rule 1: sleeping until it admits


@pytest.mark.parametrize("cls", BUCKETS)
@pytest.mark.parametrize("clock", CLOCKS)
@pytest.mark.parametrize(
    ("rate", "per", "burst"),
    [(10.0, 1.0, 1.0), (100.0, 1.0, 4.0), (3.0, 1.0, 2.0), (500.0, 60.0, 8.0), (1e4, 1.0, 3.0)],
)
def test_ready_at_is_the_exact_answer_at_any_clock_reading(
    cls: type[Bucket], clock: float, rate: float, per: float, burst: float
) -> None:
    """Never a power of two later: within one slack of the exact time, 0 to 1e9 s."""
    check_ready_at_is_exact(cls, clock, rate, per, burst, [])
    check_ready_at_is_exact(cls, clock, rate, per, burst, [(0.0, burst)])
    check_ready_at_is_exact(cls, clock, rate, per, burst, [(0.0, burst), (0.1, 1.0), (0.2, 1.5)])


@given(
    cls=st.sampled_from(BUCKETS),
    clock=clocks,
    rate=rates,
    per=pers,
    burst=bursts,
    ops=st.lists(st.tuples(gaps, costs), max_size=6),
)
def test_ready_at_is_the_exact_answer_for_any_history(
    cls: type[Bucket],
    clock: float,
    rate: float,
    per: float,
    burst: float,
    ops: list[tuple[float, float]],
) -> None:
    check_ready_at_is_exact(cls, clock, rate, per, burst, ops)


# -- One policy agrees with itself: try_admit, available, ready_at, queue_ready_at -------------


def check_agreement(policy: Bucket, cost: float, now: float) -> None:
    """available >= cost => admits; admits => available >= cost - slack; same for every read."""
    ready = policy.ready_at(cost, now)  # starts the clock of a fresh bucket, like a request
    available = policy.available(now)
    assert policy.queue_ready_at(0, cost, now) == ready
    if available >= cost:
        assert ready == now
    if ready == now:
        assert available >= cost - slack(policy, now) * fill(policy)
    else:
        assert ready > now
        assert policy.ready_at(cost, ready) == ready
    probe = copy.deepcopy(policy)
    assert probe.try_admit(cost, now).allowed == (ready == now)


@given(
    cls=st.sampled_from(BUCKETS),
    clock=clocks,
    rate=rates,
    per=pers,
    burst=bursts,
    initial=st.none() | st.floats(0, 1),
    ops=st.lists(st.tuples(st.sampled_from(["gap", "tick", "wait"]), gaps, costs), max_size=20),
)
def test_try_admit_available_ready_at_and_timeouts_agree(
    cls: type[Bucket],
    clock: float,
    rate: float,
    per: float,
    burst: float,
    initial: float | None,
    ops: list[tuple[str, float, float]],
) -> None:
    policy = make(cls, rate, per, burst, initial)
    now = clock
    for how, gap, cost in ops:
        cost = min(cost, burst)
        if how == "gap":
            now += gap
        elif how == "tick":  # land on the refill grid, where float rounding decides
            now += round(gap * 10) * policy.per / policy.rate
        else:
            now = policy.ready_at(cost, now)
        check_agreement(policy, cost, now)
        if not policy.try_admit(cost, now).allowed:
            policy.consume(cost / 2, now)  # a settle above the estimate: a debt


# -- GCRA is the token bucket, in float ---------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), gaps),
        st.tuples(st.just("tick"), st.integers(0, 6).map(float)),
        st.tuples(st.just("admit"), costs),
        st.tuples(st.just("wait"), costs),
        st.tuples(st.just("consume"), st.floats(0.01, 30)),
        st.tuples(st.just("refund"), st.floats(0, 30)),
        st.tuples(st.just("limit"), st.floats(-10, 30)),
        st.tuples(st.just("rate"), rates),
        st.tuples(st.just("burst"), bursts),
    ),
    max_size=50,
)


def assert_close(a: float, b: float, tolerance: float, what: str) -> None:
    assert abs(a - b) <= tolerance, f"{what}: {a!r} vs {b!r}, tolerance {tolerance!r}"


@given(
    clock=clocks,
    rate=rates,
    per=pers,
    burst=bursts,
    initial=st.none() | st.floats(0, 1),
    ops=operations,
)
def test_gcra_is_the_token_bucket_in_float(
    clock: float,
    rate: float,
    per: float,
    burst: float,
    initial: float | None,
    ops: list[tuple[str, float]],
) -> None:
    """The same decisions for the same history, within ``AGREE`` slacks.

    Where the two round a borderline cost differently, the one that refuses it must be ready
    within ``AGREE`` slacks; it is then charged too, so that the histories stay the same.
    """
    bucket = make(TokenBucket, rate, per, burst, initial)
    gcra = make(GCRA, rate, per, burst, initial)
    now = clock
    for op, value in ops:
        if op == "advance":
            now += value
        elif op == "tick":
            now += value * bucket.per / bucket.rate
        elif op in ("admit", "wait"):
            cost = min(value, bucket.capacity)
            ready_b, ready_g = bucket.ready_at(cost, now), gcra.ready_at(cost, now)
            later = max(ready_b, ready_g)
            assert_close(ready_b, ready_g, AGREE * slack(bucket, later), "ready_at")
            if op == "wait":
                now = later
            admitted_b = bucket.try_admit(cost, now).allowed
            admitted_g = gcra.try_admit(cost, now).allowed
            if admitted_b != admitted_g:
                refused = gcra if admitted_b else bucket
                note(f"borderline: {cost!r} at {now!r}, {type(refused).__name__} refused")
                assert refused.ready_at(cost, now) - now <= AGREE * slack(bucket, now)
                refused.consume(cost, now)
        elif op == "consume":
            bucket.consume(value, now)
            gcra.consume(value, now)
        elif op == "refund":
            assert_close(
                bucket.refund(value, now),
                gcra.refund(value, now),
                AGREE * slack(bucket, now) * fill(bucket),
                "dropped",
            )
        elif op == "limit":
            bucket.limit_available(value, now)
            gcra.limit_available(value, now)
        else:
            bucket.reconfigure(now, **{op: value})
            gcra.reconfigure(now, **{op: value})
        level = min(bucket.available(now), gcra.available(now))
        full_at = now + (bucket.capacity - level) / fill(bucket)  # the largest time involved
        assert_close(
            bucket.available(now),
            gcra.available(now),
            AGREE * slack(bucket, full_at) * fill(bucket),
            "available",
        )
        assert bucket.available(now) <= bucket.capacity
        assert gcra.available(now) <= gcra.capacity


# -- Go's x/time/rate tests, at any clock offset ------------------------------------------------

D = 0.1  # Go's `d`: 100 ms


def t(base: float, k: int) -> float:
    """Go's ``t0 .. t9``: ``base + k * d``, as a float clock would read them."""
    return base + k * D


@pytest.mark.parametrize("cls", BUCKETS)
@pytest.mark.parametrize("base", CLOCKS)
def test_go_limiter_burst_1(cls: type[Bucket], base: float) -> None:
    """``TestLimiterBurst1``: NewLimiter(10, 1)."""
    lim = cls(10, burst=1)
    rows = [(0, 1, True), (0, 1, False), (0, 1, False), (1, 1, True), (1, 1, False)]
    rows += [(1, 1, False), (2, 1, True), (2, 1, False)]
    for k, n, ok in rows:
        assert lim.try_admit(n, t(base, k)).allowed == ok, (k, n)
    with pytest.raises(ValueError, match=r"^cost must be <= the capacity 1, got 2$"):
        lim.try_admit(2, t(base, 2))  # burst size is 1, so n=2 always fails (at once, here)


@pytest.mark.parametrize("cls", BUCKETS)
@pytest.mark.parametrize("base", CLOCKS)
def test_go_limiter_burst_3(cls: type[Bucket], base: float) -> None:
    """``TestLimiterBurst3``: NewLimiter(10, 3) (its row for n=0 has no counterpart here)."""
    lim = cls(10, burst=3)
    rows = [(0, 2, True), (0, 2, False), (0, 1, True), (0, 1, False), (2, 1, True)]
    rows += [(3, 1, True), (4, 1, True), (4, 1, True), (4, 1, False), (4, 1, False), (9, 3, True)]
    for k, n, ok in rows:
        assert lim.try_admit(n, t(base, k)).allowed == ok, (k, n)
    with pytest.raises(ValueError, match=r"^cost must be <= the capacity 3, got 4$"):
        lim.ready_at(4, t(base, 1))


@pytest.mark.parametrize("cls", BUCKETS)
@pytest.mark.parametrize("base", CLOCKS)
def test_go_reserve_max(cls: type[Bucket], base: float) -> None:
    """``TestReserveMax``: NewLimiter(10, 2), each request waiting at most ``d``.

    This library books nothing in advance (I8): a request that may wait is admitted at the
    first instant it fits, and the queue bound tells, up front, whether that is in time.
    """
    lim = cls(10, burst=2)
    t0 = t(base, 0)
    assert lim.try_admit(2, t0).allowed
    # {t0, 1, t1, true}: it fits at t1, exactly the longest wait allowed.
    assert lim.queue_ready_at(0, 1, t0) == lim.ready_at(1, t0) <= t0 + D
    # {t0, 1, t2, false}: behind that one, it would fit only at t2.
    assert lim.queue_ready_at(1, 1, t0) > t0 + D
    ready = lim.ready_at(1, t0)
    assert lim.try_admit(1, ready).allowed
    # {t2, 1, t2, true}
    assert lim.try_admit(1, t(base, 2)).allowed


# -- Reading changes nothing --------------------------------------------------------------------


def state(policy: RatePolicy) -> dict[str, object]:
    """Every attribute a policy keeps, deep-copied."""
    slots = [name for cls in type(policy).__mro__ for name in getattr(cls, "__slots__", ())]
    return {name: copy.deepcopy(getattr(policy, name)) for name in slots}


def read_everything(policy: RatePolicy, now: float) -> None:
    policy.available(now)
    policy.available(now + 100)
    policy.queue_ready_at(3, 1, now)
    repr(policy)
    for name in dir(type(policy)):
        if isinstance(getattr(type(policy), name), property):
            getattr(policy, name)


def policies() -> list[RatePolicy]:
    return [
        TokenBucket(10, burst=5),
        TokenBucket(10, burst=5, initial_tokens=0),
        GCRA(10, burst=5),
        GCRA(10, burst=5, initial_tokens=0),
        SlidingWindow(5, 1.0),
    ]


@pytest.mark.parametrize("policy", policies(), ids=repr)
@pytest.mark.parametrize("used", [False, True])
def test_reads_change_nothing(policy: RatePolicy, used: bool) -> None:
    """``available``, ``queue_ready_at``, properties and ``repr`` are pure (issue #10, item 6)."""
    policy = copy.deepcopy(policy)
    if used:
        policy.consume(2, 100.0)
        policy.consume(2, 100.5)
    before = state(policy)
    read_everything(policy, 100.75)
    read_everything(policy, 1000.0)  # when every admission has left a window
    assert state(policy) == before


def test_sliding_window_ready_at_is_pure() -> None:
    window = SlidingWindow(5, 1.0)
    window.consume(3, 0.0)
    window.consume(2, 0.5)
    before = state(window)
    assert window.ready_at(3, 1.25) == 1.25  # the entry at 0 has left; it stays recorded
    assert window.ready_at(5, 1.25) == 1.5
    assert state(window) == before
    # A write drops what has left, and sees the same numbers the reads saw.
    assert window.try_admit(3, 1.25).allowed
    assert window.available(1.25) == 0


@pytest.mark.parametrize("cls", BUCKETS)
def test_statistics_before_the_first_request_do_not_start_the_clock(cls: type[Bucket]) -> None:
    """Issue #10, item 6: a bucket read at 0, first asked at 5, admitted its burst a second
    early (at 5 instead of 6)."""
    observed = cls(10, burst=10, initial_tokens=0)
    fresh = cls(10, burst=10, initial_tokens=0)
    assert observed.available(0.0) == 0
    assert observed.queue_ready_at(0, 10, 0.0) == 1.0  # as if it started now
    if isinstance(observed, GCRA):
        assert observed.theoretical_arrival_time is None
    assert observed.ready_at(10, 5.0) == fresh.ready_at(10, 5.0) == 6.0
    assert not observed.try_admit(10, 5.5).allowed
    assert observed.try_admit(10, 6.0).allowed


@pytest.mark.parametrize("cls", BUCKETS)
def test_a_request_starts_the_clock(cls: type[Bucket]) -> None:
    """The first ``ready_at`` is a promise (rule 1): sleeping until its answer admits."""
    bucket = cls(4, burst=8, initial_tokens=0)
    assert bucket.ready_at(1, 5.0) == 5.25
    assert bucket.ready_at(1, 5.25) == 5.25
    assert bucket.available(6.0) == 4
