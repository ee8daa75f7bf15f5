"""OpenTelemetry metrics and spans from a throttle's events (extra: ``throttle_trio[otel]``).

::

    import throttle_trio as tt
    from throttle_trio.otel import OTelListener

    listener = OTelListener()          # the global meter and tracer providers
    throttle = tt.Throttle(
        requests=tt.TokenBucket(500, per=60.0),
        tokens=tt.TokenBucket(200_000, per=60.0),
        on_event=listener,
        name="openai:gpt-4o",          # the throttle_trio.source attribute
    )

One listener serves any number of throttles: each record's ``source`` becomes the
``throttle_trio.source`` attribute.  It needs only ``opentelemetry-api``: your application
installs and configures the SDK (providers, exporters, readers) as for any other library; with
none configured, every call is OpenTelemetry's no-op.

**Spans.**  A request that waited gets one span, ``throttle_trio wait``, from when it joined the
line to when it was admitted (or gave up: a :class:`~throttle_trio.events.TimedOut` ends its
span with an error status and ``error.type``).  The listener runs in the task that waited, so
the span is a child of the span current there (your request's).  Its attributes: the source,
the binding limit (``throttle_trio.binding``: what held the request back last), its ticket, and
each cost as ``throttle_trio.cost.<metric>``.  A throttle's times are on the event loop's clock,
not the wall clock, so the span is placed by its length: it ends now and starts ``waited``
seconds earlier.

**Metrics** (:data:`METRICS` lists them; the how-to ``docs/how-to/observability.md`` has the
table): counters of admissions, timeouts, rejections (with ``http.response.status_code`` when
known), pauses, rate changes, header cuts, fallbacks, and units estimated and used; histograms
of waits, would-be waits in shadow mode, pauses and fallbacks, in seconds; a gauge of each
limit's rate.  The names follow OpenTelemetry's conventions (dotted, units in UCUM, ``{...}``
annotations for counts), and OpenTelemetry's Prometheus exporter turns them into the names
that :mod:`throttle_trio.prometheus` uses.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, final

from ._extras import missing_extra

try:
    from opentelemetry import metrics, trace
except ImportError as _error:  # pragma: no cover - exercised in a subprocess by the tests
    raise missing_extra("throttle_trio.otel", "otel", _error) from _error

from ._events import (
    Admitted,
    Event,
    FallbackEntered,
    FallbackExited,
    LimitLearned,
    LimitLowered,
    Paused,
    RateChanged,
    Rejected,
    Settled,
    TimedOut,
)
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from opentelemetry.util.types import AttributeValue

__all__ = ["DURATION_BUCKETS", "METRICS", "OTelListener", "SCOPE", "SPAN_NAME"]

SCOPE: Final = "throttle_trio"
"""The instrumentation scope of the meter and the tracer (with the package's version)."""

SPAN_NAME: Final = "throttle_trio wait"
"""The name of the span of a wait."""

DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""The bucket boundaries advised for the duration histograms, in seconds (a view may change
them): from a few milliseconds of pacing to the minutes of a long Retry-After."""

METRICS: Final[Mapping[str, tuple[str, str, str]]] = {
    # name: (instrument, unit, description)
    "throttle_trio.admissions": (
        "counter",
        "{request}",
        "Requests admitted, by the limit that held them back last",
    ),
    "throttle_trio.wait.duration": (
        "histogram",
        "s",
        "Time admitted requests waited in line, by the limit that held them back last",
    ),
    "throttle_trio.would_wait.duration": (
        "histogram",
        "s",
        "Shadow mode: how long an enforcing throttle would have made a request wait",
    ),
    "throttle_trio.timeouts": (
        "counter",
        "{request}",
        "Requests that gave up waiting (their timeout)",
    ),
    "throttle_trio.rejections": (
        "counter",
        "{request}",
        "Attempts the server rejected (429, 529)",
    ),
    "throttle_trio.rejection.shortfall": (
        "counter",
        "{unit}",
        "Units a rejection proved the throttle was ahead of the server, by metric",
    ),
    "throttle_trio.pauses": (
        "counter",
        "{pause}",
        "Times the gate was closed or its closing extended, by reason",
    ),
    "throttle_trio.pause.duration": (
        "histogram",
        "s",
        "Length of each pause (or of its extension), by reason",
    ),
    "throttle_trio.rate": (
        "gauge",
        "{unit}/s",
        "A limit's rate after the adaptive controller changed it or a limit was learned",
    ),
    "throttle_trio.rate.changes": (
        "counter",
        "{change}",
        "Rate changes by the adaptive controller, by cause (overload, recovery)",
    ),
    "throttle_trio.limit.lowerings": (
        "counter",
        "{lowering}",
        "Times header feedback lowered a limit to what the server reported",
    ),
    "throttle_trio.usage": (
        "counter",
        "{unit}",
        "Units reserved (kind=estimate) and really used (kind=actual) by settled requests",
    ),
    "throttle_trio.fallbacks": (
        "counter",
        "{fallback}",
        "Times a Redis throttle lost Redis and admitted through its local fallback",
    ),
    "throttle_trio.fallback.active": (
        "updowncounter",
        "{fallback}",
        "1 while a Redis throttle admits through its local fallback",
    ),
    "throttle_trio.fallback.duration": (
        "histogram",
        "s",
        "Time a Redis throttle spent on its local fallback, per outage",
    ),
}
"""Every instrument the listener records: name -> (instrument, unit, description)."""

_NONE: Final = "none"  # the binding of a request that nothing held back


@final
class OTelListener:
    """An ``on_event`` listener that records OpenTelemetry metrics and wait spans.

    Args:
        meter_provider: where the instruments are created (default: the global provider;
            a listener made before the application sets it records there once it is set,
            through OpenTelemetry's proxies).
        tracer_provider: where the wait spans go (default: the global provider, likewise).
        spans: whether to record a span per wait (default ``True``).

    Call it with an event (pass it as ``on_event=``); an event type it does not know is
    ignored.  It is quick and does not block; OpenTelemetry's SDK is thread-safe, so one
    listener may serve throttles on several event loops and threads.
    """

    __slots__ = ("_attributes", "_dispatch", "_instruments", "_tracer")

    def __init__(
        self,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        spans: bool = True,
    ) -> None:
        if not isinstance(spans, bool):
            raise TypeError(f"spans must be a bool, got {type(spans).__name__} {spans!r}")
        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider) if spans else None
        self._instruments: dict[str, Any] = {}
        for name, (kind, unit, description) in METRICS.items():
            if kind == "counter":
                instrument: Any = meter.create_counter(name, unit, description)
            elif kind == "updowncounter":
                instrument = meter.create_up_down_counter(name, unit, description)
            elif kind == "gauge":
                instrument = meter.create_gauge(name, unit, description)
            else:
                instrument = meter.create_histogram(
                    name, unit, description, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
                )
            self._instruments[name] = instrument
        # Attribute sets are built once per distinct value (few sources, limits, reasons).
        self._attributes: dict[tuple[str, ...], Mapping[str, AttributeValue]] = {}
        self._dispatch: dict[type[Any], Callable[[Any], None]] = {
            Admitted: self._admitted,
            TimedOut: self._timed_out,
            Settled: self._settled,
            Rejected: self._rejected,
            Paused: self._paused,
            RateChanged: self._rate_changed,
            LimitLowered: self._limit_lowered,
            LimitLearned: self._limit_learned,
            FallbackEntered: self._fallback_entered,
            FallbackExited: self._fallback_exited,
        }

    def __call__(self, event: Event) -> None:
        handler = self._dispatch.get(type(event))
        if handler is not None:
            handler(event)

    def __repr__(self) -> str:
        return f"OTelListener(spans={self._tracer is not None})"

    # -- attributes ---------------------------------------------------------------------------

    def _attrs(self, source: str, *pairs: str) -> Mapping[str, AttributeValue]:
        """``throttle_trio.source`` and the (key, value) pairs given flat, cached."""
        key = (source, *pairs)
        found = self._attributes.get(key)
        if found is None:
            found = {"throttle_trio.source": source}
            for i in range(0, len(pairs), 2):
                found[pairs[i]] = pairs[i + 1]
            if len(self._attributes) < 4096:  # a bound, should a caller vary names freely
                self._attributes[key] = found
        return found

    # -- handlers ------------------------------------------------------------------------------

    def _admitted(self, event: Admitted) -> None:
        binding = event.binding if event.binding is not None else _NONE
        attributes = self._attrs(event.source, "throttle_trio.binding", binding)
        self._instruments["throttle_trio.admissions"].add(1, attributes)
        self._instruments["throttle_trio.wait.duration"].record(event.waited, attributes)
        if event.would_wait is not None and event.would_wait > 0:
            self._instruments["throttle_trio.would_wait.duration"].record(
                event.would_wait, attributes
            )
        if event.waited > 0 and self._tracer is not None:
            self._span(event.source, event.waited, event.costs, event.binding, event.ticket)

    def _timed_out(self, event: TimedOut) -> None:
        self._instruments["throttle_trio.timeouts"].add(1, self._attrs(event.source))
        if event.waited > 0 and self._tracer is not None:
            self._span(
                event.source, event.waited, event.costs, timed_out=True, timeout=event.timeout
            )

    def _span(
        self,
        source: str,
        waited: float,
        costs: Mapping[str, float],
        binding: str | None = None,
        ticket: int | None = None,
        *,
        timed_out: bool = False,
        timeout: float | None = None,
    ) -> None:
        assert self._tracer is not None
        end = time.time_ns()
        attributes: dict[str, AttributeValue] = {"throttle_trio.source": source}
        if binding is not None:
            attributes["throttle_trio.binding"] = binding
        if ticket is not None:
            attributes["throttle_trio.ticket"] = ticket
        for metric, cost in costs.items():
            attributes[f"throttle_trio.cost.{metric}"] = cost
        if timed_out:
            attributes["error.type"] = "throttle_trio.RateLimitTimeout"
            if timeout is not None:
                attributes["throttle_trio.timeout"] = timeout
        span = self._tracer.start_span(
            SPAN_NAME,
            kind=trace.SpanKind.INTERNAL,
            attributes=attributes,
            start_time=end - round(waited * 1e9),
        )
        if timed_out:
            span.set_status(trace.StatusCode.ERROR, "timed out waiting for the throttle")
        span.end(end_time=end)

    def _settled(self, event: Settled) -> None:
        usage = self._instruments["throttle_trio.usage"]
        for metric, value in event.estimate.items():
            usage.add(value, self._attrs(event.source, *_usage_pairs(metric, "estimate")))
        for metric, value in event.usage.items():
            usage.add(value, self._attrs(event.source, *_usage_pairs(metric, "actual")))

    def _rejected(self, event: Rejected) -> None:
        if event.status is None:
            attributes = self._attrs(event.source)
        else:
            attributes = dict(self._attrs(event.source))
            attributes["http.response.status_code"] = event.status
        self._instruments["throttle_trio.rejections"].add(1, attributes)
        shortfall = self._instruments["throttle_trio.rejection.shortfall"]
        for metric, value in event.shortfall.items():
            shortfall.add(value, self._attrs(event.source, "throttle_trio.metric", metric))

    def _paused(self, event: Paused) -> None:
        attributes = self._attrs(event.source, "throttle_trio.reason", event.reason)
        self._instruments["throttle_trio.pauses"].add(1, attributes)
        self._instruments["throttle_trio.pause.duration"].record(event.seconds, attributes)

    def _rate_changed(self, event: RateChanged) -> None:
        limit = self._attrs(event.source, "throttle_trio.limit", event.limit)
        self._instruments["throttle_trio.rate"].set(event.rate, limit)
        caused = self._attrs(
            event.source, "throttle_trio.limit", event.limit, "throttle_trio.cause", event.cause
        )
        self._instruments["throttle_trio.rate.changes"].add(1, caused)

    def _limit_lowered(self, event: LimitLowered) -> None:
        attributes = self._attrs(event.source, "throttle_trio.limit", event.limit)
        self._instruments["throttle_trio.limit.lowerings"].add(1, attributes)

    def _limit_learned(self, event: LimitLearned) -> None:
        # A learned limit is named after its metric.
        attributes = self._attrs(event.source, "throttle_trio.limit", event.metric)
        self._instruments["throttle_trio.rate"].set(event.limit / event.per, attributes)

    def _fallback_entered(self, event: FallbackEntered) -> None:
        reason = self._attrs(event.source, "throttle_trio.reason", event.reason)
        self._instruments["throttle_trio.fallbacks"].add(1, reason)
        self._instruments["throttle_trio.fallback.active"].add(1, self._attrs(event.source))

    def _fallback_exited(self, event: FallbackExited) -> None:
        attributes = self._attrs(event.source)
        self._instruments["throttle_trio.fallback.active"].add(-1, attributes)
        self._instruments["throttle_trio.fallback.duration"].record(event.seconds, attributes)


def _usage_pairs(metric: str, kind: str) -> tuple[str, str, str, str]:
    return ("throttle_trio.metric", metric, "throttle_trio.usage.kind", kind)
