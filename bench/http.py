"""``python -m bench.http``: LLM calls over real loopback HTTP, against the fake provider.

Issue 4's benchmark.  Every contender sends the same seeded chat-completion workload, through a
real HTTP stack (httpx2 over TCP on 127.0.0.1), to :class:`throttle_trio.testing.FakeLLMServer`
served by :func:`throttle_trio.testing.serve` (hypercorn) in settle mode: per-key token buckets
holding one minute of capacity (RPM 3,000, TPM 300,000), each request charged ``prompt +
max_tokens`` on arrival and settled to its real usage when it completes, a 429 with
``retry-after``/``retry-after-ms`` when it does not fit.  Latency 0.05-0.3 s; prompts 50-500
tokens, ``max_tokens`` 100-200; the server writes 25-100 % of ``max_tokens``.  Tokens bind:
about 370 tokens per request make 300,000 TPM worth about 800 requests a minute.

**The server runs in its own OS process** (this module, ``--serve``, started with
``subprocess``), a fresh one for each contender, with the contender's own API key.  In-process,
hypercorn and the fake's bookkeeping would share the client's event loop and GIL: the server's
CPU would slow the client (unfairly to the CPU-heavy contenders), and a stall of the client's
loop would stall the referee's clock too, hiding exactly the bursts a stall causes.  A separate
process is also how a real provider sits.  The child prints its URL, and on request a summary of
its own accounting (the admission log's first and last times, the tokens charged, the 429s),
which is what the table reports: the server is the referee, not the client's counters.

**Throughput ÷ limit.**  A bucket that starts full admits at most ``C + r·T`` in ``T`` seconds
(C its capacity, one minute's worth), so a run that lasts under a minute is mostly the initial
burst, which every contender gets for free.  The figure reported is the *sustained* rate, what
went through beyond that burst: ``(U - C) / T`` against ``r``, where ``U`` is what the server
finally charged (net, after settling: the tokens of the completed requests) and ``T`` the time
from its first to its last admission.  The server's own limit guarantees that it is at most 1;
a client that keeps the server's bucket empty from the start to its last request reaches 1.
It is ``T_min / T``: the theoretical minimum time to the last admission over the actual one.
Both limits are computed; the table shows the binding one (tokens, for this workload).

Latency is per request, from its first attempt on the wire (recorded by a pass-through transport
under everything else) to its final response, so it includes retries and their backoffs but not
the time queued before the first attempt; only successful requests are counted.

The contenders (one after the other, each in a fresh event loop, against a fresh server):

1. ``asyncio.gather`` of every call through the official SDK (``openai.AsyncOpenAI``, its
   default ``max_retries=2``, which honour ``retry-after-ms`` up to two minutes).
2. The seed article's ``LLMThrottler`` (its ``SlidingWindowLimiter``, RPM per minute, then an
   ``asyncio.Semaphore``) and its ``call_with_retry_after`` loop (3 attempts, sleep
   ``retry-after``), posting with an ``httpx2.AsyncClient`` as the article does with httpx.  Its
   semaphore is sized by the article's rule of thumb, RPM / 60 x mean latency.
3. aiometer ``run_all(max_per_second=RPM/60, max_at_once=`` the same rule ``)`` around SDK calls
   with the SDK's default retries.
4. throttle_trio: ``openai.AsyncOpenAI(http_client=httpx2.AsyncClient(transport=
   ThrottledTransport(httpx2.AsyncHTTPTransport(), throttle=Throttle(requests=TokenBucket(RPM,
   per=60, burst=RPM), tokens=TokenBucket(TPM, per=60, burst=TPM), max_concurrent=64))),
   max_retries=0)``, as the README writes it, every request a task in one task group.  The
   burst is one minute of each limit: the fake's buckets hold exactly that and start full, so
   a client bucket that starts full with the same burst is the natural match; the sustained
   figure credits the burst to no one.  ``max_concurrent=64`` is a guard, not the limiter: the
   rate limits decide, and 64 is well above what they need (about 3 in flight at 800 requests
   a minute).  Rows:

   * buckets start full, on asyncio and on trio (a bucket that starts full refills from when
     the transport reports its first request on the wire, ``Reservation.sent``; the reports
     answering its opening wave lower nothing: see ``Throttle.observe``);
   * buckets start ``START_SHORT`` (1 s) of refill below full (``initial_tokens=``), burst
     unchanged: a margin of the user's own for the first requests' trip to the server.

``--token-factor`` (issue 12's third target): the OpenAI preset through the httpx2 transport
against ``mode="openai"`` whose tokenizer is not the client's: the server counts each model's
prompt tokens times a factor drawn per run and per model in 0.7-1.5
(``FakeLLMServer(token_factor=(0.7, 1.5), seed=...)``, three models), and charges
``max_tokens`` up front.  Per run: the factors, the 429s per request (target <= 1 %) and the
time from the first admission to the last over the fastest schedule the provider allows for
the requests as it counts them (target <= 1.15x), with ``learn_estimates`` on and off, the
requests taken by ``--pool`` tasks in turn (16) or all at once (``--pool 0``).

``--quick`` runs 1,000 requests and skips the trio and "starts short" rows (about a minute; its
sustained phase lasts about 10 s, so one-off losses of a tenth of a second show as 1 %).  Every
run is bounded: cancelled after ``2 x`` its expected minimum plus 30 s, and reported.
``--runs N`` runs each row N times (issue 12's second target is counted over ten runs) and
ends with each of our rows' runs meeting the target.  ``--warmup`` and ``--margin`` give the
presets' parameters of those names (with ``--presets`` or ``--token-factor``), to measure what
each costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import random
import select
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.to_thread
import httpx2
import openai

import throttle_trio as tt
from throttle_trio.httpx2 import ThrottledTransport
from throttle_trio.testing import FakeLLMServer, FakeServerStats, serve
from throttle_trio.testing._fake_limits import KeyLimits, Metric

from ._report import Check, Table, fmt
from .baselines import BlogSlidingWindow

__all__ = ["Item", "ServerSummary", "Workload", "main"]

RPM = 3_000
TPM = 300_000
MINUTE = 60.0
LATENCY = (0.05, 0.3)
PROMPT_TOKENS = (50, 500)
MAX_TOKENS = (100, 200)
COMPLETION = (0.25, 1.0)  # the fake's default: a fraction of max_tokens, drawn uniformly
MODEL = "fake-llm"
TT_MAX_CONCURRENT = 64
ARTICLE_CONCURRENCY = math.ceil(RPM / MINUTE * sum(LATENCY) / 2)  # the article's rule: 9
TARGET = 0.97
ROOT = Path(__file__).resolve().parent.parent
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed")


# --- the workload ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    index: int
    prompt: str  # 4 characters per token, as both the fake and the library count
    max_tokens: int
    model: str = MODEL

    @property
    def prompt_tokens(self) -> int:
        return math.ceil(len(self.prompt) / 4)

    @property
    def estimate(self) -> int:
        """What the server charges on arrival."""
        return self.prompt_tokens + self.max_tokens

    @property
    def expected_usage(self) -> float:
        return self.prompt_tokens + self.max_tokens * sum(COMPLETION) / 2


@dataclass(frozen=True, slots=True)
class Workload:
    items: tuple[Item, ...]

    @classmethod
    def generate(cls, n: int, seed: int, models: tuple[str, ...] = (MODEL,)) -> Workload:
        """``n`` requests; with several ``models``, each request names one drawn at random
        (drawn after the rest, so the prompts and bounds are those of one model)."""
        rng = random.Random(seed)
        items = []
        for i in range(n):
            tokens = rng.randint(*PROMPT_TOKENS)
            text = " ".join(rng.choice(_WORDS) for _ in range(tokens))
            text = (text + " " + text)[: 4 * tokens]
            items.append(Item(i, text, rng.randint(*MAX_TOKENS)))
        if len(models) > 1:
            items = [dataclasses.replace(item, model=rng.choice(models)) for item in items]
        return cls(tuple(items))

    @property
    def estimate_tokens(self) -> int:
        return sum(item.estimate for item in self.items)

    @property
    def expected_usage(self) -> float:
        return sum(item.expected_usage for item in self.items)

    def expected_minimum(self) -> float:
        """Seconds a perfect client needs to its last admission (full buckets at the start)."""
        tokens = (self.expected_usage - TPM) / (TPM / MINUTE)
        requests = (len(self.items) - RPM) / (RPM / MINUTE)
        return max(0.0, tokens, requests)


# --- the server, in its own process ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSummary:
    """The fake server's own accounting of one contender's run."""

    received: int
    admitted: int
    rate_limited: int
    errors: int
    completed: int
    in_flight: int
    tokens_charged: int  # net: estimates settled to the real usage
    first_admission: float  # the server's clock
    last_admission: float
    cpu_seconds: float  # the server process's CPU time

    @classmethod
    def of(cls, stats: FakeServerStats, cpu_seconds: float) -> ServerSummary:
        times = [admission.time for admission in stats.admissions]
        return cls(
            received=stats.received,
            admitted=stats.admitted,
            rate_limited=stats.rate_limited,
            errors=stats.errors,
            completed=stats.completed,
            in_flight=stats.in_flight,
            tokens_charged=stats.tokens_charged,
            first_admission=min(times, default=math.nan),
            last_admission=max(times, default=math.nan),
            cpu_seconds=cpu_seconds,
        )

    @property
    def span(self) -> float:
        """Seconds from the first admission to the last."""
        return self.last_admission - self.first_admission

    def sustained(self) -> dict[str, float]:
        """Per limit: the rate beyond the initial full bucket, as a fraction of the limit."""
        span = self.span
        if not span > 0:
            return {"tokens": math.nan, "requests": math.nan}
        return {
            "tokens": (self.tokens_charged - TPM) / span / (TPM / MINUTE),
            "requests": (self.admitted - RPM) / span / (RPM / MINUTE),
        }


async def _serve_child(config: dict[str, Any]) -> None:
    """The child process: serve, print the URL, answer ``stats`` lines until stdin closes."""
    server = FakeLLMServer(
        rpm=config["rpm"],
        tpm=config.get("tpm"),
        itpm=config.get("itpm"),
        otpm=config.get("otpm"),
        mode=config.get("mode", "settle"),
        token_factor=_token_factor(config.get("token_factor", 1.0)),
        latency=(config["latency"][0], config["latency"][1]),
        api_keys=[config["key"]],
        seed=config["seed"],
    )
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server)
        print(json.dumps({"base_url": address.base_url}), flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            if line.strip() == "stats":
                for _ in range(500):  # let responses still being sent settle (5 s at most)
                    if not server.stats.in_flight:
                        break
                    await anyio.sleep(0.01)
                summary = ServerSummary.of(server.stats, time.process_time())
                print(json.dumps(dataclasses.asdict(summary)), flush=True)
        tg.cancel_scope.cancel()


def _token_factor(value: Any) -> Any:
    """``token_factor`` from JSON: a [low, high] list is the server's (low, high) range."""
    return (value[0], value[1]) if isinstance(value, list) else value


