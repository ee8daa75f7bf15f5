"""The metrics of the observability adapters: one catalogue, and what each event measures.

:mod:`throttle_trio.otel` and :mod:`throttle_trio.prometheus` record the same metrics from the
same events; this module says which, once, and imports neither library.  :data:`CATALOGUE` has
one row per metric: its OpenTelemetry name, instrument, unit, labels and description; the
Prometheus name and type follow from them by the rule of OpenTelemetry's Prometheus exporter,
so a dashboard survives a move between the adapters.  :func:`measure` turns an event into the
measurements it makes, ``(metric, value, label values)``; each adapter records them in its
library, caching what it builds per series.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

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

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "CATALOGUE",
    "DURATION_BUCKETS",
    "MAX_SERIES",
    "Kind",
    "Label",
    "LabelValue",
    "Measurement",
    "Metric",
    "measure",
    "prometheus_name",
]

DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""The bucket boundaries of the duration histograms, in seconds: from a few milliseconds of
pacing to the minutes of a long Retry-After.  OpenTelemetry: advised (a view may change them);
Prometheus: the default of ``PrometheusListener(buckets=...)``."""

MAX_SERIES: Final = 4096
"""A bound on each adapter's cache, per metric, of what it built per series (label values),
should a caller vary names freely: past it, a new series is built again on each record."""

Kind: TypeAlias = Literal["counter", "updowncounter", "gauge", "histogram"]
"""An OpenTelemetry instrument.  Prometheus has no up-down counter: it is a gauge there."""

LabelValue: TypeAlias = str | int | None
"""A label's value in a measurement; ``None`` is one the event does not know (a rejection's
status): OpenTelemetry leaves the attribute out, Prometheus writes the empty label."""


@dataclass(frozen=True, slots=True)
class Label:
    """A label under its two names: OpenTelemetry's attribute key, namespaced, and Prometheus's
    short label (the exporter would write ``throttle_trio_binding``: the adapter writes
    ``binding``)."""

    attribute: str
    prometheus: str


