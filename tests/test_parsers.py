"""The response parsers of other providers: real-world values per provider, garbage, the choice
of parser, and that nothing a server sends makes a built-in raise.

The tables quote what the providers document or what users recorded (the source is named above
each); the formats are described in throttle_trio/_headers.py's docstring.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import throttle_trio as tt
from tests.test_headers import ANTHROPIC_FIXTURE_HEADERS, AUG_21_2025, OPENAI_DOCS_HEADERS
from throttle_trio import LimitReport, RateLimitHeaders, parse_rate_limit_headers

Parser = Callable[[Any, "bytes | str | None", float], RateLimitHeaders]

BUILT_INS: dict[str, Parser] = {
    "any": tt.parse_any,
    "openai": tt.parse_openai,
    "azure_openai": tt.parse_azure_openai,
    "anthropic": tt.parse_anthropic,
    "gemini": tt.parse_gemini,
    "groq": tt.parse_groq,
    "ietf": tt.parse_ietf,
}


def limits(report: RateLimitHeaders) -> dict[str, tuple[float | None, ...]]:
    return {
        metric: (info.limit, info.remaining, info.reset_after)
        for metric, info in report.limits.items()
    }


# -- Groq --------------------------------------------------------------------------------------

# Groq's documentation ("Rate Limits", the example response headers): requests per day, tokens
# per minute, resets as Go durations; retry-after (seconds) only on a 429.
GROQ_DOCS_HEADERS = {
    "retry-after": "2",
    "x-ratelimit-limit-requests": "14400",
    "x-ratelimit-limit-tokens": "18000",
    "x-ratelimit-remaining-requests": "14370",
    "x-ratelimit-remaining-tokens": "17997",
    "x-ratelimit-reset-requests": "2m59.56s",
    "x-ratelimit-reset-tokens": "7.66s",
}


@pytest.mark.parametrize("parser", [tt.parse_groq, tt.parse_any, tt.parse_openai])
def test_groq_documentation_sample(parser: Parser) -> None:
    report = parser(GROQ_DOCS_HEADERS, None, 0.0)
    assert limits(report) == {
        "requests": (14400.0, 14370.0, 179.56),  # 2 * 60 + 59.56, summed as floats
        "tokens": (18000.0, 17997.0, 7.66),
    }
    assert (report.retry_after, report.ignored) == (2.0, 0)


def test_groq_daily_requests_are_learned_per_day() -> None:
    """The period of a learned limit comes from the reset: Groq's requests limit is per day."""
    throttle = tt.Throttle(learn_limits=True)
    throttle.observe(tt.parse_groq(GROQ_DOCS_HEADERS, None, 0.0))
    learned = throttle.statistics().limits
    # 14400 per (14400 * 179.56 / 30) s: about a day, not a minute.
    assert learned["requests"].rate == pytest.approx(14400 / (14400 * 179.56 / 30))
    assert learned["tokens"].rate == pytest.approx(18000 / 60)  # 3 spent of 18000: a minute


# -- Azure OpenAI ------------------------------------------------------------------------------