def _read_line(stream: IO[str], timeout: float) -> str:
    """One line from the child, or ``TimeoutError`` (the child printed nothing in time)."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"the server process said nothing in {timeout:g} s")
    return stream.readline()


class ServerProcess:
    """A fresh fake server in a child process, for one contender."""

    def __init__(self, key: str, seed: int, limits: dict[str, Any] | None = None) -> None:
        config = {"rpm": RPM, "tpm": TPM, "latency": list(LATENCY), "key": key, "seed": seed}
        config.update(limits or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.http", "--serve", json.dumps(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdin is not None
        self._out: IO[str] = self.process.stdout
        self._in: IO[str] = self.process.stdin
        try:
            line = _read_line(self._out, 30.0)
            self.base_url: str = json.loads(line)["base_url"]
        except BaseException:
            self.close()
            raise

    def summary(self) -> ServerSummary:
        self._in.write("stats\n")
        self._in.flush()
        data = json.loads(_read_line(self._out, 30.0))
        return ServerSummary(**data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._in.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# --- what every contender records ------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """One contender's run: where the server is, and what became of each request."""

    workload: Workload
    base_url: str
    key: str
    seed: int
    started: float = math.nan  # time.monotonic(), the clock the server's log uses too
    first_attempt: dict[str, float] = field(default_factory=dict)  # bench id -> monotonic
    attempts: int = 0
    rejected_at: list[float] = field(default_factory=list)  # when each 429 arrived (monotonic)
    ok: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    async def guarded(self, call: Callable[[Item], Awaitable[object]], item: Item) -> None:
        """Make one request's call, recording its outcome and latency."""
        try:
            await call(item)
        except Exception as error:  # an SDK error, the article's RuntimeError: counted, shown
            name = type(error).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
            self.failed += 1
            return
        self.ok += 1
        first = self.first_attempt.get(str(item.index))
        if first is not None:
            self.latencies.append(time.monotonic() - first)


