"""Read what an LLM API's response headers say about its rate limits and about retrying.

Pure functions: no I/O, no clock.  Where a header holds an absolute date, the caller passes
``now``, the wall-clock UNIX time (seconds) at which the response arrived.

The formats, with real examples (from the providers' documentation and recorded responses):

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
x-ratelimit-reset-requests                1s, 12ms, 2m59.56s               Go duration
x-ratelimit-reset-tokens                  6m0s, 23h47m36.648s              Go duration
x-ratelimit-reset-tokens (Azure)          55                               seconds
x-rate-limit-reset-tokens (Azure)         55                               seconds
anthropic-ratelimit-requests-limit        1000                             count
anthropic-ratelimit-requests-remaining    999                              count
anthropic-ratelimit-requests-reset        2025-08-21T12:40:59Z             RFC 3339 date-time
anthropic-ratelimit-tokens-limit          96000                            count
anthropic-ratelimit-input-tokens-limit    80000                            count
anthropic-ratelimit-output-tokens-reset   2025-08-21T12:41:00Z             RFC 3339 date-time
ratelimit-policy                          "default";q=100;w=60             structured field
ratelimit                                 "default";r=50;t=30              structured field
ratelimit-limit, -remaining, -reset       100, 50, 30                      count, count, seconds
========================================  ===============================  ====================

* ``retry-after-ms`` is OpenAI's (non-standard; Azure OpenAI sends it too); ``retry-after`` is
  RFC 9110's delay-seconds, with fractions accepted as openai-python does, or an HTTP-date
  (RFC 9110 §5.6.7: the IMF fixdate above, and the obsolete RFC 850 and asctime forms).
* OpenAI's and Groq's resets are the time until the limit is full again, as Go durations
  (Groq's ``requests`` are per day, its ``tokens`` per minute); Azure OpenAI sends plain
  seconds, sometimes only the ``remaining`` fields, and on a 429 ``x-rate-limit-reset-tokens``;
  Anthropic's resets are the time at which the limit is full
  (``2025-08-21T12:40:59.5+00:00`` and other offsets too).  All become ``reset_after``,
  seconds from ``now``.  Anthropic's ``tokens``, ``input-tokens`` and ``output-tokens``
  families have the same three fields as ``requests``.
* ``RateLimit`` and ``RateLimit-Policy`` are the IETF's fields (draft-ietf-httpapi-ratelimit-
  headers; RFC 9651 structured fields): a list of policies, each a quota ``q`` per window
  ``w`` seconds in a unit ``qu`` (``"requests"`` unless said), and for each ``r`` remaining and
  ``t`` seconds until it resets.  Only request quotas are read; of several, the one with the
  least remaining (``RateLimit``) or the lowest rate (``RateLimit-Policy`` alone) is reported.
  The earlier drafts' ``RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (seconds) are read
  when the new fields are absent.
* Error bodies: Gemini answers a 429 with no header, its wait in the JSON body as a
  ``google.rpc.RetryInfo`` detail (``"retryDelay": "53s"``, a protobuf duration); Azure
  OpenAI's messages say "Please retry after 6 seconds".  Either is read as ``retry_after``
  when no ``retry-after`` header says otherwise.

Go durations are a sequence of ``<decimal><unit>`` with units ``h m s ms us µs ns`` (``"0"``
alone also means zero), as Go's ``time.ParseDuration`` accepts them, minus negative values.

Dates are checked against their grammar here and converted by :mod:`datetime`.  The standard
library's own parsers do not suffice alone: ``datetime.fromisoformat`` accepts ISO 8601 forms
RFC 3339 excludes (week dates, the basic format, an offset of ``+01:60`` as ``+02:00``), drops
digits below the microsecond and rejects lowercase ``t``/``z`` and leap seconds;
``email.utils.parsedate_to_datetime`` accepts zones other than GMT and maps RFC 850's
two-digit years by a fixed pivot instead of RFC 9110's "more than 50 years in the future"
rule.

Servers, proxies and fakes send garbage too.  A value that does not parse, a negative or
non-finite number, a count above 10**15, a date that does not exist, a body that is not the
JSON expected: that one field is dropped, counted in :attr:`RateLimitHeaders.ignored`, and
the raw value is logged on the ``"throttle_trio"`` logger (retry headers and delays at
WARNING, since the library then ignores what the server asked; rate-limit fields at DEBUG,
since they come with every response).  No header value and no body can make the built-in
parsers raise.

Headers may be given as any mapping of name to value (``httpx.Headers``, a ``dict``) or as an
iterable of ``(name, value)`` pairs; names are matched case-insensitively, surrounding spaces
and tabs are stripped from values, ``bytes`` are decoded as Latin-1, and a name given more than
once is joined with ``", "`` as httpx does (so a repeated rate-limit header is ambiguous, and
ignored).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final, Protocol, TypeAlias, final

__all__ = [
    "HeadersLike",
    "LimitReport",
    "RateLimitHeaders",
    "ResponseParser",
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
# A longer error body is not parsed (Gemini's 429 bodies are about 2 KB).
_MAX_BODY: Final = 64 * 1024

# An unsigned decimal: "2", "1.5", "1.", ".5"; no sign, exponent, underscore, NaN or infinity.
_DECIMAL: Final = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_NUMBER_RE: Final = re.compile(_DECIMAL, re.ASCII)
# A protobuf Duration in JSON ("53s", "45.837906927s"), without its sign.
_PROTOBUF_DURATION_RE: Final = re.compile(r"([0-9]+(?:\.[0-9]{1,9})?)s", re.ASCII)
# Azure OpenAI's 429 messages: "... Please retry after 6 seconds." / "Try again in 5 seconds."
_RETRY_MESSAGE_RE: Final = re.compile(
    r"(?:retry after|try again in) ([0-9]{1,9}(?:\.[0-9]{1,9})?) seconds?\b",
    re.ASCII | re.IGNORECASE,
)

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

# RFC 9651 structured fields: the bare items and parameters a list of items is made of.
_SF_KEY: Final = r"[a-z*][a-z0-9_.*-]*"
_SF_BARE: Final = (
    r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'  # string
    r"|-?[0-9]{1,15}(?:\.[0-9]{1,3})?"  # integer or decimal
    r"|[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*"  # token
    r"|:[A-Za-z0-9+/=]*:"  # byte sequence
    r"|\?[01]"  # boolean
)
_SF_ITEM_RE: Final = re.compile(rf"({_SF_BARE})((?:;[ ]*{_SF_KEY}(?:=(?:{_SF_BARE}))?)*)", re.ASCII)
_SF_PARAMETER_RE: Final = re.compile(rf";[ ]*({_SF_KEY})(?:=({_SF_BARE}))?", re.ASCII)
_SF_SEPARATOR_RE: Final = re.compile(r"[ \t]*,[ \t]*", re.ASCII)

# Metric names, in the order they appear in RateLimitHeaders.limits.
_METRICS: Final = ("requests", "tokens", "input_tokens", "output_tokens")
# What a rate-limit header holds, and so which slot of its metric's report it fills.
_LIMIT, _REMAINING, _RESET_GO, _RESET_RFC3339, _RESET_SECONDS, _RESET_GO_OR_SECONDS = range(6)
_RESET_SLOT: Final = 2
_RETRY_AFTER_MS: Final = "retry-after-ms"
_RETRY_AFTER: Final = "retry-after"
_SHOULD_RETRY: Final = "x-should-retry"
_RETRY_NAMES: Final = frozenset({_RETRY_AFTER_MS, _RETRY_AFTER, _SHOULD_RETRY})
_IETF_NAMES: Final = (
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
)
_IETF_LIMIT: Final = "ratelimit-limit"
_IETF_REMAINING: Final = "ratelimit-remaining"
_IETF_RESET: Final = "ratelimit-reset"


def _x_ratelimit(reset: int) -> dict[str, tuple[str, int]]:
    """OpenAI's family (Groq's and Azure OpenAI's too), with resets of the given kind."""
    return {
        f"x-ratelimit-{name}-{metric}": (metric, kind)
        for metric in ("requests", "tokens")
        for name, kind in (("limit", _LIMIT), ("remaining", _REMAINING), ("reset", reset))
    }


