"""``python -m bench.fleet``: a fleet of processes shares one limit through Redis, over loopback.

Starts a private ``redis-server`` (:func:`throttle_trio.testing.redis_server`) and the fake
provider (:class:`throttle_trio.testing.FakeLLMServer`, the server ``throttle-trio serve``
runs, served here in this process so that its admission log can be read) on 127.0.0.1, in
``"openai"`` mode with ``rpm = 60 * rate``: at most ``rate`` requests in any one-second
window, and a 429 for anything above.  Then, each run with a fresh throttle name and a fresh
provider:

* **SDK fleet**: 3 worker processes (asyncio, trio, asyncio), each with the official ``openai``
  SDK through :class:`throttle_trio.httpx2.ThrottledTransport` over one shared
  :class:`~throttle_trio.redis.RedisThrottle` of ``rate`` requests a second; a fixed total of
  chat completions split among them.  The workers start, connect and report ready; the clock
  starts when all of them are told to go.
* **batch CLI fleet**: 2 ``throttle-trio batch --redis URL --name NAME`` processes (asyncio and
  trio), each with its own input file (half the total), the same ``--rpm``.

Two ways to configure the shared limit (``--limit``, repeatable; both by default):

* ``bucket``: ``GCRALimit(rate, per=1.0, burst=1)`` (the batch CLI: ``--rpm 60*rate --burst
  1/rate``), with the throttle at the provider's rate and ``DEFAULT_MARGIN`` (5%) below it, side
  by side (``--throttle-rate`` chooses others).
* ``window``: the provider's own rate as a sliding window with a margin, as OpenAI's preset
  configures it: :meth:`RedisThrottle.for_openai` with ``rpm = 60 * rate`` and a ``tpm`` far
  above what the runs send (the SDK fleet), ``--provider openai --rpm --tpm`` (the batch CLI).
  That is ``WindowLimit(rate, window=1.0 + margin)`` (the preset's margin, 0.03 s) for the
  requests and for the tokens, a pacing ``GCRALimit(rate, burst=rate / 5)``, adaptive, no
  refunds.  ``--throttle-rate`` chooses the rates here as well (default: the provider's).

Each run reports the 429s the provider answered (target 0) and the makespan against the ideal
``total / rate`` seconds at the provider's rate, whatever the throttle's settings (target at
most 1.10x).  The SDK fleet's makespan runs from "go" to the last worker's last response; the
batch fleet's from the first request the provider received to the last response it sent
(process start-up, imports and the Redis connection are no part of the throttle).  Also shown:
the most admissions in any 1 s window, how close the fleet came to the window (the fewest
seconds spanned by ``rate + 1`` consecutive admissions), and, for each 429, when it came (seconds
after the first request) and how long before its window allowed it the request arrived: by the
times requests arrived, by the times the provider had read their bodies (when it counts them),
and, for the SDK fleet, by the times they left their workers' throttles (each request carries
that time in a header, ``x-fleet-admitted``).  For the SDK fleet also: how long requests took
from leaving the throttle to arriving at the provider (median, 99th percentile, longest).

Every load is bounded (a fixed number of requests; each run has a deadline) and loopback only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from anyio.abc import Process

    from ._report import Section
    from ._settings import Settings

__all__ = ["FleetConfig", "FleetRun", "main", "run", "run_batch_fleet", "run_sdk_fleet"]

SDK_WORKERS = ("asyncio", "trio", "asyncio")
BATCH_WORKERS = ("asyncio", "trio")
MAKESPAN_TARGET = 1.10
DEFAULT_MARGIN = 0.05  # the second bucket configuration's throttle runs this far below the provider
POLICIES = ("bucket", "window")
# The window mode's tokens per minute: the provider limits requests only, and a user's TPM would
# be far above what 20 short requests a second send (about 30 tokens each, max_tokens counted).
WINDOW_TPM = 10_000_000.0
WINDOW_MARGIN = 0.03  # the OpenAI preset's margin (the batch CLI's --provider openai has no other)
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """One fleet benchmark's parameters.

    Attributes:
        total: requests of the whole fleet per run (split evenly among its processes).
        rate: the provider's limit, requests per second (in any 1 s window).
        throttle_rate: the shared throttle's rate, requests per second (``rate`` by default).
        burst: the shared throttle's burst, requests (1: evenly spaced, as the window needs).
        max_concurrent: requests in flight per process.
        latency: the provider's response time range, seconds.
        tasks: SDK fleet: tasks per worker process, each asking in turn until the worker's
            share is done (``None``: one task per request, all started at once).
        max_batch: ``RedisThrottle``'s ``max_batch`` in the SDK workers (the batch CLI keeps its
            default).
        policy: ``"bucket"``: ``GCRALimit(limit, per=1.0, burst=burst)``; ``"window"``: OpenAI's
            preset at ``rpm = 60 * limit`` (``burst`` unused), see the module's docstring.
        margin: the window mode's margin, seconds (the preset's; another only for the SDK
            fleet: the batch CLI's preset has no such option).
    """

    total: int = 240
    rate: float = 20.0
    throttle_rate: float | None = None
    burst: float = 1.0
    max_concurrent: int = 8
    latency: tuple[float, float] = (0.02, 0.1)
    max_batch: int | None = None
    tasks: int | None = None
    policy: str = "bucket"
    margin: float = WINDOW_MARGIN

    @property
    def limit(self) -> float:
        return self.rate if self.throttle_rate is None else self.throttle_rate

    @property
    def label(self) -> str:
        """How the throttle is configured, for the run's line."""
        if self.policy == "window":
            return f"OpenAI preset (windows of {1 + self.margin:g} s) at {self.limit:g}/s"
        return f"throttle at {self.limit:g}/s"

    @property
    def ideal(self) -> float:
        """Seconds the total takes at the provider's rate."""
        return self.total / self.rate


