"""bench.observability: the how-to's dashboard, from a run against the fake provider through
throttle_trio.prometheus.  The run's metrics agree with what the provider counted (on both
backends); the picture is rendered again into a temporary directory, and its size and labels
are checked, as is the copy checked in under docs/."""

from __future__ import annotations

import functools
import math

import pytest

pytest.importorskip("prometheus_client", reason="needs the prometheus extra")
pytest.importorskip("matplotlib", reason="the plot needs matplotlib (the test extra)")
pytest.importorskip("httpx", reason="the workload uses the httpx transport")

from typing import TYPE_CHECKING

from PIL import Image

from bench import observability

if TYPE_CHECKING:
    from pathlib import Path

SIZE = (960, 880)  # 12 x 11 inches at 80 dpi


@functools.cache
def run_on(backend: str) -> observability.Run:
    return observability.run(backend=backend)


@pytest.fixture(params=["asyncio", "trio"])
def run(request: pytest.FixtureRequest) -> observability.Run:
    return run_on(request.param)


def last(run: observability.Run, name: str, **labels: str) -> float:
    return run.series(name, **labels)[-1]


def test_the_metrics_agree_with_what_the_provider_counted(run: observability.Run) -> None:
    assert run.provider_admitted == observability.REQUESTS
    rejections = last(run, "throttle_trio_rejections_total")
    # Every 429 the provider sent was a rejection the listener counted, and a pause; the
    # throttle was set too high on purpose, so there were some, and few (it adapts).
    assert rejections == run.provider_rate_limited
    assert 1 <= rejections <= 10
    assert last(run, "throttle_trio_pauses_total") == rejections
    # Each attempt is an admission (a retry keeps its ticket and is admitted again), and each
    # admission is one observation of the wait histogram.
    admissions = last(run, "throttle_trio_admissions_total")
    assert admissions == observability.REQUESTS + rejections
    assert last(run, "throttle_trio_wait_duration_seconds_count") == admissions
    # The first went at once; the tokens held most of the rest (a few may have been held by
    # a pause last, or by the concurrency cap, as the order of tasks goes).
    bindings = set(run.label_values("throttle_trio_admissions_total", "binding"))
    assert {"none", "tokens"} <= bindings <= {"none", "tokens", "pause", "concurrency"}
    held = last(run, "throttle_trio_admissions_total", binding="tokens")
    assert held >= admissions / 2
    # The estimate errs on the safe side: more tokens reserved than used.
    estimate = last(run, "throttle_trio_usage_total", metric="tokens", kind="estimate")
    actual = last(run, "throttle_trio_usage_total", metric="tokens", kind="actual")
    assert 0 < actual < estimate
    # The adaptive controller cut the token rate below the provider's, and it climbed back.
    rates = [
        r * 60
        for r in run.series("throttle_trio_rate_per_second", limit="tokens")
        if r  # absent before the first change
    ]
    assert min(rates) < observability.SERVER_TPM < max(rates) <= observability.CLIENT_TPM
    # Scraped every second, to the end of the bounded run.
    assert run.times[0] == 0
    assert run.times[-1] >= run.makespan
    assert len(run.times) == len(run.scrapes) == math.ceil(run.makespan) + 1


def test_the_quantiles_follow_prometheus(run: observability.Run) -> None:
    """The wait panel's histogram_quantile: every waited request fits its estimate's bucket."""
    name = "throttle_trio_wait_duration_seconds_bucket"
    buckets = {float(le): run.series(name, le=le) for le in run.label_values(name, "le")}
    p50 = observability._quantile(0.5, buckets, run.times, math.inf)[-1]
    p95 = observability._quantile(0.95, buckets, run.times, math.inf)[-1]
    mean = last(run, "throttle_trio_wait_duration_seconds_sum") / last(
        run, "throttle_trio_wait_duration_seconds_count"
    )
    assert 0 < p50 <= p95 <= 60
    assert 0 < mean <= 60
    counter = [0.0, 1.0, 3.0, 3.0, 7.0]
    assert observability._rate(counter, [0.0, 1.0, 2.0, 3.0, 4.0], 2.0) == [0, 1, 1.5, 1, 2]


def test_the_picture_has_its_panels_labels_and_size(tmp_path: Path) -> None:
    data = run_on("asyncio")  # the backend of the checked-in picture
    path = tmp_path / "observability.png"
    texts = observability.render(data, path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == SIZE
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is not None
    assert len(colours) > 100  # lines, bars and text, not a blank canvas
    for expected in (
        "Admissions: rate(throttle_trio_admissions_total)",
        "Wait in line: throttle_trio_wait_duration_seconds",
        "Tokens reserved vs used: throttle_trio_usage_total",
        "429s and pauses: throttle_trio_rejections_total, _pauses_total",
        "Adaptive rate: throttle_trio_rate_per_second{limit=tokens}",
        "Waits by bucket at the end (seconds)",
        "requests / s",
        "seconds",
        "tokens / minute",
        "time (s, virtual)",
        "wait bucket, seconds",
        "binding=tokens",
        "tokens, kind=estimate",
        "tokens, kind=actual",
        "rejections (429)",
        "p95",
        "≤60",
    ):
        assert expected in texts
    assert texts.count("time (s, virtual)") == 5
    assert texts[0].startswith("throttle_trio metrics: 160 requests against the fake provider")


def test_the_checked_in_picture_is_the_one_the_script_draws() -> None:
    """docs/how-to/observability.png (regenerate: python -m bench.observability)."""
    with Image.open(observability.PNG) as image:
        assert image.size == SIZE
    assert observability.PNG.stat().st_size > 50_000
