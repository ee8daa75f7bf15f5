"""Bad arguments to every public constructor and method: the exception type and the whole message.

Messages follow ``"<name> must be <constraint>, got <value!r>"`` (wrong type: ``TypeError``, wrong
range: ``ValueError``; see ``throttle_trio/_validate.py``).  Checks that need no event loop are
plain synchronous tests; async methods run on both backends.  A rejected call changes nothing.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import pytest

from throttle_trio import (
    AIMD,
    GCRA,
    CostExceedsCapacity,
    RateLimiter,
    RatePolicy,
    SlidingWindow,
    ThrottleTrioError,
    TokenBucket,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def exact(message: str) -> str:
    """A pattern that matches ``message`` and nothing more."""
    return f"^{re.escape(message)}$"


# (value, error, message with {name}) for every kind of check.
NOT_A_NUMBER: list[tuple[Any, type[Exception], str]] = [
    ("1", TypeError, "{name} must be a real number, got str '1'"),
    (True, TypeError, "{name} must be a real number, got bool True"),
    (None, TypeError, "{name} must be a real number, got NoneType None"),
    (Decimal("1"), TypeError, "{name} must be a real number, got Decimal Decimal('1')"),
    (1j, TypeError, "{name} must be a real number, got complex 1j"),
]
NOT_POSITIVE: list[tuple[Any, type[Exception], str]] = [
    (0, ValueError, "{name} must be a finite number > 0, got 0"),
    (0.0, ValueError, "{name} must be a finite number > 0, got 0.0"),
    (-1, ValueError, "{name} must be a finite number > 0, got -1"),
    (-0.5, ValueError, "{name} must be a finite number > 0, got -0.5"),
    (math.nan, ValueError, "{name} must be a finite number > 0, got nan"),
    (math.inf, ValueError, "{name} must be a finite number > 0, got inf"),
    (-math.inf, ValueError, "{name} must be a finite number > 0, got -inf"),
    *NOT_A_NUMBER,
]
NEGATIVE: list[tuple[Any, type[Exception], str]] = [
    (-1, ValueError, "{name} must be a finite number >= 0, got -1"),
    (-1e-9, ValueError, "{name} must be a finite number >= 0, got -1e-09"),
    (math.nan, ValueError, "{name} must be a finite number >= 0, got nan"),
    (math.inf, ValueError, "{name} must be a finite number >= 0, got inf"),
    *NOT_A_NUMBER,
]
NOT_FINITE: list[tuple[Any, type[Exception], str]] = [
    (math.nan, ValueError, "{name} must be a finite number, got nan"),
    (math.inf, ValueError, "{name} must be a finite number, got inf"),
    (-math.inf, ValueError, "{name} must be a finite number, got -inf"),
    *NOT_A_NUMBER,
]
BAD_TIMEOUT: list[tuple[Any, type[Exception], str]] = [
    (-1, ValueError, "timeout must be None or a number >= 0, got -1"),
    (-0.001, ValueError, "timeout must be None or a number >= 0, got -0.001"),
    (-math.inf, ValueError, "timeout must be None or a number >= 0, got -inf"),
    (math.nan, ValueError, "timeout must be None or a number >= 0, got nan"),
    ("x", TypeError, "timeout must be a real number, got str 'x'"),
    (True, TypeError, "timeout must be a real number, got bool True"),
]


# For optional parameters None means "the default": every bad value but None.
def not_none(
    cases: list[tuple[Any, type[Exception], str]],
) -> list[tuple[Any, type[Exception], str]]:
    return [case for case in cases if case[0] is not None]


def ids(cases: Sequence[tuple[Any, type[Exception], str]]) -> list[str]:
    return [repr(value) for value, _, _ in cases]


POLICIES: dict[str, Callable[[], RatePolicy]] = {
    "TokenBucket": lambda: TokenBucket(5, per=2.0),
    "GCRA": lambda: GCRA(5, per=2.0),
    "SlidingWindow": lambda: SlidingWindow(5, window=2.0),
}


@pytest.fixture(params=sorted(POLICIES))
def policy_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def policy_of(name: str) -> RatePolicy:
    """A policy of capacity 5 (the int 5, as the messages show it)."""
    policy: RatePolicy = POLICIES[name]()
    return policy


def state(policy: RatePolicy) -> tuple[float, float, tuple[float, ...]]:
    """What a rejected call must leave unchanged."""
    params = tuple(
        getattr(policy, attr)
        for attr in ("rate", "per", "burst", "limit", "window")
        if hasattr(policy, attr)
    )
    return policy.capacity, policy.available(1.0), params


# --------------------------------------------------------------------------- constructors


@pytest.mark.parametrize("cls", [TokenBucket, GCRA])
@pytest.mark.parametrize(("value", "error", "message"), NOT_POSITIVE, ids=ids(NOT_POSITIVE))
@pytest.mark.parametrize("name", ["rate", "per"])
def test_bucket_rate_and_per(
    cls: type[RatePolicy], name: str, value: Any, error: type[Exception], message: str
) -> None:
    kwargs: dict[str, Any] = {"rate": 10, "per": 1.0, name: value}
    with pytest.raises(error, match=exact(message.format(name=name))):
        cls(kwargs["rate"], per=kwargs["per"])  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", [TokenBucket, GCRA])
@pytest.mark.parametrize(
    ("value", "error", "message"), not_none(NOT_POSITIVE), ids=ids(not_none(NOT_POSITIVE))
)
def test_bucket_burst(
    cls: type[RatePolicy], value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=exact(message.format(name="burst"))):
        cls(10, burst=value)  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", [TokenBucket, GCRA])
@pytest.mark.parametrize(
    ("value", "error", "message"), not_none(NEGATIVE), ids=ids(not_none(NEGATIVE))
)
def test_bucket_initial_tokens_type_and_range(
    cls: type[RatePolicy], value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=exact(message.format(name="initial_tokens"))):
        cls(10, initial_tokens=value)  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", [TokenBucket, GCRA])
def test_bucket_initial_tokens_above_burst(cls: type[RatePolicy]) -> None:
    with pytest.raises(ValueError, match=exact("initial_tokens must be <= burst (5), got 6")):
        cls(10, burst=5, initial_tokens=6)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=exact("initial_tokens must be <= burst (2.5), got 3")):
        cls(10, burst=2.5, initial_tokens=3)  # type: ignore[call-arg]
    # The burst defaults to the rate, and the message shows that.
    with pytest.raises(ValueError, match=exact("initial_tokens must be <= burst (4), got 4.5")):
        cls(4, initial_tokens=4.5)  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", [TokenBucket, GCRA])
def test_bucket_accepts_any_real_number(cls: type[RatePolicy]) -> None:
    """int, float and Fraction are real numbers; 0 and the burst are valid initial tokens."""
    cls(Fraction(1, 2), per=Fraction(3, 2), burst=2.5, initial_tokens=0)  # type: ignore[call-arg]
    cls(10, per=1, burst=10, initial_tokens=10)  # type: ignore[call-arg]


@pytest.mark.parametrize(("value", "error", "message"), NOT_POSITIVE, ids=ids(NOT_POSITIVE))
@pytest.mark.parametrize("name", ["limit", "window"])
def test_sliding_window_parameters(
    name: str, value: Any, error: type[Exception], message: str
) -> None:
    kwargs: dict[str, Any] = {"limit": 10, "window": 1.0, name: value}
    with pytest.raises(error, match=exact(message.format(name=name))):
        SlidingWindow(kwargs["limit"], window=kwargs["window"])


@pytest.mark.parametrize(
    ("name", "value", "error", "message"),
    [
        pytest.param(name, value, error, message, id=f"{name}-{value!r}")
        for name in ["ceiling", "floor", "decrease", "increase"]
        for value, error, message in NOT_POSITIVE
        if not (value is None and name in ("floor", "increase"))  # None: the default
    ],
)
def test_aimd_positive_parameters(
    name: str, value: Any, error: type[Exception], message: str
) -> None:
    kwargs: dict[str, Any] = {"ceiling": 10, name: value}
    ceiling = kwargs.pop("ceiling")
    with pytest.raises(error, match=exact(message.format(name=name))):
        AIMD(ceiling, **kwargs)


@pytest.mark.parametrize(("value", "error", "message"), NEGATIVE, ids=ids(NEGATIVE))
def test_aimd_cooldown(value: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=exact(message.format(name="cooldown"))):
        AIMD(10, cooldown=value)


def test_aimd_ranges_between_parameters() -> None:
    with pytest.raises(ValueError, match=exact("floor must be <= ceiling (10), got 20")):
        AIMD(10, floor=20)
    with pytest.raises(ValueError, match=exact("decrease must be < 1, got 1")):
        AIMD(10, decrease=1)
    with pytest.raises(ValueError, match=exact("decrease must be < 1, got 1.5")):
        AIMD(10, decrease=1.5)
    AIMD(10, floor=10, decrease=0.99, cooldown=0)  # the edges that are allowed


@pytest.mark.parametrize(("value", "error", "message"), NOT_POSITIVE, ids=ids(NOT_POSITIVE))
def test_aimd_set_ceiling(value: Any, error: type[Exception], message: str) -> None:
    aimd = AIMD(10)
    with pytest.raises(error, match=exact(message.format(name="ceiling"))):
        aimd.set_ceiling(value)
    assert aimd.ceiling == 10
    assert aimd.rate == 10


@pytest.mark.parametrize(
    ("policy", "shown"),
    [
        ("x", "str 'x'"),
        (None, "NoneType None"),
        (5, "int 5"),
        (TokenBucket, f"ABCMeta {TokenBucket!r}"),  # the class, not an instance
        (AIMD(10), "AIMD AIMD(rate=10, floor=0.1, ceiling=10)"),  # not a rate policy
    ],
)
def test_rate_limiter_needs_a_policy(policy: Any, shown: str) -> None:
    message = f"policy must be a RatePolicy (TokenBucket, GCRA, SlidingWindow, ...), got {shown}"
    with pytest.raises(TypeError, match=exact(message)):
        RateLimiter(policy)


# --------------------------------------------------------------------------- costs

BAD_COST: list[tuple[Any, type[Exception], str]] = [
    *[(v, e, m.format(name="cost")) for v, e, m in NOT_POSITIVE],
    (6, CostExceedsCapacity, "cost must be <= the capacity 5, got 6"),
    (5.5, CostExceedsCapacity, "cost must be <= the capacity 5, got 5.5"),
    (Fraction(11, 2), CostExceedsCapacity, "cost must be <= the capacity 5, got Fraction(11, 2)"),
]


def test_cost_exceeds_capacity_is_a_value_error() -> None:
    assert issubclass(CostExceedsCapacity, ValueError)
    assert issubclass(CostExceedsCapacity, ThrottleTrioError)


@pytest.mark.parametrize(("cost", "error", "message"), BAD_COST, ids=ids(BAD_COST))
def test_try_acquire_cost(
    policy_name: str, cost: Any, error: type[Exception], message: str
) -> None:
    """try_acquire() checks the cost before it reads the clock: no loop needed."""
    limiter = RateLimiter(policy_of(policy_name))
    with pytest.raises(error, match=exact(message)):
        limiter.try_acquire(cost)


@pytest.mark.parametrize(("cost", "error", "message"), BAD_COST, ids=ids(BAD_COST))
def test_policy_cost(policy_name: str, cost: Any, error: type[Exception], message: str) -> None:
    """The pure policies check costs the same way, and a rejected cost changes nothing."""
    policy = policy_of(policy_name)
    before = state(policy)
    with pytest.raises(error, match=exact(message)):
        policy.ready_at(cost, 1.0)
    with pytest.raises(error, match=exact(message)):
        policy.try_admit(cost, 1.0)
    assert state(policy) == before


def queue_ready_at_cases() -> list[Any]:
    return [
        pytest.param(name, cost, error, message, id=f"{name}-{cost!r}")
        for name in sorted(POLICIES)
        for cost, error, message in BAD_COST
    ]


@pytest.mark.parametrize(("name", "cost", "error", "message"), queue_ready_at_cases())
def test_policy_queue_ready_at_cost(
    name: str, cost: Any, error: type[Exception], message: str
) -> None:
    policy = policy_of(name)
    before = state(policy)
    with pytest.raises(error, match=exact(message)):
        policy.queue_ready_at(0, cost, 1.0)
    assert state(policy) == before


@pytest.mark.parametrize(
    ("cost", "error", "message"),
    CONSUME_BAD := [
        (v, e, m.format(name="cost")) for v, e, m in NOT_POSITIVE if e is ValueError and v != 0
    ],
    ids=ids(CONSUME_BAD),
)
def test_policy_consume_cost(
    policy_name: str, cost: Any, error: type[Exception], message: str
) -> None:
    """consume() records any finite cost > 0 (even above the capacity: a debt), nothing else."""
    policy = policy_of(policy_name)
    before = state(policy)
    with pytest.raises(error, match=exact(message)):
        policy.consume(cost, 1.0)
    assert state(policy) == before


@pytest.mark.anyio
@pytest.mark.parametrize(("cost", "error", "message"), BAD_COST, ids=ids(BAD_COST))
async def test_acquire_cost(
    policy_name: str, cost: Any, error: type[Exception], message: str
) -> None:
    limiter = RateLimiter(policy_of(policy_name))
    with pytest.raises(error, match=exact(message)):
        await limiter.acquire(cost)
    stats = limiter.statistics()
    assert stats.admitted == 0
    assert stats.available == 5
    assert stats.tasks_waiting == 0


@pytest.mark.anyio
@pytest.mark.parametrize(("bad", "error", "message"), BAD_TIMEOUT, ids=ids(BAD_TIMEOUT))
async def test_acquire_timeout(bad: Any, error: type[Exception], message: str) -> None:
    limiter = RateLimiter(TokenBucket(5))
    with pytest.raises(error, match=exact(message)):
        await limiter.acquire(1, timeout=bad)
    stats = limiter.statistics()
    assert stats.admitted == 0
    assert stats.timeouts == 0
    # None, 0 and infinity are valid timeouts.
    await limiter.acquire(1, timeout=None)
    await limiter.acquire(1, timeout=0)
    await limiter.acquire(1, timeout=math.inf)
    assert limiter.statistics().admitted == 3


# --------------------------------------------------------------------------- refunds


@pytest.mark.parametrize(("amount", "error", "message"), NEGATIVE, ids=ids(NEGATIVE))
def test_limiter_refund_amount(
    policy_name: str, amount: Any, error: type[Exception], message: str
) -> None:
    """refund() checks the amount before it reads the clock: no loop needed."""
    limiter = RateLimiter(policy_of(policy_name))
    with pytest.raises(error, match=exact(message.format(name="amount"))):
        limiter.refund(amount)


@pytest.mark.parametrize(("amount", "error", "message"), NEGATIVE, ids=ids(NEGATIVE))
def test_policy_refund_amount(
    policy_name: str, amount: Any, error: type[Exception], message: str
) -> None:
    policy = policy_of(policy_name)
    policy.consume(3, 1.0)
    before = state(policy)
    with pytest.raises(error, match=exact(message.format(name="amount"))):
        policy.refund(amount, 1.0)
    assert state(policy) == before
    assert policy.dropped == 0


@pytest.mark.parametrize(("tokens", "error", "message"), NOT_FINITE, ids=ids(NOT_FINITE))
def test_policy_limit_available_tokens(
    policy_name: str, tokens: Any, error: type[Exception], message: str
) -> None:
    policy = policy_of(policy_name)
    before = state(policy)
    with pytest.raises(error, match=exact(message.format(name="tokens"))):
        policy.limit_available(tokens, 1.0)
    assert state(policy) == before


# --------------------------------------------------------------------------- reconfigure

KNOWN = {"TokenBucket": ["burst", "per", "rate"], "GCRA": ["burst", "per", "rate"]}
KNOWN["SlidingWindow"] = ["limit", "window"]

UNKNOWN: list[tuple[dict[str, Any], str]] = [
    ({"foo": 1}, "['foo']"),
    ({"zeta": 1, "alpha": 2}, "['alpha', 'zeta']"),
    ({"capacity": 3}, "['capacity']"),
    ({"initial_tokens": 0}, "['initial_tokens']"),  # a constructor-only parameter
]


def unknown_for(policy_name: str) -> list[tuple[dict[str, Any], str]]:
    """Unknown keywords, including the other policies' parameters."""
    other = "limit" if policy_name != "SlidingWindow" else "rate"
    return [*UNKNOWN, ({other: 3}, f"[{other!r}]")]


