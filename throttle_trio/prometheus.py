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

from ._metrics import CATALOGUE, DURATION_BUCKETS, MAX_SERIES, LabelValue, Metric, measure

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ._events import Event

__all__ = ["DURATION_BUCKETS", "METRICS", "PrometheusListener"]

METRICS: Final[Mapping[str, tuple[str, tuple[str, ...], str]]] = {
    metric.prometheus_name: (
        metric.prometheus_type,
        tuple(label.prometheus for label in metric.labels),
        metric.description,
    )
    for metric in CATALOGUE
}
"""Every metric the listener updates: name -> (type, label names, help); a counter's samples
add ``_total``.  The how-to's table describes them."""


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

    __slots__ = ("_metrics", "_registry", "_series")

    def __init__(
        self,
        registry: prometheus_client.CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        bounds = _check_buckets(buckets)
        self._registry = prometheus_client.REGISTRY if registry is None else registry
        # By the catalogue's (OpenTelemetry's) name, which the measurements carry.
        self._metrics: dict[str, Any] = {}
        # Per metric, as _metrics: each series' (label values') child's update method, cached.
        self._series: dict[str, dict[tuple[LabelValue, ...], Callable[[float], None]]] = {}
        try:
            for metric in CATALOGUE:
                name, documentation = metric.prometheus_name, metric.description
                labels = [label.prometheus for label in metric.labels]
                if metric.kind == "counter":
                    collector: Any = prometheus_client.Counter(
                        name, documentation, labels, registry=self._registry
                    )
                elif metric.kind in ("gauge", "updowncounter"):
                    collector = prometheus_client.Gauge(
                        name, documentation, labels, registry=self._registry
                    )
                else:
                    collector = prometheus_client.Histogram(
                        name, documentation, labels, registry=self._registry, buckets=bounds
                    )
                self._metrics[metric.name] = collector
                self._series[metric.name] = {}
        except ValueError as error:  # "Duplicated timeseries in CollectorRegistry"
            self.unregister()
            raise ValueError(
                f"this registry already has throttle_trio's metrics ({error}): create one "
                "PrometheusListener per registry and pass it to every throttle (each "
                "throttle's name is its source label)"
            ) from None

    @property
    def registry(self) -> prometheus_client.CollectorRegistry:
        """The registry that holds the metrics."""
        return self._registry

    def unregister(self) -> None:
        """Remove the metrics from the registry (they stop being served; the listener then
        updates metrics that nobody reads).  Another listener may then register."""
        for collector in self._metrics.values():
            self._registry.unregister(collector)
        self._metrics.clear()
        self._series.clear()

    def __call__(self, event: Event) -> None:
        if not self._metrics:  # unregistered
            return
        for metric, value, labels in measure(event):
            series = self._series[metric.name]
            update = series.get(labels)
            if update is None:
                update = self._new_series(metric, labels, series)
            update(value)

    def __repr__(self) -> str:
        return f"PrometheusListener(registered={bool(self._metrics)})"

    def _new_series(
        self,
        metric: Metric,
        labels: tuple[LabelValue, ...],
        series: dict[tuple[LabelValue, ...], Callable[[float], None]],
    ) -> Callable[[float], None]:
        """The update method of ``metric``'s child with these label values (a value the event
        did not know, ``None``, is the empty label), cached in ``series`` up to
        :data:`~throttle_trio._metrics.MAX_SERIES`."""
        child = self._metrics[metric.name].labels(*["" if v is None else str(v) for v in labels])
        update: Callable[[float], None]
        if metric.kind == "gauge":
            update = child.set
        elif metric.kind == "histogram":
            update = child.observe
        else:  # a counter, or an up-down counter's gauge
            update = child.inc
        if len(series) < MAX_SERIES:
            series[labels] = update
        return update


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