AZURE = [
    # A success seen by EvolvingPrograms/oaib#11: only the remaining fields.
    (
        {"x-ratelimit-remaining-requests": "79", "x-ratelimit-remaining-tokens": "61353"},
        None,
        {"requests": (None, 79.0, None), "tokens": (None, 61353.0, None)},
        None,
        0,
    ),
    # A 429 recorded in openai/openai-python#937: no retry-after, the reset in seconds.
    (
        {"x-rate-limit-reset-tokens": "55", "x-ratelimit-remaining-tokens": "0"},
        None,
        {"tokens": (None, 0.0, 55.0)},
        None,
        0,
    ),
    # openai/openai-dotnet#838: -1 where the service has no value, a reset in seconds.
    (
        {
            "x-ratelimit-limit-tokens": "-1",
            "x-ratelimit-remaining-tokens": "-1",
            "x-ratelimit-reset-tokens": "0",
        },
        None,
        {"tokens": (None, None, 0.0)},
        None,
        2,
    ),
    # The full OpenAI-style set, resets in seconds; retry-after-ms as OpenAI's.
    (
        {
            "x-ratelimit-limit-requests": "300",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "6",
            "retry-after-ms": "6000",
            "retry-after": "6",
        },
        None,
        {"requests": (300.0, 0.0, 6.0)},
        6.0,
        0,
    ),
    # A 429 body without a retry-after header (alex-wolf-ps/dbchatprov2#2).
    (
        {},
        json.dumps(
            {
                "error": {
                    "code": "429",
                    "message": "Requests to the ChatCompletions_Create Operation under Azure "
                    "OpenAI API version 2024-05-01-preview have exceeded token rate limit of "
                    "your current OpenAI S0 pricing tier. Please retry after 86400 seconds. "
                    "Please go here: https://aka.ms/oai/quotaincrease if you would like to "
                    "further increase the default rate limit.",
                }
            }
        ),
        {},
        86400.0,
        0,
    ),
    # API Management in front of it: "Try again in N seconds."
    (
        {},
        b'{"error": {"code": "429", "message": "Rate limit is exceeded. Try again in 5 seconds."}}',
        {},
        5.0,
        0,
    ),
    # A retry-after header wins over the message.
    (
        {"retry-after": "2"},
        '{"error": {"message": "Please retry after 6 seconds."}}',
        {},
        2.0,
        0,
    ),
]


@pytest.mark.parametrize(("headers", "body", "expected", "retry_after", "ignored"), AZURE)
@pytest.mark.parametrize("parser", [tt.parse_azure_openai, tt.parse_any])
def test_azure_openai(
    parser: Parser,
    headers: dict[str, str],
    body: str | bytes | None,
    expected: dict[str, tuple[float | None, ...]],
    retry_after: float | None,
    ignored: int,
) -> None:
    report = parser(headers, body, 0.0)
    assert limits(report) == expected
    assert (report.retry_after, report.ignored) == (retry_after, ignored)


def test_openai_reads_no_azure_seconds() -> None:
    """OpenAI's own parser keeps to Go durations: a bare number is no OpenAI reset."""
    report = tt.parse_openai({"x-ratelimit-reset-tokens": "55"}, None, 0.0)
    assert (report.limits, report.ignored) == ({}, 1)
    assert tt.parse_openai({"x-rate-limit-reset-tokens": "55"}, None, 0.0).limits == {}


# -- Anthropic and OpenAI ----------------------------------------------------------------------


@pytest.mark.parametrize("parser", [tt.parse_anthropic, tt.parse_any])
def test_anthropic_recorded_response(parser: Parser) -> None:
    report = parser(ANTHROPIC_FIXTURE_HEADERS, None, AUG_21_2025)
    assert limits(report) == {
        "requests": (1000.0, 999.0, 59.0),
        "tokens": (96000.0, None, None),
        "input_tokens": (80000.0, None, None),
        "output_tokens": (16000.0, None, 60.0),
    }


def test_each_provider_reads_only_its_own_family() -> None:
    both = {**OPENAI_DOCS_HEADERS, **ANTHROPIC_FIXTURE_HEADERS}
    assert set(tt.parse_openai(both, None, AUG_21_2025).limits) == {"requests", "tokens"}
    assert set(tt.parse_anthropic(both, None, AUG_21_2025).limits) == {
        "requests",
        "tokens",
        "input_tokens",
        "output_tokens",
    }
    assert tt.parse_anthropic(OPENAI_DOCS_HEADERS, None, 0.0) == RateLimitHeaders()
    assert tt.parse_gemini(OPENAI_DOCS_HEADERS, None, 0.0) == RateLimitHeaders()
    assert tt.parse_ietf(ANTHROPIC_FIXTURE_HEADERS, None, 0.0) == RateLimitHeaders()


