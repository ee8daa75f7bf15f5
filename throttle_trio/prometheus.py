"""Prometheus metrics from a throttle's events (extra: ``throttle_trio[prometheus]``).

::

    import prometheus_client
    import throttle_trio as tt
    from throttle_trio.prometheus import PrometheusListener

    listener = PrometheusListener()    # registers in prometheus_client's global registry
    throttle = tt.Throttle(
        requests=tt.TokenBucket(500, per=60.0),
        on_event=listener,
        name="openai:gpt-4o",          # the source label
    )
    prometheus_client.start_http_server(9464)   # or your framework's /metrics route

It uses ``prometheus_client`` directly, as stamina and LiteLLM do: an application that
already serves ``/metrics`` from ``prometheus_client`` gets these beside its own, with no
OpenTelemetry SDK to configure.  Create one listener per registry and pass it to every
throttle (a second one in the same registry raises ``ValueError``): each record's ``source``
becomes the ``source`` label.

The metric names (:data:`METRICS`) are the ones OpenTelemetry's Prometheus exporter makes from
:mod:`throttle_trio.otel`'s instruments (``throttle_trio.wait.duration`` in seconds becomes
``throttle_trio_wait_duration_seconds``), so a dashboard survives a move from one adapter to
the other; the labels are short here (``binding``), namespaced there
(``throttle_trio_binding``).  A counter's samples end in ``_total``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Final, final

from ._extras import missing_extra

try:
    import prometheus_client
except ImportError as _error:  # pragma: no cover - exercised in a subprocess by the tests
    raise missing_extra("throttle_trio.prometheus", "prometheus", _error) from _error

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

__all__ = ["DURATION_BUCKETS", "METRICS", "PrometheusListener"]

DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""The default buckets of the duration histograms, in seconds (those of throttle_trio.otel)."""

METRICS: Final[Mapping[str, tuple[str, tuple[str, ...], str]]] = {
    # name (a counter's samples add _total): (type, labels, help)
    "throttle_trio_admissions": (
        "counter",
        ("source", "binding"),
        "Requests admitted, by the limit that held them back last",
    ),
    "throttle_trio_wait_duration_seconds": (
        "histogram",
        ("source", "binding"),
        "Time admitted requests waited in line, by the limit that held them back last",
    ),
    "throttle_trio_would_wait_duration_seconds": (
        "histogram",
        ("source", "binding"),
        "Shadow mode: how long an enforcing throttle would have made a request wait",
    ),
    "throttle_trio_timeouts": (
        "counter",
        ("source",),
        "Requests that gave up waiting (their timeout)",
    ),
    "throttle_trio_rejections": (
        "counter",
        ("source", "status"),
        "Attempts the server rejected (429, 529)",
    ),
    "throttle_trio_rejection_shortfall": (
        "counter",
        ("source", "metric"),
        "Units a rejection proved the throttle was ahead of the server, by metric",
    ),
    "throttle_trio_pauses": (
        "counter",
        ("source", "reason"),
        "Times the gate was closed or its closing extended, by reason",
    ),
    "throttle_trio_pause_duration_seconds": (
        "histogram",
        ("source", "reason"),
        "Length of each pause (or of its extension), by reason",
    ),
    "throttle_trio_rate_per_second": (
        "gauge",
        ("source", "limit"),
        "A limit's rate after the adaptive controller changed it or a limit was learned",
    ),
    "throttle_trio_rate_changes": (
        "counter",
        ("source", "limit", "cause"),
        "Rate changes by the adaptive controller, by cause (overload, recovery)",
    ),
    "throttle_trio_limit_lowerings": (
        "counter",
        ("source", "limit"),
        "Times header feedback lowered a limit to what the server reported",
    ),
    "throttle_trio_usage": (
        "counter",
        ("source", "metric", "kind"),
        "Units reserved (kind=estimate) and really used (kind=actual) by settled requests",
    ),
    "throttle_trio_fallbacks": (
        "counter",
        ("source", "reason"),
        "Times a Redis throttle lost Redis and admitted through its local fallback",
    ),
    "throttle_trio_fallback_active": (
        "gauge",
        ("source",),
        "1 while a Redis throttle admits through its local fallback",
    ),
    "throttle_trio_fallback_duration_seconds": (
        "histogram",
        ("source",),
        "Time a Redis throttle spent on its local fallback, per outage",
    ),
}
"""Every metric the listener updates: name -> (type, label names, help)."""

_NONE: Final = "none"  # the binding of a request that nothing held back
_MAX_CHILDREN: Final = 4096  # a bound on the cache of labelled children


