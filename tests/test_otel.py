"""throttle_trio.otel: a throttle's events as OpenTelemetry metrics and wait spans, read back from
the SDK's in-memory reader and exporter; the throttle runs on both backends on virtual time,
and the records it does not emit yet (a status, a fallback) are fed to the listener directly."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import anyio
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the OTel tests need opentelemetry-sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import throttle_trio as tt
from throttle_trio import events
from throttle_trio._headers import LimitReport, RateLimitHeaders
from throttle_trio.otel import DURATION_BUCKETS, METRICS, SPAN_NAME, OTelListener


class Telemetry:
    """An in-memory meter and tracer provider, and a listener on them."""

    def __init__(self, *, spans: bool = True) -> None:
        self.reader = InMemoryMetricReader()
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.listener = OTelListener(
            meter_provider=MeterProvider(metric_readers=[self.reader]),
            tracer_provider=self.tracer_provider,
            spans=spans,
        )

    def metrics(self) -> dict[str, Any]:
        """Every metric recorded so far, by name."""
        data = self.reader.get_metrics_data()
        if data is None:
            return {}
        found = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "throttle_trio"
                assert scope.scope.version == tt.__version__
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found

    def points(self, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """One metric's data points, by their attributes."""
        return {
            frozenset((point.attributes or {}).items()): point
            for point in self.metrics()[name].data.data_points
        }

    def values(self, name: str) -> dict[frozenset[tuple[str, Any]], float]:
        return {attrs: point.value for attrs, point in self.points(name).items()}

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()


def attrs(source: str = "t", **pairs: Any) -> frozenset[tuple[str, Any]]:
    """Attributes as the listener writes them: ``throttle_trio.`` before each key."""
    items = {"throttle_trio.source": source}
    items.update({f"throttle_trio.{key}": value for key, value in pairs.items()})
    return frozenset(items.items())


@pytest.mark.anyio
async def test_admissions_and_waits_by_binding_limit_and_a_span_per_wait() -> None:
    telemetry = Telemetry()
    throttle = tt.Throttle(
        requests=tt.TokenBucket(1, burst=1),
        tokens=tt.TokenBucket(1000, burst=1000),
        on_event=telemetry.listener,
        name="t",
    )
    tracer = telemetry.tracer_provider.get_tracer("app")
    for _ in range(3):
        with tracer.start_as_current_span("request") as request_span:
            async with throttle.reserve(requests=1, tokens=50):
                pass
    assert anyio.current_time() == 2.0

    assert telemetry.values("throttle_trio.admissions") == {
        attrs(binding="none"): 1,
        attrs(binding="requests"): 2,
    }
    waits = telemetry.points("throttle_trio.wait.duration")
    assert set(waits) == {attrs(binding="none"), attrs(binding="requests")}
    assert (waits[attrs(binding="none")].count, waits[attrs(binding="none")].sum) == (1, 0.0)
    held = waits[attrs(binding="requests")]
    assert (held.count, held.sum, held.min, held.max) == (2, 2.0, 1.0, 1.0)
    assert tuple(held.explicit_bounds) == DURATION_BUCKETS
    assert telemetry.metrics()["throttle_trio.wait.duration"].unit == "s"
    assert telemetry.metrics()["throttle_trio.admissions"].unit == "{request}"

    waits_spans = [s for s in telemetry.spans() if s.name == SPAN_NAME]
    assert len(waits_spans) == 2  # the first request did not wait: no span
    for ticket, span in enumerate(waits_spans, start=1):
        assert span.attributes == {
            "throttle_trio.source": "t",
            "throttle_trio.binding": "requests",
            "throttle_trio.ticket": ticket,
            "throttle_trio.cost.requests": 1,
            "throttle_trio.cost.tokens": 50,
        }
        assert span.end_time is not None
        assert span.start_time is not None
        assert span.end_time - span.start_time == 1_000_000_000  # the wait, on the loop's clock
        assert span.kind is trace.SpanKind.INTERNAL
        assert span.status.is_ok
    # Each wait span is a child of the request span that was current in the waiting task.
    parents = [s for s in telemetry.spans() if s.name == "request"]
    assert [s.parent.span_id for s in waits_spans if s.parent] == [
        p.context.span_id for p in parents[1:]
    ]
    assert request_span.get_span_context().span_id == parents[-1].context.span_id