def test_every_built_in_reads_the_retry_headers() -> None:
    headers = {"retry-after-ms": "250", "x-should-retry": "false"}
    for parser in BUILT_INS.values():
        report = parser(headers, None, 0.0)
        assert (report.retry_after, report.should_retry) == (0.25, False)


# -- Gemini ------------------------------------------------------------------------------------


def gemini_429(*details: dict[str, Any], wrap: bool = False) -> str:
    """A Gemini 429 body with these details (as the API answers it)."""
    error = {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan and billing "
            "details. Please retry in 53.016342224s.",
            "status": "RESOURCE_EXHAUSTED",
            "details": list(details),
        }
    }
    return json.dumps([error] if wrap else error, indent=2)


RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [
        {
            "quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
            "quotaDimensions": {"model": "gemini-2.0-pro-exp", "location": "global"},
        }
    ],
}
HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev"}
    ],
}

GEMINI = [
    # googleapis/python-genai#1875
    (gemini_429({"@type": RETRY_INFO, "retryDelay": "53s"}), 53.0),
    # Aider-AI/aider#3694: QuotaFailure and Help before the RetryInfo
    (gemini_429(QUOTA_FAILURE, HELP, {"@type": RETRY_INFO, "retryDelay": "44s"}), 44.0),
    # dcdpr/jp#1061: nine fractional digits
    (gemini_429({"@type": RETRY_INFO, "retryDelay": "45.837906927s"}), 45.837906927),
    # the list form of some endpoints (google-gemini/gemini-cli#6454), as bytes
    (gemini_429({"@type": RETRY_INFO, "retryDelay": "0.5s"}, wrap=True).encode(), 0.5),
    (gemini_429({"@type": RETRY_INFO, "retryDelay": "0s"}), 0.0),
    # no RetryInfo: the message's "retry in" is not read
    (gemini_429(QUOTA_FAILURE), None),
    # a 429 without details (google-gemini/gemini-cli#2020)
    ('{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}', None),
]


@pytest.mark.parametrize(("body", "retry_after"), GEMINI)
@pytest.mark.parametrize("parser", [tt.parse_gemini, tt.parse_any])
def test_gemini_retry_delay(parser: Parser, body: str | bytes, retry_after: float | None) -> None:
    report = parser({"content-type": "application/json"}, body, 0.0)
    if retry_after is None:
        assert report.retry_after is None
    else:
        assert report.retry_after == pytest.approx(retry_after, rel=1e-15, abs=0)
    assert (report.limits, report.ignored) == ({}, 0)


def test_a_retry_after_header_wins_over_the_body() -> None:
    body = gemini_429({"@type": RETRY_INFO, "retryDelay": "53s"})
    assert tt.parse_gemini({"retry-after": "7"}, body, 0.0).retry_after == 7.0


GEMINI_GARBAGE_DELAYS = ["-5s", "53", "1e3s", "53 s", "s", "", "1.1234567891s", "53S", "nan"]


@pytest.mark.parametrize("delay", [*GEMINI_GARBAGE_DELAYS, 53, None, ["53s"]])
def test_gemini_garbage_delay_is_ignored_counted_and_logged(
    delay: object, caplog: pytest.LogCaptureFixture
) -> None:
    body = gemini_429({"@type": RETRY_INFO, "retryDelay": delay})
    with caplog.at_level(logging.DEBUG, logger="throttle_trio"):
        report = tt.parse_gemini({}, body, 0.0)
    assert (report.retry_after, report.ignored) == (None, 1)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"ignoring a malformed retryDelay in the response body: {delay!r}")
    ]


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        b"\xff\xfe",
        "[]",
        "[1]",
        "null",
        '{"error": "quota"}',
        '{"error": {"details": {"@type": "x"}}}',
        '{"error": {"details": [1, "x", null]}}',
        '{"error": {"message": 5}}',
        "[" * 100_000,  # too deep for json (and too long)
        "[" * 5_000,  # too deep for json
        gemini_429({"@type": RETRY_INFO, "retryDelay": "53s"}) + " " * 70_000,  # too long
        '{"error": {"code": 429, "details": [{"@type": "' + RETRY_INFO + '"}]}}',
    ],
)
def test_bodies_that_say_nothing(body: str | bytes) -> None:
    for parser in BUILT_INS.values():
        report = parser({}, body, 0.0)
        assert report.retry_after is None
        assert report.limits == {}