class Recorder(httpx2.AsyncBaseTransport):
    """Passes requests through, noting each request's first attempt and every 429."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, run: Run) -> None:
        self._inner = inner
        self._run = run

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        run = self._run
        run.first_attempt.setdefault(request.headers.get("x-bench-id", ""), time.monotonic())
        run.attempts += 1
        response = await self._inner.handle_async_request(request)
        if response.status_code == 429:
            run.rejected_at.append(time.monotonic())
            if len(run.rejected_at) <= 3:  # what the server said, for the notes
                await response.aread()
                try:
                    error = response.json().get("error", {})
                except ValueError:
                    error = {}
                message = error.get("message", "") if isinstance(error, dict) else ""
                run.notes.append(
                    f"429 at {run.rejected_at[-1] - run.started:.3f} s: {str(message)[:160]}"
                )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _messages(item: Item) -> list[dict[str, str]]:
    return [{"role": "user", "content": item.prompt}]


def _sdk_client(run: Run, http_client: httpx2.AsyncClient, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=run.key, base_url=run.base_url, http_client=http_client, **options
    )


def _sdk_default_http(run: Run) -> httpx2.AsyncClient:
    """The SDK's own default client (its timeout and connection limits), recorded."""
    transport = httpx2.AsyncHTTPTransport(limits=openai.DEFAULT_CONNECTION_LIMITS)
    client: httpx2.AsyncClient = openai.DefaultAsyncHttpxClient(transport=Recorder(transport, run))
    return client


async def _sdk_create(client: openai.AsyncOpenAI, item: Item) -> object:
    return await client.chat.completions.create(
        model=item.model,
        messages=_messages(item),  # type: ignore[arg-type]
        max_tokens=item.max_tokens,
        extra_headers={"x-bench-id": str(item.index)},
    )


Contender = Callable[[Run], Awaitable[None]]


# --- 1. gather + SDK retries ----------------------------------------------------------------


async def gather_sdk(run: Run) -> None:
    async with _sdk_client(run, _sdk_default_http(run)) as client:
        call = functools.partial(_sdk_create, client)
        await asyncio.gather(*(run.guarded(call, item) for item in run.workload.items))


# --- 2. the article's LLMThrottler + call_with_retry_after -----------------------------------


class ArticleLLMThrottler:
    """The article's ``LLMThrottler`` (sliding window first, then the semaphore), over httpx2."""

    def __init__(self, max_concurrent: int = 10, max_per_minute: int = 60) -> None:
        self.semaphore = asyncio.Semaphore(max_concurrent)
        self.rate_limiter = BlogSlidingWindow(max_requests=max_per_minute, window_seconds=60)

    async def call(self, client: httpx2.AsyncClient, item: Item) -> str:
        # First: wait for rate limit slot
        await self.rate_limiter.acquire()
        # Then: wait for concurrency slot
        async with self.semaphore:
            response = await client.post(
                "/chat/completions",
                json={
                    "model": MODEL,
                    "messages": _messages(item),
                    "max_tokens": item.max_tokens,  # the workload's; the article sets none
                },
                headers={"x-bench-id": str(item.index)},
            )
            response.raise_for_status()
            content: str = response.json()["choices"][0]["message"]["content"]
            return content


async def article_call_with_retry_after(
    client: httpx2.AsyncClient, throttler: ArticleLLMThrottler, item: Item, max_retries: int = 3
) -> str:
    """The article's ``call_with_retry_after``, as written (print left out)."""
    for _attempt in range(max_retries):
        try:
            return await throttler.call(client, item)
        except httpx2.HTTPStatusError as e:
            if e.response.status_code == 429:
                retry_after = float(e.response.headers.get("retry-after", "5"))
                await asyncio.sleep(retry_after)
            else:
                raise
    raise RuntimeError(f"Exhausted retries for: {item.prompt[:50]}")


async def article(run: Run) -> None:
    throttler = ArticleLLMThrottler(max_concurrent=ARTICLE_CONCURRENCY, max_per_minute=RPM)
    async with httpx2.AsyncClient(
        base_url=run.base_url,
        headers={"Authorization": f"Bearer {run.key}"},
        timeout=60.0,
        transport=Recorder(httpx2.AsyncHTTPTransport(), run),
    ) as client:
        call = functools.partial(article_call_with_retry_after, client, throttler)
        await asyncio.gather(
            *(run.guarded(call, item) for item in run.workload.items), return_exceptions=True
        )


# --- 3. aiometer + SDK retries --------------------------------------------------------------


async def aiometer_sdk(run: Run) -> None:
    import aiometer  # only for this row: the bench extra (bench.cli imports this module)

    async with _sdk_client(run, _sdk_default_http(run)) as client:
        call = functools.partial(_sdk_create, client)
        await aiometer.run_all(
            [functools.partial(run.guarded, call, item) for item in run.workload.items],
            max_at_once=ARTICLE_CONCURRENCY,
            max_per_second=RPM / MINUTE,
        )