@pytest.mark.anyio
async def test_a_timeout_is_counted_and_its_wait_span_is_an_error() -> None:
    telemetry = Telemetry()
    throttle = tt.Throttle(
        requests=tt.TokenBucket(1, burst=1), max_concurrent=1, on_event=telemetry.listener
    )
    held = await throttle.acquire(requests=1)
    with pytest.raises(tt.RateLimitTimeout):
        await throttle.acquire(requests=1, timeout=0.5)  # known at once: no wait, no span
    with pytest.raises(tt.RateLimitTimeout):
        await throttle.acquire(requests=1, timeout=2.0)
    held.release()
    source = repr(throttle)
    assert telemetry.values("throttle_trio.timeouts") == {attrs(source): 2}
    (span,) = telemetry.spans()
    assert span.name == SPAN_NAME
    assert not span.status.is_ok
    assert span.status.description == "timed out waiting for the throttle"
    assert span.attributes is not None
    assert span.attributes["error.type"] == "throttle_trio.RateLimitTimeout"
    assert span.attributes["throttle_trio.timeout"] == 2.0
    assert span.end_time is not None
    assert span.start_time is not None
    assert span.end_time - span.start_time == 2_000_000_000


@pytest.mark.anyio
async def test_usage_estimated_and_actual_pauses_rejections_and_rate_changes() -> None:
    telemetry = Telemetry()
    throttle = tt.Throttle(
        requests=tt.TokenBucket(10, burst=10),
        tokens=tt.TokenBucket(100, burst=1000),
        adaptive=True,
        on_event=telemetry.listener,
        name="t",
    )
    async with throttle.reserve(requests=1, tokens=500) as slot:
        slot.settle(tokens=320)
    slot = await throttle.acquire(requests=1, tokens=500)
    report = RateLimitHeaders(
        limits={"tokens": LimitReport(limit=None, remaining=120, reset_after=None)},
        retry_after=7.0,
        should_retry=None,
    )
    throttle.rejected(report, slot)
    slot.reject(requests=1)
    throttle.pause_for(7.0, reason="retry-after")
    throttle.pause_for(2.0)
    await anyio.sleep(8)
    throttle.pause_for(2.0)
    throttle.record_overload()
    throttle.record_success()

    usage = telemetry.values("throttle_trio.usage")
    assert usage == {
        attrs(metric="requests", **{"usage.kind": "estimate"}): 1,
        attrs(metric="tokens", **{"usage.kind": "estimate"}): 500,
        attrs(metric="tokens", **{"usage.kind": "actual"}): 320,
        # The requests were not settled: the usage is the estimate.
        attrs(metric="requests", **{"usage.kind": "actual"}): 1,
    }
    assert telemetry.values("throttle_trio.rejections") == {attrs(): 1}
    assert telemetry.values("throttle_trio.rejection.shortfall") == {attrs(metric="tokens"): 380}
    assert telemetry.values("throttle_trio.pauses") == {
        attrs(reason="retry-after"): 1,
        attrs(reason="user"): 1,  # the 2 s pause inside the 7 s one changed nothing
    }
    pauses = telemetry.points("throttle_trio.pause.duration")
    assert (pauses[attrs(reason="retry-after")].sum, pauses[attrs(reason="user")].sum) == (7, 2)
    assert telemetry.values("throttle_trio.rate") == {
        attrs(limit="requests"): pytest.approx(5.1),
        attrs(limit="tokens"): pytest.approx(51.0),
    }
    assert telemetry.values("throttle_trio.rate.changes") == {
        attrs(limit="requests", cause="overload"): 1,
        attrs(limit="requests", cause="recovery"): 1,
        attrs(limit="tokens", cause="overload"): 1,
        attrs(limit="tokens", cause="recovery"): 1,
    }


