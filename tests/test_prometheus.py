"""throttle_trio.prometheus: a throttle's events as Prometheus metrics, read back by parsing the
exposition text; the throttle runs on both backends on virtual time, and the records it does not
emit yet (a status, a fallback) are fed to the listener directly.  The same events through
throttle_trio.otel and OpenTelemetry's Prometheus exporter give the same names and values."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

pytest.importorskip("prometheus_client", reason="the Prometheus tests need prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import throttle_trio as tt
from throttle_trio import events
from throttle_trio._headers import LimitReport, RateLimitHeaders
from throttle_trio.prometheus import DURATION_BUCKETS, METRICS, PrometheusListener

Labels = frozenset[tuple[str, str]]


def scrape(registry: CollectorRegistry) -> dict[str, dict[Labels, float]]:
    """Every sample of the exposition text, by sample name and labels."""
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        if family.name.endswith("_created"):  # prometheus_client's, when each series began
            continue
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def families(registry: CollectorRegistry) -> dict[str, str]:
    """Family name -> type, from the exposition text."""
    text = generate_latest(registry).decode()
    return {
        family.name: family.type
        for family in text_string_to_metric_families(text)
        if not family.name.endswith("_created")  # prometheus_client's, when each series began
    }


def labels(source: str = "t", **pairs: str) -> Labels:
    return frozenset({"source": source, **pairs}.items())


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.mark.anyio
async def test_admissions_waits_usage_pauses_and_rates_parse_back(
    registry: CollectorRegistry,
) -> None:
    listener = PrometheusListener(registry)
    throttle = tt.Throttle(
        requests=tt.TokenBucket(1, burst=1),
        tokens=tt.TokenBucket(1000, burst=1000),
        adaptive=True,
        on_event=listener,
        name="t",
    )
    for _ in range(3):
        async with throttle.reserve(requests=1, tokens=50) as slot:
            slot.settle(tokens=30)
    throttle.pause_for(4.0, reason="retry-after")
    throttle.record_overload()
    assert anyio.current_time() == 2.0

    samples = scrape(registry)
    assert samples["throttle_trio_admissions_total"] == {
        labels(binding="none"): 1,
        labels(binding="requests"): 2,
    }
    wait = "throttle_trio_wait_duration_seconds"
    assert samples[f"{wait}_count"] == {labels(binding="none"): 1, labels(binding="requests"): 2}
    assert samples[f"{wait}_sum"] == {labels(binding="none"): 0, labels(binding="requests"): 2}
    buckets = {
        dict(k)["le"]: v
        for k, v in samples[f"{wait}_bucket"].items()
        if ("binding", "requests") in k
    }
    assert buckets["0.5"] == 0
    assert buckets["1.0"] == 2  # both waited exactly 1 s: le="1.0" holds them
    assert buckets["+Inf"] == 2
    assert len(buckets) == len(DURATION_BUCKETS) + 1
    assert samples["throttle_trio_usage_total"] == {
        labels(metric="requests", kind="estimate"): 3,
        labels(metric="requests", kind="actual"): 3,
        labels(metric="tokens", kind="estimate"): 150,
        labels(metric="tokens", kind="actual"): 90,
    }
    assert samples["throttle_trio_pauses_total"] == {labels(reason="retry-after"): 1}
    assert samples["throttle_trio_pause_duration_seconds_sum"] == {labels(reason="retry-after"): 4}
    assert samples["throttle_trio_rate_per_second"] == {
        labels(limit="requests"): 0.5,
        labels(limit="tokens"): 500,
    }
    assert samples["throttle_trio_rate_changes_total"] == {
        labels(limit="requests", cause="overload"): 1,
        labels(limit="tokens", cause="overload"): 1,
    }


@pytest.mark.anyio
async def test_timeouts_rejections_lowerings_and_shadow_would_waits(
    registry: CollectorRegistry,
) -> None:
    listener = PrometheusListener(registry)
    throttle = tt.Throttle(
        requests=tt.TokenBucket(1, burst=1),
        tokens=tt.TokenBucket(100, burst=1000),
        on_event=listener,
        name="t",
    )
    held = await throttle.acquire(requests=1, tokens=500)
    with pytest.raises(tt.RateLimitTimeout):
        await throttle.acquire(requests=1, timeout=0.5)
    report = RateLimitHeaders(
        limits={"tokens": LimitReport(limit=None, remaining=120, reset_after=None)},
        retry_after=None,
        should_retry=None,
    )
    throttle.rejected(report, held)
    held.reject()
    fresh = tt.Throttle(requests=tt.TokenBucket(10, burst=10), on_event=listener, name="t")
    fresh.observe(  # nothing charged yet: the first report is taken as it is
        RateLimitHeaders(
            limits={"requests": LimitReport(limit=10, remaining=4, reset_after=None)},
            retry_after=None,
            should_retry=None,
        )
    )
    shadow = tt.Throttle(
        requests=tt.TokenBucket(1, burst=1), shadow=True, on_event=listener, name="shadow"
    )
    for _ in range(3):
        async with shadow.reserve(requests=1):
            pass

    samples = scrape(registry)
    assert samples["throttle_trio_timeouts_total"] == {labels(): 1}
    assert samples["throttle_trio_rejections_total"] == {labels(status=""): 1}
    assert samples["throttle_trio_rejection_shortfall_total"] == {labels(metric="tokens"): 380}
    assert samples["throttle_trio_limit_lowerings_total"] == {labels(limit="requests"): 1}
    would = "throttle_trio_would_wait_duration_seconds"
    assert samples[f"{would}_count"] == {labels("shadow", binding="requests"): 2}
    assert samples[f"{would}_sum"] == {labels("shadow", binding="requests"): 3.0}
    assert shadow.statistics().would_wait == 2


def test_statuses_and_a_fallback_outage(registry: CollectorRegistry) -> None:
    listen = PrometheusListener(registry)
    listen(events.Rejected("fleet", 1.0, 3, status=429))
    listen(events.Rejected("fleet", 1.0, 4, status=529))
    listen(events.Rejected("fleet", 1.0, 5, status=429))
    listen(events.FallbackEntered("fleet", 2.0, "timeout"))
    assert scrape(registry)["throttle_trio_fallback_active"] == {labels("fleet"): 1}
    listen(events.FallbackExited("fleet", 32.0, 30.0))
    listen(events.LimitLearned("fleet", 32.0, "tokens", 6000, 60.0))
    samples = scrape(registry)
    assert samples["throttle_trio_rejections_total"] == {
        labels("fleet", status="429"): 2,
        labels("fleet", status="529"): 1,
    }
    assert samples["throttle_trio_fallbacks_total"] == {labels("fleet", reason="timeout"): 1}
    assert samples["throttle_trio_fallback_active"] == {labels("fleet"): 0}
    assert samples["throttle_trio_fallback_duration_seconds_sum"] == {labels("fleet"): 30}
    assert samples["throttle_trio_rate_per_second"] == {labels("fleet", limit="tokens"): 100}


def test_every_metric_is_registered_as_declared(registry: CollectorRegistry) -> None:
    PrometheusListener(registry)
    found = families(registry)
    expected = {
        name.removesuffix("_total"): kind for name, (kind, _labels, _help) in METRICS.items()
    }
    assert found == expected


def test_both_adapters_list_one_catalogue(registry: CollectorRegistry) -> None:
    """The same metrics in the same order, with the same help, and the same buckets."""
    otel = pytest.importorskip("throttle_trio.otel", reason="needs the otel extra")
    assert [text for _type, _labels, text in METRICS.values()] == [
        text for _kind, _unit, text in otel.METRICS.values()
    ]
    assert otel.DURATION_BUCKETS is DURATION_BUCKETS
    # OpenTelemetry's up-down counter is a gauge in Prometheus, as the exporter makes it.
    assert otel.METRICS["throttle_trio.fallback.active"][0] == "updowncounter"
    assert METRICS["throttle_trio_fallback_active"][0] == "gauge"


def test_past_the_bound_on_cached_children_every_series_is_still_updated(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache of labelled children stops growing at MAX_SERIES (should a caller vary names
    freely); a series past it is looked up on each update, and counted all the same."""
    import throttle_trio.prometheus

    monkeypatch.setattr(throttle_trio.prometheus, "MAX_SERIES", 2)
    listen = PrometheusListener(registry)
    for _ in range(2):
        for source in ("a", "b", "c"):
            listen(events.Admitted(source, 0.0, 0.5, None, 0))
    samples = scrape(registry)
    assert samples["throttle_trio_admissions_total"] == {
        labels(source, binding="none"): 2 for source in ("a", "b", "c")
    }
    assert samples["throttle_trio_wait_duration_seconds_sum"] == {
        labels(source, binding="none"): 1.0 for source in ("a", "b", "c")
    }