@dataclass(slots=True)
class FleetRun:
    """What one fleet run measured."""

    kind: str
    total: int
    ideal: float
    makespan: float = math.nan
    rejected: int = 0  # 429s the provider answered
    admitted: int = 0  # requests the provider admitted
    succeeded: int = 0  # 2xx results the clients got
    failed: int = 0  # requests that ended in an error for the client
    max_in_window: int = 0  # the most admissions in any 1 s window
    consecutive: int = 0  # the provider's limit + 1
    tightest: float = math.nan  # the fewest seconds that many consecutive admissions spanned
    provider_span: float = math.nan  # the first arrival to the last response, at the provider
    lead_in: float = math.nan  # SDK fleet: "go" to the first arrival at the provider
    early: list[float] = field(default_factory=list)  # see _early
    rejected_at: list[float] = field(default_factory=list)  # each 429's arrival, s after the first
    early_read: list[float] = field(default_factory=list)  # as early, by when the body was read
    early_left: list[float] = field(default_factory=list)  # by when it left its worker (SDK)
    trip: tuple[float, float, float] = (math.nan, math.nan, math.nan)  # see _trip
    workers: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.makespan / self.ideal

    @property
    def passed(self) -> bool:
        return (
            not self.problems
            and self.rejected == 0
            and self.succeeded == self.total
            and self.ratio <= MAKESPAN_TARGET
        )

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        problems = f"; {'; '.join(self.problems)}" if self.problems else ""
        return (
            f"{verdict}  {self.kind}: {self.succeeded}/{self.total} succeeded, "
            f"{self.rejected} rejected (429), makespan {self.makespan:.2f} s vs ideal "
            f"{self.ideal:.2f} s = {self.ratio:.3f}x (target <= {MAKESPAN_TARGET:.2f}x); "
            f"at most {self.max_in_window} admitted in any 1 s; {len(self.workers)} processes"
            f"{problems}"
        )


# -- the provider, with a record of when each response ended ---------------------------------


