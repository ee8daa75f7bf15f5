"""The pure retry policy: which responses to retry, backoff, server delays, key pauses."""

from __future__ import annotations

import logging
import math
import pickle
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttle_trio import ThrottleTrioError
from throttle_trio._retry import (
    DEFAULT_RETRY_STATUSES,
    RetryAfterTooLong,
    RetryPolicy,
    ServerDelay,
)

# 2015-10-21T07:28:00Z, the HTTP-date of MDN's Retry-After example.
OCT_21_2015 = 1445412480.0


def whole(message: str) -> str:
    """A `match=` pattern for exactly this message."""
    return f"^{re.escape(message)}$"


# -- construction ------------------------------------------------------------------------------


def test_defaults() -> None:
    """The defaults: 5 attempts, 0.5 s doubling to 30 s, server waits up to 120 s."""
    policy = RetryPolicy()
    assert policy.max_attempts == 5
    assert policy.base_delay == 0.5
    assert policy.max_delay == 30.0
    assert policy.max_retry_after == 120.0
    assert policy.total_timeout is None
    assert policy.retry_statuses == DEFAULT_RETRY_STATUSES
    assert {408, 409, 429, 500, 502, 503, 504, 529} <= DEFAULT_RETRY_STATUSES
    assert set(range(500, 600)) <= DEFAULT_RETRY_STATUSES
    assert not {400, 401, 403, 404, 422} & DEFAULT_RETRY_STATUSES


def test_repr_is_short_and_evaluates() -> None:
    """The repr collapses runs of statuses into ranges and rebuilds an equal policy."""
    policy = RetryPolicy(max_attempts=3, total_timeout=60)
    assert repr(policy) == (
        "RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=30.0, max_retry_after=120.0, "
        "total_timeout=60.0, retry_statuses=frozenset({408, 409, 429, *range(500, 600)}))"
    )
    assert eval(repr(policy)) == policy
    custom = RetryPolicy(retry_statuses=frozenset({429, 500, 501, 503, 504}))
    assert repr(custom).endswith("retry_statuses=frozenset({429, 500, 501, 503, 504}))")
    assert repr(RetryPolicy(retry_statuses=frozenset())).endswith("frozenset())")


def test_numbers_are_normalized() -> None:
    """Ints become floats and a set becomes a frozenset, so equal policies compare equal."""
    policy = RetryPolicy(base_delay=1, max_delay=10, max_retry_after=60, total_timeout=5)
    assert [type(value) for value in (policy.base_delay, policy.max_delay)] == [float, float]
    assert type(policy.total_timeout) is float
    assert RetryPolicy(retry_statuses={429}).retry_statuses == frozenset({429})  # type: ignore[arg-type]
    assert type(RetryPolicy(retry_statuses={429}).retry_statuses) is frozenset  # type: ignore[arg-type]
    assert hash(policy) == hash(
        RetryPolicy(base_delay=1.0, max_delay=10.0, max_retry_after=60.0, total_timeout=5.0)
    )


def test_policy_is_frozen() -> None:
    """A policy is a value: it cannot be changed after construction."""
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts must be an int >= 1, got 0"),
        ({"max_attempts": -3}, ValueError, "max_attempts must be an int >= 1, got -3"),
        ({"max_attempts": 2.0}, TypeError, "max_attempts must be an int, got float 2.0"),
        ({"max_attempts": True}, TypeError, "max_attempts must be an int, got bool True"),
        ({"max_attempts": None}, TypeError, "max_attempts must be an int, got NoneType None"),
        ({"base_delay": -1}, ValueError, "base_delay must be a finite number >= 0, got -1"),
        ({"base_delay": "1"}, TypeError, "base_delay must be a real number, got str '1'"),
        ({"max_delay": math.inf}, ValueError, "max_delay must be a finite number >= 0, got inf"),
        (
            {"max_retry_after": math.nan},
            ValueError,
            "max_retry_after must be a finite number >= 0, got nan",
        ),
        (
            {"max_retry_after": False},
            TypeError,
            "max_retry_after must be a real number, got bool False",
        ),
        (
            {"total_timeout": 0},
            ValueError,
            "total_timeout must be None or a finite number > 0, got 0",
        ),
        (
            {"total_timeout": math.inf},
            ValueError,
            "total_timeout must be None or a finite number > 0, got inf",
        ),
        (
            {"total_timeout": "5"},
            TypeError,
            "total_timeout must be None or a real number, got str '5'",
        ),
        (
            {"retry_statuses": [429]},
            TypeError,
            "retry_statuses must be a set of ints, got list [429]",
        ),
        (
            {"retry_statuses": frozenset({"429"})},
            TypeError,
            "retry_statuses must be a set of ints, got str '429' in it",
        ),
        (
            {"retry_statuses": frozenset({600})},
            ValueError,
            "retry_statuses must hold HTTP statuses from 100 to 599, got 600 in it",
        ),
    ],
)
def test_validation_messages(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    """Bad parameters fail at construction with a message naming parameter, rule and value."""
    with pytest.raises(error, match=whole(message)):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# -- should_retry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "attempt", "expected"),
    [
        (429, {}, 1, True),
        (429, {}, 4, True),
        (429, {}, 5, False),  # the last attempt: no retry
        (429, {}, 6, False),
        (408, {}, 1, True),
        (409, {}, 1, True),
        (500, {}, 1, True),
        (502, {}, 1, True),
        (503, {}, 1, True),
        (504, {}, 1, True),
        (529, {}, 1, True),  # Anthropic's "overloaded"
        (599, {}, 1, True),
        (400, {}, 1, False),
        (401, {}, 1, False),
        (403, {}, 1, False),
        (404, {}, 1, False),
        (422, {}, 1, False),
        # x-should-retry overrides the status ...
        (400, {"x-should-retry": "true"}, 1, True),
        (429, {"x-should-retry": "false"}, 1, False),
        (500, {"X-Should-Retry": "FALSE"}, 1, False),
        # ... but not the attempt limit, and never makes a success an error
        (429, {"x-should-retry": "true"}, 5, False),
        (200, {"x-should-retry": "true"}, 1, False),
        (302, {}, 1, False),
        # a garbage verdict is no verdict
        (429, {"x-should-retry": "maybe"}, 1, True),
        (400, {"x-should-retry": "maybe"}, 1, False),
    ],
)
def test_should_retry(status: int, headers: dict[str, str], attempt: int, expected: bool) -> None:
    """Retry the retryable statuses while attempts remain; x-should-retry overrides status."""
    assert RetryPolicy().should_retry(status, headers, attempt) is expected