def test_one_listener_per_registry_and_unregister(registry: CollectorRegistry) -> None:
    first = PrometheusListener(registry)
    with pytest.raises(ValueError, match="create one PrometheusListener per registry"):
        PrometheusListener(registry)
    assert set(families(registry)) == set(METRICS)  # the failed one left the first's alone
    first.unregister()
    assert families(registry) == {}
    first(events.Admitted("s", 0.0, 0.0, None, 0))  # updates nothing, raises nothing
    assert repr(first) == "PrometheusListener(registered=False)"
    second = PrometheusListener(registry, buckets=[0.1, 1, math.inf])
    assert second.registry is registry
    second(events.Admitted("s", 0.0, 0.5, "requests", 0))
    samples = scrape(registry)["throttle_trio_wait_duration_seconds_bucket"]
    assert {dict(k)["le"]: v for k, v in samples.items()} == {"0.1": 0, "1.0": 1, "+Inf": 1}


def test_the_default_registry_is_the_global_one() -> None:
    import prometheus_client

    listener = PrometheusListener()
    try:
        assert listener.registry is prometheus_client.REGISTRY
        listener(events.Admitted("global-test", 0.0, 0.0, None, 0))
        value = prometheus_client.REGISTRY.get_sample_value(
            "throttle_trio_admissions_total", {"source": "global-test", "binding": "none"}
        )
        assert value == 1
    finally:
        listener.unregister()