ADMITTED_HEADER = "x-fleet-admitted"  # the SDK workers' wall-clock time of each admission


class _Recorder:
    """An ASGI wrapper: the wall-clock time each request arrived, its body was read (when the
    provider counts it) and its response ended; and for the SDK fleet, how long after its
    admission each request arrived."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.arrivals: list[float] = []
        self.ends: list[float] = []
        self.statuses: list[tuple[float, int]] = []  # (arrival, status), in arrival order
        self.read_statuses: list[tuple[float, int]] = []  # (body read, status)
        self.trips: list[float] = []  # arrival - admission, seconds (SDK fleet)
        self.left_statuses: list[tuple[float, int]] = []  # (admission, status) (SDK fleet)

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrival = time.time()
        self.arrivals.append(arrival)
        left = math.nan
        for header, value in scope.get("headers", ()):
            if header.decode("latin-1").lower() == ADMITTED_HEADER:
                left = float(value)
                self.trips.append(arrival - left)
        read = arrival

        async def recording_receive() -> MutableMapping[str, Any]:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                read = time.time()
            return message

        async def recording_send(message: MutableMapping[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.start":
                self.statuses.append((arrival, message["status"]))
                self.read_statuses.append((read, message["status"]))
                if not math.isnan(left):
                    self.left_statuses.append((left, message["status"]))
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.ends.append(time.time())

        await self.app(scope, recording_receive, recording_send)


def _tightest(times: list[float], count: int) -> float:
    """The fewest seconds any ``count`` consecutive admissions spanned (NaN if fewer)."""
    ordered = sorted(times)
    spans = [ordered[i + count - 1] - ordered[i] for i in range(len(ordered) - count + 1)]
    return min(spans) if spans else math.nan


def _early(statuses: list[tuple[float, int]], allowance: int) -> list[float]:
    """For each 429, how much sooner than 1 s after the ``allowance``-th admission before it
    it arrived (seconds): the margin that would have spared it."""
    admitted: list[float] = []
    early = []
    for arrival, status in sorted(statuses):
        if status == 429 and len(admitted) >= allowance:
            early.append(1.0 - (arrival - admitted[-allowance]))
        elif status != 429:
            admitted.append(arrival)
    return early


def _trip(trips: list[float]) -> tuple[float, float, float]:
    """The SDK fleet's admission-to-arrival times: the median, the 99th percentile and the
    longest, seconds (NaN without them)."""
    if not trips:
        return (math.nan, math.nan, math.nan)
    ordered = sorted(trips)
    return (
        ordered[len(ordered) // 2],
        ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)],
        ordered[-1],
    )


def _referee(result: FleetRun, server: Any, recorder: _Recorder, config: FleetConfig) -> None:
    result.early = _early(recorder.statuses, math.floor(config.rate))
    result.early_read = _early(recorder.read_statuses, math.floor(config.rate))
    result.early_left = _early(recorder.left_statuses, math.floor(config.rate))
    result.trip = _trip(recorder.trips)
    if recorder.statuses:
        first = min(arrival for arrival, _ in recorder.statuses)
        result.rejected_at = sorted(a - first for a, status in recorder.statuses if status == 429)
    if recorder.arrivals and recorder.ends:
        result.provider_span = max(recorder.ends) - min(recorder.arrivals)
    stats = server.stats
    result.rejected = stats.rate_limited
    result.admitted = stats.admitted
    result.max_in_window = stats.max_requests_in(1.0)
    result.consecutive = math.floor(config.rate) + 1
    result.tightest = _tightest([a.time for a in stats.admissions], result.consecutive)


# -- the SDK fleet ------------------------------------------------------------------------------


async def _sdk_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One worker process: ``args.requests`` chat completions through the shared throttle."""
    import httpx2
    import openai

    from throttle_trio.httpx2 import ThrottledTransport
    from throttle_trio.redis import DEFAULT_MAX_BATCH, GCRALimit, RedisThrottle, client_from_url

    outcomes: dict[str, int] = {}
    async with client_from_url(args.redis) as redis:
        if args.policy == "window":
            throttle = RedisThrottle.for_openai(
                redis,
                args.name,
                rpm=args.rate * 60,
                tpm=WINDOW_TPM,
                margin=args.margin,
                max_concurrent=args.max_concurrent,
                max_batch=args.max_batch or DEFAULT_MAX_BATCH,
            )
        else:
            throttle = RedisThrottle(
                redis,
                args.name,
                requests=GCRALimit(args.rate, per=1.0, burst=args.burst),
                max_concurrent=args.max_concurrent,
                max_batch=args.max_batch or DEFAULT_MAX_BATCH,
            )

        class Stamped(httpx2.AsyncBaseTransport):
            """Sends each request with the time it left the throttle (for the trip times)."""

            def __init__(self) -> None:
                self.inner = httpx2.AsyncHTTPTransport()

            async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
                request.headers[ADMITTED_HEADER] = repr(time.time())
                return await self.inner.handle_async_request(request)

            async def aclose(self) -> None:
                await self.inner.aclose()

        transport = ThrottledTransport(Stamped(), throttle=throttle)
        async with (
            httpx2.AsyncClient(transport=transport) as http,
            openai.AsyncOpenAI(
                base_url=args.base_url, api_key="sk-fleet", http_client=http, max_retries=0
            ) as client,
        ):

            async def ask(number: int) -> None:
                try:
                    await client.chat.completions.create(
                        model="fake-llm",
                        messages=[{"role": "user", "content": f"Question {number}"}],
                        max_tokens=20,
                    )
                    outcome = "succeeded"
                except openai.APIError as exc:  # a 429 the transport gave up on, say
                    outcome = type(exc).__name__
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

            # Warm up: the SDK's first call (its platform headers, the response models) against
            # an unlimited provider, and the throttle's connection and script, so that the
            # clock measures the fleet, not each process's first-call costs.
            async with (
                httpx2.AsyncClient() as plain,
                openai.AsyncOpenAI(
                    base_url=args.warm_url, api_key="sk-warm", http_client=plain, max_retries=0
                ) as warm,
            ):
                await warm.chat.completions.create(
                    model="fake-llm", messages=[{"role": "user", "content": "warm"}], max_tokens=5
                )
            await throttle.state()
            print("ready", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)  # "go"
            started = time.time()
            numbers = iter(range(args.requests))

            async def asker() -> None:
                for number in numbers:
                    await ask(number)

            async with anyio.create_task_group() as tg:
                for _ in range(min(args.tasks or args.requests, args.requests)):
                    tg.start_soon(asker)
            ended = time.time()
        stats = throttle.statistics()
    return {
        "backend": args.backend,
        "pid": os.getpid(),
        "started": started,
        "ended": ended,
        "outcomes": outcomes,
        "admitted": stats.admitted,
        "round_trips": stats.round_trips,
        "rejections": stats.rejections,
        "pauses": stats.pauses,
        "rate_cuts": stats.rate_cuts,
    }