# -- IETF RateLimit and RateLimit-Policy -------------------------------------------------------

IETF = [
    # The examples of draft-ietf-httpapi-ratelimit-headers-11 (sections 3.2, 4.2, 6 and 7).
    ({"RateLimit-Policy": '"default";q=100;w=10'}, (100.0, None, None)),
    ({"RateLimit": '"default";r=50;t=30'}, (None, 50.0, 30.0)),
    ({"RateLimit": '"default";r=999;pk=:dHJpYWwxMjEzMjM=:'}, (None, 999.0, None)),
    ({"RateLimit": '"problemPolicy";r=0;t=10'}, (None, 0.0, 10.0)),
    ({"RateLimit": '"default";r=1;t=7'}, (None, 1.0, 7.0)),
    # Several policies without RateLimit: the quota of the lowest rate.
    (
        {"RateLimit-Policy": '"permin";q=50;w=60,"perhr";q=1000;w=3600'},
        (1000.0, None, None),
    ),
    ({"RateLimit-Policy": '"peruser";q=100;w=60;pk=:cHsdsRa894==:'}, (100.0, None, None)),
    # A content-bytes quota is no request count.
    (
        {"RateLimit-Policy": '"peruser";q=65535;qu="content-bytes";w=10;pk=:sdfjLJUOUH==:'},
        None,
    ),
    # Both fields: the quota of the policy RateLimit names.
    (
        {"RateLimit-Policy": '"default";q=100;w=60', "RateLimit": '"default";r=50;t=30'},
        (100.0, 50.0, 30.0),
    ),
    # Several policies: the one with the least remaining binds.
    (
        {
            "RateLimit-Policy": '"burst";q=100;w=60,"daily";q=1000;w=86400',
            "RateLimit": '"burst";r=40;t=20, "daily";r=10;t=36000',
        },
        (1000.0, 10.0, 36000.0),
    ),
    # What RateLimit says of a content-bytes policy is not read either.
    (
        {
            "RateLimit-Policy": '"bytes";q=65536;w=60;qu="content-bytes", "req";q=10;w=1',
            "RateLimit": '"bytes";r=0;t=5, "req";r=3;t=1',
        },
        (10.0, 3.0, 1.0),
    ),
    # Tokens as policy names, unknown parameters, spaces after a semicolon.
    (
        {"ratelimit-policy": "default;q=10;w=1;x=?1", "ratelimit": "default; r=9;  t=1"},
        (10.0, 9.0, 1.0),
    ),
    # A space before a semicolon is no structured field: RateLimit is ignored, the policy read.
    ({"ratelimit-policy": "default;q=10;w=1", "ratelimit": "default ;r=9"}, (10.0, None, None)),
    # The earlier drafts (-03 to -06): three fields, the reset in seconds.
    (
        {"RateLimit-Limit": "10", "RateLimit-Remaining": "1", "RateLimit-Reset": "7"},
        (10.0, 1.0, 7.0),
    ),
    ({"RateLimit-Limit": "10, 10;w=1, 50;w=60", "RateLimit-Remaining": "9"}, (10.0, 9.0, None)),
]