@pytest.mark.parametrize("buckets", [[], [1, 1], [2, 1], [0, 1], [-1], [float("nan")], ["x"]])
def test_bad_buckets_are_refused(registry: CollectorRegistry, buckets: list[object]) -> None:
    with pytest.raises(ValueError, match="buckets must be an increasing sequence"):
        PrometheusListener(registry, buckets=buckets)  # type: ignore[arg-type]
    assert families(registry) == {}


EVENTS: list[events.Event] = [
    events.Admitted("s", 0.0, 0.0, None, 0, {"requests": 1}),
    events.Admitted("s", 0.0, 1.5, "tokens", 1, {"requests": 1, "tokens": 10}),
    events.Admitted("s", 0.0, 0.0, "requests", 2, {"requests": 1}, would_wait=2.0),
    events.TimedOut("s", 0.0, 0.0, 0.1),
    events.Settled("s", 0.0, 0, {"tokens": 10}, {"tokens": 8}),
    events.Rejected("s", 0.0, 0, 429, {"tokens": 5.0}, 1.0),
    events.Rejected("s", 0.0, 0),
    events.Paused("s", 0.0, 1.0, 1.0, "retry-after"),
    events.RateChanged("s", 0.0, "tokens", 5.0, 10.0, 10.0, "overload"),
    events.LimitLowered("s", 0.0, "tokens", 5.0, 10.0),
    events.LimitLearned("s", 0.0, "requests", 60, 60.0),
    events.FallbackEntered("s", 0.0, "timeout"),
    events.FallbackExited("s", 1.0, 1.0),
    events.FallbackEntered("s", 2.0, "timeout"),
]

# OpenTelemetry attribute (as its exporter writes the label) -> this module's label.
OTEL_LABELS = {
    "throttle_trio_source": "source",
    "throttle_trio_binding": "binding",
    "throttle_trio_metric": "metric",
    "throttle_trio_usage_kind": "kind",
    "throttle_trio_reason": "reason",
    "throttle_trio_limit": "limit",
    "throttle_trio_cause": "cause",
    "http_response_status_code": "status",
}


def test_the_names_and_values_are_those_of_opentelemetrys_prometheus_exporter(
    registry: CollectorRegistry,
) -> None:
    """A dashboard survives a move between the adapters: the same events through
    throttle_trio.otel and OpenTelemetry's exporter give the same families and samples (with
    the labels renamed, and the exporter's scope labels dropped)."""
    pytest.importorskip("opentelemetry.exporter.prometheus", reason="needs the OTel exporter")
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider

    from throttle_trio.otel import OTelListener

    otel_registry = CollectorRegistry()
    reader = PrometheusMetricReader(disable_target_info=True, registry=otel_registry)
    otel = OTelListener(meter_provider=MeterProvider(metric_readers=[reader]), spans=False)
    ours = PrometheusListener(registry)
    for event in EVENTS:
        otel(event)
        ours(event)

    assert families(otel_registry) == families(registry)
    theirs: dict[str, dict[Labels, float]] = {}
    for name, samples in scrape(otel_registry).items():
        for key, value in samples.items():
            renamed = frozenset(
                (OTEL_LABELS.get(k, k), v) for k, v in key if not k.startswith("otel_scope_")
            )
            theirs.setdefault(name, {})[renamed] = value
    # A status the event does not know is the empty label in both.
    assert scrape(registry) == theirs
    assert theirs["throttle_trio_rejections_total"] == {
        labels("s", status="429"): 1,
        labels("s", status=""): 1,
    }
    assert len(theirs) == 3 * 4 + 11  # four histograms (3 sample names each), eleven others


def test_without_the_extra_the_error_names_it() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "try:\n    import throttle_trio.prometheus\n"
        "except ImportError as error:\n    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert 'pip install "throttle_trio[prometheus]"' in result.stdout
    assert "(prometheus_client is not installed)" in result.stdout


def test_the_how_to_lists_every_metric_under_both_names() -> None:
    """docs/how-to/observability.md's table names every instrument and every Prometheus metric,
    and the OTel names it gives become the Prometheus ones by the exporter's rule."""
    otel = pytest.importorskip("throttle_trio.otel", reason="needs the otel extra")
    page = Path(__file__).parent.parent / "docs" / "how-to" / "observability.md"
    rows = [
        line for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("| `")
    ]
    pairs = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if cells[0].startswith("`throttle_trio.") and cells[1].startswith("`throttle_trio_"):
            pairs[cells[0].split("`")[1]] = cells[1].split("`")[1]
    assert set(pairs) == set(otel.METRICS)
    assert {name.removesuffix("_total") for name in pairs.values()} == set(METRICS)
    for name, prometheus_name in pairs.items():
        kind, unit, _ = otel.METRICS[name]
        assert f"`{unit}`" in next(row for row in rows if row.startswith(f"| `{name}`"))
        suffix = {"s": "_seconds", "{unit}/s": "_per_second"}.get(unit, "")
        if kind == "counter":
            suffix += "_total"
        assert prometheus_name == name.replace(".", "_") + suffix