async def _read_line(process: Process, buffer: bytearray) -> bytes:
    """The next line of a worker's stdout (``b""`` at its end)."""
    assert process.stdout is not None
    while b"\n" not in buffer:
        try:
            buffer += await process.stdout.receive()
        except anyio.EndOfStream:
            line = bytes(buffer)
            buffer.clear()
            return line
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def _deadline(config: FleetConfig) -> float:
    return 4 * config.ideal + 60  # a run that stalls fails instead of hanging


async def run_sdk_fleet(redis_url: str, config: FleetConfig) -> FleetRun:
    """One run of the SDK fleet against a fresh provider, under a fresh throttle name."""
    from throttle_trio.testing import FakeLLMServer, serve

    server = FakeLLMServer(rpm=round(config.rate * 60), mode="openai", latency=config.latency)
    recorder = _Recorder(server)
    kind = f"SDK fleet ({', '.join(SDK_WORKERS)}), {config.label}"
    result = FleetRun(kind, config.total, config.ideal)
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    with anyio.fail_after(_deadline(config)):
        async with anyio.create_task_group() as tg:
            address = await tg.start(serve, recorder)
            warm = await tg.start(serve, FakeLLMServer())  # unlimited, for the warm-up calls
            processes: list[tuple[Process, bytearray]] = []
            try:
                for backend, share in zip(
                    SDK_WORKERS, _shares(config.total, len(SDK_WORKERS)), strict=True
                ):
                    command = [
                        *(sys.executable, "-m", "bench.fleet", "worker", backend),
                        *("--redis", redis_url, "--base-url", address.base_url, "--name", name),
                        *("--warm-url", warm.base_url),
                        *("--rate", repr(config.limit), "--burst", repr(config.burst)),
                        *("--requests", str(share), "--max-concurrent", str(config.max_concurrent)),
                        *("--max-batch", str(config.max_batch or 0)),
                        *("--tasks", str(config.tasks or 0)),
                        *("--policy", config.policy, "--margin", repr(config.margin)),
                    ]
                    process = await anyio.open_process(command, stderr=None, cwd=ROOT)
                    processes.append((process, bytearray()))
                for process, buffer in processes:
                    ready = await _read_line(process, buffer)
                    if ready != b"ready":
                        raise RuntimeError(f"a worker did not start: {ready!r}")
                go = time.time()
                for process, _ in processes:
                    assert process.stdin is not None
                    await process.stdin.send(b"go\n")
                for process, buffer in processes:
                    report = await _read_line(process, buffer)
                    if await process.wait() != 0 or not report:
                        result.problems.append(f"a worker exited with {process.returncode}")
                        continue
                    result.workers.append(json.loads(report))
            finally:
                for process, _ in processes:
                    if process.returncode is None:
                        process.kill()
                        with anyio.CancelScope(shield=True):
                            await process.wait()
            tg.cancel_scope.cancel()  # stop the provider
    _referee(result, server, recorder, config)
    for worker in result.workers:
        for outcome, count in worker["outcomes"].items():
            if outcome == "succeeded":
                result.succeeded += count
            else:
                result.failed += count
    if result.workers:
        result.makespan = max(worker["ended"] for worker in result.workers) - go
        for worker in result.workers:
            worker["started"] = round(worker["started"] - go, 4)  # seconds after "go"
            worker["ended"] = round(worker["ended"] - go, 4)
    if recorder.arrivals:
        result.lead_in = min(recorder.arrivals) - go
    return result


