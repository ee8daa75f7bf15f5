"""Parsing rate-limit and retry headers: real-world values, garbage, and properties."""

from __future__ import annotations

import ast
import logging
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import throttle_trio
from throttle_trio._headers import (
    LimitReport,
    RateLimitHeaders,
    parse_go_duration,
    parse_rate_limit_headers,
    parse_retry_after,
    parse_should_retry,
)


def utc(text: str) -> float:
    """The UNIX time of an ISO date-time in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# 2015-10-21T07:28:00Z: the HTTP-date of MDN's Retry-After example.
OCT_21_2015 = utc("2015-10-21T07:28:00")
# A minute before the resets of the recorded Anthropic response.
AUG_21_2025 = utc("2025-08-21T12:40:00")

OPENAI_DOCS_HEADERS = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-reset-tokens": "6m0s",
}

# A recorded Anthropic response (CRAN tidyllm's test fixtures).
ANTHROPIC_FIXTURE_HEADERS = {
    "anthropic-ratelimit-requests-limit": "1000",
    "anthropic-ratelimit-requests-remaining": "999",
    "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z",
    "anthropic-ratelimit-input-tokens-limit": "80000",
    "anthropic-ratelimit-output-tokens-limit": "16000",
    "anthropic-ratelimit-output-tokens-reset": "2025-08-21T12:41:00Z",
    "anthropic-ratelimit-tokens-limit": "96000",
}

RATE_LIMIT_NAMES = sorted(
    [
        *(
            f"x-ratelimit-{field}-{metric}"
            for field in ("limit", "remaining", "reset")
            for metric in ("requests", "tokens")
        ),
        *(
            f"anthropic-ratelimit-{metric}-{field}"
            for metric in ("requests", "tokens", "input-tokens", "output-tokens")
            for field in ("limit", "remaining", "reset")
        ),
    ]
)
RETRY_NAMES = ["retry-after", "retry-after-ms", "x-should-retry"]


class Headers(Mapping[str, str]):
    """A read-only mapping that is not a dict, as httpx.Headers is not."""

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items

    def __getitem__(self, name: str) -> str:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


# -- Go durations ------------------------------------------------------------------------------

GO_DURATIONS = [
    # OpenAI's documentation and responses
    ("1s", 1.0),
    ("6m0s", 360.0),
    ("12ms", 0.012),
    ("23h47m36.648s", 85656.648),
    ("59.92s", 59.92),
    ("2m59.56s", 179.56),
    # Go's own documentation and Duration.String() outputs
    ("300ms", 0.3),
    ("1.5h", 5400.0),
    ("2h45m", 9900.0),
    ("1h15m30.918273645s", 4530.918273645),
    ("1h0m0s", 3600.0),
    ("1h2m3.5s", 3723.5),
    ("250us", 0.00025),
    ("250\u00b5s", 0.00025),  # micro sign
    ("250\u03bcs", 0.00025),  # Greek mu
    ("1.234\u00b5s", 1.234e-6),
    ("100ns", 1e-7),
    ("0s", 0.0),
    ("0", 0.0),
    ("0.5s", 0.5),
    (".5s", 0.5),
    ("1.s", 1.0),
    ("+1s", 1.0),
    ("1s1s", 2.0),  # Go sums repeated units, in any order
    ("1m1h", 3660.0),
    (" 1s\t", 1.0),  # header whitespace
    ("2562047h47m16.854775807s", (2**63 - 1) / 1e9),  # Go's largest duration
]

GO_GARBAGE = [
    "",
    " ",
    "abc",
    "1x",
    "-1s",
    "-0s",
    "1e400s",
    "1e3s",
    "nan",
    "NaNs",
    "infs",
    "1s2",
    "1",  # Go needs a unit (except for "0")
    "00",
    "s",
    ".s",
    "1 s",
    "1S",
    "1sec",
    "1.2.3s",
    "1ss",
    "1h-1m",
    "1_000s",
    "\u0661s",  # Arabic-Indic digit one
    "1\u00b5",
    "2562048h",  # beyond Go's range
    "9" * 400 + "h",
]


@pytest.mark.parametrize(("text", "seconds"), GO_DURATIONS)
def test_go_duration(text: str, seconds: float) -> None:
    """Every Go duration form OpenAI and Go produce parses to its value in seconds."""
    assert parse_go_duration(text) == pytest.approx(seconds, rel=1e-15, abs=0)


@pytest.mark.parametrize("text", GO_GARBAGE)
def test_go_duration_garbage(text: str) -> None:
    """Malformed, negative and out-of-range durations give None, never an exception."""
    assert parse_go_duration(text) is None


def go_format(ns: int) -> str:
    """Go's ``time.Duration.String()`` for a non-negative duration, in Python."""

    def with_fraction(value: int, digits: int) -> str:
        whole, fraction = divmod(value, 10**digits)
        return f"{whole}.{fraction:0{digits}d}".rstrip("0") if fraction else str(whole)

    if ns == 0:
        return "0s"
    if ns < 10**3:
        return f"{ns}ns"
    if ns < 10**6:
        return with_fraction(ns, 3) + "\u00b5s"
    if ns < 10**9:
        return with_fraction(ns, 6) + "ms"
    minutes, rest = divmod(ns, 60 * 10**9)
    hours, minutes_left = divmod(minutes, 60)
    text = with_fraction(rest, 9) + "s"
    if minutes:
        text = f"{minutes_left}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