def test_should_retry_uses_the_configured_statuses() -> None:
    """A custom status set replaces the default one entirely."""
    policy = RetryPolicy(retry_statuses=frozenset({429}))
    assert policy.should_retry(429, {}, 1)
    assert not policy.should_retry(500, {}, 1)
    assert not policy.should_retry(529, {}, 1)


def test_one_attempt_never_retries() -> None:
    """max_attempts=1 means the first attempt is the last."""
    assert not RetryPolicy(max_attempts=1).should_retry(429, {"x-should-retry": "true"}, 1)


@pytest.mark.parametrize(
    ("attempt", "error", "message"),
    [
        (0, ValueError, "attempt must be an int >= 1, got 0"),
        (1.0, TypeError, "attempt must be an int, got float 1.0"),
    ],
)
def test_attempt_is_checked(attempt: object, error: type[Exception], message: str) -> None:
    """Attempts count from 1."""
    with pytest.raises(error, match=whole(message)):
        RetryPolicy().should_retry(429, {}, attempt)  # type: ignore[arg-type]
    with pytest.raises(error, match=whole(message)):
        RetryPolicy().backoff(attempt, 0.5)  # type: ignore[arg-type]


# -- backoff -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "random", "expected"),
    [
        (1, 0.0, 0.0),
        (1, 0.5, 0.25),
        (2, 0.5, 0.5),
        (3, 0.5, 1.0),
        (4, 0.25, 1.0),
        (7, 0.5, 15.0),  # 0.5 * 2**6 = 32 > 30: capped
        (8, 0.5, 15.0),
        (1000, 0.5, 15.0),
        (10**30, 0.5, 15.0),  # no overflow, however large
    ],
)
def test_backoff_full_jitter(attempt: int, random: float, expected: float) -> None:
    """random * min(max_delay, base_delay * 2 ** (attempt - 1))."""
    assert RetryPolicy().backoff(attempt, random) == expected


def test_backoff_of_zero_base_is_zero() -> None:
    """base_delay=0 retries at once, for every attempt."""
    assert RetryPolicy(base_delay=0).backoff(10**30, 0.9) == 0.0


@pytest.mark.parametrize(
    ("random", "error", "message"),
    [
        (1.0, ValueError, "random must be a number in [0, 1), got 1.0"),
        (-0.1, ValueError, "random must be a number in [0, 1), got -0.1"),
        (math.nan, ValueError, "random must be a number in [0, 1), got nan"),
        ("0.5", TypeError, "random must be a real number, got str '0.5'"),
        (True, TypeError, "random must be a real number, got bool True"),
    ],
)
def test_backoff_random_is_checked(random: object, error: type[Exception], message: str) -> None:
    """`random` is a draw from [0, 1), as random.random() returns."""
    with pytest.raises(error, match=whole(message)):
        RetryPolicy().backoff(1, random)  # type: ignore[arg-type]


policies = st.builds(
    RetryPolicy,
    base_delay=st.floats(0, 100),
    max_delay=st.floats(0, 1000),
)
draws = st.floats(0, 1, exclude_max=True)


@given(policies, st.integers(1, 2000), draws)
def test_backoff_is_within_bounds(policy: RetryPolicy, attempt: int, random: float) -> None:
    """A backoff is never negative and never above max_delay."""
    delay = policy.backoff(attempt, random)
    assert 0 <= delay <= policy.max_delay


@given(policies, st.integers(1, 2000), draws)
def test_backoff_cap_is_monotone(policy: RetryPolicy, attempt: int, random: float) -> None:
    """For the same draw, a later attempt never backs off less (the cap only grows)."""
    assert policy.backoff(attempt, random) <= policy.backoff(attempt + 1, random)


