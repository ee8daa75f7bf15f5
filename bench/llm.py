"""``python -m bench.llm``: 5,000 LLM calls through a simulated provider, per contender.

The provider is simulated in-process (no HTTP) the way LLM APIs enforce their limits: two token
buckets with one minute of capacity (RPM 500, TPM 200,000), charged the estimate (prompt +
``max_tokens``) when a request arrives, settled to the real usage when it completes (the refund
capped at the bucket size), a 429 with ``retry-after`` when a request does not fit, and
OpenAI-style ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers on every
response.  Its bucket code is its own (nothing from throttle_trio), so a client that keeps in
step with it does so by its own merit.

Time is scaled.  A full-size run (5,000 requests, about 23 million tokens at 200,000 a minute)
would take two hours, so every duration (latencies, the limits' one-minute periods,
``retry-after`` and the reset headers, the clients' backoffs and windows) is divided by
``SCALE``, chosen so that the theoretical minimum takes about a minute of real time.  Two ways
of scaling, both on the real clock:

* **scaled durations** (asyncio): the event loop runs on the real monotonic clock and every
  duration in the provider and in the clients is divided by ``SCALE``.  The provider's headers
  carry the scaled durations.  Counts (``x-ratelimit-limit-tokens: 200000``) are not durations
  and stay as they are, so a client that *learns* a per-minute limit from them and assumes a
  60-second minute is wrong by ``SCALE`` (see "learned" below).
* **fast clock** (trio): ``trio.testing.MockClock(rate=SCALE)`` makes the event loop's clock run
  ``SCALE`` times faster than real time, paced by the real clock (no autojump).  Nothing is
  divided: the provider and the client use full-size durations, a minute is 60 clock seconds,
  and a limit learned from the headers as "per minute" is right.

The contenders (the same seeded workload for each, one after the other, each in a fresh event
loop and against a fresh provider with full buckets):

1. ``asyncio.gather`` of every request, with openai-python's retries (2 retries; honour
   ``retry-after-ms``/``retry-after`` when in (0, 60 s], else ``0.5 * 2**n`` capped at 8 s
   times a jitter in (0.75, 1]).  Unbounded (no concurrency cap), and a bounded variant with
   ``asyncio.Semaphore(100)`` held across the retries, as an SDK call inside ``async with``.
2. The seed article's ``LLMThrottler`` (its ``SlidingWindowLimiter`` 500/min, then its
   semaphore of 10) under its ``call_with_retry_after`` loop (3 attempts, sleep the
   ``retry-after``), as written, gathered with ``return_exceptions=True``.
3. aiometer ``run_all(max_per_second=RPM/60, max_at_once=23)`` with the SDK retries; 23 is the
   article's rule of thumb (RPM / 60 * mean latency).
4. throttle_trio configured: ``Throttle(requests=TokenBucket(500, per=60), tokens=
   TokenBucket(200_000, per=60), refund_unused=True)`` (periods scaled) and
   ``call_with_retries`` reserving prompt + ``max_tokens`` and settling to the usage.
5. throttle_trio learning the limits from the headers: ``Throttle(learn_limits=True)`` with
   ``call_with_retries``.  Learned limits are per-minute token buckets with ``per=60.0`` fixed
   in the library, so with scaled durations they refill ``SCALE`` times too slowly: that row is
   only a short demonstration (cancelled early).  The fast-clock row measures learning.

Reported per contender: makespan and its ratio to the theoretical minimum
``max(total usage tokens / TPM, requests / RPM)`` (the initial full buckets let a perfect
client finish a little below it), 429s, wasted tokens (the estimates of the attempts answered
429), requests that finally failed, requests left unfinished when the run was cancelled, the
peak of requests in flight at the provider and the CPU time of the run.  Every run stops by
itself: it is cancelled after four times the expected makespan.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiometer
import anyio
import anyio.lowlevel
import trio.testing

import throttle_trio as tt

from ._report import Check, Table, fmt
from .baselines import BlogSlidingWindow

__all__ = ["Provider", "Request", "Response", "Workload", "main"]

RPM = 500
TPM = 200_000
MINUTE = 60.0  # full-scale seconds
PROMPT_TOKENS = (100, 8_000)
MAX_TOKENS = (500, 1_500)
LATENCY = (0.5, 5.0)  # full-scale seconds
SDK_MAX_RETRIES = 2  # openai-python's default
GATHER_BOUND = 100
ARTICLE_MAX_CONCURRENT = 10  # the article's LLMThrottler default
CAP_FACTOR = 4.0  # a run is cancelled after this many expected makespans
LEARNED_DEMO_FACTOR = 0.25  # the learned row on scaled durations cannot finish: cut it short


# --- the workload ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One chat completion: what the client knows (prompt, max_tokens) and what the provider
    will do with it (latency in full-scale seconds, completion tokens)."""

    index: int
    prompt_tokens: int
    max_tokens: int
    completion_tokens: int
    latency: float

    @property
    def estimate(self) -> int:
        """What both the provider and a careful client charge on arrival."""
        return self.prompt_tokens + self.max_tokens

    @property
    def usage(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Workload:
    requests: tuple[Request, ...]

    @classmethod
    def generate(cls, n: int, seed: int) -> Workload:
        rng = random.Random(seed)
        items = []
        for i in range(n):
            prompt = rng.randint(*PROMPT_TOKENS)
            max_tokens = rng.randint(*MAX_TOKENS)
            items.append(
                Request(
                    index=i,
                    prompt_tokens=prompt,
                    max_tokens=max_tokens,
                    completion_tokens=rng.randint(1, max_tokens),
                    latency=rng.uniform(*LATENCY),
                )
            )
        return cls(tuple(items))

    @property
    def estimate_tokens(self) -> int:
        return sum(r.estimate for r in self.requests)

    @property
    def usage_tokens(self) -> int:
        return sum(r.usage for r in self.requests)

    def minimum(self) -> float:
        """The theoretical minimum makespan, full-scale seconds."""
        return max(self.usage_tokens / TPM, len(self.requests) / RPM) * MINUTE


# --- the provider ---------------------------------------------------------------------------


class _Bucket:
    """The provider's own token bucket: ``capacity`` units, refilled in ``period`` seconds."""

    __slots__ = ("capacity", "fill", "level", "updated")

    def __init__(self, capacity: float, period: float) -> None:
        self.capacity = capacity
        self.fill = capacity / period  # units per clock second
        self.level = capacity
        self.updated: float | None = None

    def _refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.fill)
        self.updated = now if self.updated is None else max(self.updated, now)

    def wait(self, cost: float, now: float) -> float:
        """Clock seconds until ``cost`` fits (0: it fits now)."""
        self._refill(now)
        return max(0.0, (cost - self.level) / self.fill)

    def take(self, cost: float, now: float) -> None:
        self._refill(now)
        self.level -= cost

    def give(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level = min(self.capacity, self.level + amount)

    def available(self, now: float) -> float:
        self._refill(now)
        return self.level

    def reset_after(self, now: float) -> float:
        """Clock seconds until the bucket is full again."""
        self._refill(now)
        return (self.capacity - self.level) / self.fill


def _trim(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number


def go_duration(seconds: float) -> str:
    """``seconds`` as Go's ``time.Duration.String()`` prints it, rounded up to 1 µs."""
    us = math.ceil(seconds * 1e6)
    if us <= 0:
        return "0s"
    if us < 1_000:
        return f"{us}\u00b5s"
    if us < 1_000_000:
        return _trim(f"{us / 1e3:.3f}") + "ms"
    hours, rest = divmod(us, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    text = _trim(f"{rest / 1e6:.6f}") + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    usage: int | None = None  # total tokens, on a 200


@dataclass(slots=True)
class ProviderCounters:
    attempts: int = 0
    rejected: int = 0
    wasted_tokens: int = 0  # estimates of the attempts answered 429
    in_flight: int = 0
    peak_in_flight: int = 0
    completed: int = 0


class Provider:
    """An LLM API with RPM and TPM limits, in-process.

    ``unit`` is how many clock seconds a full-scale second lasts: ``1 / SCALE`` with scaled
    durations, 1 on the fast clock.  Every duration it uses or reports is multiplied by it.

    A request that fits both buckets is charged one request and its estimate and runs for its
    latency; then the tokens bucket is refunded the estimate minus the usage (capped at the
    bucket size).  The rate-limit headers are a snapshot taken when the request is admitted
    (after charging it), as a provider that streams sends them before the first token.  A
    request that does not fit gets a 429 at once, with the headers of that instant and a
    ``retry-after`` to the point where it would fit, rounded up to 1 full-scale millisecond.
    A rejected request still counts against the requests bucket (OpenAI: "unsuccessful
    requests contribute to your per-minute limit"), down to zero, no debt; it costs no tokens.
    """

    def __init__(self, unit: float) -> None:
        self.unit = unit
        self.requests = _Bucket(RPM, MINUTE * unit)
        self.tokens = _Bucket(TPM, MINUTE * unit)
        self.counters = ProviderCounters()

    def _headers(self, now: float) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(RPM),
            "x-ratelimit-limit-tokens": str(TPM),
            "x-ratelimit-remaining-requests": str(math.floor(max(0.0, self.requests.level))),
            "x-ratelimit-remaining-tokens": str(math.floor(max(0.0, self.tokens.level))),
            "x-ratelimit-reset-requests": go_duration(self.requests.reset_after(now)),
            "x-ratelimit-reset-tokens": go_duration(self.tokens.reset_after(now)),
        }

    def _retry_after(self, wait: float) -> str:
        full_ms = math.ceil(wait / self.unit * 1e3)
        return _trim(f"{math.ceil(full_ms * self.unit * 1e4) / 1e7:.7f}")

    async def complete(self, request: Request) -> Response:
        counters = self.counters
        counters.attempts += 1
        now = anyio.current_time()
        estimate = request.estimate
        wait = max(self.requests.wait(1, now), self.tokens.wait(estimate, now))
        if wait > 0:
            counters.rejected += 1
            counters.wasted_tokens += estimate
            self.requests.take(min(1.0, max(0.0, self.requests.level)), now)
            headers = self._headers(now)
            headers["retry-after"] = self._retry_after(wait)
            await anyio.lowlevel.checkpoint()
            return Response(429, headers)
        self.requests.take(1, now)
        self.tokens.take(estimate, now)
        headers = self._headers(now)
        counters.in_flight += 1
        counters.peak_in_flight = max(counters.peak_in_flight, counters.in_flight)
        try:
            await anyio.sleep(request.latency * self.unit)
        finally:
            counters.in_flight -= 1
        self.tokens.give(estimate - request.usage, anyio.current_time())
        counters.completed += 1
        return Response(200, headers, request.usage)


# --- what every contender reports -----------------------------------------------------------


@dataclass(slots=True)
class Run:
    """One contender's run: the provider, the workload, and what became of each request."""

    provider: Provider
    workload: Workload
    unit: float
    seed: int
    started: float = 0.0
    last_finished: float = math.nan
    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # exceptions that ended a request
    notes: list[str] = field(default_factory=list)

    def done(self, success: bool) -> None:
        self.last_finished = anyio.current_time()
        if success:
            self.ok += 1
        else:
            self.failed += 1

    async def guarded(self, call: Callable[[Request], Awaitable[bool]], request: Request) -> None:
        """Make one request's call (True: it succeeded), recording its end either way."""
        try:
            success = await call(request)
        except Exception as error:  # the article raises RuntimeError: counted, and shown
            name = type(error).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
            success = False
        self.done(success)


Contender = Callable[[Run], Awaitable[None]]


# --- openai-python's retry loop -------------------------------------------------------------


def _sdk_retry_after(headers: Mapping[str, str]) -> float | None:
    """openai-python's ``_parse_retry_after_header``, minus the HTTP-date form."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * scale
        except (KeyError, ValueError):
            pass
    return None


def _sdk_should_retry(response: Response) -> bool:
    verdict = response.headers.get("x-should-retry")
    if verdict in ("true", "false"):
        return verdict == "true"
    return response.status in (408, 409, 429) or response.status >= 500


async def sdk_call(
    run: Run,
    request: Request,
    *,
    rng: random.Random,
    sleep: Callable[[float], Awaitable[None]],
) -> bool:
    """One call as openai-python makes it (``max_retries=2``), durations scaled."""
    for retries_taken in range(SDK_MAX_RETRIES + 1):
        response = await run.provider.complete(request)
        if response.status < 400:
            return True
        if retries_taken == SDK_MAX_RETRIES or not _sdk_should_retry(response):
            return False
        retry_after = _sdk_retry_after(response.headers)
        if retry_after is not None and 0 < retry_after <= 60 * run.unit:
            delay = retry_after
        else:
            delay = min(0.5 * 2.0**retries_taken, 8.0) * run.unit * (1 - 0.25 * rng.random())
        await sleep(delay)
    raise AssertionError("unreachable")


# --- contenders 1-3: the peers (asyncio) ----------------------------------------------------


async def gather_unbounded(run: Run) -> None:
    rng = random.Random(run.seed)
    await asyncio.gather(
        *(
            run.guarded(functools.partial(sdk_call, run, rng=rng, sleep=asyncio.sleep), request)
            for request in run.workload.requests
        )
    )


async def gather_bounded(run: Run) -> None:
    rng = random.Random(run.seed)
    semaphore = asyncio.Semaphore(GATHER_BOUND)

    async def call(request: Request) -> bool:
        async with semaphore:
            return await sdk_call(run, request, rng=rng, sleep=asyncio.sleep)

    await asyncio.gather(*(run.guarded(call, request) for request in run.workload.requests))


class ArticleHTTPStatusError(Exception):
    """What ``response.raise_for_status()`` raises in the article (httpx.HTTPStatusError)."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


class ArticleLLMThrottler:
    """The article's ``LLMThrottler``; the window is one scaled minute, the call in-process."""

    def __init__(self, *, unit: float, max_concurrent: int = 10, max_per_minute: int = 60) -> None:
        self.semaphore = asyncio.Semaphore(max_concurrent)
        self.rate_limiter = BlogSlidingWindow(
            max_requests=max_per_minute,
            window_seconds=60 * unit,
        )

    async def call(self, provider: Provider, request: Request) -> Response:
        # First: wait for rate limit slot
        await self.rate_limiter.acquire()
        # Then: wait for concurrency slot
        async with self.semaphore:
            response = await provider.complete(request)
            if response.status >= 400:  # response.raise_for_status()
                raise ArticleHTTPStatusError(response)
            return response


async def article_call_with_retry_after(
    provider: Provider,
    throttler: ArticleLLMThrottler,
    request: Request,
    *,
    unit: float,
    max_retries: int = 3,
) -> Response:
    """The article's ``call_with_retry_after``, its default wait (5 s) scaled."""
    for _attempt in range(max_retries):
        try:
            return await throttler.call(provider, request)
        except ArticleHTTPStatusError as e:
            if e.response.status == 429:
                retry_after = float(e.response.headers.get("retry-after", str(5 * unit)))
                await asyncio.sleep(retry_after)
            else:
                raise
    raise RuntimeError(f"Exhausted retries for: request {request.index}")


async def article(run: Run) -> None:
    throttler = ArticleLLMThrottler(
        unit=run.unit, max_concurrent=ARTICLE_MAX_CONCURRENT, max_per_minute=RPM
    )

    async def call(request: Request) -> bool:
        await article_call_with_retry_after(run.provider, throttler, request, unit=run.unit)
        return True

    await asyncio.gather(
        *(run.guarded(call, request) for request in run.workload.requests),
        return_exceptions=True,
    )


def aiometer_max_at_once() -> int:
    """The article's rule of thumb: RPM / 60 * mean latency."""
    return math.ceil(RPM / MINUTE * (LATENCY[0] + LATENCY[1]) / 2)


async def aiometer_sdk(run: Run) -> None:
    rng = random.Random(run.seed)

    call = functools.partial(sdk_call, run, rng=rng, sleep=anyio.sleep)
    await aiometer.run_all(
        [functools.partial(run.guarded, call, request) for request in run.workload.requests],
        max_at_once=aiometer_max_at_once(),
        max_per_second=RPM / MINUTE / run.unit,
    )


# --- contenders 4-5: throttle_trio (asyncio or trio) ----------------------------------------


def _inspect(response: Response) -> tt.ResponseInfo:
    usage = None if response.usage is None else {"tokens": response.usage}
    return tt.ResponseInfo(response.status, response.headers, usage)


async def _through_throttle(run: Run, throttle: tt.Throttle) -> None:
    unit = run.unit
    policy = tt.RetryPolicy(base_delay=0.5 * unit, max_delay=30 * unit, max_retry_after=120 * unit)
    rng = random.Random(run.seed)
    gaps: list[float] = []  # provider's tokens minus the throttle's, after each response

    async def call(request: Request) -> bool:
        response = await tt.call_with_retries(
            throttle,
            functools.partial(run.provider.complete, request),
            _inspect,
            costs={"requests": 1, "tokens": request.estimate},
            retry=policy,
            rng=rng.random,
        )
        ours = throttle.statistics().limits.get("tokens")
        if ours is not None:
            gaps.append(run.provider.tokens.available(anyio.current_time()) - ours.available)
        return response.status < 400

    try:
        async with anyio.create_task_group() as tg:
            for request in run.workload.requests:
                tg.start_soon(run.guarded, call, request)
    finally:
        stats = throttle.statistics()
        limits = ", ".join(
            f"{name}: {'learned ' if lim.learned else ''}{lim.rate * 60 * unit:,.0f}/min "
            f"(admitted {lim.admitted_cost:,.0f}, refunded {lim.refunded:,.0f}, "
            f"dropped {lim.dropped:,.0f})"
            for name, lim in stats.limits.items()
        )
        run.notes.append(
            f"throttle: admitted {stats.admitted:,}, rejections {stats.rejections}, "
            f"pauses {stats.pauses}, mean queue wait "
            f"{stats.total_wait_time / max(1, stats.admitted) / unit:,.1f} s (full scale); "
            f"{limits}"
        )
        if gaps:
            gaps.sort()
            run.notes.append(
                "provider's tokens minus the throttle's after each response: "
                f"min {gaps[0]:,.0f}, median {gaps[len(gaps) // 2]:,.0f}, max {gaps[-1]:,.0f}"
            )


async def tt_configured(run: Run) -> None:
    per = MINUTE * run.unit
    throttle = tt.Throttle(
        requests=tt.TokenBucket(RPM, per=per),
        tokens=tt.TokenBucket(TPM, per=per),
        refund_unused=True,
    )
    await _through_throttle(run, throttle)


async def tt_learned(run: Run) -> None:
    await _through_throttle(run, tt.Throttle(learn_limits=True))


# --- the harness ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    clock: str  # "scaled" (asyncio, durations / SCALE) or "fast" (trio MockClock(rate=SCALE))
    run: Contender
    cap_factor: float = CAP_FACTOR
    ours: bool = False


ENTRIES = (
    Entry("gather, unbounded + SDK retries", "scaled", gather_unbounded),
    Entry(f"gather + Semaphore({GATHER_BOUND}) + SDK retries", "scaled", gather_bounded),
    Entry("article LLMThrottler + retry-after loop", "scaled", article),
    Entry(f"aiometer (max_at_once={aiometer_max_at_once()}) + SDK retries", "scaled", aiometer_sdk),
    Entry("throttle_trio configured", "scaled", tt_configured, ours=True),
    Entry("throttle_trio learned", "scaled", tt_learned, LEARNED_DEMO_FACTOR, ours=True),
    Entry("throttle_trio configured", "fast", tt_configured, ours=True),
    Entry("throttle_trio learned", "fast", tt_learned, ours=True),
)
CLOCKS = {
    "scaled": "asyncio, durations / SCALE",
    "fast": "trio, MockClock(rate=SCALE)",
}


@dataclass(frozen=True, slots=True)
class Result:
    entry: Entry
    cancelled: bool
    makespan: float  # full-scale seconds (the cap if cancelled)
    real_seconds: float
    cpu_seconds: float
    ok: int
    failed: int
    unfinished: int
    counters: ProviderCounters
    notes: tuple[str, ...]


def run_entry(entry: Entry, workload: Workload, scale: float, seed: int) -> Result:
    unit = 1 / scale if entry.clock == "scaled" else 1.0
    provider = Provider(unit)
    run = Run(provider, workload, unit, seed)
    cap = entry.cap_factor * workload.minimum() * unit
    cancelled = False

    async def main() -> None:
        nonlocal cancelled
        run.started = anyio.current_time()
        with anyio.move_on_after(cap) as scope:
            await entry.run(run)
        cancelled = scope.cancelled_caught

    wall, cpu = time.perf_counter(), time.process_time()
    if entry.clock == "scaled":
        anyio.run(main, backend="asyncio")
    else:
        clock = trio.testing.MockClock(rate=scale)
        anyio.run(main, backend="trio", backend_options={"clock": clock})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if run.errors:
        shown = ", ".join(f"{name} x{count:,}" for name, count in sorted(run.errors.items()))
        run.notes.append(f"requests ended by an exception: {shown}")
    end = run.started + cap if cancelled or math.isnan(run.last_finished) else run.last_finished
    return Result(
        entry=entry,
        cancelled=cancelled,
        makespan=(end - run.started) / unit,
        real_seconds=wall,
        cpu_seconds=cpu,
        ok=run.ok,
        failed=run.failed,
        unfinished=len(workload.requests) - run.ok - run.failed,
        counters=provider.counters,
        notes=tuple(run.notes),
    )


def _table(results: list[Result], minimum: float) -> Table:
    table = Table(
        [
            "contender",
            "clock",
            "makespan (min)",
            "÷ minimum",
            "ok",
            "failed",
            "unfinished",
            "attempts",
            "429s",
            "wasted tokens",
            "peak in flight",
            "real s",
            "CPU s",
        ],
        caption="makespan in full-scale minutes; 'cancelled' rows hit their time cap",
    )
    for r in results:
        c = r.counters
        makespan = fmt(r.makespan / MINUTE)
        table.add(
            r.entry.name,
            CLOCKS[r.entry.clock],
            f"≥ {makespan} (cancelled)" if r.cancelled else makespan,
            f"{'≥ ' if r.cancelled else ''}{r.makespan / minimum:.3f}x",
            f"{r.ok:,}",
            f"{r.failed:,}",
            f"{r.unfinished:,}",
            f"{c.attempts:,}",
            f"{c.rejected:,}",
            f"{c.wasted_tokens:,}",
            f"{c.peak_in_flight:,}",
            fmt(r.real_seconds),
            fmt(r.cpu_seconds),
        )
    return table


def _checks(results: list[Result], minimum: float, n: int) -> list[Check]:
    checks = []
    for r in results:
        if not r.entry.ours:
            continue
        ratio = r.makespan / minimum
        where = CLOCKS[r.entry.clock]
        c = r.counters
        detail = (
            f"{ratio:.3f}x the minimum{' (cancelled)' if r.cancelled else ''}, "
            f"{c.rejected} 429s, {r.ok:,}/{n:,} ok"
        )
        if r.entry.run is tt_configured:
            passed = not r.cancelled and ratio <= 1.05 and c.rejected == 0 and r.ok == n
            label = f"throttle_trio configured ({where}) <= 1.05x with zero 429s"
        else:
            passed = not r.cancelled and ratio <= 1.15 and c.rejected < 0.01 * n and r.ok == n
            label = f"throttle_trio learned ({where}) <= 1.15x with < 1% of requests rejected"
            if r.entry.clock == "scaled":
                detail += (
                    "; learned limits are per=60.0 s, which this clock cannot express "
                    "(expected to fail)"
                )
        checks.append(Check(label, passed, detail))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.llm",
        description="5,000 LLM calls through a simulated RPM/TPM-limited provider.",
    )
    parser.add_argument("--quick", action="store_true", help="1,000 requests, under 2 minutes")
    parser.add_argument("--requests", type=int, help="number of requests (default 5,000)")
    parser.add_argument(
        "--seconds",
        type=float,
        help="real seconds the theoretical minimum should take (sets SCALE; default 60)",
    )
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--only",
        action="append",
        type=int,
        choices=range(1, len(ENTRIES) + 1),
        help="run only this row (1-based, repeatable)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    n = args.requests or (1_000 if args.quick else 5_000)
    target = args.seconds or (9.0 if args.quick else 60.0)
    workload = Workload.generate(n, args.seed)
    minimum = workload.minimum()
    scale = minimum / target
    print(
        f"workload: {n:,} requests (seed {args.seed}), prompts {PROMPT_TOKENS[0]:,}-"
        f"{PROMPT_TOKENS[1]:,} tokens, max_tokens {MAX_TOKENS[0]:,}-{MAX_TOKENS[1]:,}, "
        f"latency {LATENCY[0]}-{LATENCY[1]} s; estimates {workload.estimate_tokens:,} tokens, "
        f"usage {workload.usage_tokens:,} tokens\n"
        f"provider: RPM {RPM:,}, TPM {TPM:,}, burst one minute of each\n"
        f"theoretical minimum: {minimum / MINUTE:,.2f} min at full scale "
        f"(tokens {workload.usage_tokens / TPM:,.2f} min, requests {n / RPM:,.2f} min)\n"
        f"SCALE = {scale:,.2f}: the minimum takes {target:g} s of real time",
        flush=True,
    )
    results = []
    for number, entry in enumerate(ENTRIES, start=1):
        if args.only and number not in args.only:
            continue
        print(f"... {number}. {entry.name} [{CLOCKS[entry.clock]}]", file=sys.stderr, flush=True)
        result = run_entry(entry, workload, scale, args.seed)
        results.append(result)
        for note in result.notes:
            print(f"    {note}", file=sys.stderr, flush=True)
    print()
    print(_table(results, minimum).markdown())
    print()
    for result in results:
        for note in result.notes:
            print(f"- {result.entry.name} [{CLOCKS[result.entry.clock]}]: {note}")
    print()
    for check in _checks(results, minimum, n):
        print(check.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