# --- 4. throttle_trio (asyncio or trio) -----------------------------------------------------


START_SHORT = 1.0  # seconds of refill the "starts short" rows leave out of the initial fill


async def throttle_trio_sdk(run: Run, *, start_short: float = 0.0) -> None:
    """The SDK (``max_retries=0``) over the throttled transport, as the README writes it.

    ``start_short``: the buckets start that many seconds of refill below full (their burst
    stays one minute).
    """

    def bucket(per_minute: int) -> tt.TokenBucket:
        short = per_minute / MINUTE * start_short
        return tt.TokenBucket(
            per_minute,
            per=MINUTE,
            burst=per_minute,
            initial_tokens=per_minute - short if short else None,
        )

    throttle = tt.Throttle(
        requests=bucket(RPM), tokens=bucket(TPM), max_concurrent=TT_MAX_CONCURRENT
    )
    transport = ThrottledTransport(Recorder(httpx2.AsyncHTTPTransport(), run), throttle=throttle)
    http_client = httpx2.AsyncClient(transport=transport)
    try:
        async with _sdk_client(run, http_client, max_retries=0) as client:
            call = functools.partial(_sdk_create, client)
            async with anyio.create_task_group() as tg:
                for item in run.workload.items:
                    tg.start_soon(run.guarded, call, item)
    finally:
        stats = throttle.statistics()
        limits = ", ".join(
            f"{name}: admitted {lim.admitted_cost:,.0f}, refunded {lim.refunded:,.0f}, "
            f"dropped {lim.dropped:,.0f}, waited {lim.wait_time:,.1f} s"
            for name, lim in stats.limits.items()
        )
        run.notes.append(
            f"throttle: admitted {stats.admitted:,}, rejections {stats.rejections}, "
            f"pauses {stats.pauses}, timeouts {stats.timeouts}, mean queue wait "
            f"{stats.total_wait_time / max(1, stats.admitted):,.2f} s, concurrency wait "
            f"{stats.concurrency_wait_time:,.2f} s; {limits}"
        )


# --- the harness ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    slug: str  # names the API key
    backend: str
    run: Contender
    ours: bool = False
    quick: bool = True  # run by --quick too


ENTRIES = (
    Entry("gather + SDK retries (max_retries=2)", "gather", "asyncio", gather_sdk),
    Entry(
        f"article LLMThrottler (window + Semaphore({ARTICLE_CONCURRENCY})) + retry-after loop",
        "article",
        "asyncio",
        article,
    ),
    Entry(
        f"aiometer ({RPM // 60}/s, max_at_once={ARTICLE_CONCURRENCY}) + SDK retries",
        "aiometer",
        "asyncio",
        aiometer_sdk,
    ),
    Entry("throttle_trio, buckets start full", "tt-full", "asyncio", throttle_trio_sdk, ours=True),
    Entry(
        "throttle_trio, buckets start full",
        "tt-full-trio",
        "trio",
        throttle_trio_sdk,
        ours=True,
        quick=False,
    ),
    Entry(
        f"throttle_trio, buckets start {START_SHORT:g} s short",
        "tt-short",
        "asyncio",
        functools.partial(throttle_trio_sdk, start_short=START_SHORT),
        ours=True,
        quick=False,
    ),
)


@dataclass(frozen=True, slots=True)
class Result:
    entry: Entry
    n: int
    cancelled: bool
    wall_seconds: float
    cpu_seconds: float
    run: Run
    server: ServerSummary


def run_entry(
    entry: Entry,
    workload: Workload,
    seed: int,
    cap: float,
    limits: dict[str, Any] | None = None,
) -> Result:
    key = f"sk-bench-{entry.slug}"
    server = ServerProcess(key, seed, limits)
    try:
        run = Run(workload, server.base_url, key, seed)
        cancelled = False

        async def main() -> None:
            nonlocal cancelled
            run.started = time.monotonic()
            with anyio.move_on_after(cap) as scope:
                await entry.run(run)
            cancelled = scope.cancelled_caught

        wall, cpu = time.perf_counter(), time.process_time()
        anyio.run(main, backend=entry.backend)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        summary = server.summary()
    finally:
        server.close()
    if run.errors:
        shown = ", ".join(f"{name} x{count:,}" for name, count in sorted(run.errors.items()))
        run.notes.append(f"requests ended by an exception: {shown}")
    if len(run.rejected_at) != summary.rate_limited:
        run.notes.append(
            f"429s seen by the client {len(run.rejected_at):,}, by the server "
            f"{summary.rate_limited:,}"
        )
    if entry.ours:
        # time.monotonic() is one clock for the whole machine: the server's log reads it too.
        run.notes.append(
            f"the first request reached the server {summary.first_admission - run.started:.3f} s "
            "after the run started"
        )
        if run.rejected_at:
            run.notes.append(
                f"429s between {run.rejected_at[0] - run.started:.2f} and "
                f"{run.rejected_at[-1] - run.started:.2f} s after the start"
            )
    return Result(entry, len(workload.items), cancelled, wall, cpu, run, summary)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0 to 1), linear between the closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _binding(result: Result) -> tuple[str, float]:
    sustained = result.server.sustained()
    name = max(
        sustained,
        key=lambda metric: -math.inf if math.isnan(sustained[metric]) else sustained[metric],
    )
    return name, sustained[name]


def _ratio_cell(result: Result) -> str:
    metric, ratio = _binding(result)
    if math.isnan(ratio) or result.server.tokens_charged <= TPM:
        return "— (within the burst)"
    return f"{ratio:.3f} ({metric})"


