"""The oracle of throttle_trio.testing: it finds planted violations, passes exact limiters, catches
a peer's bugs, and shares no code with the policies it referees."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from fractions import Fraction
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import throttle_trio as tt
import throttle_trio.testing.oracle as oracle_module
from throttle_trio.testing import Recorder, limit_for, run_virtual
from throttle_trio.testing.oracle import (
    GCRALimit,
    LogEntry,
    SlidingWindowLimit,
    TokenBucketLimit,
    check,
    earliest,
)

BUCKET = TokenBucketLimit(rate=8, per=1, burst=2)
PACED = [0.0, 0.0, 0.125, 0.25, 0.375, 0.5]  # what an exact 8/s, burst 2 bucket admits


def log_of(times: list[float], cost: float = 1) -> list[tuple[float, float]]:
    return [(time, cost) for time in times]


# -- planted violations ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [BUCKET, GCRALimit(8, 1, burst=2)], ids=["bucket", "gcra"])
def test_one_admission_early_by_one_microsecond_is_found(limit: TokenBucketLimit) -> None:
    """The third admission 1 µs before its instant: one violation, 1 µs early, with its window."""
    times = [*PACED]
    times[3] = 0.25 - 1e-6
    report = check(log_of(times), limit)
    assert not report.ok
    [violation] = report.violations
    assert violation.index == 3
    assert violation.early_by == pytest.approx(1e-6, rel=1e-6)
    assert (violation.start, violation.end) == (0.0, 0.25 - 1e-6)
    assert violation.cost == 4
    assert violation.allowed == pytest.approx(2 + 8 * (0.25 - 1e-6))
    assert "admission #3 at 0.249999 came 1e-06 s early: 4 admitted in [0, 0.249999]" in str(report)
    with pytest.raises(AssertionError, match="1 violation"):
        report.assert_ok()


def test_tolerance_forgives_what_it_says() -> None:
    times = [*PACED]
    times[3] = 0.25 - 1e-6
    assert check(log_of(times), BUCKET, tolerance=1.1e-6).ok  # 1e-6 as floats go
    assert not check(log_of(times), BUCKET, tolerance=0.9e-6).ok


def test_a_burst_one_too_large_is_found() -> None:
    """Three at once against a burst of 2: the third is 1/8 s early, in the window [0, 0]."""
    report = check(log_of([0, 0, 0]), BUCKET)
    [violation] = report.violations
    assert (violation.index, violation.early_by, violation.start, violation.end) == (2, 0.125, 0, 0)
    assert (violation.cost, violation.allowed) == (3, 2)


def test_a_cost_above_the_burst_never_fits() -> None:
    [violation] = check([(0.0, 3)], BUCKET).violations
    assert violation.early_by == float("inf")
    assert earliest([], 3, BUCKET) == float("inf")


def test_every_violation_is_reported() -> None:
    """A stream at twice the rate: every admission after the burst is early, each reported."""
    times = [n / 16 for n in range(10)]
    report = check(log_of(times), BUCKET)
    assert [v.index for v in report.violations] == list(range(3, 10))
    assert all(
        b.early_by > a.early_by
        for a, b in zip(report.violations, report.violations[1:], strict=False)
    )


def test_sliding_window_windows_are_half_open() -> None:
    """At most 2 in (t - 1, t]: the third may go exactly 1 s after the first, not before."""
    window = SlidingWindowLimit(2, window=1)
    assert check(log_of([0, 0.5, 1.0]), window).ok
    [violation] = check(log_of([0, 0.5, 1.0 - 1e-6]), window).violations
    assert violation.index == 2
    assert violation.early_by == pytest.approx(1e-6, rel=1e-6)
    assert (violation.cost, violation.allowed) == (3, 2)
    assert "(-1e-06, 0.999999]" in str(violation)


def test_several_limits_and_metrics_at_once() -> None:
    """A throttle's log: costs per metric, one limit per metric, and the tighter one binds."""
    log = [LogEntry(0, {"requests": 1, "tokens": 600}), LogEntry(1, {"requests": 1, "tokens": 600})]
    requests = TokenBucketLimit(60, per=60, metric="requests")
    tokens = TokenBucketLimit(1000, per=60, metric="tokens")
    report = check(log, requests, tokens)
    [violation] = report.violations
    assert violation.limit == tokens
    assert "tokens: 1000 per 60 s, burst 1000" in str(violation)
    with pytest.raises(TypeError, match="metric"):
        check(log, BUCKET)


def test_partial_limits_judge_their_stretch_alone() -> None:
    before = TokenBucketLimit(8, burst=2, until=1.0)
    after = TokenBucketLimit(1, burst=1, since=1.0)
    log = log_of([0, 0, 0.125, 1.0, 2.0])
    assert check(log, before, after).ok
    assert not check(log_of([0, 0, 0.125, 1.0, 1.5]), before, after).ok