@pytest.mark.anyio
async def test_header_feedback_counts_lowerings_and_a_learned_limit_sets_its_rate() -> None:
    telemetry = Telemetry()
    throttle = tt.Throttle(
        requests=tt.TokenBucket(10, burst=10),
        learn_limits=True,
        on_event=telemetry.listener,
        name="t",
    )
    throttle.observe(
        RateLimitHeaders(
            limits={
                "requests": LimitReport(limit=10, remaining=4, reset_after=None),
                "tokens": LimitReport(limit=6000, remaining=6000, reset_after=None),
            },
            retry_after=None,
            should_retry=None,
        )
    )
    assert telemetry.values("throttle_trio.limit.lowerings") == {attrs(limit="requests"): 1}
    assert telemetry.values("throttle_trio.rate") == {attrs(limit="tokens"): 100.0}  # 6000/60 s


@pytest.mark.anyio
async def test_shadow_mode_records_what_enforcement_would_have_waited() -> None:
    telemetry = Telemetry()
    throttle = tt.Throttle(
        requests=tt.TokenBucket(1, burst=1), shadow=True, on_event=telemetry.listener, name="t"
    )
    for _ in range(3):
        async with throttle.reserve(requests=1):
            pass
    assert anyio.current_time() == 0
    would = telemetry.points("throttle_trio.would_wait.duration")
    assert set(would) == {attrs(binding="requests")}
    point = would[attrs(binding="requests")]
    assert (point.count, point.sum) == (2, 3.0)  # 1 s and 2 s; the first would not have waited
    assert point.count == throttle.statistics().would_wait
    # It did not wait: the wait histogram says so, and no span was made.
    waits = telemetry.points("throttle_trio.wait.duration")
    assert sum(p.count for p in waits.values()) == 3
    assert sum(p.sum for p in waits.values()) == 0
    assert telemetry.spans() == ()


def test_a_rejection_with_a_status_and_a_fallback_outage() -> None:
    telemetry = Telemetry()
    listen = telemetry.listener
    listen(events.Rejected("fleet", 1.0, 3, status=429, retry_after=2.0))
    listen(events.Rejected("fleet", 1.0, 4, status=529))
    listen(events.Rejected("fleet", 1.0, 5, status=429))
    listen(events.FallbackEntered("fleet", 2.0, "ConnectionError"))
    assert telemetry.values("throttle_trio.fallback.active") == {attrs("fleet"): 1}
    listen(events.FallbackExited("fleet", 32.0, 30.0))
    status = "http.response.status_code"
    assert telemetry.values("throttle_trio.rejections") == {
        attrs("fleet") | {(status, 429)}: 2,
        attrs("fleet") | {(status, 529)}: 1,
    }
    assert telemetry.values("throttle_trio.fallbacks") == {
        attrs("fleet", reason="ConnectionError"): 1
    }
    assert telemetry.values("throttle_trio.fallback.active") == {attrs("fleet"): 0}
    outage = telemetry.points("throttle_trio.fallback.duration")[attrs("fleet")]
    assert (outage.count, outage.sum) == (1, 30.0)