@final
class PrometheusListener:
    """An ``on_event`` listener that updates Prometheus counters, histograms and gauges.

    Args:
        registry: where the metrics are registered (default: ``prometheus_client.REGISTRY``,
            the one ``start_http_server`` and ``generate_latest()`` serve).
        buckets: the upper bounds of the duration histograms, in seconds.

    Raises:
        ValueError: the registry already holds these metrics (another listener: share it),
            or ``buckets`` is not an increasing sequence of positive numbers.

    Call it with an event (pass it as ``on_event=``); an event type it does not know is
    ignored.  ``prometheus_client`` is thread-safe, so one listener may serve throttles on
    several event loops and threads.  A status that is not known is the empty label (which
    PromQL treats as no label).
    """

    __slots__ = ("_children", "_dispatch", "_metrics", "_registry")

    def __init__(
        self,
        registry: prometheus_client.CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        bounds = _check_buckets(buckets)
        self._registry = prometheus_client.REGISTRY if registry is None else registry
        self._metrics: dict[str, Any] = {}
        try:
            for name, (kind, labels, documentation) in METRICS.items():
                if kind == "counter":
                    metric: Any = prometheus_client.Counter(
                        name, documentation, labels, registry=self._registry
                    )
                elif kind == "gauge":
                    metric = prometheus_client.Gauge(
                        name, documentation, labels, registry=self._registry
                    )
                else:
                    metric = prometheus_client.Histogram(
                        name, documentation, labels, registry=self._registry, buckets=bounds
                    )
                self._metrics[name] = metric
        except ValueError as error:  # "Duplicated timeseries in CollectorRegistry"
            self.unregister()
            raise ValueError(
                f"this registry already has throttle_trio's metrics ({error}): create one "
                "PrometheusListener per registry and pass it to every throttle (each "
                "throttle's name is its source label)"
            ) from None
        self._children: dict[tuple[str, ...], Any] = {}
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

    @property
    def registry(self) -> prometheus_client.CollectorRegistry:
        """The registry that holds the metrics."""
        return self._registry

    def unregister(self) -> None:
        """Remove the metrics from the registry (they stop being served; the listener then
        updates metrics that nobody reads).  Another listener may then register."""
        for metric in self._metrics.values():
            self._registry.unregister(metric)
        self._metrics.clear()
        if hasattr(self, "_children"):
            self._children.clear()

    def __call__(self, event: Event) -> None:
        handler = self._dispatch.get(type(event))
        if handler is not None and self._metrics:
            handler(event)

    def __repr__(self) -> str:
        return f"PrometheusListener(registered={bool(self._metrics)})"

    def _child(self, name: str, *labels: str) -> Any:
        """The metric ``name`` with these label values, cached."""
        key = (name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._metrics[name].labels(*labels)
            if len(self._children) < _MAX_CHILDREN:
                self._children[key] = child
        return child

    # -- handlers ------------------------------------------------------------------------------

    def _admitted(self, event: Admitted) -> None:
        binding = event.binding if event.binding is not None else _NONE
        self._child("throttle_trio_admissions", event.source, binding).inc()
        self._child("throttle_trio_wait_duration_seconds", event.source, binding).observe(
            event.waited
        )
        if event.would_wait is not None and event.would_wait > 0:
            name = "throttle_trio_would_wait_duration_seconds"
            self._child(name, event.source, binding).observe(event.would_wait)

    def _timed_out(self, event: TimedOut) -> None:
        self._child("throttle_trio_timeouts", event.source).inc()

    def _settled(self, event: Settled) -> None:
        for metric, value in event.estimate.items():
            self._child("throttle_trio_usage", event.source, metric, "estimate").inc(value)
        for metric, value in event.usage.items():
            self._child("throttle_trio_usage", event.source, metric, "actual").inc(value)

    def _rejected(self, event: Rejected) -> None:
        status = "" if event.status is None else str(event.status)
        self._child("throttle_trio_rejections", event.source, status).inc()
        for metric, value in event.shortfall.items():
            self._child("throttle_trio_rejection_shortfall", event.source, metric).inc(value)

    def _paused(self, event: Paused) -> None:
        self._child("throttle_trio_pauses", event.source, event.reason).inc()
        name = "throttle_trio_pause_duration_seconds"
        self._child(name, event.source, event.reason).observe(event.seconds)

    def _rate_changed(self, event: RateChanged) -> None:
        self._child("throttle_trio_rate_per_second", event.source, event.limit).set(event.rate)
        name = "throttle_trio_rate_changes"
        self._child(name, event.source, event.limit, event.cause).inc()

    def _limit_lowered(self, event: LimitLowered) -> None:
        self._child("throttle_trio_limit_lowerings", event.source, event.limit).inc()

    def _limit_learned(self, event: LimitLearned) -> None:
        # A learned limit is named after its metric.
        rate = event.limit / event.per
        self._child("throttle_trio_rate_per_second", event.source, event.metric).set(rate)

    def _fallback_entered(self, event: FallbackEntered) -> None:
        self._child("throttle_trio_fallbacks", event.source, event.reason).inc()
        self._child("throttle_trio_fallback_active", event.source).inc()

    def _fallback_exited(self, event: FallbackExited) -> None:
        self._child("throttle_trio_fallback_active", event.source).dec()
        name = "throttle_trio_fallback_duration_seconds"
        self._child(name, event.source).observe(event.seconds)


def _check_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    try:
        bounds = tuple(float(b) for b in buckets if not isinstance(b, bool))
    except (TypeError, ValueError):
        bounds = ()
    if (
        not bounds
        or len(bounds) != len(buckets)
        or any(not b > 0 for b in bounds)  # NaN too
        or any(a >= b for a, b in itertools.pairwise(bounds))
    ):
        raise ValueError(
            f"buckets must be an increasing sequence of positive numbers, got {buckets!r}"
        )
    return bounds