@pytest.mark.parametrize(("headers", "expected"), IETF)
@pytest.mark.parametrize("parser", [tt.parse_ietf, tt.parse_any])
def test_ietf_fields(
    parser: Parser, headers: dict[str, str], expected: tuple[float | None, ...] | None
) -> None:
    report = parser(headers, None, 0.0)
    assert limits(report) == ({} if expected is None else {"requests": expected})


def test_the_ietf_fields_yield_to_a_provider_family() -> None:
    headers = {**OPENAI_DOCS_HEADERS, "RateLimit": '"default";r=1;t=1'}
    assert tt.parse_any(headers, None, 0.0).limits["requests"] == LimitReport(60.0, 59.0, 1.0)


IETF_GARBAGE = [
    ("ratelimit", '"default";r=50,'),  # a trailing comma
    ("ratelimit", '"unterminated;r=5'),
    ("ratelimit", "limit=10, remaining=5, reset=4"),  # draft -07's dictionary form
    ("ratelimit", '"default";r=50;t=30 junk'),
    ("ratelimit", '"default";R=50'),  # keys are lower case
    ("ratelimit-policy", '"default";q=1234567890123456'),  # 16 digits: no sf-integer
    ("ratelimit-limit", "ten"),
    ("ratelimit-reset", "-1"),
]


@pytest.mark.parametrize(("name", "value"), IETF_GARBAGE)
def test_ietf_garbage_is_ignored_counted_and_logged(
    name: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="throttle_trio"):
        report = tt.parse_ietf({name: value}, None, 0.0)
    assert (report.limits, report.ignored) == ({}, 1)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, f"ignoring a malformed {name} header: {value!r}")
    ]


@pytest.mark.parametrize(
    "value",
    [
        '"default";r=-1;t=30',  # negative
        '"default";r=1.5',  # a decimal
        '"default";r="5"',  # a string
        '"default";r',  # a boolean
        '"default";t=30',  # no r
        "5;r=5",  # not a policy name
    ],
)
def test_ietf_items_without_a_count_are_skipped(value: str) -> None:
    assert tt.parse_ietf({"ratelimit": value}, None, 0.0).limits == {}


# -- choosing a parser -------------------------------------------------------------------------


def test_parse_rate_limit_headers_reads_every_dialect_by_default() -> None:
    body = gemini_429({"@type": RETRY_INFO, "retryDelay": "53s"})
    report = parse_rate_limit_headers({"RateLimit": '"d";r=0;t=9'}, 0.0, body=body)
    assert (limits(report), report.retry_after) == ({"requests": (None, 0.0, 9.0)}, 53.0)


def test_a_chosen_parser_reads_instead() -> None:
    report = parse_rate_limit_headers(
        {**OPENAI_DOCS_HEADERS, **ANTHROPIC_FIXTURE_HEADERS},
        AUG_21_2025,
        parser=tt.parse_anthropic,
    )
    assert report.limits["requests"] == LimitReport(1000.0, 999.0, 59.0)


def test_a_custom_parser_gets_every_header_in_lower_case_and_the_body() -> None:
    seen: list[tuple[Mapping[str, str], bytes | str | None, float]] = []

    def mine(headers: Mapping[str, str], body: bytes | str | None, now: float) -> RateLimitHeaders:
        seen.append((headers, body, now))
        return RateLimitHeaders(retry_after=float(headers["x-wait"]))

    raw: list[Any] = [
        ("X-Wait", " 3 "),
        ("Content-Type", "text/plain"),
        (b"X-Other", b"a"),
        ("x-other", "b"),
    ]
    report = parse_rate_limit_headers(raw, 12.0, body=b"{}", parser=mine)
    assert report == RateLimitHeaders(retry_after=3.0)
    assert seen == [({"x-wait": "3", "content-type": "text/plain", "x-other": "a, b"}, b"{}", 12.0)]


