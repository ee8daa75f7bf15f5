"""The built-in response parsers, one per provider, and a way to combine them.

Each is a :class:`~throttle_trio.ResponseParser`: ``parser(headers, body, now)`` returns a
:class:`~throttle_trio.RateLimitHeaders`, never raises, and logs and counts what it ignores.
Pass one to a transport (``ThrottledTransport(..., parser=tt.parse_anthropic)``) or to
:func:`~throttle_trio.parse_rate_limit_headers` to read only that provider's dialect; the
default, :func:`parse_any`, reads them all.  Every built-in also reads the retry headers
(``retry-after-ms``, ``retry-after``, ``x-should-retry``).  The formats, with real examples,
are in the docstring of :mod:`throttle_trio._headers`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from ._headers import (
    ANTHROPIC,
    ANY,
    AZURE_OPENAI,
    GEMINI,
    GROQ,
    IETF,
    OPENAI,
    LimitReport,
    RateLimitHeaders,
    read_report,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._headers import HeadersLike, ResponseParser

__all__ = [
    "combine_parsers",
    "parse_anthropic",
    "parse_any",
    "parse_azure_openai",
    "parse_gemini",
    "parse_groq",
    "parse_ietf",
    "parse_openai",
]


def parse_any(headers: HeadersLike, body: bytes | str | None, now: float) -> RateLimitHeaders:
    """Every built-in at once: what :func:`parse_rate_limit_headers` and the transports read
    by default.

    Where two dialects name the same field, the first that parses wins, in this order:
    ``x-ratelimit-*`` (OpenAI, Groq, Azure OpenAI: a Go duration or seconds),
    ``anthropic-ratelimit-*``, Azure's ``x-rate-limit-reset-*``, then the IETF fields for
    requests; in an error body, Gemini's ``retryDelay``, then Azure's message.
    """
    return read_report(headers, body, now, ANY)


def parse_openai(headers: HeadersLike, body: bytes | str | None, now: float) -> RateLimitHeaders:
    """OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, resets as Go
    durations (``"1s"``, ``"6m0s"``)."""
    return read_report(headers, body, now, OPENAI)


def parse_azure_openai(
    headers: HeadersLike, body: bytes | str | None, now: float
) -> RateLimitHeaders:
    """Azure OpenAI: ``x-ratelimit-*`` as OpenAI's, often only ``remaining-requests`` and
    ``remaining-tokens``, resets in seconds or as Go durations; ``x-rate-limit-reset-tokens``
    (seconds) on a 429; and a 429's message "Please retry after N seconds" when no
    ``retry-after`` header says so.  A field of ``-1`` (sent when the service has no value) is
    ignored."""
    return read_report(headers, body, now, AZURE_OPENAI)


def parse_anthropic(headers: HeadersLike, body: bytes | str | None, now: float) -> RateLimitHeaders:
    """Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
    {limit,remaining,reset}``, resets as RFC 3339 date-times (read relative to ``now``)."""
    return read_report(headers, body, now, ANTHROPIC)


def parse_gemini(headers: HeadersLike, body: bytes | str | None, now: float) -> RateLimitHeaders:
    """Google Gemini: no rate-limit headers; a 429's JSON body carries the wait as a
    ``google.rpc.RetryInfo`` detail, ``"retryDelay": "53s"`` (a protobuf duration, up to nine
    fractional digits), read as ``retry_after``.  The body may be ``{"error": ...}`` or a list
    of them."""
    return read_report(headers, body, now, GEMINI)


def parse_groq(headers: HeadersLike, body: bytes | str | None, now: float) -> RateLimitHeaders:
    """Groq: OpenAI's ``x-ratelimit-*`` with Go-duration resets (``"2m59.56s"``, ``"7.66s"``);
    its ``requests`` limit is per day and its ``tokens`` limit per minute (a learned limit
    infers the period from the reset)."""
    return read_report(headers, body, now, GROQ)


def parse_ietf(headers: HeadersLike, body: bytes | str | None, now: float) -> RateLimitHeaders:
    """The IETF fields (draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Policy:
    "default";q=100;w=60`` and ``RateLimit: "default";r=50;t=30``, as the ``requests``
    metric; the earlier drafts' ``RateLimit-Limit``, ``-Remaining`` and ``-Reset`` when they
    are absent.  Quotas in other units (``qu="content-bytes"``) are not read."""
    return read_report(headers, body, now, IETF)


def combine_parsers(*parsers: ResponseParser) -> ResponseParser:
    """One parser that asks each of ``parsers`` in turn: for each field, the first that found
    it wins.

    Put your own parser before a built-in to read a header the built-ins do not know and keep
    the rest: ``combine_parsers(my_parser, tt.parse_any)``.  ``ignored`` is the sum of theirs
    (a header two of them read is counted, and logged, twice).

    Raises:
        TypeError: no parser, or one that is not callable.
    """
    if not parsers:
        raise TypeError("combine_parsers() needs at least one parser")
    for parser in parsers:
        if not callable(parser):
            raise TypeError(f"parsers must be callable, got {parser!r}")

    def combined(
        headers: Mapping[str, str], body: bytes | str | None, now: float, /
    ) -> RateLimitHeaders:
        return merge_reports([parser(headers, body, now) for parser in parsers])

    combined.__qualname__ = combined.__name__ = (
        f"combine_parsers({', '.join(getattr(p, '__name__', repr(p)) for p in parsers)})"
    )
    return combined


def merge_reports(reports: list[RateLimitHeaders]) -> RateLimitHeaders:
    """Field by field, the first report's value that is not ``None``."""
    fields: dict[str, list[float | None]] = {}
    for report in reports:
        for metric, limit in report.limits.items():
            slots = fields.setdefault(metric, [None, None, None])
            for index, value in enumerate((limit.limit, limit.remaining, limit.reset_after)):
                if slots[index] is None:
                    slots[index] = value
    return RateLimitHeaders(
        limits=MappingProxyType({metric: LimitReport(*slots) for metric, slots in fields.items()}),
        retry_after=next((r.retry_after for r in reports if r.retry_after is not None), None),
        should_retry=next((r.should_retry for r in reports if r.should_retry is not None), None),
        ignored=sum(report.ignored for report in reports),
    )
