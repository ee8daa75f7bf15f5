"""The recorder, the virtual clocks and the workload player of throttle_trio.testing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import httpx2
import looptime
import pytest

import throttle_trio as tt
from throttle_trio.httpx import ThrottledTransport
from throttle_trio.testing import (
    Arrival,
    FakeLLMServer,
    Reconfiguration,
    Recorder,
    Step,
    limit_for,
    limits_for,
    play,
    run_virtual,
    segments,
    virtual_backend,
)
from throttle_trio.testing.oracle import LogEntry, SlidingWindowLimit, TokenBucketLimit


def test_virtual_clocks_start_where_asked(backend_name: str) -> None:
    async def main() -> float:
        start = anyio.current_time()
        await anyio.sleep(3600)
        return anyio.current_time() - start

    assert run_virtual(main, backend=backend_name) == 3600

    async def now() -> float:
        return anyio.current_time()

    assert run_virtual(now, backend=backend_name, start=1000) == 1000


class SlowToShutDown(ThreadPoolExecutor):
    """An executor whose threads take 0.2 s (real) to wind down at the loop's close."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        time.sleep(0.2)
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


async def use_a_slow_default_executor() -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(SlowToShutDown())
    await loop.run_in_executor(None, time.sleep, 0)
    await anyio.sleep(1)  # virtual


def test_the_default_executor_is_joined_in_real_time_on_looptime() -> None:
    """Python 3.13 bounds the executor's join at loop close with a loop timer of 300 s, which a
    looptime loop fires at once while the thread still runs: "The executor did not finish
    joining its threads within 300 seconds" (an error under -W error).  The kit's loops wait
    for the thread instead."""
    run_virtual(use_a_slow_default_executor, backend="asyncio")  # no warning
    if sys.version_info >= (3, 13):  # the cause, on a plain looptime loop
        plain = {"loop_factory": lambda: looptime.new_event_loop(start=0)}
        with pytest.warns(RuntimeWarning, match="did not finish"):
            anyio.run(use_a_slow_default_executor, backend="asyncio", backend_options=plain)


def test_virtual_backend_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="backend must be"):
        virtual_backend("curio")
    with pytest.raises(ValueError, match="start"):
        virtual_backend("trio", start=-1)


def test_a_missing_clock_library_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['looptime'] = None\n"
        "from throttle_trio.testing import virtual_backend\n"
        "try:\n    virtual_backend('asyncio')\nexcept ImportError as error:\n    print(error)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert 'pip install "throttle_trio[testing]"' in out


def test_a_limiter_is_recorded_at_admission(backend_name: str) -> None:
    """acquire(), try_acquire() and async with: time of return, cost, time of the call."""

    async def main() -> Recorder:
        recorder = Recorder()
        limiter = recorder.limiter(tt.RateLimiter(tt.TokenBucket(8, burst=2)))
        assert limiter.try_acquire(2)
        assert not limiter.try_acquire()
        async with limiter:
            pass
        await limiter.acquire(1, timeout=1)
        assert limiter.statistics().admitted == 3  # the wrapped limiter's
        return recorder

    recorder = run_virtual(main, backend=backend_name)
    assert recorder.log == (
        LogEntry(0, 2, requested=0),
        LogEntry(0.125, 1, requested=0),
        LogEntry(0.25, 1, requested=0.125),
    )
    recorder.check(TokenBucketLimit(8, burst=2)).assert_ok(work_conserving=True)


def test_a_throttle_is_recorded_with_its_costs(backend_name: str) -> None:
    async def main() -> Recorder:
        recorder = Recorder()
        inner = tt.Throttle(
            requests=tt.TokenBucket(2, burst=1), tokens_per_minute=tt.TokenBucket(600, per=60)
        )
        throttle = recorder.throttle(inner)
        for _ in range(3):
            async with throttle.reserve(requests=1, tokens=100) as slot:
                slot.settle(tokens=50)  # the log keeps the estimate charged at admission
        assert throttle.statistics().admitted == 3
        return recorder

    recorder = run_virtual(main, backend=backend_name)
    assert [entry.time for entry in recorder.log] == [0, 0.5, 1.0]
    assert recorder.log[0].cost == {"requests": 1, "tokens": 100}
    throttle = tt.Throttle(
        requests=tt.TokenBucket(2, burst=1), tokens_per_minute=tt.TokenBucket(600, per=60)
    )
    limits = limits_for(throttle)
    assert limits == [
        TokenBucketLimit(2, 1, 1, metric="requests"),
        TokenBucketLimit(600, 60, 600, metric="tokens"),
    ]
    recorder.check(*limits).assert_ok(work_conserving=True)