# -- the batch CLI fleet ------------------------------------------------------------------------


def _write_input(path: Path, part: int, count: int) -> None:
    with path.open("w", encoding="utf-8") as file:
        for number in range(count):
            body = {
                "model": "fake-llm",
                "messages": [{"role": "user", "content": f"Part {part}, question {number}"}],
                "max_tokens": 20,
            }
            line = {"custom_id": f"p{part}-{number}", "url": "/v1/chat/completions", "body": body}
            file.write(json.dumps(line) + "\n")


async def run_batch_fleet(redis_url: str, config: FleetConfig) -> FleetRun:
    """One run of the batch CLI fleet against a fresh provider, under a fresh throttle name."""
    from throttle_trio.testing import FakeLLMServer, serve

    server = FakeLLMServer(rpm=round(config.rate * 60), mode="openai", latency=config.latency)
    recorder = _Recorder(server)
    kind = f"batch CLI fleet ({', '.join(BATCH_WORKERS)}), {config.label}"
    result = FleetRun(kind, config.total, config.ideal)
    name = f"batch-fleet-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as directory:
        folder = Path(directory)
        with anyio.fail_after(_deadline(config)):
            async with anyio.create_task_group() as tg:
                address = await tg.start(serve, recorder)

                async def batch(part: int, backend: str, count: int) -> None:
                    source, output = folder / f"part-{part}.jsonl", folder / f"out-{part}.jsonl"
                    _write_input(source, part, count)
                    limits = (
                        ["--provider", "openai", "--tpm", repr(WINDOW_TPM)]
                        if config.policy == "window"
                        else ["--burst", repr(config.burst / config.limit)]
                    )
                    command = [
                        *(sys.executable, "-m", "throttle_trio.cli", "--backend", backend),
                        *("batch", str(source), "-o", str(output)),
                        *("--base-url", address.base_url, "--rpm", repr(config.limit * 60)),
                        *limits,
                        *("--max-concurrent", str(config.max_concurrent)),
                        *("--redis", redis_url, "--name", name),
                    ]
                    started = time.time()
                    done = await anyio.run_process(command, check=False, cwd=ROOT)
                    ended = time.time()
                    statuses: dict[str, int] = {}
                    for line in output.read_text(encoding="utf-8").splitlines():
                        answer = json.loads(line)["response"]
                        status = "no response" if answer is None else str(answer["status_code"])
                        statuses[status] = statuses.get(status, 0) + 1
                    report = done.stderr.decode(errors="replace").strip().splitlines()
                    result.workers.append(
                        {
                            "backend": backend,
                            "exit": done.returncode,
                            "statuses": statuses,
                            "seconds": ended - started,
                            "report": report[-3:],
                        }
                    )
                    if done.returncode != 0:
                        result.problems.append(f"a batch process exited with {done.returncode}")
                    result.succeeded += statuses.get("200", 0)
                    result.failed += count - statuses.get("200", 0)

                async with anyio.create_task_group() as workers:
                    for part, (backend, count) in enumerate(
                        zip(BATCH_WORKERS, _shares(config.total, len(BATCH_WORKERS)), strict=True)
                    ):
                        workers.start_soon(batch, part, backend, count)
                tg.cancel_scope.cancel()  # stop the provider
    _referee(result, server, recorder, config)
    result.makespan = result.provider_span
    return result