def _table(results: list[Result]) -> Table:
    table = Table(
        [
            "contender",
            "loop",
            "ok",
            "failed",
            "unfinished",
            "HTTP attempts",
            "429s",
            "first→last admission (s)",
            "sustained ÷ limit",
            "p50 latency (s)",
            "p99 latency (s)",
            "wall (s)",
            "client CPU (s)",
            "server CPU (s)",
        ],
        caption=(
            "429s, admissions and the sustained rate are the server's own accounting; "
            "'sustained ÷ limit' = (charged - one minute's capacity) / span / rate, "
            "for the binding limit; server CPU includes its process start-up"
        ),
    )
    for r in results:
        s = r.server
        unfinished = r.n - r.run.ok - r.run.failed
        table.add(
            r.entry.name,
            r.entry.backend,
            f"{r.run.ok:,}",
            f"{r.run.failed:,}",
            f"{unfinished:,} (cancelled)" if r.cancelled else f"{unfinished:,}",
            f"{s.received:,}",
            f"{s.rate_limited:,}",
            fmt(s.span, 2),
            _ratio_cell(r),
            fmt(percentile(r.run.latencies, 0.5), 3),
            fmt(percentile(r.run.latencies, 0.99), 3),
            fmt(r.wall_seconds),
            fmt(r.cpu_seconds),
            fmt(s.cpu_seconds),
        )
    return table


def _checks(results: list[Result]) -> list[Check]:
    checks = []
    for r in results:
        if not r.entry.ours:
            continue
        _, ratio = _binding(r)
        s = r.server
        passed = (
            not r.cancelled
            and ratio >= TARGET
            and s.rate_limited == 0
            and r.run.ok == r.n
            and r.run.failed == 0
        )
        checks.append(
            Check(
                f"{r.entry.name} [{r.entry.backend}]: >= {TARGET:.0%} of the limit, zero 429s",
                passed,
                f"sustained {_ratio_cell(r)}, {s.rate_limited} 429s, "
                f"{r.run.ok:,}/{r.n:,} ok{' (cancelled)' if r.cancelled else ''}",
            )
        )
    return checks


def _machine() -> str:
    return (
        f"{datetime.date.today().isoformat()}, {platform.system()} {platform.machine()}, "
        f"nproc {os.cpu_count()}, Python {platform.python_version()}, "
        f"openai {openai.__version__}, httpx2 {httpx2.__version__}"
    )


# --- the provider presets against the matching provider modes (issue 12) ---------------------

PRESET_REQUESTS = 300
PRESET_LIMITS: dict[str, dict[str, Any]] = {
    # OpenAI: 50 requests and 5,000 tokens a second; about 425 tokens per estimate make the
    # tokens bind (about 11 requests a second), the slices set the pace.
    "openai": {"mode": "openai", "rpm": RPM, "tpm": TPM},
    # Anthropic: 50 requests a second; OTPM binds (150 reserved per request, about 94 used),
    # ITPM (about 275 per request) a little below it.
    "anthropic": {"mode": "anthropic", "rpm": RPM, "tpm": None, "itpm": 60_000, "otpm": 24_000},
}
MAKESPAN_TARGET = 1.05


def preset_throttle(
    provider: str, *, warmup: float | None = None, margin: float | None = None
) -> tt.Throttle:
    """The provider's preset for ``PRESET_LIMITS``; ``options`` (``warmup=``, ``margin=``)
    override the preset's defaults (``--warmup``, ``--margin``)."""
    limits = PRESET_LIMITS[provider]
    options: dict[str, Any] = {"warmup": warmup, "margin": margin}
    options = {name: value for name, value in options.items() if value is not None}
    if provider == "openai":
        return tt.openai_throttle(rpm=limits["rpm"], tpm=limits["tpm"], **options)
    return tt.anthropic_throttle(
        rpm=limits["rpm"], input_tpm=limits["itpm"], output_tpm=limits["otpm"], **options
    )


def preset_options(args: argparse.Namespace) -> dict[str, float]:
    """The preset parameters given on the command line (``--warmup``, ``--margin``)."""
    options = {"warmup": args.warmup, "margin": args.margin}
    return {name: value for name, value in options.items() if value is not None}


async def preset_sdk(
    run: Run,
    *,
    provider: str,
    learn: bool = True,
    pool: int = 0,
    initial_ratio: float | None = None,
    options: dict[str, float] | None = None,
) -> None:
    """The provider's SDK (``max_retries=0``) over the throttled transport with its preset
    (``learn``: the transport's ``learn_estimates``, with ``initial_ratio`` its learner's
    prior); every request a task at once, or with ``pool``, that many tasks taking the
    requests one after another.  ``options``: the preset's parameters (``warmup=``, ...)."""
    throttle = preset_throttle(provider, **(options or {}))
    learner: bool | tt.TokenRatioLearner = learn
    if learn and initial_ratio is not None:
        learner = tt.TokenRatioLearner(initial_ratio=initial_ratio)
    transport = ThrottledTransport(
        Recorder(httpx2.AsyncHTTPTransport(), run), throttle=throttle, learn_estimates=learner
    )
    http_client = httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(600, pool=None))
    call: Callable[[Item], Awaitable[object]]
    try:
        if provider == "openai":
            client: Any = _sdk_client(run, http_client, max_retries=0)
            call = functools.partial(_sdk_create, client)
        else:
            import anthropic  # only for this row

            client = anthropic.AsyncAnthropic(
                api_key=run.key,
                base_url=run.base_url.removesuffix("/v1"),
                http_client=http_client,
                max_retries=0,
            )

            async def call(item: Item) -> object:
                return await client.messages.create(
                    model=item.model,
                    max_tokens=item.max_tokens,
                    messages=_messages(item),
                    extra_headers={"x-bench-id": str(item.index)},
                )

        stalls: list[tuple[float, float]] = []

        async def watch_the_loop() -> None:
            # How late a 5 ms sleep wakes: the loop's stalls, which delay admitted requests.
            while True:
                before = time.monotonic()
                await anyio.sleep(0.005)
                late = time.monotonic() - before - 0.005
                if late > 0.02:
                    stalls.append((before - run.started, late))

        async with client, anyio.create_task_group() as tg:
            tg.start_soon(watch_the_loop)
            async with anyio.create_task_group() as requests:
                if pool:
                    queue = iter(run.workload.items)

                    async def worker() -> None:
                        for item in queue:
                            await run.guarded(call, item)

                    for _ in range(pool):
                        requests.start_soon(worker)
                else:
                    for item in run.workload.items:
                        requests.start_soon(run.guarded, call, item)
            tg.cancel_scope.cancel()
        worst = sorted(stalls, key=lambda stall: -stall[1])[:3]
        run.notes.append(
            f"loop stalls above 20 ms: {len(stalls)}; the longest: "
            + ", ".join(f"{late * 1000:.0f} ms at {at:.2f} s" for at, late in worst)
        )
    finally:
        stats = throttle.statistics()
        run.notes.append(
            f"throttle: rejections {stats.rejections}, pauses {stats.pauses}, rates now "
            + ", ".join(f"{name} {lim.rate:,.2f}/s" for name, lim in stats.limits.items())
        )
        if transport.token_ratios is not None:
            learned = transport.token_ratios.statistics()
            run.notes.append(
                "learned ratios: "
                + ", ".join(f"{model} {ratio:.3f}" for model, ratio in learned.ratios.items())
                + f" ({learned.observed} observed)"
            )


