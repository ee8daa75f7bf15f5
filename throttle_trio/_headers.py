"""Read what an LLM API's response headers say about its rate limits and about retrying.

Pure functions: no I/O, no clock.  Where a header holds an absolute date, the caller passes
``now``, the wall-clock UNIX time (seconds) at which the response arrived.

The formats, with real examples (OpenAI's from its rate-limit guide, Anthropic's from a recorded
response):

========================================  ===============================  ====================
Header                                    Example                          Format
========================================  ===============================  ====================
retry-after-ms                            250                              milliseconds
retry-after                               2, 1.5                           seconds
retry-after                               Wed, 21 Oct 2015 07:28:00 GMT    HTTP-date
x-should-retry                            true, false                      boolean
x-ratelimit-limit-requests                60                               count
x-ratelimit-limit-tokens                  150000                           count
x-ratelimit-remaining-requests            59                               count
x-ratelimit-remaining-tokens              149984                           count
x-ratelimit-reset-requests                1s, 12ms                         Go duration
x-ratelimit-reset-tokens                  6m0s, 23h47m36.648s              Go duration
anthropic-ratelimit-requests-limit        1000                             count
anthropic-ratelimit-requests-remaining    999                              count
anthropic-ratelimit-requests-reset        2025-08-21T12:40:59Z             RFC 3339 date-time
anthropic-ratelimit-tokens-limit          96000                            count
anthropic-ratelimit-input-tokens-limit    80000                            count
anthropic-ratelimit-output-tokens-reset   2025-08-21T12:41:00Z             RFC 3339 date-time
========================================  ===============================  ====================

* ``retry-after-ms`` is OpenAI's (non-standard); ``retry-after`` is RFC 9110's delay-seconds,
  with fractions accepted as openai-python does, or an HTTP-date (RFC 9110 §5.6.7: the IMF
  fixdate above, and the obsolete RFC 850 and asctime forms).
* OpenAI's resets are the time until the limit is full again; Anthropic's the time at which it
  is (``2025-08-21T12:40:59.5+00:00`` and other offsets too).  Both become ``reset_after``,
  seconds from ``now``.  Anthropic's ``tokens``, ``input-tokens`` and ``output-tokens``
  families have the same three fields as ``requests``.

Go durations are a sequence of ``<decimal><unit>`` with units ``h m s ms us µs ns`` (``"0"``
alone also means zero), as Go's ``time.ParseDuration`` accepts them, minus negative values.

Servers, proxies and fakes send garbage too.  A value that does not parse, a negative or
non-finite number, a count above 10**15, a date that does not exist: that one field is
dropped and the raw value is logged on the ``"throttle_trio"`` logger (retry headers at
WARNING, since the library then ignores what the server asked; rate-limit fields at DEBUG,
since they come with every response).  No header *value* can make these functions raise.

Headers may be given as any mapping of name to value (``httpx.Headers``, a ``dict``) or as an
iterable of ``(name, value)`` pairs; names are matched case-insensitively, surrounding spaces
and tabs are stripped from values, ``bytes`` are decoded as Latin-1, and a name given more than
once is joined with ``", "`` as httpx does (so a repeated rate-limit header is ambiguous, and
ignored).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final, TypeAlias, final

__all__ = [
    "HeadersLike",
    "LimitReport",
    "RateLimitHeaders",
    "parse_go_duration",
    "parse_rate_limit_headers",
    "parse_retry_after",
    "parse_should_retry",
]

logger = logging.getLogger("throttle_trio")

HeadersLike: TypeAlias = (
    Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]
)
"""What the parsers accept: a mapping of header names to values, or ``(name, value)`` pairs."""

# A count above this is garbage, not a limit (no provider counts 10**15 of anything per key).
_MAX_COUNT: Final = 1e15
# Go's time.Duration is an int64 of nanoseconds; ParseDuration rejects anything longer.
_MAX_GO_DURATION: Final = (2**63 - 1) / 1e9
# Longest raw value quoted in a log message.
_LOG_CHARS: Final = 200

# An unsigned decimal: "2", "1.5", "1.", ".5"; no sign, exponent, underscore, NaN or infinity.
_DECIMAL: Final = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_NUMBER_RE: Final = re.compile(_DECIMAL, re.ASCII)

# "ms" before "m": alternatives are tried in order.  Both micro signs: U+00B5 and U+03BC.
_GO_UNIT: Final = r"(?:ns|us|\u00b5s|\u03bcs|ms|h|m|s)"
_GO_DURATION_RE: Final = re.compile(rf"\+?(?:{_DECIMAL}{_GO_UNIT})+", re.ASCII)
_GO_COMPONENT_RE: Final = re.compile(rf"({_DECIMAL})({_GO_UNIT})", re.ASCII)
# unit -> (multiplier, divisor): dividing by 1000 rounds once, multiplying by 0.001 twice.
_GO_UNITS: Final[Mapping[str, tuple[float, float]]] = {
    "h": (3600.0, 1.0),
    "m": (60.0, 1.0),
    "s": (1.0, 1.0),
    "ms": (1.0, 1e3),
    "us": (1.0, 1e6),
    "\u00b5s": (1.0, 1e6),
    "\u03bcs": (1.0, 1e6),
    "ns": (1.0, 1e9),
}

_MONTHS: Final[Mapping[str, int]] = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_TIME: Final = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
# Sun, 06 Nov 1994 08:49:37 GMT
_IMF_FIXDATE_RE: Final = re.compile(
    rf"[a-z]{{3}}, ([0-9]{{1,2}}) ([a-z]{{3}}) ([0-9]{{4}}) {_TIME} GMT", re.ASCII | re.IGNORECASE
)
# Sunday, 06-Nov-94 08:49:37 GMT (obsolete)
_RFC850_DATE_RE: Final = re.compile(
    rf"[a-z]{{6,9}}, ([0-9]{{2}})-([a-z]{{3}})-([0-9]{{2}}) {_TIME} GMT", re.ASCII | re.IGNORECASE
)
# Sun Nov  6 08:49:37 1994 (obsolete)
_ASCTIME_DATE_RE: Final = re.compile(
    rf"[a-z]{{3}} ([a-z]{{3}}) +([0-9]{{1,2}}) {_TIME} ([0-9]{{4}})", re.ASCII | re.IGNORECASE
)
# 2025-08-21T12:40:59Z, 2025-08-21T12:40:59.123456+00:00
_RFC3339_RE: Final = re.compile(
    rf"([0-9]{{4}})-([0-9]{{2}})-([0-9]{{2}})[Tt ]{_TIME}(\.[0-9]+)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)

# Metric names, in the order they appear in RateLimitHeaders.limits.
_METRICS: Final = ("requests", "tokens", "input_tokens", "output_tokens")
_LIMIT, _REMAINING, _RESET_GO, _RESET_RFC3339 = range(4)
# header name -> (metric, kind).  OpenAI first: where both families name the same field (a
# proxy in front of both?), the first one that parses wins.
_RATE_LIMIT_FIELDS: Final[Mapping[str, tuple[str, int]]] = {
    **{
        f"x-ratelimit-{field}-{metric}": (metric, kind)
        for metric in ("requests", "tokens")
        for field, kind in (("limit", _LIMIT), ("remaining", _REMAINING), ("reset", _RESET_GO))
    },
    **{
        f"anthropic-ratelimit-{metric.replace('_', '-')}-{field}": (metric, kind)
        for metric in _METRICS
        for field, kind in (
            ("limit", _LIMIT),
            ("remaining", _REMAINING),
            ("reset", _RESET_RFC3339),
        )
    },
}
_RETRY_AFTER_MS: Final = "retry-after-ms"
_RETRY_AFTER: Final = "retry-after"
_SHOULD_RETRY: Final = "x-should-retry"
# The only names the parsers read; every other header is skipped while normalizing.
_WANTED: Final = frozenset({*_RATE_LIMIT_FIELDS, _RETRY_AFTER_MS, _RETRY_AFTER, _SHOULD_RETRY})


@final
@dataclass(frozen=True, slots=True)
class LimitReport:
    """What the server reported about one limit of a key (one metric), in one response.

    A field is ``None`` when the header was absent or did not parse.

    Attributes:
        limit: the most the limit admits per period (requests or tokens).
        remaining: what is left of it now (requests or tokens).
        reset_after: seconds from ``now`` until the limit is full again (>= 0).
    """

    limit: float | None
    remaining: float | None
    reset_after: float | None


@final
@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """Everything one response's headers say about rate limits and retrying.

    Attributes:
        limits: one :class:`LimitReport` per metric for which at least one field parsed, keyed
            ``"requests"``, ``"tokens"``, ``"input_tokens"`` or ``"output_tokens"`` (read-only).
        retry_after: seconds the server asked to wait before retrying (see
            :func:`parse_retry_after`), or ``None``.
        should_retry: the server's ``x-should-retry`` verdict, or ``None``.
    """

    limits: Mapping[str, LimitReport]
    retry_after: float | None
    should_retry: bool | None


def parse_go_duration(text: str) -> float | None:
    """Parse a Go duration such as ``"6m0s"`` or ``"23h47m36.648s"`` into seconds.

    OpenAI's ``x-ratelimit-reset-*`` headers use this form.  Accepted: what Go's
    ``time.ParseDuration`` accepts (units ``h m s ms us µs μs ns``, decimal fractions, several
    components in any order, a leading ``+``, ``"0"`` alone), except negative durations;
    surrounding spaces and tabs are ignored.

    Returns:
        The duration in seconds (>= 0), or ``None`` if ``text`` is not a valid non-negative Go
        duration or exceeds Go's range (about 292 years).  Never raises for a string.
    """
    text = text.strip(" \t")
    if text == "0":
        return 0.0
    if _GO_DURATION_RE.fullmatch(text) is None:
        return None
    seconds = 0.0
    for number, unit in _GO_COMPONENT_RE.findall(text):
        multiplier, divisor = _GO_UNITS[unit]
        seconds += float(number) * multiplier / divisor
    return seconds if seconds <= _MAX_GO_DURATION else None  # also rejects inf


def parse_retry_after(headers: HeadersLike, now: float) -> float | None:
    """Return how long the server asked to wait before a retry, in seconds.

    Reads, as openai-python does, ``retry-after-ms`` first (milliseconds), then
    ``retry-after`` (seconds, a fraction allowed, or an HTTP-date).  A value that is malformed,
    negative, NaN or infinite is logged at WARNING and ignored, and the next header is tried.

    Args:
        headers: the response headers (see :data:`HeadersLike`).
        now: the wall-clock UNIX time (seconds) at which the response arrived; an HTTP-date is
            read relative to it, and one in the past gives ``0.0``.

    Returns:
        The wait in seconds (finite, >= 0), or ``None`` if no valid value is present.  Zero is
        a valid answer ("retry now").  Whether the wait is acceptable is the caller's call (see
        :meth:`RetryPolicy.server_delay`).
    """
    return read_retry_after(lowered_headers(headers), now, log=True)


def parse_should_retry(headers: HeadersLike) -> bool | None:
    """Return the server's ``x-should-retry`` verdict: ``True``, ``False`` or ``None``.

    ``true`` and ``false`` are matched case-insensitively; any other value is logged at
    WARNING and read as absent (``None``).
    """
    return read_should_retry(lowered_headers(headers))


def parse_rate_limit_headers(headers: HeadersLike, now: float) -> RateLimitHeaders:
    """Read a response's rate-limit, retry-after and should-retry headers at once.

    OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` and Anthropic's
    ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``
    both map to the metrics ``"requests"``, ``"tokens"``, ``"input_tokens"`` and
    ``"output_tokens"``.  A field that does not parse (negative, NaN, above 10**15,
    non-numeric, a malformed date or duration, an unknown unit) is dropped and logged at DEBUG;
    a metric appears in :attr:`RateLimitHeaders.limits` only if at least one field parsed.

    Args:
        headers: the response headers (see :data:`HeadersLike`).
        now: the wall-clock UNIX time (seconds) at which the response arrived; Anthropic reset
            times and an HTTP-date ``retry-after`` are read relative to it.

    Returns:
        A :class:`RateLimitHeaders`.  Never raises for any header name or value.
    """
    lowered = lowered_headers(headers)
    fields: dict[str, list[float | None]] = {}
    for name, (metric, kind) in _RATE_LIMIT_FIELDS.items():
        raw = lowered.get(name)
        if raw is None:
            continue
        value = _rate_limit_field(raw, kind, now)
        if value is None:
            logger.debug("ignoring a malformed %s header: %.*r", name, _LOG_CHARS, raw)
            continue
        slots = fields.setdefault(metric, [None, None, None])
        index = min(kind, _RESET_GO)  # both reset kinds fill the reset_after slot
        if slots[index] is None:
            slots[index] = value
    limits: dict[str, LimitReport] = {
        metric: LimitReport(*fields[metric])  # the canonical metric order
        for metric in _METRICS
        if metric in fields
    }
    return RateLimitHeaders(
        limits=MappingProxyType(limits),
        retry_after=read_retry_after(lowered, now, log=True),
        should_retry=read_should_retry(lowered),
    )


# -- internals ---------------------------------------------------------------------------------


def lowered_headers(headers: HeadersLike) -> dict[str, str]:
    """The headers the parsers read, with lower-case names and stripped values."""
    items: Iterable[object] = headers.items() if isinstance(headers, Mapping) else headers
    lowered: dict[str, str] = {}
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise TypeError(
                "headers must be a mapping or an iterable of (name, value) pairs, "
                f"got an item {item!r}"
            )
        raw_name, raw_value = item
        name = raw_name.lower() if type(raw_name) is str else _text(raw_name, lower=True)
        if name not in _WANTED:  # most headers: skipped after one lower() and one lookup
            continue
        value = raw_value if type(raw_value) is str else _text(raw_value)
        if value is None:
            logger.debug(
                "ignoring the %s header: its value is not text: %.*r", name, _LOG_CHARS, raw_value
            )
            continue
        value = value.strip(" \t")
        previous = lowered.get(name)
        lowered[name] = value if previous is None else f"{previous}, {value}"
    return lowered


def _text(value: object, *, lower: bool = False) -> str | None:
    """A str subclass or bytes as text (bytes as Latin-1: never fails); None for the rest."""
    if isinstance(value, str):
        text = str(value)
    elif isinstance(value, bytes | bytearray):
        text = value.decode("latin-1")
    else:
        return None
    return text.lower() if lower else text


def _count(text: str) -> float | None:
    """A non-negative decimal up to 10**15, or None."""
    if _NUMBER_RE.fullmatch(text) is None:
        return None
    value = float(text)
    return value if value <= _MAX_COUNT else None


def _seconds(text: str) -> float | None:
    """A finite non-negative decimal, or None."""
    if _NUMBER_RE.fullmatch(text) is None:
        return None
    value = float(text)  # a few hundred digits overflow to inf
    return value if math.isfinite(value) else None


def _rate_limit_field(raw: str, kind: int, now: float) -> float | None:
    if kind == _RESET_GO:
        return parse_go_duration(raw)
    if kind == _RESET_RFC3339:
        at = _rfc3339_timestamp(raw)
        if at is None:
            return None
        whole, fraction = at
        # Whole seconds first: a UNIX time as a float keeps only ~0.2 us, the difference more.
        reset_after = max(0.0, (whole - now) + fraction)
        return reset_after if math.isfinite(reset_after) else None
    return _count(raw)


def read_retry_after(lowered: Mapping[str, str], now: float, *, log: bool) -> float | None:
    raw = lowered.get(_RETRY_AFTER_MS)
    if raw is not None:
        milliseconds = _seconds(raw)
        if milliseconds is not None:
            return milliseconds / 1000
        if log:
            logger.warning("ignoring a malformed retry-after-ms header: %.*r", _LOG_CHARS, raw)
    raw = lowered.get(_RETRY_AFTER)
    if raw is not None:
        seconds = _seconds(raw)
        if seconds is not None:
            return seconds
        at = _http_date_timestamp(raw, now)
        if at is not None:
            wait = max(0.0, at - now)
            if math.isfinite(wait):
                return wait
        if log:
            logger.warning("ignoring a malformed retry-after header: %.*r", _LOG_CHARS, raw)
    return None


def read_should_retry(lowered: Mapping[str, str]) -> bool | None:
    raw = lowered.get(_SHOULD_RETRY)
    if raw is None:
        return None
    verdict = raw.lower()
    if verdict == "true":
        return True
    if verdict == "false":
        return False
    logger.warning("ignoring a malformed x-should-retry header: %.*r", _LOG_CHARS, raw)
    return None


def _utc_timestamp(
    year: int, month: int, day: int, hour: int, minute: int, second: float
) -> float | None:
    """Seconds since the epoch, or None for a date or time that does not exist.

    ``second`` may be 60 (a leap second, which RFC 9110 and RFC 3339 allow).
    """
    if not 0 <= second < 61:
        return None
    try:
        return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() + second
    except (ValueError, OverflowError):
        return None


def _http_date_timestamp(text: str, now: float) -> float | None:
    """An HTTP-date (RFC 9110 §5.6.7, all three forms) as a UNIX timestamp, or None."""
    if match := _IMF_FIXDATE_RE.fullmatch(text):
        day, month_name, year, hour, minute, second = match.groups()
        full_year = int(year)
    elif match := _RFC850_DATE_RE.fullmatch(text):
        day, month_name, year, hour, minute, second = match.groups()
        # RFC 9110: a two-digit year more than 50 years in the future is in the past century.
        try:
            this_year = datetime.fromtimestamp(now, UTC).year
        except (ValueError, OverflowError, OSError):
            return None
        full_year = this_year - this_year % 100 + int(year)
        if full_year > this_year + 50:
            full_year -= 100
    elif match := _ASCTIME_DATE_RE.fullmatch(text):
        month_name, day, hour, minute, second, year = match.groups()
        full_year = int(year)
    else:
        return None
    month = _MONTHS.get(month_name.lower())
    if month is None:
        return None
    return _utc_timestamp(full_year, month, int(day), int(hour), int(minute), int(second))


def _rfc3339_timestamp(text: str) -> tuple[float, float] | None:
    """An RFC 3339 date-time as (whole UNIX seconds, fraction of a second), or None."""
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, offset_h, offset_m = match.groups()
    at = _utc_timestamp(int(year), int(month), int(day), int(hour), int(minute), int(second))
    if at is None:
        return None
    if sign is not None:
        if int(offset_h) > 23 or int(offset_m) > 59:
            return None
        offset = int(offset_h) * 3600 + int(offset_m) * 60
        at += -offset if sign == "+" else offset  # local time minus the offset is UTC
    return at, 0.0 if fraction is None else float(fraction)