def test_go_format_matches_go() -> None:
    """The test's formatter agrees with outputs of Go's Duration.String()."""
    assert go_format(0) == "0s"
    assert go_format(360 * 10**9) == "6m0s"
    assert go_format(12 * 10**6) == "12ms"
    assert go_format(85656648 * 10**6) == "23h47m36.648s"
    assert go_format(1500) == "1.5\u00b5s"
    assert go_format(4530918273645) == "1h15m30.918273645s"


@given(st.integers(0, 2**63 - 1))
def test_go_duration_round_trips_go_format(ns: int) -> None:
    """Whatever Go prints for a duration parses back to that duration."""
    assert parse_go_duration(go_format(ns)) == pytest.approx(ns / 1e9, rel=1e-12, abs=1e-15)


@given(
    st.lists(
        st.tuples(st.integers(0, 10**5), st.sampled_from(["h", "m", "s", "ms", "us", "ns"])),
        min_size=1,
        max_size=6,
    )
)
def test_go_duration_sums_components(parts: list[tuple[int, str]]) -> None:
    """A duration built from random h/m/s/ms/us/ns components parses to their sum.

    (At most 6 * 10**5 hours: within Go's range of about 2.56 million hours.)
    """
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    text = "".join(f"{number}{unit}" for number, unit in parts)
    expected = sum(number * scale[unit] for number, unit in parts)
    assert parse_go_duration(text) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@given(st.text())
def test_go_duration_never_raises(text: str) -> None:
    """Any text gives a finite non-negative number or None."""
    seconds = parse_go_duration(text)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


# -- retry-after -------------------------------------------------------------------------------

