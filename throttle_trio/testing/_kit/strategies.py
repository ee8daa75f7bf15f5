"""The implementation of :mod:`throttle_trio.testing.strategies` (see there)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, final

from ..._extras import missing_extra

try:
    from hypothesis import strategies as st
except ImportError as _error:  # pragma: no cover - exercised in a subprocess by the tests
    raise missing_extra("throttle_trio.testing.strategies", "testing", _error) from _error

from ...policy import GCRA, SlidingWindow, TokenBucket
from .workload import Arrival, Reconfiguration, Step

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "ProviderHeaders",
    "ProviderResponse",
    "arrivals",
    "gcras",
    "go_durations",
    "http_dates",
    "policies",
    "rate_limit_headers",
    "responses",
    "retry_after_headers",
    "sliding_windows",
    "token_buckets",
    "usages",
    "workloads",
]

Provider: TypeAlias = Literal["openai", "anthropic"]
"""Whose API shapes: ``"openai"`` or ``"anthropic"``."""

_PROVIDERS: tuple[Provider, ...] = ("openai", "anthropic")
_TICK = 1 / 64  # the default grid of times: exact in binary and in whole microseconds

# -- policies ----------------------------------------------------------------------------------


def _rates(exact: bool, max_rate: float) -> st.SearchStrategy[float]:
    if exact:  # powers of two per second: every interval a multiple of 1/1024 s or more
        top = max(0, min(10, int(math.log2(max_rate))))
        return st.integers(0, top).map(lambda k: float(2**k))
    return st.one_of(
        st.integers(1, max(1, int(max_rate))).map(float),
        st.floats(0.1, max_rate, allow_nan=False, allow_infinity=False),
    )


def _pers(exact: bool) -> st.SearchStrategy[float]:
    if exact:
        return st.just(1.0)
    return st.sampled_from([1.0, 60.0, 0.5, 10.0, 3600.0]) | st.floats(0.01, 3600)


def _bucket_parameters(
    exact: bool, max_rate: float, max_burst: int
) -> st.SearchStrategy[tuple[float, float, float]]:
    # burst >= 1, so that a cost of 1 always fits.
    bursts = st.integers(1, max_burst).map(float)
    if not exact:
        bursts = bursts | st.floats(1.0, float(max_burst))
    return st.tuples(_rates(exact, max_rate), _pers(exact), bursts)


def token_buckets(
    *, exact: bool = False, max_rate: float = 1000.0, max_burst: int = 64
) -> st.SearchStrategy[TokenBucket]:
    """Token buckets with valid parameters (``burst >= 1``, so a cost of 1 always fits).

    Args:
        exact: rates that are powers of two per second, ``per=1`` and whole bursts: every
            instant is a binary fraction, exact on trio's floats and looptime's microseconds.
        max_rate: the largest rate drawn.
        max_burst: the largest burst drawn.
    """
    return _bucket_parameters(exact, max_rate, max_burst).map(
        lambda p: TokenBucket(p[0], p[1], burst=p[2])
    )


def gcras(
    *, exact: bool = False, max_rate: float = 1000.0, max_burst: int = 64
) -> st.SearchStrategy[GCRA]:
    """GCRA policies with valid parameters (as :func:`token_buckets`)."""
    return _bucket_parameters(exact, max_rate, max_burst).map(
        lambda p: GCRA(p[0], p[1], burst=p[2])
    )


def sliding_windows(
    *, exact: bool = False, max_limit: int = 100
) -> st.SearchStrategy[SlidingWindow]:
    """Sliding windows with valid parameters (``limit >= 1``).

    Args:
        exact: windows that are powers of two seconds (1/64 s to 64 s).
        max_limit: the largest limit drawn.
    """
    limits = st.integers(1, max_limit).map(float)
    if exact:
        windows = st.integers(-6, 6).map(lambda k: 2.0**k)
    else:
        windows = st.sampled_from([1.0, 60.0, 0.5]) | st.floats(0.01, 3600)
    return st.builds(SlidingWindow, limits, windows)


def policies(*, exact: bool = False) -> st.SearchStrategy[TokenBucket | GCRA | SlidingWindow]:
    """Any of the three policies, with valid parameters (see each strategy)."""
    return st.one_of(token_buckets(exact=exact), gcras(exact=exact), sliding_windows(exact=exact))


# -- workloads ---------------------------------------------------------------------------------


def arrivals(
    *,
    max_cost: int = 1,
    tick: float = _TICK,
    max_gap: int = 64,
    cancellations: bool = True,
    timeouts: bool = True,
    at: float | None = None,
) -> st.SearchStrategy[Arrival]:
    """One :class:`~throttle_trio.testing.Arrival` (its ``at`` is a multiple of ``tick``).

    Args:
        max_cost: costs are whole numbers from 1 to this.
        tick: the grid of times (seconds).
        max_gap: the largest ``at``, timeout and cancellation delay, in ticks.
        cancellations: whether some arrivals are cancelled while waiting.
        timeouts: whether some arrivals pass ``timeout=``.
        at: a fixed arrival time instead of a drawn one.
    """
    times = (
        st.just(float(at)) if at is not None else st.integers(0, max_gap).map(lambda n: n * tick)
    )
    delays = st.none() | st.integers(0, max_gap).map(lambda n: n * tick)
    return st.builds(
        Arrival,
        at=times,
        cost=st.integers(1, max_cost).map(float),
        timeout=delays if timeouts else st.none(),
        cancel_after=delays if cancellations else st.none(),
    )


@st.composite
def _workload(
    draw: st.DrawFn,
    max_arrivals: int,
    max_cost: int,
    tick: float,
    max_gap: int,
    cancellations: bool,
    timeouts: bool,
    reconfigurations: st.SearchStrategy[Mapping[str, float]] | None,
) -> list[Step]:
    steps: list[Step] = []
    now = 0.0
    count = draw(st.integers(1, max_arrivals))
    for _ in range(count):
        # Gaps, not absolute times: they shrink to 0, so a counterexample's arrivals bunch up
        # at the start, and the steps stay in time order as listed.
        gap = draw(st.integers(0, max_gap), label="gap in ticks")
        if reconfigurations is not None and draw(st.integers(0, 3), label="reconfigure?") == 3:
            # Half a tick after the arrivals before it, never at an arrival's instant: which
            # limit applies to each admission is then unambiguous (see segments()).
            steps.append(Reconfiguration(now + tick / 2, draw(reconfigurations)))
            gap = max(gap, 1)
        now += gap * tick
        steps.append(
            draw(arrivals(max_cost=max_cost, tick=tick, max_gap=max_gap, at=now,
                          cancellations=cancellations, timeouts=timeouts))
        )  # fmt: skip
    return steps


def workloads(
    *,
    max_arrivals: int = 20,
    max_cost: int = 1,
    tick: float = _TICK,
    max_gap: int = 16,
    cancellations: bool = True,
    timeouts: bool = True,
    reconfigurations: st.SearchStrategy[Mapping[str, float]] | None = None,
) -> st.SearchStrategy[list[Step]]:
    """Traffic for :func:`~throttle_trio.testing.play`: arrivals in time order, on a grid.

    Args:
        max_arrivals: at most this many arrivals (at least one).
        max_cost: weighted costs, whole numbers from 1 to this (keep it within the policy's
            capacity, or expect ``"refused"`` outcomes).
        tick: the grid of times (seconds); the default, 1/64 s, is exact on both loops.
        max_gap: the largest gap between arrivals, timeout and cancellation delay, in ticks.
        cancellations: whether some arrivals are cancelled while waiting.
        timeouts: whether some arrivals pass ``timeout=``.
        reconfigurations: a strategy of ``reconfigure(**changes)`` arguments, for example
            ``st.fixed_dictionaries({"rate": st.sampled_from([2.0, 8.0])})``; ``None``: the
            limiter is never reconfigured.  A reconfiguration comes half a tick after the
            arrivals before it, never at an arrival's instant, so that
            :func:`~throttle_trio.testing.segments` knows which limit judged each admission.
    """
    if max_arrivals < 1 or max_cost < 1 or max_gap < 0 or not tick > 0:
        raise ValueError("max_arrivals and max_cost must be >= 1, max_gap >= 0 and tick > 0")
    return _workload(
        max_arrivals, max_cost, tick, max_gap, cancellations, timeouts, reconfigurations
    )


# -- provider responses ------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class ProviderHeaders:
    """Generated response headers, and what a correct parser reads from them.

    Attributes:
        headers: the headers, as a provider sends them.
        now: the wall-clock UNIX time at which the response "arrived" (for dates).
        limits: per metric (``"requests"``, ``"tokens"``, ``"input_tokens"``,
            ``"output_tokens"``), the expected ``(limit, remaining, reset_after)``.
        retry_after: the expected wait, in seconds (``None``: no retry header).
    """

    headers: Mapping[str, str]
    now: float
    limits: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    retry_after: float | None = None


def go_durations(*, max_seconds: int = 86_400) -> st.SearchStrategy[tuple[str, float]]:
    """Go durations as Go's ``Duration.String()`` writes them (OpenAI's resets), with their
    value: ``("0s", 0.0)``, ``("12ms", 0.012)``, ``("6m0s", 360.0)``,
    ``("23h47m36.648s", 85656.648)``, ``("15µs", 1.5e-05)``."""

    def write(parts: tuple[int, int]) -> tuple[str, float]:
        whole, millis = parts
        if whole == 0:
            if millis == 0:
                return "0s", 0.0
            return f"{millis}ms", millis / 1000
        hours, rest = divmod(whole, 3600)
        minutes, seconds = divmod(rest, 60)
        text = f"{seconds}.{millis:03d}".rstrip("0").rstrip(".") + "s"
        if hours:
            text = f"{hours}h{minutes}m{text}"
        elif minutes:
            text = f"{minutes}m{text}"
        return text, whole + millis / 1000

    short = st.integers(1, 999).flatmap(
        lambda n: st.sampled_from([(f"{n}µs", n / 1e6), (f"{n}us", n / 1e6), (f"{n}ns", n / 1e9)])
    )
    return st.tuples(st.integers(0, max_seconds), st.integers(0, 999)).map(write) | short


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
HttpDateForm: TypeAlias = Literal["imf-fixdate", "rfc850", "asctime"]


def _http_date(timestamp: int, form: HttpDateForm) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    clock = moment.strftime("%H:%M:%S")
    month = _MONTHS[moment.month - 1]
    if form == "imf-fixdate":  # Sun, 06 Nov 1994 08:49:37 GMT
        return f"{_WEEKDAYS[moment.weekday()]}, {moment.day:02d} {month} {moment.year} {clock} GMT"
    if form == "rfc850":  # Sunday, 06-Nov-94 08:49:37 GMT
        year = moment.year % 100
        return (
            f"{_LONG_WEEKDAYS[moment.weekday()]}, {moment.day:02d}-{month}-{year:02d} {clock} GMT"
        )
    return f"{_WEEKDAYS[moment.weekday()]} {month} {moment.day:2d} {clock} {moment.year}"  # asctime


def http_dates(
    now: int, *, forms: Sequence[HttpDateForm] = ("imf-fixdate", "rfc850", "asctime")
) -> st.SearchStrategy[tuple[str, float]]:
    """An HTTP-date 0 to 3600 s after ``now`` (a whole UNIX time), in one of RFC 9110's three
    forms, with the delay it means."""
    return st.tuples(st.integers(0, 3600), st.sampled_from(list(forms))).map(
        lambda d: (_http_date(now + d[0], d[1]), float(d[0]))
    )


_NOW = st.integers(1_600_000_000, 2_000_000_000)  # whole seconds: dates are exact


RetryAfterForm: TypeAlias = Literal["seconds", "http-date", "ms"]


@st.composite
def _retry_after(draw: st.DrawFn, forms: Sequence[RetryAfterForm]) -> ProviderHeaders:
    now = draw(_NOW)
    form = draw(st.sampled_from(list(forms)))
    if form == "seconds":
        seconds = draw(st.integers(0, 3600))
        if draw(st.booleans()):
            tenths = draw(st.integers(0, 9))
            return ProviderHeaders({"retry-after": f"{seconds}.{tenths}"}, now, {},
                                   seconds + tenths / 10)  # fmt: skip
        return ProviderHeaders({"retry-after": str(seconds)}, now, {}, float(seconds))
    if form == "ms":
        millis = draw(st.integers(0, 3_600_000))
        return ProviderHeaders({"retry-after-ms": str(millis)}, now, {}, millis / 1000)
    text, delay = draw(http_dates(now))
    return ProviderHeaders({"retry-after": text}, now, {}, delay)


def retry_after_headers(
    *, forms: Sequence[RetryAfterForm] = ("seconds", "http-date", "ms")
) -> st.SearchStrategy[ProviderHeaders]:
    """A ``retry-after`` (whole or decimal seconds, or an HTTP-date in any of its three forms)
    or a ``retry-after-ms``, with the delay it means.

    Args:
        forms: which of ``"seconds"``, ``"http-date"`` and ``"ms"`` to draw.
    """
    return _retry_after(forms)


def _rfc3339(timestamp: int, millis: int, offset_minutes: int) -> str:
    moment = datetime.fromtimestamp(timestamp + offset_minutes * 60, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        text += f".{millis:03d}"
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


_OPENAI_METRICS = ("requests", "tokens")
_ANTHROPIC_METRICS = ("requests", "tokens", "input_tokens", "output_tokens")


@st.composite
def _rate_limits(draw: st.DrawFn, provider: Provider | None) -> ProviderHeaders:
    chosen = provider if provider is not None else draw(st.sampled_from(_PROVIDERS))
    now = draw(_NOW)
    metrics = _OPENAI_METRICS if chosen == "openai" else _ANTHROPIC_METRICS
    picked = draw(st.lists(st.sampled_from(metrics), min_size=1, unique=True))
    headers: dict[str, str] = {}
    expected: dict[str, tuple[float, float, float]] = {}
    for metric in sorted(picked, key=metrics.index):
        limit = draw(st.integers(1, 10_000_000), label=f"{metric} limit")
        remaining = draw(st.integers(0, limit), label=f"{metric} remaining")
        if chosen == "openai":
            text, reset = draw(go_durations(max_seconds=86_400))
            prefix = "x-ratelimit"
            headers[f"{prefix}-limit-{metric}"] = str(limit)
            headers[f"{prefix}-remaining-{metric}"] = str(remaining)
            headers[f"{prefix}-reset-{metric}"] = text
        else:
            seconds = draw(st.integers(0, 3600))
            millis = draw(st.integers(0, 999) | st.just(0))
            offset = draw(st.just(0) | st.sampled_from([60, -300, 330, 0]))
            name = f"anthropic-ratelimit-{metric.replace('_', '-')}"
            headers[f"{name}-limit"] = str(limit)
            headers[f"{name}-remaining"] = str(remaining)
            headers[f"{name}-reset"] = _rfc3339(now + seconds, millis, offset)
            reset = seconds + millis / 1000
        expected[metric] = (float(limit), float(remaining), reset)
    return ProviderHeaders(headers, now, expected)


def rate_limit_headers(provider: Provider | None = None) -> st.SearchStrategy[ProviderHeaders]:
    """A response's rate-limit headers, with the limits they report.

    OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, resets as Go durations.
    Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,
    remaining,reset}``, resets as RFC 3339 date-times (``Z`` or an offset, with or without
    milliseconds).  At least one metric, in the provider's order.

    Args:
        provider: ``"openai"``, ``"anthropic"`` or ``None`` (either).
    """
    return _rate_limits(provider)


def usages(
    provider: Provider = "openai", *, max_tokens: int = 100_000
) -> st.SearchStrategy[dict[str, Any]]:
    """A response's ``usage`` object: OpenAI's ``prompt_tokens``/``completion_tokens``/
    ``total_tokens`` or Anthropic's ``input_tokens``/``output_tokens`` (and cache fields)."""
    counts = st.integers(0, max_tokens)
    if provider == "openai":
        return st.tuples(counts, counts).map(
            lambda c: {"prompt_tokens": c[0], "completion_tokens": c[1], "total_tokens": sum(c)}
        )
    cache = st.fixed_dictionaries(
        {}, optional={"cache_creation_input_tokens": counts, "cache_read_input_tokens": counts}
    )
    return st.tuples(counts, counts, cache).map(
        lambda c: {"input_tokens": c[0], "output_tokens": c[1], **c[2]}
    )