def test_idle_time_and_overtaking_need_request_times() -> None:
    """A request that could have gone at 0.125 went at 0.3; another was served out of order."""
    log = [
        LogEntry(0, 1, requested=0),
        LogEntry(0, 1, requested=0),
        LogEntry(0.3, 1, requested=0.1),
        LogEntry(0.4, 1, requested=0.4),
        LogEntry(0.425, 1, requested=0.2),
    ]
    report = check(log, BUCKET)
    assert report.ok
    [wait] = report.waits
    assert (wait.index, wait.ready) == (2, 0.125)
    assert wait.late_by == pytest.approx(0.175)
    assert report.idle == pytest.approx(0.175)
    assert [(o.index, o.by) for o in report.overtaken] == [(4, 3)]
    with pytest.raises(AssertionError, match=r"could have gone at 0\.125"):
        report.assert_ok(work_conserving=True)
    with pytest.raises(AssertionError, match="overtaken by #3"):
        report.assert_ok(fifo=True)
    # Without request times there is nothing to measure.
    assert check(log_of([0, 0, 0.3]), BUCKET).waits == ()


def test_earliest_is_the_next_instant_a_cost_fits() -> None:
    assert earliest(log_of(PACED), 1, BUCKET) == 0.625
    assert earliest(log_of(PACED), 2, BUCKET) == 0.75
    assert earliest([], 1, BUCKET) == float("-inf")
    window = SlidingWindowLimit(2, window=1)
    assert earliest(log_of([0, 0.5]), 1, window) == 1.0
    assert earliest(log_of([0, 0.5]), 2, window) == 1.5


def test_malformed_input_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match="at least one limit"):
        check([])
    with pytest.raises(ValueError, match="tolerance"):
        check([], BUCKET, tolerance=-1)
    with pytest.raises(ValueError, match="rate must be > 0"):
        check([(0, 1)], TokenBucketLimit(0))
    with pytest.raises(ValueError, match="negative cost"):
        check([(0, -1)], BUCKET)
    with pytest.raises(ValueError, match="time must be finite"):
        check([(float("nan"), 1)], BUCKET)
    with pytest.raises(TypeError, match="log entry #0"):
        check([object()], BUCKET)


# -- the definitions agree with brute force and with each other --------------------------------

times_on_a_grid = st.lists(st.integers(0, 40).map(lambda n: n / 16), max_size=25).map(sorted)
costs = st.integers(1, 3)


@settings(max_examples=300, deadline=None)
@given(times=times_on_a_grid, data=st.data(), rate=st.integers(1, 16), burst=st.integers(1, 4))
def test_bucket_check_is_the_interval_definition(times, data, rate, burst) -> None:
    """The oracle flags an admission exactly when some closed window ending at it holds more
    than burst + rate * length (by brute force over every window, in exact arithmetic)."""
    log = [(t, data.draw(costs)) for t in times]
    limit = TokenBucketLimit(rate, burst=burst)
    flagged = {v.index for v in check(log, limit).violations}
    brute = set()
    for j, (end, _) in enumerate(log):
        for i in range(j + 1):
            start = log[i][0]
            inside = sum(c for k, (t, c) in enumerate(log[: j + 1]) if start <= t <= end and k >= 0)
            if inside > burst + rate * (Fraction(end) - Fraction(start)):
                brute.add(j)
    assert flagged == brute


@settings(max_examples=300, deadline=None)
@given(times=times_on_a_grid, data=st.data(), rate=st.integers(1, 16), burst=st.integers(1, 4))
def test_gcra_and_the_bucket_agree(times, data, rate, burst) -> None:
    """Two definitions, two pieces of code, one answer (violations and early_by alike)."""
    log = [(t, data.draw(costs)) for t in times]
    bucket = check(log, TokenBucketLimit(rate, burst=burst)).violations
    gcra = check(log, GCRALimit(rate, burst=burst)).violations
    assert [(v.index, v.early_by) for v in bucket] == [(v.index, v.early_by) for v in gcra]
    for v in bucket:  # each window proves its violation
        assert v.cost > v.allowed


@settings(max_examples=300, deadline=None)
@given(times=times_on_a_grid, data=st.data(), limit=st.integers(1, 5), window=st.integers(1, 32))
def test_window_check_is_the_definition(times, data, limit, window) -> None:
    log = [(t, data.draw(costs)) for t in times]
    length = window / 16
    flagged = {v.index for v in check(log, SlidingWindowLimit(limit, length)).violations}
    brute = {
        j
        for j, (end, _) in enumerate(log)
        if sum(c for t, c in log[: j + 1] if end - length < t <= end) > limit
    }
    assert flagged == brute


# -- exact limiters pass -----------------------------------------------------------------------