def test_every_instrument_is_declared_with_its_unit_and_kind() -> None:
    """One event of each kind creates every instrument of METRICS, as declared."""
    telemetry = Telemetry()
    listen = telemetry.listener
    for event in (
        events.Admitted("s", 0.0, 0.5, "tokens", 0, {"tokens": 10}, would_wait=None),
        events.Admitted("s", 0.0, 0.0, "tokens", 1, {"tokens": 10}, would_wait=0.5),
        events.TimedOut("s", 0.0, 0.0, 0.1),
        events.Settled("s", 0.0, 0, {"tokens": 10}, {"tokens": 8}),
        events.Rejected("s", 0.0, 0, 429, {"tokens": 5.0}, 1.0),
        events.Paused("s", 0.0, 1.0, 1.0, "retry-after"),
        events.RateChanged("s", 0.0, "tokens", 5.0, 10.0, 10.0, "overload"),
        events.LimitLowered("s", 0.0, "tokens", 5.0, 10.0),
        events.LimitLearned("s", 0.0, "requests", 60, 60.0),
        events.FallbackEntered("s", 0.0, "timeout"),
        events.FallbackExited("s", 1.0, 1.0),
        object(),  # an event type it does not know (a later version's): ignored
    ):
        listen(event)  # type: ignore[arg-type]
    kinds = {
        "counter": "Sum",
        "updowncounter": "Sum",
        "gauge": "Gauge",
        "histogram": "Histogram",
    }
    recorded = telemetry.metrics()
    assert set(recorded) == set(METRICS)
    for name, (kind, unit, description) in METRICS.items():
        metric = recorded[name]
        assert (metric.unit, metric.description) == (unit, description)
        assert type(metric.data).__name__ == kinds[kind]
        if kind in ("counter", "updowncounter"):
            assert metric.data.is_monotonic == (kind == "counter")


def test_past_the_bound_on_cached_attributes_every_series_is_still_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cache of attribute sets stops growing at MAX_SERIES (should a caller vary names
    freely); a series past it is built again on each record, and recorded all the same."""
    import throttle_trio.otel

    monkeypatch.setattr(throttle_trio.otel, "MAX_SERIES", 2)
    telemetry = Telemetry(spans=False)
    for _ in range(2):
        for source in ("a", "b", "c"):
            telemetry.listener(events.Rejected(source, 0.0, 0, status=429))
    status = "http.response.status_code"
    assert telemetry.values("throttle_trio.rejections") == {
        attrs(source) | {(status, 429)}: 2 for source in ("a", "b", "c")
    }


def test_spans_can_be_turned_off_and_bad_arguments_are_refused() -> None:
    telemetry = Telemetry(spans=False)
    telemetry.listener(events.Admitted("s", 1.0, 1.0, "requests", 0))
    assert telemetry.spans() == ()
    assert telemetry.values("throttle_trio.admissions") == {attrs("s", binding="requests"): 1}
    assert repr(telemetry.listener) == "OTelListener(spans=False)"
    with pytest.raises(TypeError, match="spans must be a bool, got int 1"):
        OTelListener(spans=1)  # type: ignore[arg-type]


def test_without_providers_it_uses_the_global_no_op_ones() -> None:
    listener = OTelListener()
    listener(events.Admitted("s", 1.0, 1.0, "requests", 0, {"requests": 1}))
    listener(events.TimedOut("s", 1.0, 1.0, 1.0))


def test_a_listener_made_before_the_global_providers_are_set_records_there() -> None:
    """In a subprocess: OpenTelemetry's global providers can be set once per process."""
    code = """if True:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from throttle_trio import events
        from throttle_trio.otel import OTelListener

        listener = OTelListener()  # at import time, before the application's setup
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        listener(events.Admitted("s", 0.0, 1.0, "requests", 0))
        scope = reader.get_metrics_data().resource_metrics[0].scope_metrics[0]
        print(sorted(m.name for m in scope.metrics), len(spans.get_finished_spans()))
    """
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split("\n")[0] == (
        "['throttle_trio.admissions', 'throttle_trio.wait.duration'] 1"
    )


def test_without_the_extra_the_error_names_it() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "try:\n    import throttle_trio.otel\n"
        "except ImportError as error:\n    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert 'pip install "throttle_trio[otel]"' in result.stdout
    assert "(opentelemetry is not installed)" in result.stdout
