"""``throttle-trio demo``: the same batch, naive and throttled, against a fake provider.

Starts the fake OpenAI-compatible server on loopback with OpenAI-like limits (the estimate,
prompt + ``max_tokens``, counted up front; at most RPM/60 requests and TPM/60 tokens in any
one-second window), then sends the same requests twice, under two API keys with limits of
their own:

* **naive**: everything at once with ``gather``-style concurrency and the retries an SDK does
  (Retry-After honoured up to 60 s, else exponential backoff; 2 retries);
* **throttle_trio**: the OpenAI preset (:func:`~throttle_trio.openai_throttle`: sliding
  windows of the provider's one-second slices) behind the httpx2 transport.

It prints a side-by-side report (makespan against the theoretical minimum, throughput against
the limits, 429s, tokens wasted in rejected requests) and can draw a timeline of every attempt
(``--plot``, the ``plot`` extra).
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import httpx2

from .._estimate import estimate_request_cost
from .._presets import openai_throttle
from .._retry import RetryPolicy
from ..httpx2 import ThrottledTransport
from ..testing import FakeLLMServer, serve
from ._timeline import RunTimeline, check_plotting, write_timeline

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["DemoResult", "run_demo"]

_KEYS = ("naive", "throttled")
_MAX_TOKENS = 100


@dataclass
class DemoResult:
    """One contender's figures."""

    name: str
    succeeded: int = 0
    failed: int = 0
    rate_limited: int = 0
    wasted_tokens: int = 0
    makespan: float = 0.0
    started: float = 0.0
    attempts: list[tuple[float, int, float]] = field(default_factory=list)