# -- running, printing, judging ------------------------------------------------------------------


def _describe(configs: list[FleetConfig]) -> str:
    config = configs[0]
    throttles = []
    for policy, form in (
        ("bucket", f"GCRALimit(rate, per=1.0, burst={config.burst:g})"),
        (
            "window",
            f"RedisThrottle.for_openai(rpm=60 * rate, tpm={WINDOW_TPM:.0f}, "
            f"margin={config.margin:g})",
        ),
    ):
        rates = " and ".join(f"{c.limit:g}/s" for c in configs if c.policy == policy)
        if rates:
            throttles.append(f"{form} at {rates}")
    return (
        f"{config.total} requests per run; provider: at most {config.rate:g} requests in any 1 s "
        f"(FakeLLMServer mode='openai', rpm={round(config.rate * 60)}, latency "
        f"{config.latency[0]:g}-{config.latency[1]:g} s); shared throttle: "
        f"{'; '.join(throttles)}; max_concurrent={config.max_concurrent} per process; ideal "
        f"{config.ideal:.2f} s (at the provider's rate)"
    )


def _print_run(number: int, result: FleetRun) -> None:
    print(f"run {number}: {result.line()}", flush=True)
    lead_in = (
        "" if math.isnan(result.lead_in) else f" (first request {result.lead_in:.3f} s after go)"
    )
    print(
        f"       provider's span {result.provider_span:.2f} s{lead_in}; "
        f"{result.admitted} admitted; the tightest {result.consecutive} consecutive "
        f"admissions spanned {result.tightest:.4f} s; {result.failed} failed; the 429s arrived "
        f"{', '.join(f'{e * 1000:.1f}' for e in result.early) or '-'} ms too early by "
        f"arrival, {', '.join(f'{e * 1000:.1f}' for e in result.early_read) or '-'} ms by when "
        f"the provider had read the body (as it counts), "
        f"{', '.join(f'{e * 1000:.1f}' for e in result.early_left) or '-'} ms by when it left its "
        f"worker (SDK fleet), "
        f"{', '.join(f'{t:.2f}' for t in result.rejected_at) or '-'} s after the first request",
        flush=True,
    )
    if not math.isnan(result.trip[0]):
        median, p99, longest = (f"{t * 1000:.1f}" for t in result.trip)
        print(
            f"       admission to arrival at the provider: median {median} ms, 99th percentile "
            f"{p99} ms, longest {longest} ms",
            flush=True,
        )
    for worker in result.workers:
        print(f"       {json.dumps({k: v for k, v in worker.items() if k != 'pid'})}", flush=True)