@given(policies, st.integers(1, 60), draws)
def test_backoff_formula(policy: RetryPolicy, attempt: int, random: float) -> None:
    """The backoff is exactly the full-jitter formula."""
    cap = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    assert policy.backoff(attempt, random) == random * cap


# -- server_delay ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "2"}, ServerDelay(delay=2.0, pause=2.0, too_long=False)),
        ({"retry-after": "1.5"}, ServerDelay(delay=1.5, pause=1.5, too_long=False)),
        ({"retry-after-ms": "250"}, ServerDelay(delay=0.25, pause=0.25, too_long=False)),
        ({"retry-after": "0"}, ServerDelay(delay=0.0, pause=0.0, too_long=False)),
        ({"retry-after": "120"}, ServerDelay(delay=120.0, pause=120.0, too_long=False)),
        ({"retry-after": "120.5"}, ServerDelay(delay=120.5, pause=120.0, too_long=True)),
        ({"retry-after": "600"}, ServerDelay(delay=600.0, pause=120.0, too_long=True)),
        (
            {"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"},
            ServerDelay(delay=30.0, pause=30.0, too_long=False),
        ),
        (
            {"retry-after": "Wed, 21 Oct 2015 07:38:00 GMT"},
            ServerDelay(delay=600.0, pause=120.0, too_long=True),
        ),
        (
            {"retry-after": "Wed, 21 Oct 2015 07:00:00 GMT"},
            ServerDelay(delay=0.0, pause=0.0, too_long=False),
        ),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "nan"}, None),
    ],
)
def test_server_delay(headers: dict[str, str], expected: ServerDelay | None) -> None:
    """The server's wait, capped at max_retry_after for the pause, too_long above it."""
    assert RetryPolicy().server_delay(headers, OCT_21_2015) == expected


def test_server_delay_logs_what_it_ignores(caplog: pytest.LogCaptureFixture) -> None:
    """A malformed retry-after is logged once, with its raw value."""
    with caplog.at_level(logging.DEBUG, logger="throttle_trio"):
        assert RetryPolicy().server_delay({"retry-after": "-5"}, 0.0) is None
    assert [record.getMessage() for record in caplog.records] == [
        "ignoring a malformed retry-after header: '-5'"
    ]


def test_retry_after_too_long_error() -> None:
    """The error names the value and the cap, and survives pickling."""
    delay = RetryPolicy().server_delay({"retry-after": "600"}, 0.0)
    assert delay is not None
    assert delay.too_long
    error = RetryAfterTooLong(delay.delay, RetryPolicy().max_retry_after)
    assert isinstance(error, ThrottleTrioError)
    assert str(error) == "the server asked to wait 600.0 s, more than max_retry_after=120.0 s"
    assert (error.delay, error.max_retry_after) == (600.0, 120.0)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.delay) == (RetryAfterTooLong, str(error), 600.0)


# -- pauses_key --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {}, True),
        (429, {"retry-after": "garbage"}, True),
        (429, {"x-should-retry": "false"}, True),
        (503, {}, False),
        (503, {"retry-after": "5"}, True),
        (503, {"retry-after": "0"}, True),
        (503, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, True),  # valid, even if past
        (503, {"retry-after": "soon"}, False),
        (503, {"retry-after": "-1"}, False),
        (529, {}, False),
        (529, {"retry-after-ms": "800"}, True),
        (529, {"retry-after-ms": "nan"}, False),
        (500, {"retry-after": "5"}, False),
        (502, {"retry-after": "5"}, False),
        (504, {"retry-after": "5"}, False),
        (408, {"retry-after": "5"}, False),
        (200, {"retry-after": "5"}, False),
    ],
)
def test_pauses_key(status: int, headers: dict[str, str], expected: bool) -> None:
    """429 always pauses the key; 503 and 529 only with a valid retry-after; others never."""
    assert RetryPolicy().pauses_key(status, headers) is expected


def test_pauses_key_does_not_log(caplog: pytest.LogCaptureFixture) -> None:
    """pauses_key leaves the logging of a malformed value to server_delay (no duplicates)."""
    with caplog.at_level(logging.DEBUG, logger="throttle_trio"):
        assert not RetryPolicy().pauses_key(503, {"retry-after": "soon"})
    assert caplog.records == []


@given(
    st.integers(100, 599),
    st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms", "x-should-retry", "Retry-After"]),
        st.text(),
    ),
    st.integers(1, 10),
    st.floats(),
)
def test_decisions_never_raise_on_header_values(
    status: int, headers: dict[str, str], attempt: int, now: float
) -> None:
    """No header value makes a decision raise; a server delay is finite and non-negative."""
    policy = RetryPolicy()
    policy.should_retry(status, headers, attempt)
    policy.pauses_key(status, headers)
    delay = policy.server_delay(headers, now)
    if delay is not None:
        assert 0 <= delay.pause <= delay.delay < math.inf
        assert delay.too_long is (delay.delay > policy.max_retry_after)