SOURCE: Final = Label("throttle_trio.source", "source")
BINDING: Final = Label("throttle_trio.binding", "binding")
METRIC: Final = Label("throttle_trio.metric", "metric")
USAGE_KIND: Final = Label("throttle_trio.usage.kind", "kind")
REASON: Final = Label("throttle_trio.reason", "reason")
LIMIT: Final = Label("throttle_trio.limit", "limit")
CAUSE: Final = Label("throttle_trio.cause", "cause")
STATUS: Final = Label("http.response.status_code", "status")


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of the catalogue.

    Attributes:
        name: OpenTelemetry's instrument name (dotted).
        kind: the OpenTelemetry instrument.
        unit: in UCUM, ``{...}`` annotating a count.
        labels: in the order of a measurement's label values; the source first.
        description: OpenTelemetry's description and Prometheus's help.
    """

    name: str
    kind: Kind
    unit: str
    labels: tuple[Label, ...]
    description: str

    @property
    def prometheus_name(self) -> str:
        """The name OpenTelemetry's Prometheus exporter gives it (a counter's samples add
        ``_total``)."""
        return prometheus_name(self.name, self.unit)

    @property
    def prometheus_type(self) -> str:
        """Its Prometheus type: an up-down counter is a gauge (as the exporter makes it)."""
        return "gauge" if self.kind == "updowncounter" else self.kind


# The exporter's unit tables (opentelemetry.exporter.prometheus._mapping), for the units used
# here; tests/test_prometheus.py compares every name with the exporter's own.
_UNITS: Final = {"s": "seconds"}
_PER_UNITS: Final = {"s": "second"}
_ANNOTATION: Final = re.compile(r"\{[^}]*\}")


def prometheus_name(name: str, unit: str) -> str:
    """The Prometheus name of an OpenTelemetry instrument, by the exporter's rule: ``_`` for
    ``.``, then the unit as a suffix, its ``{...}`` annotations dropped, ``s`` read as
    ``seconds`` and ``a/s`` as ``a_per_second``: ``throttle_trio.wait.duration`` in ``s`` is
    ``throttle_trio_wait_duration_seconds``, ``throttle_trio.rate`` in ``{unit}/s`` is
    ``throttle_trio_rate_per_second``, ``throttle_trio.admissions`` in ``{request}`` is
    ``throttle_trio_admissions``."""
    unit = _ANNOTATION.sub("", unit)
    top, per, bottom = unit.partition("/")
    if per and bottom:
        top = _UNITS.get(top, top)
        bottom = _PER_UNITS.get(bottom, bottom)
        suffix = f"{top}_per_{bottom}" if top else f"per_{bottom}"
    else:
        suffix = _UNITS.get(unit, unit)
    base = name.replace(".", "_")
    return f"{base}_{suffix}" if suffix else base


ADMISSIONS: Final = Metric(
    "throttle_trio.admissions",
    "counter",
    "{request}",
    (SOURCE, BINDING),
    "Requests admitted, by the limit that held them back last",
)
WAIT: Final = Metric(
    "throttle_trio.wait.duration",
    "histogram",
    "s",
    (SOURCE, BINDING),
    "Time admitted requests waited in line, by the limit that held them back last",
)
WOULD_WAIT: Final = Metric(
    "throttle_trio.would_wait.duration",
    "histogram",
    "s",
    (SOURCE, BINDING),
    "Shadow mode: how long an enforcing throttle would have made a request wait",
)
TIMEOUTS: Final = Metric(
    "throttle_trio.timeouts",
    "counter",
    "{request}",
    (SOURCE,),
    "Requests that gave up waiting (their timeout)",
)
REJECTIONS: Final = Metric(
    "throttle_trio.rejections",
    "counter",
    "{request}",
    (SOURCE, STATUS),
    "Attempts the server rejected (429, 529)",
)
SHORTFALL: Final = Metric(
    "throttle_trio.rejection.shortfall",
    "counter",
    "{unit}",
    (SOURCE, METRIC),
    "Units a rejection proved the throttle was ahead of the server, by metric",
)
PAUSES: Final = Metric(
    "throttle_trio.pauses",
    "counter",
    "{pause}",
    (SOURCE, REASON),
    "Times the gate was closed or its closing extended, by reason",
)
PAUSE_DURATION: Final = Metric(
    "throttle_trio.pause.duration",
    "histogram",
    "s",
    (SOURCE, REASON),
    "Length of each pause (or of its extension), by reason",
)
RATE: Final = Metric(
    "throttle_trio.rate",
    "gauge",
    "{unit}/s",
    (SOURCE, LIMIT),
    "A limit's rate after the adaptive controller changed it or a limit was learned",
)
RATE_CHANGES: Final = Metric(
    "throttle_trio.rate.changes",
    "counter",
    "{change}",
    (SOURCE, LIMIT, CAUSE),
    "Rate changes by the adaptive controller, by cause (overload, recovery)",
)
LOWERINGS: Final = Metric(
    "throttle_trio.limit.lowerings",
    "counter",
    "{lowering}",
    (SOURCE, LIMIT),
    "Times header feedback lowered a limit to what the server reported",
)
USAGE: Final = Metric(
    "throttle_trio.usage",
    "counter",
    "{unit}",
    (SOURCE, METRIC, USAGE_KIND),
    "Units reserved (kind=estimate) and really used (kind=actual) by settled requests",
)
FALLBACKS: Final = Metric(
    "throttle_trio.fallbacks",
    "counter",
    "{fallback}",
    (SOURCE, REASON),
    "Times a Redis throttle lost Redis and admitted through its local fallback",
)
FALLBACK_ACTIVE: Final = Metric(
    "throttle_trio.fallback.active",
    "updowncounter",
    "{fallback}",
    (SOURCE,),
    "1 while a Redis throttle admits through its local fallback",
)
FALLBACK_DURATION: Final = Metric(
    "throttle_trio.fallback.duration",
    "histogram",
    "s",
    (SOURCE,),
    "Time a Redis throttle spent on its local fallback, per outage",
)

CATALOGUE: Final[tuple[Metric, ...]] = (
    ADMISSIONS,
    WAIT,
    WOULD_WAIT,
    TIMEOUTS,
    REJECTIONS,
    SHORTFALL,
    PAUSES,
    PAUSE_DURATION,
    RATE,
    RATE_CHANGES,
    LOWERINGS,
    USAGE,
    FALLBACKS,
    FALLBACK_ACTIVE,
    FALLBACK_DURATION,
)
"""Every metric the adapters record, in the order they list them."""

Measurement: TypeAlias = tuple[Metric, float, tuple[LabelValue, ...]]
"""``(metric, value, label values)``.  The value is what a counter or an up-down counter adds,
a gauge is set to, or a histogram observes; the label values follow ``metric.labels``."""

_NONE: Final = "none"  # the binding of a request that nothing held back


def measure(event: Event) -> Sequence[Measurement]:
    """The measurements ``event`` makes, in the order they are recorded; none for an event type
    the adapters do not know (a later version's)."""
    measure_event = _MEASURES.get(type(event))
    return () if measure_event is None else measure_event(event)


def _admitted(event: Admitted) -> Sequence[Measurement]:
    labels = (event.source, event.binding if event.binding is not None else _NONE)
    would_wait = event.would_wait
    if would_wait is not None and would_wait > 0:
        return (
            (ADMISSIONS, 1, labels),
            (WAIT, event.waited, labels),
            (WOULD_WAIT, would_wait, labels),
        )
    return (ADMISSIONS, 1, labels), (WAIT, event.waited, labels)


def _timed_out(event: TimedOut) -> Sequence[Measurement]:
    return ((TIMEOUTS, 1, (event.source,)),)


def _settled(event: Settled) -> Sequence[Measurement]:
    source = event.source
    found: list[Measurement] = []
    for metric, value in event.estimate.items():
        found.append((USAGE, value, (source, metric, "estimate")))
    for metric, value in event.usage.items():
        found.append((USAGE, value, (source, metric, "actual")))
    return found


def _rejected(event: Rejected) -> Sequence[Measurement]:
    source = event.source
    found: list[Measurement] = [(REJECTIONS, 1, (source, event.status))]
    for metric, value in event.shortfall.items():
        found.append((SHORTFALL, value, (source, metric)))
    return found


def _paused(event: Paused) -> Sequence[Measurement]:
    labels = (event.source, event.reason)
    return (PAUSES, 1, labels), (PAUSE_DURATION, event.seconds, labels)


def _rate_changed(event: RateChanged) -> Sequence[Measurement]:
    return (
        (RATE, event.rate, (event.source, event.limit)),
        (RATE_CHANGES, 1, (event.source, event.limit, event.cause)),
    )


def _limit_lowered(event: LimitLowered) -> Sequence[Measurement]:
    return ((LOWERINGS, 1, (event.source, event.limit)),)


def _limit_learned(event: LimitLearned) -> Sequence[Measurement]:
    # A learned limit is named after its metric.
    return ((RATE, event.limit / event.per, (event.source, event.metric)),)


def _fallback_entered(event: FallbackEntered) -> Sequence[Measurement]:
    return (
        (FALLBACKS, 1, (event.source, event.reason)),
        (FALLBACK_ACTIVE, 1, (event.source,)),
    )


def _fallback_exited(event: FallbackExited) -> Sequence[Measurement]:
    return (
        (FALLBACK_ACTIVE, -1, (event.source,)),
        (FALLBACK_DURATION, event.seconds, (event.source,)),
    )


_MEASURES: Final[Mapping[type[Any], Callable[[Any], Sequence[Measurement]]]] = {
    Admitted: _admitted,
    TimedOut: _timed_out,
    Settled: _settled,
    Rejected: _rejected,
    Paused: _paused,
    RateChanged: _rate_changed,
    LimitLowered: _limit_lowered,
    LimitLearned: _limit_learned,
    FallbackEntered: _fallback_entered,
    FallbackExited: _fallback_exited,
}