class _AttemptLog(httpx2.AsyncBaseTransport):
    """Logs every attempt that reaches the wire: (time, status, estimated tokens)."""

    def __init__(
        self, inner: httpx2.AsyncBaseTransport, log: list[tuple[float, int, float]]
    ) -> None:
        self._inner, self._log = inner, log

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        sent = time.monotonic()
        response = await self._inner.handle_async_request(request)
        tokens = estimate_request_cost(request.content)["tokens"]
        self._log.append((sent, response.status_code, tokens))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def workload(count: int, seed: int) -> list[dict[str, Any]]:
    """Chat requests with prompts of 50 to 300 tokens (4 characters each)."""
    rng = random.Random(seed)
    return [
        {
            "model": "fake-llm",
            "messages": [{"role": "user", "content": "word " * (rng.randint(200, 1200) // 5)}],
            "max_tokens": _MAX_TOKENS,
        }
        for _ in range(count)
    ]


async def _naive(
    client: httpx2.AsyncClient, bodies: list[dict[str, Any]], result: DemoResult
) -> None:
    """Fire everything, retry like an SDK (2 retries, Retry-After up to 60 s)."""

    async def one(body: dict[str, Any]) -> None:
        for attempt in range(3):
            response = await client.post("chat/completions", json=body)
            if response.status_code != 429:
                ok = response.status_code == 200
                result.succeeded += ok
                result.failed += not ok
                return
            result.rate_limited += 1
            result.wasted_tokens += int(estimate_request_cost(body)["tokens"])
            if attempt == 2:
                break
            delay = float(response.headers.get("retry-after", "0") or 0)
            if not 0 < delay <= 60:
                delay = min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random())
            await anyio.sleep(delay)
        result.failed += 1

    async with anyio.create_task_group() as tg:
        for body in bodies:
            tg.start_soon(one, body)


async def _throttled(
    client: httpx2.AsyncClient, bodies: list[dict[str, Any]], result: DemoResult
) -> None:
    async def one(body: dict[str, Any]) -> None:
        response = await client.post("chat/completions", json=body)
        ok = response.status_code == 200
        result.succeeded += ok
        result.failed += not ok

    async with anyio.create_task_group() as tg:
        for body in bodies:
            tg.start_soon(one, body)


async def run_demo(
    *,
    requests: int = 150,
    rpm: int = 1200,
    tpm: int = 180_000,
    seed: int = 7,
    plot: Path | None = None,
    stream: TextIO = sys.stdout,
) -> tuple[DemoResult, DemoResult]:
    """Run both contenders and print the report; see the module docstring."""
    if plot is not None:
        check_plotting()  # before the run, not after it
    server = FakeLLMServer(
        rpm=rpm, tpm=tpm, mode="openai", latency=(0.2, 0.8), api_keys=_KEYS, seed=seed
    )
    bodies = workload(requests, seed)
    estimates = [estimate_request_cost(body)["tokens"] for body in bodies]
    minimum = max(requests / (rpm / 60), sum(estimates) / (tpm / 60))
    stream.write(
        f"fake provider: {rpm:,} requests/min and {tpm:,} tokens/min, enforced per second "
        f"(OpenAI-like); {requests} chat requests, {sum(estimates):,.0f} tokens estimated; "
        f"theoretical minimum {minimum:.1f} s\n"
    )
    naive, throttled = DemoResult("naive gather + SDK retries"), DemoResult("throttle_trio")
    # The preset for this provider: one-second slices, max_tokens counted up front and kept.
    throttle = openai_throttle(rpm=rpm, tpm=tpm)
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server)
        for result, key in ((naive, "naive"), (throttled, "throttled")):
            stream.write(f"running {result.name} ...\n")
            stream.flush()
            transport: httpx2.AsyncBaseTransport = _AttemptLog(
                httpx2.AsyncHTTPTransport(), result.attempts
            )
            if key == "throttled":
                transport = ThrottledTransport(transport, throttle=throttle, retry=RetryPolicy())
            async with httpx2.AsyncClient(
                transport=transport,
                base_url=address.base_url + "/",
                headers={"authorization": f"Bearer {key}"},
                timeout=120,
            ) as client:
                result.started = time.monotonic()
                runner = _naive if key == "naive" else _throttled
                await runner(client, bodies, result)
                result.makespan = time.monotonic() - result.started
        tg.cancel_scope.cancel()
    throttled.rate_limited = throttle.statistics().rejections
    _report(stream, naive, throttled, minimum, requests)
    if plot is not None:
        runs = [
            RunTimeline(r.name, r.attempts, r.started, r.makespan, r.succeeded, r.failed, requests)
            for r in (naive, throttled)
        ]
        write_timeline(plot, runs, tpm / 60, minimum)
        stream.write(f"timeline written to {plot}\n")
    return naive, throttled


def _report(
    stream: TextIO, naive: DemoResult, throttled: DemoResult, minimum: float, requests: int
) -> None:
    rows: list[tuple[str, Callable[[DemoResult], str]]] = [
        ("requests succeeded", lambda r: f"{r.succeeded}/{requests}"),
        ("makespan", lambda r: f"{r.makespan:.1f} s"),
        (
            "makespan / minimum",
            lambda r: f"{r.makespan / minimum:.2f}x" if not r.failed else "(incomplete)",
        ),
        ("429s received", lambda r: f"{r.rate_limited}"),
        ("tokens wasted in 429s", lambda r: f"{r.wasted_tokens:,}"),
        ("failed after retries", lambda r: f"{r.failed}"),
    ]
    width = max(len(label) for label, _ in rows) + 2
    columns = [naive, throttled]
    cells = [[fmt(r) for r in columns] for _, fmt in rows]
    col = [max(len(r.name), *(len(c[i]) for c in cells)) + 2 for i, r in enumerate(columns)]
    stream.write(
        "\n"
        + " " * width
        + "".join(r.name.rjust(w) for r, w in zip(columns, col, strict=True))
        + "\n"
    )
    for (label, _), values in zip(rows, cells, strict=True):
        stream.write(
            label.ljust(width)
            + "".join(v.rjust(w) for v, w in zip(values, col, strict=True))
            + "\n"
        )
    if math.isfinite(minimum):
        stream.write(
            "\nthrottle_trio sends at the provider's limits from the first request; the naive run"
            "\nbursts, collects 429s and waits out the Retry-Afters.\n"
        )