_ANTHROPIC_FIELDS: Final = {
    f"anthropic-ratelimit-{metric.replace('_', '-')}-{name}": (metric, kind)
    for metric in _METRICS
    for name, kind in (("limit", _LIMIT), ("remaining", _REMAINING), ("reset", _RESET_RFC3339))
}
# Azure OpenAI's 429s (openai-python#937): seconds, with a hyphen in "rate-limit".
_AZURE_RESET_FIELDS: Final = {
    f"x-rate-limit-reset-{metric}": (metric, _RESET_SECONDS) for metric in ("requests", "tokens")
}


@final
@dataclass(frozen=True, slots=True)
class Dialect:
    """What one parser reads: its header families, and which bodies and fields besides.

    Internal (the named parsers of :mod:`throttle_trio._parsers` are built from these).
    """

    # header name -> (metric, kind); where two names fill the same field, the first that
    # parses wins.
    fields: Mapping[str, tuple[str, int]]
    ietf: bool = False  # RateLimit, RateLimit-Policy and the earlier drafts' three fields
    retry_info: bool = False  # Gemini: google.rpc.RetryInfo's retryDelay in an error body
    retry_message: bool = False  # Azure OpenAI: "retry after N seconds" in an error message
    wanted: frozenset[str] = frozenset()  # every header name read (filled in)

    def __post_init__(self) -> None:
        names = {*self.fields, *_RETRY_NAMES, *(_IETF_NAMES if self.ietf else ())}
        object.__setattr__(self, "wanted", frozenset(names))