def test_policy_reconfigure_unknown_keyword(policy_name: str) -> None:
    for changes, shown in unknown_for(policy_name):
        policy = policy_of(policy_name)
        before = state(policy)
        message = f"{policy_name}.reconfigure() got unknown parameters {shown}"
        with pytest.raises(TypeError, match=exact(message)):
            policy.reconfigure(1.0, **changes)
        # A valid keyword next to an unknown one is not applied either.
        with pytest.raises(TypeError, match=exact(message)):
            policy.reconfigure(1.0, **{KNOWN[policy_name][0]: 1}, **changes)
        assert state(policy) == before


@pytest.mark.parametrize(("value", "error", "message"), NOT_POSITIVE, ids=ids(NOT_POSITIVE))
def test_policy_reconfigure_bad_value(
    policy_name: str, value: Any, error: type[Exception], message: str
) -> None:
    for name in KNOWN[policy_name]:
        policy = policy_of(policy_name)
        before = state(policy)
        with pytest.raises(error, match=exact(message.format(name=name))):
            policy.reconfigure(1.0, **{name: value})
        # A bad value next to a valid change: nothing is applied.
        others = [n for n in KNOWN[policy_name] if n != name]
        with pytest.raises(error, match=exact(message.format(name=name))):
            policy.reconfigure(1.0, **{others[0]: 1, name: value})
        assert state(policy) == before


@pytest.mark.anyio
async def test_limiter_reconfigure_unknown_keyword(policy_name: str) -> None:
    for changes, shown in unknown_for(policy_name):
        limiter = RateLimiter(policy_of(policy_name))
        before = state(limiter.policy)
        message = f"{policy_name}.reconfigure() got unknown parameters {shown}"
        with pytest.raises(TypeError, match=exact(message)):
            limiter.reconfigure(**changes)
        assert state(limiter.policy) == before


@pytest.mark.anyio
@pytest.mark.parametrize(("value", "error", "message"), NOT_POSITIVE, ids=ids(NOT_POSITIVE))
async def test_limiter_reconfigure_bad_value(
    policy_name: str, value: Any, error: type[Exception], message: str
) -> None:
    for name in KNOWN[policy_name]:
        limiter = RateLimiter(policy_of(policy_name))
        before = state(limiter.policy)
        with pytest.raises(error, match=exact(message.format(name=name))):
            limiter.reconfigure(**{name: value})
        assert state(limiter.policy) == before
        await limiter.acquire(5)  # still works, at the old capacity
