"""A dashboard's worth of metrics from a run against the fake provider (the observability how-to).

``python -m bench.observability [PATH]`` runs a short, bounded workload on virtual time and
renders what :class:`throttle_trio.prometheus.PrometheusListener` recorded to a PNG (default:
``docs/how-to/observability.png``); ``tests/test_observability_plot.py`` renders it again
into a temporary directory and checks it.

The workload: 160 chat requests from 16 workers, through ``throttle_trio.httpx``'s transport,
to the fake provider in process (120 requests and 12,000 tokens a minute, responses after 0.5
to 2 s).  The throttle is configured 50% above the provider's token limit, as a team that
copied the wrong tier would, with ``adaptive=True``: the provider answers 429s, each pauses the
key and halves the rate, and the rate climbs back with the successes.  A sampler scrapes the
registry every second of virtual time, as Prometheus would, and the panels are the queries a
dashboard would run on those scrapes (rates of counters, quantiles of histogram buckets,
gauges).  Everything is seeded, and on asyncio (looptime) the run, and so the picture, is the
same every time; trio shuffles the order in which ready tasks run, so its runs differ a little.
"""

from __future__ import annotations

import itertools
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import prometheus_client

import throttle_trio as tt
from throttle_trio.httpx import ThrottledTransport
from throttle_trio.prometheus import PrometheusListener
from throttle_trio.testing import FakeLLMServer, run_virtual

__all__ = ["PNG", "Run", "main", "render", "run"]

PNG = Path(__file__).resolve().parent.parent / "docs" / "how-to" / "observability.png"

SOURCE = "fake:gpt"
REQUESTS = 160
WORKERS = 16
SERVER_RPM = 120
SERVER_TPM = 12_000
CLIENT_TPM = 18_000  # 50% too high
SCRAPE_EVERY = 1.0  # seconds of virtual time
RATE_WINDOW = 10.0  # the window of the rate() and quantile panels, seconds


@dataclass
class Run:
    """The scrapes of one run, and what the provider counted."""

    times: list[float] = field(default_factory=list)
    scrapes: list[dict[tuple[str, frozenset[tuple[str, str]]], float]] = field(default_factory=list)
    provider_admitted: int = 0
    provider_rate_limited: int = 0
    makespan: float = 0.0

    def series(self, name: str, **labels: str) -> list[float]:
        """A sample's value at each scrape, summed over the labels not given (0 if absent)."""
        want = set(labels.items())
        return [
            sum(v for (n, ls), v in scrape.items() if n == name and want <= ls)
            for scrape in self.scrapes
        ]

    def label_values(self, name: str, label: str) -> list[str]:
        """The values one label took on a sample, over the run, sorted."""
        return sorted(
            {dict(ls)[label] for scrape in self.scrapes for (n, ls) in scrape if n == name}
        )