OPENAI: Final = Dialect(_x_ratelimit(_RESET_GO))
GROQ: Final = Dialect(_x_ratelimit(_RESET_GO))
AZURE_OPENAI: Final = Dialect(
    {**_x_ratelimit(_RESET_GO_OR_SECONDS), **_AZURE_RESET_FIELDS}, retry_message=True
)
ANTHROPIC: Final = Dialect(_ANTHROPIC_FIELDS)
GEMINI: Final = Dialect({}, retry_info=True)
IETF: Final = Dialect({}, ietf=True)
# Every built-in at once.  OpenAI's family first: where two families name the same field (a
# proxy in front of both?), the first one that parses wins.
ANY: Final = Dialect(
    {**_x_ratelimit(_RESET_GO_OR_SECONDS), **_ANTHROPIC_FIELDS, **_AZURE_RESET_FIELDS},
    ietf=True,
    retry_info=True,
    retry_message=True,
)


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


_NO_LIMITS: Final[Mapping[str, LimitReport]] = MappingProxyType({})


@final
@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """Everything one response says about rate limits and retrying.

    Every field has a default, so that a custom :class:`ResponseParser` names only what it
    found: ``RateLimitHeaders(retry_after=2.0)``.

    Attributes:
        limits: one :class:`LimitReport` per metric for which at least one field parsed, keyed
            ``"requests"``, ``"tokens"``, ``"input_tokens"`` or ``"output_tokens"`` (read-only).
        retry_after: seconds the server asked to wait before retrying (see
            :func:`parse_retry_after`; also Gemini's ``retryDelay`` in an error body), or
            ``None``.
        should_retry: the server's ``x-should-retry`` verdict, or ``None``.
        ignored: how many fields (headers, or values in the body) were present but malformed,
            and so ignored (each is logged).
    """

    limits: Mapping[str, LimitReport] = field(default_factory=lambda: _NO_LIMITS)
    retry_after: float | None = None
    should_retry: bool | None = None
    ignored: int = 0

    def __post_init__(self) -> None:
        if type(self.limits) is not MappingProxyType:  # a parser of your own gave a dict
            object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))