def test_a_custom_parsers_error_propagates() -> None:
    def broken(
        headers: Mapping[str, str], body: bytes | str | None, now: float
    ) -> RateLimitHeaders:
        raise KeyError("x-wait")

    with pytest.raises(KeyError):
        parse_rate_limit_headers({}, 0.0, parser=broken)


def test_combine_parsers_takes_each_field_from_the_first_that_has_it() -> None:
    def proxy(headers: Mapping[str, str], body: bytes | str | None, now: float) -> RateLimitHeaders:
        # A proxy's own header, X-RateLimit-Reset as UNIX seconds (GitHub's convention).
        reset = headers.get("x-ratelimit-reset")
        return RateLimitHeaders(
            limits={"requests": LimitReport(None, None, float(reset) - now)} if reset else {},
            ignored=1,
        )

    combined = tt.combine_parsers(proxy, tt.parse_openai)
    headers = {**OPENAI_DOCS_HEADERS, "X-RateLimit-Reset": "1060", "retry-after": "3"}
    report = parse_rate_limit_headers(headers, 1000.0, parser=combined)
    assert limits(report) == {"requests": (60.0, 59.0, 60.0), "tokens": (150000.0, 149984.0, 360.0)}
    assert (report.retry_after, report.ignored) == (3.0, 1)
    assert getattr(combined, "__name__", None) == "combine_parsers(proxy, parse_openai)"
    # One parser alone: the same report.
    assert tt.combine_parsers(tt.parse_groq)(GROQ_DOCS_HEADERS, None, 0.0) == tt.parse_groq(
        GROQ_DOCS_HEADERS, None, 0.0
    )


def test_combine_parsers_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match=r"^combine_parsers\(\) needs at least one parser$"):
        tt.combine_parsers()
    with pytest.raises(TypeError, match=r"^parsers must be callable, got 'openai'$"):
        tt.combine_parsers(tt.parse_any, "openai")  # type: ignore[arg-type]


def test_a_reports_limits_are_read_only_whoever_made_it() -> None:
    given = {"requests": LimitReport(1.0, 1.0, 1.0)}
    report = RateLimitHeaders(limits=given)
    given.clear()  # the report keeps its own copy
    assert report.limits == {"requests": LimitReport(1.0, 1.0, 1.0)}
    with pytest.raises(TypeError):
        report.limits["tokens"] = LimitReport(1.0, 1.0, 1.0)  # type: ignore[index]


def test_the_report_defaults_say_nothing() -> None:
    assert RateLimitHeaders() == RateLimitHeaders(
        limits={}, retry_after=None, should_retry=None, ignored=0
    )
    assert RateLimitHeaders().limits == {}


# -- through the retry loop the transports share -----------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"RateLimit": '"default";r=0;t=7'}, 7.0),  # IETF
        ({"x-rate-limit-reset-tokens": "55", "x-ratelimit-remaining-tokens": "0"}, 55.0),  # Azure
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2m59.56s"}, 179.56),
    ],
)
async def test_a_429_pauses_the_key_until_the_reset_any_dialect_reports(
    headers: dict[str, str], pause: float
) -> None:
    """call_with_retries (and so the transports) read every dialect by default: a 429 whose
    exhausted limit resets in ``pause`` seconds holds the key for that long."""
    throttle = tt.Throttle(requests=tt.TokenBucket(100), tokens=tt.TokenBucket(10_000))
    replies = [(429, headers), (200, {})]
    sent: list[float] = []

    async def send() -> tuple[int, dict[str, str]]:
        sent.append(anyio.current_time())
        return replies.pop(0)

    def inspect(reply: tuple[int, dict[str, str]]) -> tt.ResponseInfo:
        return tt.ResponseInfo(*reply)

    start = anyio.current_time()
    status, _ = await tt.call_with_retries(
        throttle,
        send,
        inspect,
        costs={"requests": 1, "tokens": 10},
        retry=tt.RetryPolicy(max_retry_after=300),
    )
    assert status == 200
    assert [t - start for t in sent] == [0.0, pytest.approx(pause, abs=1e-6)]
    assert throttle.statistics().pauses == 1


