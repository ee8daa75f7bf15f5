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
from typing import TYPE_CHECKING, Final, final

from ._extras import missing_extra

try:
    from opentelemetry import metrics, trace
except ImportError as _error:  # pragma: no cover - exercised in a subprocess by the tests
    raise missing_extra("throttle_trio.otel", "otel", _error) from _error

from ._events import Admitted, Event, TimedOut
from ._metrics import CATALOGUE, DURATION_BUCKETS, MAX_SERIES, LabelValue, Metric, measure
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from opentelemetry.util.types import AttributeValue

    _Attributes = Mapping[str, AttributeValue]
    _Record = Callable[[float, _Attributes], None]

__all__ = ["DURATION_BUCKETS", "METRICS", "OTelListener", "SCOPE", "SPAN_NAME"]

SCOPE: Final = "throttle_trio"
"""The instrumentation scope of the meter and the tracer (with the package's version)."""

SPAN_NAME: Final = "throttle_trio wait"
"""The name of the span of a wait."""

METRICS: Final[Mapping[str, tuple[str, str, str]]] = {
    metric.name: (metric.kind, metric.unit, metric.description) for metric in CATALOGUE
}
"""Every instrument the listener records: name -> (instrument, unit, description); the
how-to's table describes them."""


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

    __slots__ = ("_instruments", "_tracer")

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
        # Per instrument: its recording method (add, set or record: value, attributes) and the
        # attributes of each series (label values) it has recorded, built once: few sources,
        # limits and reasons.
        self._instruments: dict[str, tuple[_Record, dict[tuple[LabelValue, ...], _Attributes]]]
        self._instruments = {}
        for metric in CATALOGUE:
            name, unit, description = metric.name, metric.unit, metric.description
            record: _Record
            if metric.kind == "counter":
                record = meter.create_counter(name, unit, description).add
            elif metric.kind == "updowncounter":
                record = meter.create_up_down_counter(name, unit, description).add
            elif metric.kind == "gauge":
                record = meter.create_gauge(name, unit, description).set
            else:
                record = meter.create_histogram(
                    name, unit, description, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
                ).record
            self._instruments[name] = (record, {})

    def __call__(self, event: Event) -> None:
        for metric, value, labels in measure(event):
            record, series = self._instruments[metric.name]
            attributes = series.get(labels)
            if attributes is None:
                attributes = _attributes(metric, labels, series)
            record(value, attributes)
        if self._tracer is not None:
            if type(event) is Admitted:
                if event.waited > 0:
                    self._span(event.source, event.waited, event.costs, event.binding, event.ticket)
            elif type(event) is TimedOut and event.waited > 0:
                self._span(
                    event.source, event.waited, event.costs, timed_out=True, timeout=event.timeout
                )

    def __repr__(self) -> str:
        return f"OTelListener(spans={self._tracer is not None})"

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


def _attributes(
    metric: Metric,
    labels: tuple[LabelValue, ...],
    series: dict[tuple[LabelValue, ...], _Attributes],
) -> _Attributes:
    """The attributes of ``metric`` with these label values (a value the event did not know,
    ``None``, is left out), cached in ``series`` up to :data:`MAX_SERIES`."""
    attributes = {
        label.attribute: value
        for label, value in zip(metric.labels, labels, strict=True)
        if value is not None
    }
    if len(series) < MAX_SERIES:
        series[labels] = attributes
    return attributes