class ResponseParser(Protocol):
    """Reads what one response says about rate limits: a function of headers, body and time.

    The transports (``parser=``) and :func:`parse_rate_limit_headers` (``parser=``) call it
    once per response, with:

    * ``headers``: every header, names in lower case, values stripped of spaces and tabs, a
      repeated name joined with ``", "``;
    * ``body``: the body of an error response (status >= 400) if it was read, else ``None``
      (a success's body streams to the caller and is not parsed for limits);
    * ``now``: the wall-clock UNIX time (seconds) at which the response arrived, for dates.

    It returns a :class:`RateLimitHeaders` (``RateLimitHeaders()`` when it found nothing).
    The built-ins (:func:`~throttle_trio.parse_openai` and its siblings) never raise; an
    exception from a parser of your own propagates to the request that got the response.
    """

    def __call__(
        self, headers: Mapping[str, str], body: bytes | str | None, now: float, /
    ) -> RateLimitHeaders: ...


def parse_go_duration(text: str) -> float | None:
    """Parse a Go duration such as ``"6m0s"`` or ``"23h47m36.648s"`` into seconds.

    OpenAI's and Groq's ``x-ratelimit-reset-*`` headers use this form.  Accepted: what Go's
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


def parse_rate_limit_headers(
    headers: HeadersLike,
    now: float,
    *,
    body: bytes | str | None = None,
    parser: ResponseParser | None = None,
) -> RateLimitHeaders:
    """Read what a response says about rate limits, retry-after and should-retry at once.

    By default every built-in dialect is read (:func:`~throttle_trio.parse_any`): OpenAI's,
    Groq's and Azure OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``,
    Anthropic's ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
    {limit,remaining,reset}``, the IETF ``RateLimit``/``RateLimit-Policy`` fields (requests),
    and in an error ``body`` Gemini's ``retryDelay`` and Azure OpenAI's "retry after N
    seconds".  They map to the metrics ``"requests"``, ``"tokens"``, ``"input_tokens"`` and
    ``"output_tokens"``.  A field that does not parse (negative, NaN, above 10**15,
    non-numeric, a malformed date or duration, an unknown unit) is dropped, counted in
    :attr:`RateLimitHeaders.ignored` and logged at DEBUG; a metric appears in
    :attr:`RateLimitHeaders.limits` only if at least one field parsed.

    Args:
        headers: the response headers (see :data:`HeadersLike`).
        now: the wall-clock UNIX time (seconds) at which the response arrived; Anthropic reset
            times and an HTTP-date ``retry-after`` are read relative to it.
        body: the response body, for an error response whose body was read (JSON), or
            ``None``.
        parser: read the response with this :class:`ResponseParser` instead (one of the
            built-ins, such as :func:`~throttle_trio.parse_anthropic`, or your own); it gets
            every header, names in lower case.

    Returns:
        A :class:`RateLimitHeaders`.  Never raises for any header name or value or body (a
        ``parser`` of your own may).
    """
    if parser is None:
        return read_report(headers, body, now, ANY)
    return parser(lowered_headers(headers, wanted=None), body, now)


# -- internals ---------------------------------------------------------------------------------


def lowered_headers(
    headers: HeadersLike, *, wanted: Container[str] | None = ANY.wanted
) -> dict[str, str]:
    """The headers a parser reads (all of them if ``wanted`` is ``None``), with lower-case
    names and stripped values; a repeated name is joined with ``", "``."""
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
        if name is None or (wanted is not None and name not in wanted):
            continue  # most headers: skipped after one lower() and one lookup
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


def read_report(
    headers: HeadersLike, body: bytes | str | None, now: float, dialect: Dialect
) -> RateLimitHeaders:
    """What a response says, read in one :class:`Dialect` (see the module docstring)."""
    lowered = lowered_headers(headers, wanted=dialect.wanted)
    tally = _Tally()
    fields: dict[str, list[float | None]] = {}
    for name, (metric, kind) in dialect.fields.items():
        raw = lowered.get(name)
        if raw is None:
            continue
        value = _rate_limit_field(raw, kind, now)
        if value is None:
            tally.debug(name, raw)
            continue
        slots = fields.setdefault(metric, [None, None, None])
        index = min(kind, _RESET_SLOT)  # every reset kind fills the reset_after slot
        if slots[index] is None:
            slots[index] = value
    if dialect.ietf and "requests" not in fields:
        ietf = _read_ietf(lowered, tally)
        if ietf is not None:
            fields["requests"] = ietf
    limits: dict[str, LimitReport] = {
        metric: LimitReport(*fields[metric])  # the canonical metric order
        for metric in _METRICS
        if metric in fields
    }
    retry_after = _read_retry_after(lowered, now, tally)
    if retry_after is None and body is not None and (dialect.retry_info or dialect.retry_message):
        retry_after = _read_body_delay(body, dialect, tally)
    return RateLimitHeaders(
        limits=MappingProxyType(limits) if limits else _NO_LIMITS,
        retry_after=retry_after,
        should_retry=read_should_retry(lowered),
        ignored=tally.count,
    )


class _Tally:
    """Counts the malformed fields of one response, and logs each."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def debug(self, name: str, raw: object) -> None:
        self.count += 1
        logger.debug("ignoring a malformed %s header: %.*r", name, _LOG_CHARS, raw)

    def warning(self, what: str, raw: object) -> None:
        self.count += 1
        logger.warning("ignoring a malformed %s: %.*r", what, _LOG_CHARS, raw)


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
    if kind == _RESET_SECONDS:
        return _seconds(raw)
    if kind == _RESET_GO_OR_SECONDS:
        seconds = _seconds(raw)
        return seconds if seconds is not None else parse_go_duration(raw)
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
    """``retry-after-ms``, else ``retry-after``, from headers with lower-case names."""
    return _read_retry_after(lowered, now, _Tally() if log else None)