def measure(
    configs: list[FleetConfig], *, runs: int, kinds: tuple[str, ...] = ("sdk", "batch")
) -> list[FleetRun]:
    """``runs`` rounds; in each, every configuration of every fleet kind in turn (side by
    side: load from other jobs hits them alike).  Each run is printed as it ends."""
    from throttle_trio.testing import redis_server

    results: list[FleetRun] = []
    with redis_server() as redis:
        url = f"redis://127.0.0.1:{redis.port}/0"
        for number in range(1, runs + 1):
            for config in configs:
                if "sdk" in kinds:
                    results.append(anyio.run(run_sdk_fleet, url, config))
                    _print_run(number, results[-1])
                if "batch" in kinds:
                    results.append(anyio.run(run_batch_fleet, url, config))
                    _print_run(number, results[-1])
    return results


def summary(results: list[FleetRun]) -> list[str]:
    """One line per fleet kind and throttle rate: every run's 429s and makespan ratio."""
    kinds: dict[str, list[FleetRun]] = {}
    for result in results:
        kinds.setdefault(result.kind, []).append(result)
    lines = []
    for kind, runs in kinds.items():
        passed = sum(r.passed for r in runs)
        lines.append(
            f"{'PASS' if passed == len(runs) else 'FAIL'}  {kind}: {passed}/{len(runs)} runs met "
            f"both targets; 429s per run {', '.join(str(r.rejected) for r in runs)} (target 0); "
            f"makespan {', '.join(f'{r.ratio:.3f}x' for r in runs)} of ideal (target <= "
            f"{MAKESPAN_TARGET:.2f}x)"
        )
    return lines


def _configs(
    total: int,
    rate: float,
    throttle_rates: list[float] | None,
    policies: tuple[str, ...] = POLICIES,
    **options: Any,
) -> list[FleetConfig]:
    """Each policy's configurations: a bucket at the provider's rate and 5% below it, the
    windows at the provider's rate (``throttle_rates``: those instead, for each policy)."""
    configs = []
    for policy in policies:
        if throttle_rates:
            rates = throttle_rates
        elif policy == "bucket":
            rates = [rate, rate * (1 - DEFAULT_MARGIN)]
        else:
            rates = [rate]
        configs += [
            FleetConfig(total=total, rate=rate, throttle_rate=limit, policy=policy, **options)
            for limit in rates
        ]
    return configs