def fastest_schedule(
    provider: str, workload: Workload, factor: Callable[[str], float] | None = None
) -> float:
    """Seconds from the first admission to the last that the provider's own enforcement
    allows for these requests in this order (:func:`schedule`), every estimate settled at
    once to its expected usage in settle modes (a lower bound: a real one waits for the
    response).

    ``factor``: the server's ``token_factor`` per model; each prompt is then counted as the
    server counts it, ``ceil(prompt_tokens * factor)``.
    """
    charges = []
    for item in workload.items:
        prompt = item.prompt_tokens
        if factor is not None:
            prompt = math.ceil(round(prompt * factor(item.model), 6))
        charges.append(Charge(prompt, item.max_tokens))
    return schedule(PRESET_LIMITS[provider], charges)


@dataclass(frozen=True, slots=True)
class Charge:
    """One request as the server counts it: its prompt tokens, its output bound, and the
    output its response used (``None``: unknown, the fake's mean fraction of the bound)."""

    prompt: int
    max_tokens: int
    output: int | None = None

    @property
    def used_output(self) -> int:
        if self.output is not None:
            return self.output
        return round(self.max_tokens * sum(COMPLETION) / 2)


def schedule(limits: Mapping[str, Any], charges: Iterable[Charge]) -> float:
    """Seconds from the first admission to the last that the fake's enforcement in
    ``limits["mode"]`` allows for ``charges`` in this order: each admitted at the first
    instant it fits the fake's own :class:`KeyLimits` (one-second slices, as the server's
    default), in Anthropic mode settled at once to its output (a lower bound: the server
    settles when the response completes).  :func:`fastest_schedule` for any limits and any
    requests as the server counted them (``bench.cli``'s files)."""
    per_minute: dict[Metric, int] = {"requests": limits["rpm"]}
    named: tuple[tuple[Metric, str], ...] = (
        ("tokens", "tpm"),
        ("input_tokens", "itpm"),
        ("output_tokens", "otpm"),
    )
    for metric, name in named:
        if limits.get(name) is not None:
            per_minute[metric] = limits[name]
    openai = limits["mode"] == "openai"
    key = (
        KeyLimits(per_minute, 1.0, 0.0)
        if openai
        else KeyLimits(per_minute, None, 0.0, request_slice=1.0)
    )
    now = 0.0
    for charge in charges:
        costs: dict[Metric, int] = {
            "requests": 1,
            "tokens": charge.prompt + charge.max_tokens,
            "input_tokens": charge.prompt,
            "output_tokens": charge.max_tokens,
        }
        while (wait := key.check(costs, now).wait) > 0:
            if math.isinf(wait):
                raise ValueError(f"a request can never fit {dict(per_minute)}: {costs}")
            now += wait
        key.charge(costs, now)
        if not openai:
            unused = charge.used_output - charge.max_tokens
            key.settle({"output_tokens": unused, "tokens": unused}, now)
    return now


@dataclass(frozen=True, slots=True)
class PresetResult:
    provider: str
    backend: str
    run: int
    result: Result
    fastest: float

    @property
    def makespan_ratio(self) -> float:
        return self.result.server.span / self.fastest if self.fastest > 0 else math.nan

    @property
    def passed(self) -> bool:
        r = self.result
        return (
            not r.cancelled
            and r.server.rate_limited == 0
            and r.run.ok == r.n
            and self.makespan_ratio <= MAKESPAN_TARGET
        )