def _read_retry_after(lowered: Mapping[str, str], now: float, tally: _Tally | None) -> float | None:
    raw = lowered.get(_RETRY_AFTER_MS)
    if raw is not None:
        milliseconds = _seconds(raw)
        if milliseconds is not None:
            return milliseconds / 1000
        if tally is not None:
            tally.warning(f"{_RETRY_AFTER_MS} header", raw)
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
        if tally is not None:
            tally.warning(f"{_RETRY_AFTER} header", raw)
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


# -- error bodies ------------------------------------------------------------------------------


def _read_body_delay(body: bytes | str, dialect: Dialect, tally: _Tally) -> float | None:
    """The wait an error body asks for: Gemini's ``retryDelay``, Azure's message."""
    if len(body) > _MAX_BODY:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError)
        return None
    # Google's APIs answer {"error": {...}}, and a list of them on some endpoints.
    if isinstance(document, list) and document:
        document = document[0]
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None
    if dialect.retry_info:
        delay = _retry_info_delay(error, tally)
        if delay is not None:
            return delay
    if dialect.retry_message:
        message = error.get("message")
        if isinstance(message, str) and (found := _RETRY_MESSAGE_RE.search(message)):
            return float(found[1])
    return None


def _retry_info_delay(error: Mapping[str, object], tally: _Tally) -> float | None:
    details = error.get("details")
    if not isinstance(details, list):
        return None
    for detail in details:
        if not (isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO_TYPE):
            continue
        raw = detail.get("retryDelay")
        found = _PROTOBUF_DURATION_RE.fullmatch(raw) if isinstance(raw, str) else None
        if found is None:
            tally.warning("retryDelay in the response body", raw)
            continue
        return float(found[1])
    return None


_RETRY_INFO_TYPE: Final = "type.googleapis.com/google.rpc.RetryInfo"


# -- the IETF RateLimit fields -----------------------------------------------------------------