def run(settings: Settings) -> Section:
    """The fleet as a section of ``python -m bench --only fleet`` (quick: one run, 100
    requests; full: 3 runs of 240)."""
    from ._report import Check, Section, Table, fmt

    started = time.perf_counter()
    configs = _configs(100 if settings.quick else 240, 20.0, None)
    section = Section(
        "Fleet: processes sharing one limit through Redis",
        "`python -m bench.fleet`: " + _describe(configs) + ".",
    )
    try:
        results = measure(configs, runs=1 if settings.quick else 3)
    except FileNotFoundError as missing:  # no redis-server
        section.notes.append(f"skipped: {missing}")
        section.seconds = time.perf_counter() - started
        return section
    table = Table(["fleet", "succeeded", "429s", "makespan s", "x ideal", "max in 1 s"])
    for result in results:
        table.add(
            result.kind,
            f"{result.succeeded}/{result.total}",
            str(result.rejected),
            fmt(result.makespan, 2),
            f"{result.ratio:.3f}x",
            str(result.max_in_window),
        )
    for line in summary(results):
        verdict, _, rest = line.partition("  ")
        label, _, detail = rest.partition(": ")
        section.checks.append(Check(f"fleet: {label}", verdict == "PASS", detail))
    section.tables.append(table)
    section.seconds = time.perf_counter() - started
    return section


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        worker = argparse.ArgumentParser(prog="python -m bench.fleet worker")
        worker.add_argument("backend", choices=["asyncio", "trio"])
        for option in ("--redis", "--base-url", "--warm-url", "--name"):
            worker.add_argument(option, required=True)
        worker.add_argument("--rate", type=float, required=True)
        worker.add_argument("--burst", type=float, required=True)
        worker.add_argument("--requests", type=int, required=True)
        worker.add_argument("--max-concurrent", type=int, required=True)
        worker.add_argument("--max-batch", type=int, default=0)
        worker.add_argument("--tasks", type=int, default=0)
        worker.add_argument("--policy", choices=POLICIES, default="bucket")
        worker.add_argument("--margin", type=float, default=WINDOW_MARGIN)
        args = worker.parse_args(argv[1:])
        print(json.dumps(anyio.run(_sdk_worker, args, backend=args.backend)), flush=True)
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--total", type=int, default=240, help="requests per run (240)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each fleet (3)")
    parser.add_argument("--rate", type=float, default=20.0, help="the provider's limit, per s")
    parser.add_argument(
        "--throttle-rate",
        type=float,
        action="append",
        help="a shared throttle's rate, per s (repeatable; default: --rate, and for the bucket "
        f"also {1 - DEFAULT_MARGIN:g} x --rate)",
    )
    parser.add_argument(
        "--limit",
        choices=POLICIES,
        action="append",
        help="how the shared limit is configured (repeatable; default: both): bucket, a "
        "GCRALimit with --burst; window, OpenAI's preset (RedisThrottle.for_openai; the batch "
        "CLI's --provider openai): a sliding window of the rate over 1.03 s, paced",
    )
    parser.add_argument("--burst", type=float, default=1.0, help="the bucket's burst, requests (1)")
    parser.add_argument(
        "--margin",
        type=float,
        default=WINDOW_MARGIN,
        help=f"the window mode's margin, seconds ({WINDOW_MARGIN:g}, the preset's; another needs "
        "--only sdk: the batch CLI's preset has no such option)",
    )
    parser.add_argument("--max-concurrent", type=int, default=8, help="per process (8)")
    parser.add_argument("--max-batch", type=int, help="RedisThrottle max_batch (SDK fleet)")
    parser.add_argument(
        "--tasks", type=int, help="SDK fleet: tasks per worker (default: one per request)"
    )
    parser.add_argument(
        "--only", choices=["sdk", "batch"], action="append", help="one fleet kind (repeatable)"
    )
    args = parser.parse_args(argv)
    if args.margin != WINDOW_MARGIN and "batch" in (args.only or ("batch",)):
        parser.error("--margin needs --only sdk (the batch CLI's --provider openai has no margin)")
    configs = _configs(
        args.total,
        args.rate,
        args.throttle_rate,
        tuple(args.limit or POLICIES),
        burst=args.burst,
        max_concurrent=args.max_concurrent,
        max_batch=args.max_batch,
        tasks=args.tasks,
        margin=args.margin,
    )
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{_describe(configs)}; load average at start {load}", flush=True)
    results = measure(configs, runs=args.runs, kinds=tuple(args.only or ("sdk", "batch")))
    print()
    lines = summary(results)
    print("\n".join(lines))
    failed = sum(line.startswith("FAIL") for line in lines)
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{len(lines) - failed} of {len(lines)} targets met; load average at the end {load}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