def run_presets(args: argparse.Namespace) -> int:
    """``--presets``: each provider's preset against the matching fake mode, ``--runs`` times
    on each loop; PASS when a run has no 429, every request answered and a makespan within
    ``MAKESPAN_TARGET`` of the fastest schedule the provider allows."""
    n = args.requests or PRESET_REQUESTS
    providers = args.provider or ["openai", "anthropic"]
    backends = args.backend or ["asyncio", "trio"]
    runs = args.runs or 10
    options = preset_options(args)
    results: list[PresetResult] = []
    print(_machine(), flush=True)
    if options:
        shown = ", ".join(f"{name}={value:g}" for name, value in options.items())
        print(f"the presets' defaults overridden: {shown}", flush=True)
    for provider in providers:
        workload = Workload.generate(n, args.seed)
        fastest = fastest_schedule(provider, workload)
        limits = {k: v for k, v in PRESET_LIMITS[provider].items() if v is not None}
        print(
            f"{provider}: {n} requests (seed {args.seed}) against mode={limits}; fastest "
            f"schedule the provider allows: {fastest:.2f} s to the last admission",
            flush=True,
        )
        entry = Entry(
            f"{provider} preset",
            f"preset-{provider}",
            "",
            functools.partial(preset_sdk, provider=provider, options=options),
        )
        for backend in backends:
            for number in range(1, runs + 1):
                run_entry_ = dataclasses.replace(
                    entry, backend=backend, slug=f"{entry.slug}-{number}"
                )
                result = run_entry(
                    run_entry_,
                    workload,
                    args.seed,
                    2 * fastest + 30,
                    limits=PRESET_LIMITS[provider],
                )
                preset = PresetResult(provider, backend, number, result, fastest)
                results.append(preset)
                s = result.server
                print(
                    f"  {provider} [{backend}] run {number}: "
                    f"{'PASS' if preset.passed else 'FAIL'}: {s.rate_limited} 429s, "
                    f"{result.run.ok}/{n} ok, first->last admission {s.span:.2f} s = "
                    f"{preset.makespan_ratio:.3f} x the fastest schedule "
                    f"(the limit used: {1 / preset.makespan_ratio:.3f} of what the provider "
                    "allows)",
                    flush=True,
                )
                for note in result.run.notes:
                    print(f"      {note}", flush=True)
    print()
    for provider in providers:
        for backend in backends:
            mine = [r for r in results if (r.provider, r.backend) == (provider, backend)]
            if not mine:
                continue
            passed = sum(r.passed for r in mine)
            zero = sum(r.result.server.rate_limited == 0 for r in mine)
            ratios = sorted(r.makespan_ratio for r in mine)
            print(
                f"{'PASS' if passed == len(mine) else 'FAIL'} {provider} preset [{backend}]: "
                f"{zero}/{len(mine)} runs with zero 429s, {passed}/{len(mine)} within "
                f"{MAKESPAN_TARGET}x; makespan / fastest: min {ratios[0]:.3f}, median "
                f"{percentile(ratios, 0.5):.3f}, max {ratios[-1]:.3f}"
            )
    return 0


# --- a provider whose tokenizer is not the client's (issue 12, third target) ----------------

FACTOR_RANGE = (0.7, 1.5)
FACTOR_MODELS = ("fake-a", "fake-b", "fake-c")
FACTOR_REJECTED_TARGET = 0.01
FACTOR_MAKESPAN_TARGET = 1.15


@dataclass(frozen=True, slots=True)
class FactorResult:
    backend: str
    learn: bool
    pool: int
    run: int
    factors: dict[str, float]
    result: Result
    fastest: float

    @property
    def rejected(self) -> float:
        """429s per request."""
        return self.result.server.rate_limited / self.result.n

    @property
    def makespan_ratio(self) -> float:
        return self.result.server.span / self.fastest if self.fastest > 0 else math.nan

    @property
    def passed(self) -> bool:
        r = self.result
        return (
            not r.cancelled
            and r.run.ok == r.n
            and self.rejected <= FACTOR_REJECTED_TARGET
            and self.makespan_ratio <= FACTOR_MAKESPAN_TARGET
        )