def _read_ietf(lowered: Mapping[str, str], tally: _Tally) -> list[float | None] | None:
    """[limit, remaining, reset_after] of the binding request quota, or None."""
    policies: dict[str, tuple[float, float]] = {}  # name -> (quota, window or inf)
    other_units: set[str] = set()  # policies that count something else (content-bytes)
    raw = lowered.get("ratelimit-policy")
    if raw is not None:
        items = _structured_list(raw)
        if items is None:
            tally.debug("ratelimit-policy", raw)
            items = []
        for name, parameters in items:
            quota = _sf_count(parameters.get("q"))
            if parameters.get("qu", "requests") != "requests":
                other_units.add(name)
            elif quota is not None:
                policies[name] = (quota, _sf_count(parameters.get("w")) or math.inf)
    raw = lowered.get("ratelimit")
    if raw is not None:
        items = _structured_list(raw)
        if items is None:
            tally.debug("ratelimit", raw)
            items = []
        binding: list[float | None] | None = None
        for name, parameters in items:
            remaining = _sf_count(parameters.get("r"))
            if remaining is None or name in other_units:
                continue
            if binding is None or remaining < (binding[1] or 0.0):
                policy = policies.get(name)
                quota = policy[0] if policy is not None else None
                binding = [quota, remaining, _sf_count(parameters.get("t"))]
        if binding is not None:
            return binding
    if policies:  # no RateLimit: the quota of the lowest rate
        quota, _window = min(policies.values(), key=lambda policy: policy[0] / policy[1])
        return [quota, None, None]
    return _read_ietf_earlier(lowered, tally)


def _read_ietf_earlier(lowered: Mapping[str, str], tally: _Tally) -> list[float | None] | None:
    """The earlier drafts: ``RateLimit-Limit: 100, 100;w=60``, ``-Remaining``, ``-Reset``."""
    report: list[float | None] = [None, None, None]
    for index, name in enumerate((_IETF_LIMIT, _IETF_REMAINING, _IETF_RESET)):
        raw = lowered.get(name)
        if raw is None:
            continue
        value = _count(raw.partition(",")[0].partition(";")[0].strip(" \t"))
        if value is None:
            tally.debug(name, raw)
        else:
            report[index] = value
    return report if report != [None, None, None] else None


def _sf_count(value: object) -> float | None:
    """A structured field's non-negative integer as a count, or None."""
    if type(value) is not int or not 0 <= value <= _MAX_COUNT:
        return None
    return float(value)


def _structured_list(text: str) -> list[tuple[str, dict[str, object]]] | None:
    """An RFC 9651 list of items whose values are strings or tokens: (value, parameters).

    None if the field does not parse (RFC 9651: then the whole field is ignored).  An item of
    another type (a number, say) is skipped.
    """
    items: list[tuple[str, dict[str, object]]] = []
    position, end = 0, len(text)
    while position < end:
        found = _SF_ITEM_RE.match(text, position)
        if found is None:
            return None
        value = _sf_value(found[1])
        parameters: dict[str, object] = {}
        for key, raw in _SF_PARAMETER_RE.findall(found[2]):
            parameters[key] = _sf_value(raw) if raw else True  # a later one overrides
        if isinstance(value, str):
            items.append((value, parameters))
        position = found.end()
        if position == end:
            break
        separator = _SF_SEPARATOR_RE.match(text, position)
        if separator is None or separator.end() == end:  # junk, or a trailing comma
            return None
        position = separator.end()
    return items


def _sf_value(raw: str) -> object:
    """A bare item: a str (string or token), int, float, bool or bytes' text."""
    first = raw[0]
    if first == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    if first == "-" or first.isdigit():
        return float(raw) if "." in raw else int(raw)
    if first == "?":
        return raw == "?1"
    if first == ":":
        return raw.encode("ascii")  # a byte sequence; never a name we read
    return raw


# -- dates -------------------------------------------------------------------------------------


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