@pytest.mark.parametrize("library", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_a_transport_records_what_leaves(library, backend_name: str) -> None:
    """Under the throttled transport: the instants requests reach the provider."""

    async def main() -> tuple[Recorder, FakeLLMServer]:
        server = FakeLLMServer(rpm=60)
        recorder = Recorder()
        wire = recorder.transport(library.ASGITransport(app=server))
        transport: Any
        if library is httpx:
            throttle = tt.Throttle(requests=tt.TokenBucket(60, per=60, burst=2))
            transport = ThrottledTransport(wire, throttle=throttle)
        else:
            from throttle_trio.httpx2 import ThrottledTransport as Throttled2

            throttle = tt.Throttle(requests=tt.TokenBucket(60, per=60, burst=2))
            transport = Throttled2(wire, throttle=throttle)
        async with library.AsyncClient(transport=transport, base_url="http://fake/v1") as client:
            for _ in range(4):
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                (await client.post("/chat/completions", json=body)).raise_for_status()
        return recorder, server

    recorder, server = run_virtual(main, backend=backend_name)
    assert [entry.time for entry in recorder.log] == [0, 0, 1, 2]
    assert recorder.log[0].label == "POST /v1/chat/completions"
    assert [a.time for a in server.stats.admissions] == [0, 0, 1, 2]
    recorder.check(TokenBucketLimit(60, per=60, burst=2)).assert_ok()


def test_a_transport_of_neither_library_is_refused() -> None:
    with pytest.raises(TypeError, match="AsyncBaseTransport"):
        Recorder().transport(object())


def test_wrap_records_any_acquire_function() -> None:
    async def main() -> Recorder:
        recorder = Recorder()

        async def acquire(weight: int) -> str:
            await anyio.sleep(weight)
            return "ok"

        wrapped = recorder.wrap(acquire, cost=lambda weight: weight)
        assert await wrapped(2) == "ok"
        recorder.record(5, label="by hand")
        return recorder

    recorder = run_virtual(main)
    assert recorder.log == (LogEntry(2, 2, requested=0), LogEntry(2, 5, label="by hand"))
    assert len(recorder) == 2
    recorder.clear()
    assert list(recorder) == []


def test_the_recorder_works_on_the_real_clock() -> None:
    """On a real loop it reads the loop's clock: counts and order, not durations."""

    async def main() -> Recorder:
        recorder = Recorder()
        limiter = recorder.limiter(tt.RateLimiter(tt.TokenBucket(200, burst=5)))
        for _ in range(10):
            await limiter.acquire()
        return recorder

    recorder = anyio.run(main)
    assert len(recorder) == 10
    times = [entry.time for entry in recorder.log]
    assert times == sorted(times)
    # The limiter never went too fast, up to the clock's rounding.
    recorder.check(TokenBucketLimit(200, burst=5), tolerance=1e-6).assert_ok()


def test_limit_for_every_policy() -> None:
    assert limit_for(tt.TokenBucket(5, per=2, burst=3)) == TokenBucketLimit(5, 2, 3)
    assert limit_for(tt.SlidingWindow(4, 2), metric="tokens") == SlidingWindowLimit(
        4, 2, metric="tokens"
    )
    with pytest.raises(TypeError, match="AIMD"):
        limit_for(tt.AIMD(10))  # type: ignore[arg-type]


# -- the workload player -----------------------------------------------------------------------

WORKLOAD: list[Step] = [
    Arrival(0, 2),
    Arrival(0, 1),
    Arrival(0, 1, cancel_after=0.0625),  # cancelled while waiting
    Arrival(0, 2, timeout=0.03125),  # fails at once: its wait is longer
    Arrival(0.0625, 5),  # above the capacity: refused at once
    Reconfiguration(0.25, {"rate": 4}),
    Arrival(0.25, 1),
]


def test_play_reports_every_outcome(backend_name: str) -> None:
    async def main():
        return await play(WORKLOAD, tt.RateLimiter(tt.TokenBucket(8, burst=2)))

    played = run_virtual(main, backend=backend_name)
    assert played.outcomes == (
        "admitted",
        "admitted",
        "cancelled",
        "timed out",
        "refused",
        "admitted",
    )
    assert played.admitted_at == (0, 0.125, None, None, None, 0.25)
    assert played.count("admitted") == 3
    assert [entry.label for entry in played.log] == ["#0", "#1", "#5"]
    limits = segments(TokenBucketLimit(8, burst=2), WORKLOAD)
    assert limits == [
        TokenBucketLimit(8, burst=2, until=0.25),
        TokenBucketLimit(4, burst=2, since=0.25),
    ]
    from throttle_trio.testing.oracle import check

    check(played.log, *limits).assert_ok()


def test_play_refuses_to_reconfigure_a_limiter_that_cannot(backend_name: str) -> None:
    """Reconfiguration is supported on both loops (the test above plays one on asyncio and on
    trio, with the same exact instants); what play() cannot do is reconfigure a limiter with
    no ``reconfigure()``: it says so before any step runs, rather than an AttributeError from
    a task in the middle of the workload."""

    class NoReconfigure:
        def __init__(self) -> None:
            self.calls: list[float] = []

        async def acquire(self, cost: float = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
            self.calls.append(cost)

    limiter = NoReconfigure()

    async def main():
        return await play(WORKLOAD, limiter)

    with pytest.raises(TypeError, match=r"NoReconfigure has no reconfigure\(\*\*changes\)"):
        run_virtual(main, backend=backend_name)
    assert limiter.calls == []

    async def without_reconfigurations():
        steps = [step for step in WORKLOAD if isinstance(step, Arrival)]
        return await play(steps, limiter)

    assert run_virtual(without_reconfigurations, backend=backend_name).count("admitted") == 6


def test_steps_check_their_arguments() -> None:
    with pytest.raises(ValueError, match="cost must be > 0"):
        Arrival(0, 0)
    with pytest.raises(TypeError, match="at must be a finite number"):
        Arrival(float("nan"))
    assert repr(Arrival(0.5, 2, timeout=1.0)) == "Arrival(at=0.5, cost=2, timeout=1.0)"
    assert repr(Reconfiguration(1, {"rate": 2})) == "Reconfiguration(at=1, changes={'rate': 2})"