@final
@dataclass(frozen=True, slots=True)
class ProviderResponse:
    """A generated provider response: status, headers (with what they mean) and JSON body.

    Attributes:
        status: 200, 429, 500, 503 (OpenAI) or 529 (Anthropic).
        headers: the headers and their expected reading (rate limits; ``retry_after`` on a 429
            and sometimes on a 503/529).
        body: the JSON body: a completion with ``usage`` on 200, the provider's error shape
            otherwise.
    """

    status: int
    headers: ProviderHeaders
    body: Mapping[str, Any]


@st.composite
def _response(draw: st.DrawFn, provider: Provider | None) -> ProviderResponse:
    chosen = provider if provider is not None else draw(st.sampled_from(_PROVIDERS))
    limits = draw(rate_limit_headers(chosen))
    status = draw(st.sampled_from([200, 429, 500, 503 if chosen == "openai" else 529]))
    headers, retry_after = dict(limits.headers), None
    if status == 429 or (status in (503, 529) and draw(st.booleans())):
        retry = draw(
            retry_after_headers(forms=("seconds", "ms") if chosen == "openai" else ("seconds",))
        )
        headers.update(retry.headers)
        retry_after = retry.retry_after
    if status == 200:
        usage = draw(usages(chosen))
        if chosen == "openai":
            body: dict[str, Any] = {"object": "chat.completion", "choices": [], "usage": usage}
        else:
            body = {"type": "message", "role": "assistant", "content": [], "usage": usage}
    elif chosen == "openai":
        body = {
            "error": {
                "message": "fake",
                "type": "rate_limit_error" if status == 429 else "server_error",
            }
        }
    else:
        kind = "rate_limit_error" if status == 429 else "overloaded_error"
        body = {"type": "error", "error": {"type": kind, "message": "fake"}}
    return ProviderResponse(
        status, ProviderHeaders(headers, limits.now, limits.limits, retry_after), body
    )


def responses(provider: Provider | None = None) -> st.SearchStrategy[ProviderResponse]:
    """Provider responses: a 200 with usage, a 429 with a retry delay, or a 5xx; each with
    rate-limit headers.

    Args:
        provider: ``"openai"``, ``"anthropic"`` or ``None`` (either).
    """
    return _response(provider)