POLICIES = [
    lambda: tt.TokenBucket(8, burst=2),
    lambda: tt.GCRA(8, burst=2),
    lambda: tt.SlidingWindow(3, window=0.5),
    lambda: tt.TokenBucket(3, per=1, burst=2),  # instants that are not binary fractions
]


@pytest.mark.parametrize("make_policy", POLICIES)
def test_the_projects_rate_limiter_passes(make_policy, backend_name: str) -> None:
    """RateLimiter on virtual time, a saturating load of weighted requests: no violation, no
    needless wait, nobody overtaken (within looptime's 1 µs)."""

    async def main() -> Recorder:
        recorder = Recorder()
        limiter = recorder.limiter(tt.RateLimiter(make_policy()))

        async def one(cost: float) -> None:
            await limiter.acquire(cost)

        async with anyio.create_task_group() as tasks:
            for n in range(40):
                tasks.start_soon(one, 1 + n % 2)
                await anyio.sleep(1 / 32 if n % 5 == 0 else 0)
        return recorder

    recorder = run_virtual(main, backend=backend_name)
    policy = make_policy()
    report = recorder.check(limit_for(policy), tolerance=1e-6)
    assert len(recorder) == 40
    report.assert_ok(work_conserving=True, fifo=True)


# -- a peer's bugs -----------------------------------------------------------------------------


def blog_baselines(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """bench/baselines.py (the seed article's limiters), reading the event loop's clock."""
    from bench import baselines

    monkeypatch.setattr(baselines, "time", types.SimpleNamespace(monotonic=anyio.current_time))
    return baselines


def test_the_articles_token_bucket_loses_whole_periods(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed article's TokenBucketRateLimiter polls every 1/rate s; when rounding leaves the
    bucket a hair short of one token at a poll, it sleeps a whole period more.  The oracle sees
    the idle time (trio's float clock makes 1/3 s sums round down)."""
    baselines = blog_baselines(monkeypatch)

    async def main() -> Recorder:
        bucket = baselines.AnyioBlogTokenBucket(rate=3, capacity=1)
        recorder = Recorder()
        acquire = recorder.wrap(bucket.acquire)
        async with anyio.create_task_group() as tasks:
            for _ in range(10):
                tasks.start_soon(acquire)
        return recorder

    report = run_virtual(main, backend="trio").check(TokenBucketLimit(3, burst=1), tolerance=1e-9)
    assert report.ok  # never too fast ...
    assert len(report.waits) >= 1  # ... but idle when it could have admitted
    assert report.idle == pytest.approx(len(report.waits) / 3)


def test_the_articles_throttler_bursts_at_send_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed article's LLMThrottler takes the sliding window first, the semaphore second:
    requests that passed the window wait for a slot, then leave together (I9).  The window's own
    log is fine; the log of when requests left breaks the window."""
    baselines = blog_baselines(monkeypatch)

    async def main() -> tuple[Recorder, Recorder]:
        window = baselines.AnyioBlogSlidingWindow(max_requests=6, window_seconds=6)
        semaphore = anyio.Semaphore(2)
        passed, sent = Recorder(), Recorder()

        async def call(latency: float) -> None:
            await passed.wrap(window.acquire)()
            async with semaphore:  # as in LLMThrottler.call
                sent.record(1)
                await anyio.sleep(latency)

        async with anyio.create_task_group() as tasks:
            for n in range(12):
                tasks.start_soon(call, 5.5 if n < 2 else 0.25)  # two slow answers first
                await anyio.lowlevel.checkpoint()
        return passed, sent

    passed, sent = run_virtual(main, backend="trio")
    limit = SlidingWindowLimit(6, window=6)
    assert passed.check(limit).ok
    report = sent.check(limit)
    assert not report.ok
    assert all(v.cost > 6 for v in report.violations)


# -- independence ------------------------------------------------------------------------------


def test_the_oracle_imports_nothing_from_throttle_trio() -> None:
    """Statically: the standard library only, no relative import, no policy code."""
    source = Path(oracle_module.__file__).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import"
            imported.add((node.module or "").partition(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_the_oracle_runs_as_a_lone_file() -> None:
    """Dynamically: loaded from its path, with throttle_trio made unimportable, it works."""
    code = f"""
import importlib.util, sys
sys.modules["throttle_trio"] = None
spec = importlib.util.spec_from_file_location("oracle", {oracle_module.__file__!r})
oracle = importlib.util.module_from_spec(spec)
sys.modules["oracle"] = oracle
spec.loader.exec_module(oracle)
report = oracle.check([(0, 1), (0, 1), (0, 1)], oracle.TokenBucketLimit(8, burst=2))
print(len(report.violations), sorted(m for m in sys.modules if m.startswith("throttle_trio")))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["1", "['throttle_trio']"]