def _scrape(
    registry: prometheus_client.CollectorRegistry,
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


async def _workload(seed: int) -> Run:
    registry = prometheus_client.CollectorRegistry()
    listener = PrometheusListener(registry)
    server = FakeLLMServer(
        rpm=SERVER_RPM, tpm=SERVER_TPM, latency=(0.5, 2.0), completion_tokens=(0.25, 1.0), seed=seed
    )
    throttle = tt.Throttle(
        requests=tt.TokenBucket(SERVER_RPM, per=60.0, burst=10),
        tokens=tt.TokenBucket(CLIENT_TPM, per=60.0, burst=CLIENT_TPM // 6),
        max_concurrent=WORKERS // 2,
        adaptive=True,
        on_event=listener,
        name=SOURCE,
    )
    transport = ThrottledTransport(httpx.ASGITransport(app=server), throttle=throttle)
    rng = random.Random(seed)
    bodies = [
        {
            "model": "fake-gpt",
            "max_tokens": rng.randint(100, 400),
            "messages": [{"role": "user", "content": "z" * rng.randint(200, 2400)}],
        }
        for _ in range(REQUESTS)
    ]
    run = Run()
    done = anyio.Event()

    async def sampler() -> None:
        while True:
            run.times.append(anyio.current_time())
            run.scrapes.append(_scrape(registry))
            if done.is_set():
                return
            await anyio.sleep(SCRAPE_EVERY)

    async def worker(client: httpx.AsyncClient, mine: list[dict[str, Any]]) -> None:
        for body in mine:
            response = await client.post("/chat/completions", json=body)
            response.raise_for_status()

    async with anyio.create_task_group() as samplers:
        samplers.start_soon(sampler)
        async with (
            httpx.AsyncClient(
                transport=transport, base_url="http://fake/v1", timeout=None
            ) as client,
            anyio.create_task_group() as workers,
        ):
            for index in range(WORKERS):
                workers.start_soon(worker, client, bodies[index::WORKERS])
        run.makespan = anyio.current_time()
        done.set()
    run.provider_admitted = server.stats.admitted
    run.provider_rate_limited = server.stats.rate_limited
    return run


def run(*, seed: int = 0, backend: str = "asyncio") -> Run:
    """Run the workload on a fresh virtual clock and return its scrapes."""
    return run_virtual(_workload, seed, backend=backend)


def _rate(values: list[float], times: list[float], window: float) -> list[float]:
    """Prometheus's ``rate(counter[window])``, at each scrape (per second)."""
    out = []
    for i, now in enumerate(times):
        j = i
        while j > 0 and times[j - 1] >= now - window:
            j -= 1
        span = now - times[j]
        out.append((values[i] - values[j]) / span if span > 0 else 0.0)
    return out


def _quantile(
    q: float, buckets: dict[float, list[float]], times: list[float], window: float
) -> list[float]:
    """Prometheus's ``histogram_quantile(q, rate(bucket[window]))`` at each scrape (NaN when
    nothing was observed in the window), interpolating linearly inside a bucket."""
    bounds = sorted(buckets)
    out = []
    for i, now in enumerate(times):
        j = i
        while j > 0 and times[j - 1] >= now - window:
            j -= 1
        counts = [buckets[b][i] - buckets[b][j] for b in bounds]
        total = counts[-1]
        if total <= 0:
            out.append(math.nan)
            continue
        rank = q * total
        below, lower = 0.0, 0.0
        for bound, count in zip(bounds, counts, strict=True):
            if count >= rank:
                if math.isinf(bound):
                    out.append(lower)
                else:
                    inside = count - below
                    out.append(lower + (bound - lower) * ((rank - below) / inside if inside else 1))
                break
            below, lower = count, bound
    return out


def render(data: Run, path: Path) -> list[str]:
    """Draw the six panels of ``data`` to a PNG at ``path``; return every text drawn (the
    title, the panels' titles, axis labels and legend entries)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = data.times
    fig, axes = plt.subplots(3, 2, figsize=(12, 11), layout="constrained")
    fig.suptitle(
        f"throttle_trio metrics: {REQUESTS} requests against the fake provider "
        f"({SERVER_RPM} RPM, {SERVER_TPM:,} TPM), a throttle set to {CLIENT_TPM:,} TPM, adaptive"
        f"\nscraped every {SCRAPE_EVERY:g} s of virtual time; rates and quantiles over "
        f"{RATE_WINDOW:g} s windows",
        fontsize=11,
    )

    ax = axes[0][0]
    for binding in data.label_values("throttle_trio_admissions_total", "binding"):
        series = data.series("throttle_trio_admissions_total", binding=binding)
        ax.plot(t, _rate(series, t, RATE_WINDOW), label=f"binding={binding}")
    ax.axhline(SERVER_RPM / 60, color="grey", linestyle="--", label="provider's RPM / 60")
    ax.set_title("Admissions: rate(throttle_trio_admissions_total)")
    ax.set_ylabel("requests / s")
    ax.legend(fontsize=8, loc="upper right")

    ax = axes[0][1]
    name = "throttle_trio_wait_duration_seconds_bucket"
    buckets = {float(le): data.series(name, le=le) for le in data.label_values(name, "le")}
    for q in (0.5, 0.95):
        ax.plot(t, _quantile(q, buckets, t, RATE_WINDOW), label=f"p{round(q * 100)}")
    sums = data.series("throttle_trio_wait_duration_seconds_sum")
    counts = data.series("throttle_trio_wait_duration_seconds_count")
    sum_rate, count_rate = _rate(sums, t, RATE_WINDOW), _rate(counts, t, RATE_WINDOW)
    mean = [s / c if c else math.nan for s, c in zip(sum_rate, count_rate, strict=True)]
    ax.plot(t, mean, label="mean", linestyle=":")
    ax.set_title("Wait in line: throttle_trio_wait_duration_seconds")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8, loc="upper right")

    ax = axes[1][0]
    for kind, style in (("estimate", "-"), ("actual", "--")):
        series = data.series("throttle_trio_usage_total", metric="tokens", kind=kind)
        ax.plot(t, [v / 1000 for v in series], linestyle=style, label=f"tokens, kind={kind}")
    ax.set_title("Tokens reserved vs used: throttle_trio_usage_total")
    ax.set_ylabel("thousand tokens (cumulative)")
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[1][1]
    rejections = data.series("throttle_trio_rejections_total")
    pauses = data.series("throttle_trio_pauses_total")
    ax.step(t, rejections, where="post", label="rejections (429)", color="tab:red", linewidth=4)
    ax.step(t, pauses, where="post", label="pauses", color="black", linewidth=1)
    ax.set_title("429s and pauses: throttle_trio_rejections_total, _pauses_total")
    ax.set_ylabel("count (cumulative)")
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[2][0]
    rate = data.series("throttle_trio_rate_per_second", limit="tokens")
    seen = [
        any(n == "throttle_trio_rate_per_second" and ("limit", "tokens") in ls for n, ls in s)
        for s in data.scrapes
    ]
    ax.plot(
        t,
        [r * 60 if ok else CLIENT_TPM for r, ok in zip(rate, seen, strict=True)],
        label="throttle's token rate (configured until the first change)",
    )
    ax.axhline(SERVER_TPM, color="grey", linestyle="--", label="provider's TPM")
    ax.set_title("Adaptive rate: throttle_trio_rate_per_second{limit=tokens}")
    ax.set_ylabel("tokens / minute")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[2][1]
    final = {le: values[-1] for le, values in buckets.items()}
    bounds = sorted(final)
    per_bucket = [final[bounds[0]]] + [final[b] - final[a] for a, b in itertools.pairwise(bounds)]
    labels = [f"≤{b:g}" if not math.isinf(b) else f">{bounds[-2]:g}" for b in bounds]
    ax.bar(range(len(bounds)), per_bucket, color="tab:green")
    ax.set_xticks(range(len(bounds)), labels, rotation=60, fontsize=7)
    ax.tick_params(axis="x", labelbottom=True)
    ax.set_title("Waits by bucket at the end (seconds)")
    ax.set_ylabel("requests")
    ax.set_xlabel("wait bucket, seconds")

    for ax in (axes[0][0], axes[0][1], axes[1][0], axes[1][1], axes[2][0]):
        ax.set_xlabel("time (s, virtual)")
        ax.set_xlim(0, t[-1])
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=80)
    texts = [fig.get_suptitle()]
    for ax in axes.flat:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        legend = ax.get_legend()
        if legend is not None:
            texts += [text.get_text() for text in legend.get_texts()]
        texts += [label.get_text() for label in ax.get_xticklabels() if label.get_text()]
    plt.close(fig)
    return texts


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else PNG
    data = run()
    render(data, path)
    print(
        f"{path}: {data.provider_admitted} requests admitted by the provider, "
        f"{data.provider_rate_limited} 429s, {data.makespan:.0f} s of virtual time"
    )


if __name__ == "__main__":
    main()