# -- properties --------------------------------------------------------------------------------

KNOWN = [
    *OPENAI_DOCS_HEADERS,
    *ANTHROPIC_FIXTURE_HEADERS,
    "x-rate-limit-reset-tokens",
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
]
names = st.one_of(
    st.sampled_from(KNOWN), st.sampled_from(KNOWN).map(str.title), st.text(max_size=30)
)
sf_bare = st.one_of(
    st.integers(-(10**16), 10**16).map(str),
    st.text('abc"\\;=, ', max_size=6).map(lambda text: f'"{text}"'),
    st.sampled_from(["default", "?1", "?0", ":AB==:", "1.5", "-0.0", "*"]),
)
sf_items = st.lists(
    st.tuples(
        sf_bare,
        st.lists(st.tuples(st.sampled_from(["q", "w", "r", "t", "qu", "pk", "X", "1"]), sf_bare)),
    ),
    max_size=4,
).map(
    lambda items: ", ".join(
        value + "".join(f";{key}={param}" for key, param in params) for value, params in items
    )
)
values = st.one_of(st.text(), sf_items, st.integers().map(str), st.floats().map(str))
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False),
        st.integers(),
        st.text(max_size=10),
        st.sampled_from([RETRY_INFO, "53s", "1.5s", "-1s", "retry after 5 seconds"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["error", "details", "@type", "retryDelay", "message", "code", "x"]),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.none(), st.binary(max_size=200), st.text(max_size=200), json_values.map(json.dumps)
)
nows = st.one_of(st.floats(0, 1e10), st.floats())


def check(report: RateLimitHeaders) -> None:
    assert set(report.limits) <= {"requests", "tokens", "input_tokens", "output_tokens"}
    for info in report.limits.values():
        assert (info.limit, info.remaining, info.reset_after) != (None, None, None)
        for count in (info.limit, info.remaining):
            assert count is None or 0 <= count <= 1e15
        assert info.reset_after is None or 0 <= info.reset_after < math.inf
    assert report.retry_after is None or 0 <= report.retry_after < math.inf
    assert report.ignored >= 0


@given(st.dictionaries(names, values), bodies, nows)
def test_no_headers_and_no_body_make_a_built_in_raise(
    headers: dict[str, str], body: bytes | str | None, now: float
) -> None:
    for parser in BUILT_INS.values():
        check(parser(headers, body, now))
    check(parse_rate_limit_headers(headers, now, body=body))
    check(tt.combine_parsers(*BUILT_INS.values())(headers, body, now))


@given(st.lists(st.tuples(st.binary(max_size=30), st.binary(max_size=60))), bodies, nows)
def test_no_raw_bytes_make_a_built_in_raise(
    pairs: list[tuple[bytes, bytes]], body: bytes | str | None, now: float
) -> None:
    for parser in BUILT_INS.values():
        check(parser(pairs, body, now))


@given(st.floats(0, 1e6, allow_nan=False).map(lambda s: round(s, 9)))
def test_retry_delays_round_trip(seconds: float) -> None:
    body = gemini_429({"@type": RETRY_INFO, "retryDelay": f"{seconds:.9f}s"})
    assert tt.parse_gemini({}, body, 0.0).retry_after == pytest.approx(seconds, rel=1e-12)


@given(st.integers(0, 10**15 - 1), st.integers(0, 10**15 - 1), st.integers(0, 10**9))
def test_ietf_counts_round_trip(quota: int, remaining: int, reset: int) -> None:
    headers = {
        "ratelimit-policy": f'"p";q={quota};w=60',
        "ratelimit": f'"p";r={remaining};t={reset}',
    }
    report = tt.parse_ietf(headers, None, 0.0)
    assert limits(report) == {"requests": (float(quota), float(remaining), float(reset))}