RETRY_AFTER = [
    ({"retry-after": "2"}, 2.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after": "0"}, 0.0),
    ({"retry-after": " 30 "}, 30.0),
    ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after-ms": "1.5"}, 0.0015),
    ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),  # milliseconds win, as in openai
    ({"Retry-After": "2"}, 2.0),
    ({"RETRY-AFTER-MS": "100"}, 0.1),
    # HTTP-dates, 10 s ahead of `now`, in the three forms of RFC 9110
    ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
    ({"retry-after": "Wednesday, 21-Oct-15 07:28:10 GMT"}, 10.0),
    ({"retry-after": "Wed Oct 21 07:28:10 2015"}, 10.0),
    ({"retry-after": "Wed, 1 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past: retry now
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
    ({"retry-after": "Wed, 21 Oct 2015 07:38:00 GMT"}, 600.0),
    ({}, None),
    ({"content-type": "application/json"}, None),
]


@pytest.mark.parametrize(("headers", "seconds"), RETRY_AFTER)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    """retry-after-ms, then retry-after as seconds or an HTTP-date relative to `now`."""
    assert parse_retry_after(headers, OCT_21_2015) == seconds


RETRY_AFTER_GARBAGE = [
    "-1",
    "-0.5",
    "nan",
    "NaN",
    "inf",
    "Infinity",
    "1e3",
    "0x10",
    "1_000",
    "abc",
    "",
    "2 seconds",
    "9" * 400,
    "Wed, 32 Oct 2015 07:28:00 GMT",
    "Wed, 21 Foo 2015 07:28:00 GMT",
    "Wed, 21 Oct 2015 25:28:00 GMT",
    "Wed, 21 Oct 2015 07:28:00 PST",
    "Wed, 30 Feb 2015 07:28:00 GMT",
    "2015-10-21T07:28:00Z",
]


@pytest.mark.parametrize("value", RETRY_AFTER_GARBAGE)
def test_retry_after_garbage_is_ignored_and_logged(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed value counts as absent and is logged at WARNING with the raw value."""
    with caplog.at_level(logging.DEBUG, logger="throttle_trio"):
        assert parse_retry_after({"retry-after": value}, OCT_21_2015) is None
        assert parse_retry_after({"retry-after-ms": value}, OCT_21_2015) is None
    assert [(record.name, record.levelno, record.getMessage()) for record in caplog.records] == [
        (
            "throttle_trio",
            logging.WARNING,
            f"ignoring a malformed {name} header: {repr(value)[:200]}",
        )
        for name in ("retry-after", "retry-after-ms")
    ]


def test_retry_after_log_quotes_a_long_value_truncated(caplog: pytest.LogCaptureFixture) -> None:
    """A huge header value is quoted in the log, truncated to 200 characters."""
    with caplog.at_level(logging.WARNING, logger="throttle_trio"):
        parse_retry_after({"retry-after": "x" * 10_000}, 0.0)
    assert (
        caplog.records[0].getMessage()
        == "ignoring a malformed retry-after header: " + (repr("x" * 10_000)[:200])
    )


def test_malformed_retry_after_ms_falls_through(caplog: pytest.LogCaptureFixture) -> None:
    """A malformed retry-after-ms is logged and the retry-after header is used instead."""
    with caplog.at_level(logging.WARNING, logger="throttle_trio"):
        assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "3"}, 0.0) == 3.0
    assert [record.getMessage() for record in caplog.records] == [
        "ignoring a malformed retry-after-ms header: 'soon'"
    ]


def test_rfc850_two_digit_years_follow_rfc_9110() -> None:
    """A two-digit year more than 50 years ahead of `now` is in the previous century."""
    now = utc("2030-01-01T00:00:00")
    in_2080 = {"retry-after": "Monday, 01-Jan-80 00:00:00 GMT"}
    assert parse_retry_after(in_2080, now) == utc("2080-01-01T00:00:00") - now
    in_1981 = {"retry-after": "Thursday, 01-Jan-81 00:00:00 GMT"}
    assert parse_retry_after(in_1981, now) == 0.0
    a_year_later = utc("2031-01-01T00:00:00")  # now 2081 is not more than 50 years ahead
    assert parse_retry_after(in_1981, a_year_later) == utc("2081-01-01T00:00:00") - a_year_later


def test_headers_forms() -> None:
    """Mappings, (name, value) pairs and bytes are all read, names case-insensitively."""
    assert parse_retry_after(Headers({"Retry-After": "2"}), 0.0) == 2.0
    assert parse_retry_after([("Retry-After", "2"), ("Server", "x")], 0.0) == 2.0
    assert parse_retry_after([(b"retry-after-ms", b"500")], 0.0) == 0.5
    assert parse_retry_after((("retry-after", "2"),), 0.0) == 2.0


def test_repeated_header_is_joined_as_httpx_does(caplog: pytest.LogCaptureFixture) -> None:
    """Two retry-after headers read as "2, 3", which is ambiguous and therefore ignored."""
    with caplog.at_level(logging.WARNING, logger="throttle_trio"):
        assert parse_retry_after([("retry-after", "2"), ("Retry-After", "3")], 0.0) is None
    assert caplog.records[0].getMessage() == "ignoring a malformed retry-after header: '2, 3'"


def test_non_text_values_are_skipped() -> None:
    """A value that is neither str nor bytes counts as absent."""
    headers: object = {"retry-after": 2, "retry-after-ms": None}
    assert parse_retry_after(headers, 0.0) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("headers", ["retry-after: 2", ["retry-after"], [("a", "b", "c")], [1]])
def test_headers_of_the_wrong_shape_raise_type_error(headers: object) -> None:
    """A container that is neither a mapping nor (name, value) pairs is a programming error."""
    message = r"^headers must be a mapping or an iterable of \(name, value\) pairs, got an item "
    with pytest.raises(TypeError, match=message):
        parse_retry_after(headers, 0.0)  # type: ignore[arg-type]


# -- x-should-retry ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "verdict"),
    [("true", True), ("false", False), ("TRUE", True), ("False", False), (" true ", True)],
)
def test_should_retry(value: str, verdict: bool) -> None:
    """x-should-retry reads true or false, case-insensitively."""
    assert parse_should_retry({"X-Should-Retry": value}) is verdict


@pytest.mark.parametrize("value", ["yes", "1", "", "truee", "true, false"])
def test_should_retry_garbage(value: str, caplog: pytest.LogCaptureFixture) -> None:
    """Any other value counts as absent and is logged."""
    with caplog.at_level(logging.WARNING, logger="throttle_trio"):
        assert parse_should_retry({"x-should-retry": value}) is None
    assert [record.getMessage() for record in caplog.records] == [
        f"ignoring a malformed x-should-retry header: {value!r}"
    ]


def test_should_retry_absent() -> None:
    """No header, no verdict."""
    assert parse_should_retry({}) is None


# -- rate-limit headers ------------------------------------------------------------------------


def test_openai_documentation_sample() -> None:
    """The sample of OpenAI's rate-limit guide: counts and Go-duration resets."""
    assert parse_rate_limit_headers(OPENAI_DOCS_HEADERS, 0.0) == RateLimitHeaders(
        limits={
            "requests": LimitReport(limit=60.0, remaining=59.0, reset_after=1.0),
            "tokens": LimitReport(limit=150000.0, remaining=149984.0, reset_after=360.0),
        },
        retry_after=None,
        should_retry=None,
    )


def test_anthropic_recorded_response() -> None:
    """A recorded Anthropic response: RFC 3339 resets relative to `now`, partial metrics."""
    parsed = parse_rate_limit_headers(ANTHROPIC_FIXTURE_HEADERS, AUG_21_2025)
    assert parsed.limits == {
        "requests": LimitReport(limit=1000.0, remaining=999.0, reset_after=59.0),
        "tokens": LimitReport(limit=96000.0, remaining=None, reset_after=None),
        "input_tokens": LimitReport(limit=80000.0, remaining=None, reset_after=None),
        "output_tokens": LimitReport(limit=16000.0, remaining=None, reset_after=60.0),
    }
    assert list(parsed.limits) == ["requests", "tokens", "input_tokens", "output_tokens"]


def test_a_429_with_everything() -> None:
    """Rate-limit, retry-after and should-retry headers of one response, read at once."""
    headers = {
        **OPENAI_DOCS_HEADERS,
        "x-ratelimit-remaining-requests": "0",
        "retry-after-ms": "1200",
        "retry-after": "2",
        "x-should-retry": "true",
    }
    parsed = parse_rate_limit_headers(headers, 0.0)
    assert parsed.limits["requests"] == LimitReport(60.0, 0.0, 1.0)
    assert parsed.retry_after == 1.2
    assert parsed.should_retry is True


def test_no_headers() -> None:
    """A response without any of the headers reports nothing."""
    assert parse_rate_limit_headers({"content-type": "text/plain"}, 0.0) == RateLimitHeaders(
        limits={}, retry_after=None, should_retry=None
    )


def test_limits_are_read_only() -> None:
    """The frozen result cannot be changed through its mapping either."""
    parsed = parse_rate_limit_headers(OPENAI_DOCS_HEADERS, 0.0)
    with pytest.raises(TypeError):
        parsed.limits["requests"] = LimitReport(1.0, 1.0, 1.0)  # type: ignore[index]


@pytest.mark.parametrize(
    ("value", "reset_after"),
    [
        ("2025-08-21T12:40:59Z", 59.0),
        ("2025-08-21T12:40:59.5Z", 59.5),
        ("2025-08-21T12:40:59.123456789Z", 59.123456789),
        ("2025-08-21T12:40:59+00:00", 59.0),
        ("2025-08-21T12:40:59-00:00", 59.0),
        ("2025-08-21T14:40:59+02:00", 59.0),
        ("2025-08-21T07:10:59-05:30", 59.0),
        ("2025-08-21t12:40:59z", 59.0),
        ("2025-08-21 12:40:59Z", 59.0),
        ("2025-08-21T12:40:00Z", 0.0),
        ("2025-08-21T12:39:00Z", 0.0),  # already past: clamped
        ("2025-08-21T12:40:60Z", 60.0),  # a leap second
        ("2025-08-22T12:40:00Z", 86400.0),
    ],
)
def test_anthropic_reset_forms(value: str, reset_after: float) -> None:
    """RFC 3339 with fractions and offsets gives seconds from `now`, never negative."""
    parsed = parse_rate_limit_headers({"anthropic-ratelimit-tokens-reset": value}, AUG_21_2025)
    assert parsed.limits["tokens"].reset_after == pytest.approx(reset_after, rel=1e-15, abs=0)


COUNT_GARBAGE = [
    "-1",
    "nan",
    "NaN",
    "inf",
    "1e3",
    "1000000000000001",  # above 10**15
    "9" * 400,
    "abc",
    "",
    "1,000",
    "0x10",
    "\u0661\u0662",
    "60, 60",
]
# "2" is no Go duration, but Azure OpenAI sends seconds so: read by default (tests/test_parsers.py).
OPENAI_RESET_GARBAGE = ["1x", "-1s", "1e400s", "soon", "1 s", "-2"]
ANTHROPIC_RESET_GARBAGE = [
    "2025-13-01T00:00:00Z",
    "2025-02-30T00:00:00Z",
    "2025-08-21T24:00:00Z",
    "2025-08-21T12:61:00Z",
    "2025-08-21T12:40:61Z",
    "2025-08-21T12:40:59",  # no offset
    "2025-08-21T12:40:59+24:00",
    "2025-08-21T12:40:59+01:60",
    "0000-01-01T00:00:00Z",
    "2025-08-21",
    "1755780059",  # UNIX seconds: not this header's format
    "Thu, 21 Aug 2025 12:40:59 GMT",
    "yesterday",
]


COUNT_NAMES = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-output-tokens-remaining",
]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        *((name, value) for name in COUNT_NAMES for value in COUNT_GARBAGE),
        *(("x-ratelimit-reset-requests", value) for value in OPENAI_RESET_GARBAGE),
        *(("anthropic-ratelimit-requests-reset", value) for value in ANTHROPIC_RESET_GARBAGE),
    ],
)
def test_garbage_fields_are_dropped_and_logged(
    name: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A field that does not parse is dropped (and its metric with it) and logged at DEBUG."""
    with caplog.at_level(logging.DEBUG, logger="throttle_trio"):
        parsed = parse_rate_limit_headers({name: value}, AUG_21_2025)
    assert parsed.limits == {}
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.DEBUG, f"ignoring a malformed {name} header: {repr(value)[:200]}")
    ]


def test_one_garbage_field_keeps_the_others() -> None:
    """Only the bad field is dropped: its metric still reports what parsed."""
    headers = {**OPENAI_DOCS_HEADERS, "x-ratelimit-remaining-tokens": "-5"}
    assert parse_rate_limit_headers(headers, 0.0).limits["tokens"] == LimitReport(
        limit=150000.0, remaining=None, reset_after=360.0
    )


def test_zero_and_fractional_counts_are_reported() -> None:
    """A limit of 0 (a model the key may not use) and fractions are reported as they are."""
    headers = {"x-ratelimit-limit-tokens": "0", "x-ratelimit-remaining-tokens": "0.5"}
    assert parse_rate_limit_headers(headers, 0.0).limits == {
        "tokens": LimitReport(limit=0.0, remaining=0.5, reset_after=None)
    }


def test_first_family_wins_when_both_name_a_field() -> None:
    """With OpenAI and Anthropic headers for the same field, OpenAI's is read."""
    headers = {"x-ratelimit-limit-requests": "60", "anthropic-ratelimit-requests-limit": "50"}
    assert parse_rate_limit_headers(headers, 0.0).limits["requests"].limit == 60.0
    headers["x-ratelimit-limit-requests"] = "garbage"
    assert parse_rate_limit_headers(headers, 0.0).limits["requests"].limit == 50.0


def test_unknown_rate_limit_headers_are_ignored() -> None:
    """Undocumented families (tokens_usage_based, unified, priority) are not read."""
    headers = {
        "x-ratelimit-limit-tokens_usage_based": "100",
        "anthropic-ratelimit-unified-reset": "1755780059",
        "anthropic-priority-input-tokens-limit": "100",
    }
    assert parse_rate_limit_headers(headers, 0.0).limits == {}


# -- properties --------------------------------------------------------------------------------

KNOWN_NAMES = RATE_LIMIT_NAMES + RETRY_NAMES
header_names = st.one_of(
    st.sampled_from(KNOWN_NAMES),
    st.sampled_from(KNOWN_NAMES).map(str.upper),
    st.text(max_size=40),
)
plausible_values = st.one_of(
    st.from_regex(r"\A[-+ ]?[0-9.]{0,8}(h|m|s|ms|us|\u00b5s|ns|x)?[0-9.hms]{0,4}\Z"),
    st.floats().map(str),
    st.integers().map(str),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.datetimes().map(lambda moment: moment.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    st.sampled_from(["true", "false", "True", "Infinity", "-nan"]),
)
header_values = st.one_of(st.text(), plausible_values)
nows = st.one_of(st.floats(0, 1e10), st.floats())


def check_report(parsed: RateLimitHeaders) -> None:
    assert set(parsed.limits) <= {"requests", "tokens", "input_tokens", "output_tokens"}
    for report in parsed.limits.values():
        assert (report.limit, report.remaining, report.reset_after) != (None, None, None)
        for count in (report.limit, report.remaining):
            assert count is None or 0 <= count <= 1e15
        assert report.reset_after is None or 0 <= report.reset_after < math.inf
    assert parsed.retry_after is None or 0 <= parsed.retry_after < math.inf


@given(st.dictionaries(header_names, header_values), nows)
def test_never_raises_for_any_mapping(headers: dict[str, str], now: float) -> None:
    """Whatever the names and values, parsing returns sane numbers and never raises."""
    check_report(parse_rate_limit_headers(headers, now))
    parse_retry_after(headers, now)
    parse_should_retry(headers)


@given(st.lists(st.tuples(header_names, header_values)), nows)
def test_never_raises_for_any_pairs(pairs: list[tuple[str, str]], now: float) -> None:
    """The same for (name, value) pairs, repeated names included."""
    check_report(parse_rate_limit_headers(pairs, now))


@given(st.lists(st.tuples(st.binary(), st.binary())), nows)
def test_never_raises_for_any_bytes(pairs: list[tuple[bytes, bytes]], now: float) -> None:
    """And for raw bytes, as an HTTP library's lowest layer gives them."""
    check_report(parse_rate_limit_headers(pairs, now))


@given(
    st.sampled_from([name for name in RATE_LIMIT_NAMES if "reset" not in name]),
    st.integers(0, 10**15),
)
def test_counts_round_trip(name: str, count: int) -> None:
    """Every integer count a provider could send is read exactly."""
    [report] = parse_rate_limit_headers({name: str(count)}, 0.0).limits.values()
    assert count in (report.limit, report.remaining)


# -- purity ------------------------------------------------------------------------------------


def test_the_parsers_import_no_io_and_no_clock() -> None:
    """The header, parser and retry modules stay pure: no anyio, no time, no I/O modules."""
    allowed = {
        "__future__",
        "collections.abc",
        "dataclasses",
        "datetime",
        "json",  # error bodies (Gemini's retryDelay)
        "logging",
        "math",
        "numbers",
        "re",
        "types",
        "typing",
        "_exceptions",
        "_headers",
        "_validate",
    }
    package = Path(throttle_trio.__file__).parent
    for module in ("_headers.py", "_parsers.py", "_retry.py"):
        tree = ast.parse((package / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert {alias.name for alias in node.names} <= allowed, module
            elif isinstance(node, ast.ImportFrom):
                assert node.module in allowed, (module, node.module)