def run_token_factor(args: argparse.Namespace) -> int:
    """``--token-factor``: the OpenAI preset through the httpx2 transport against
    ``mode="openai"`` whose prompt tokens are the client's estimate times a factor drawn per
    run and per model in ``FACTOR_RANGE`` (``token_factor=(0.7, 1.5)``, the server seeded
    per run), ``max_tokens`` charged up front, with the transport's ``learn_estimates`` on
    and, for contrast, off.  PASS when a run has at most ``FACTOR_REJECTED_TARGET`` of its
    requests answered 429, every request answered, and a makespan within
    ``FACTOR_MAKESPAN_TARGET`` of the fastest schedule the provider allows for the requests
    as it counts them."""
    n = args.requests or PRESET_REQUESTS
    backends = args.backend or ["asyncio", "trio"]
    learning = [True, False] if args.learn is None else [args.learn == "on"]
    pool = args.pool
    submitted = f"pools of {pool} tasks" if pool else "every request a task at once"
    if args.initial_ratio is not None:
        submitted += f", learner initial_ratio={args.initial_ratio:g}"
    workload = Workload.generate(n, args.seed, FACTOR_MODELS)
    print(_machine(), flush=True)
    print(
        f"token factor: {n} requests (seed {args.seed}) over models {', '.join(FACTOR_MODELS)}, "
        f"prompts {PROMPT_TOKENS[0]}-{PROMPT_TOKENS[1]} tokens at 4 characters a token, "
        f"max_tokens {MAX_TOKENS[0]}-{MAX_TOKENS[1]}, against mode='openai' (RPM {RPM:,}, "
        f"TPM {TPM:,}: {TPM // 60:,} tokens a second bind) counting each model's prompts times "
        f"a factor drawn per run in {FACTOR_RANGE}; the OpenAI preset, {submitted}",
        flush=True,
    )
    limits = {**PRESET_LIMITS["openai"], "token_factor": list(FACTOR_RANGE)}
    results: list[FactorResult] = []
    for learn in learning:
        for backend in backends:
            for number in range(1, (args.runs or 10) + 1):
                seed = args.seed + number  # the server's: one draw of factors per run
                referee = FakeLLMServer(token_factor=FACTOR_RANGE, seed=seed)
                factors = {model: referee.token_factor(model) for model in FACTOR_MODELS}
                fastest = fastest_schedule("openai", workload, referee.token_factor)
                slug = f"factor-{'learn' if learn else 'raw'}-{number}"
                entry = Entry(
                    f"openai preset, learn_estimates={learn}",
                    slug,
                    backend,
                    functools.partial(
                        preset_sdk,
                        provider="openai",
                        learn=learn,
                        pool=pool,
                        initial_ratio=args.initial_ratio,
                        options=preset_options(args),
                    ),
                )
                result = run_entry(entry, workload, seed, 2 * fastest + 30, limits=limits)
                outcome = FactorResult(backend, learn, pool, number, factors, result, fastest)
                results.append(outcome)
                s = result.server
                shown = ", ".join(f"{model} {f:.3f}" for model, f in factors.items())
                print(
                    f"  learn={'on' if learn else 'off'} pool={pool} [{backend}] run {number} "
                    "(factors "
                    f"{shown}): {'PASS' if outcome.passed else 'FAIL'}: {s.rate_limited} 429s "
                    f"= {outcome.rejected:.1%} of requests, {result.run.ok}/{n} ok, "
                    f"first->last admission {s.span:.2f} s = {outcome.makespan_ratio:.3f} x "
                    f"the provider's bound ({fastest:.2f} s)",
                    flush=True,
                )
                for note in result.run.notes:
                    print(f"      {note}", flush=True)
    print()
    for learn in learning:
        for backend in backends:
            mine = [r for r in results if (r.learn, r.backend) == (learn, backend)]
            if not mine:
                continue
            passed = sum(r.passed for r in mine)
            rejected = sorted(r.rejected for r in mine)
            ratios = sorted(r.makespan_ratio for r in mine)
            print(
                f"{'PASS' if passed == len(mine) else 'FAIL'} token factor "
                f"{FACTOR_RANGE[0]}-{FACTOR_RANGE[1]}, learn_estimates="
                f"{'on' if learn else 'off'}, {submitted} [{backend}]: {passed}/{len(mine)} runs "
                "with <= "
                f"{FACTOR_REJECTED_TARGET:.0%} rejected and <= {FACTOR_MAKESPAN_TARGET}x; "
                f"rejected max {rejected[-1]:.1%}, median {percentile(rejected, 0.5):.1%}; "
                f"makespan / bound: min {ratios[0]:.3f}, median {percentile(ratios, 0.5):.3f}, "
                f"max {ratios[-1]:.3f}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http",
        description="LLM calls over loopback HTTP against the fake provider, per contender.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1,000 requests, the peers and throttle_trio on asyncio: about a minute",
    )
    parser.add_argument("--requests", type=int, help="number of requests (default 1,500)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--only",
        action="append",
        type=int,
        choices=range(1, len(ENTRIES) + 1),
        help="run only this row (1-based, repeatable)",
    )
    parser.add_argument(
        "--presets",
        action="store_true",
        help="instead: each provider preset against the matching fake mode (issue 12)",
    )
    parser.add_argument(
        "--token-factor",
        action="store_true",
        help=(
            "instead: the OpenAI preset against mode='openai' counting prompts times a factor "
            f"drawn per run and model in {FACTOR_RANGE} (issue 12)"
        ),
    )
    parser.add_argument(
        "--learn", choices=["on", "off"], help="with --token-factor: only this (default both)"
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=16,
        help="with --token-factor: tasks taking the requests in turn (16; 0: all at once)",
    )
    parser.add_argument(
        "--initial-ratio",
        type=float,
        help="with --token-factor: the learner's prior before a model's first response (1.0)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        help="runs per preset (or factor setting) and loop (10); of each row without "
        "--presets or --token-factor (1), with a summary per row",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        help="with --presets or --token-factor: the presets' warmup= (seconds; default theirs)",
    )
    parser.add_argument(
        "--margin",
        type=float,
        help="with --presets or --token-factor: the presets' margin= (seconds; default theirs)",
    )
    parser.add_argument(
        "--provider", action="append", choices=["openai", "anthropic"], help="with --presets"
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=["asyncio", "trio"],
        help="with --presets or --token-factor",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the server child's config (JSON)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve:
        anyio.run(_serve_child, json.loads(args.serve), backend="asyncio")
        return 0
    if args.presets:
        return run_presets(args)
    if args.token_factor:
        return run_token_factor(args)
    n = args.requests or (1_000 if args.quick else 1_500)
    workload = Workload.generate(n, args.seed)
    minimum = workload.expected_minimum()
    cap = 2 * minimum + 30
    print(
        f"{_machine()}\n"
        f"workload: {n:,} chat requests (seed {args.seed}), prompts {PROMPT_TOKENS[0]}-"
        f"{PROMPT_TOKENS[1]} tokens, max_tokens {MAX_TOKENS[0]}-{MAX_TOKENS[1]}; estimates "
        f"{workload.estimate_tokens:,} tokens, expected usage {workload.expected_usage:,.0f}\n"
        f"server: FakeLLMServer settle mode, RPM {RPM:,}, TPM {TPM:,} (buckets of one minute, "
        f"full at start), latency {LATENCY[0]}-{LATENCY[1]} s, one process per contender\n"
        f"expected minimum to the last admission: {minimum:,.1f} s; each run capped at "
        f"{cap:,.0f} s",
        flush=True,
    )
    runs = args.runs or 1
    results = []
    for number, entry in enumerate(ENTRIES, start=1):
        if (number not in args.only) if args.only else (args.quick and not entry.quick):
            continue
        for repeat in range(1, runs + 1):
            this = f" (run {repeat} of {runs})" if runs > 1 else ""
            print(
                f"... {number}. {entry.name} [{entry.backend}]{this}", file=sys.stderr, flush=True
            )
            result = run_entry(entry, workload, args.seed, cap)
            results.append(result)
            for note in result.run.notes:
                print(f"    {note}", file=sys.stderr, flush=True)
            if entry.ours and runs > 1:
                check = _checks([result])[0]
                print(f"    {check.line()}", file=sys.stderr, flush=True)
    print()
    print(_table(results).markdown())
    print()
    for result in results:
        for note in result.run.notes:
            print(f"- {result.entry.name} [{result.entry.backend}]: {note}")
    print()
    for check in _checks(results):
        print(check.line())
    if runs > 1:
        print()
        for line in _run_summaries(results):
            print(line)
    return 0


def _run_summaries(results: list[Result]) -> list[str]:
    """Per row of ours run several times: the runs meeting the target, and each run's figures."""
    lines = []
    rows: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        if r.entry.ours:
            rows.setdefault((r.entry.name, r.entry.backend), []).append(r)
    for (name, backend), mine in rows.items():
        checks = _checks(mine)
        met = sum(check.passed for check in checks)
        sustained = ", ".join(_ratio_cell(r) for r in mine)
        rejected = ", ".join(str(r.server.rate_limited) for r in mine)
        lines.append(
            f"{name} [{backend}]: {met}/{len(mine)} runs >= {TARGET:.0%} of the limit with zero "
            f"429s; sustained {sustained}; 429s per run {rejected}"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
