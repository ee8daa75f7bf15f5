"""Misuse gets a clear error, never a hang; reading state works anywhere and changes nothing.

* a limiter used from a second thread's event loop while tasks wait in the first one;
* ``statistics()`` and other reads outside any event loop (anyio's ``CapacityLimiter`` allows
  it), which must not start a bucket's clock;
* the httpx transport in an httpx2 client, and the other way round;
* ``CapacityLimiter(0)``, as anyio (4.12+) and trio accept it.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import httpx2
import pytest

import throttle_trio as tt
from tests.helpers import run_virtual, settle
from throttle_trio import httpx as tt_httpx
from throttle_trio import httpx2 as tt_httpx2

THREAD_ERROR = re.escape("this limiter has 1 task(s) waiting in an event loop of another thread")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("which", ["CapacityLimiter", "RateLimiter"])
def test_a_second_thread_gets_a_clear_error(backend: str, which: str) -> None:
    """A task waits in loop A; another thread's loop B acquires and releases: both refused."""
    if which == "CapacityLimiter":
        limiter: Any = tt.CapacityLimiter(1)
        limiter.acquire_on_behalf_of_nowait("holder")

        def wake() -> None:
            limiter.release_on_behalf_of("holder")
    else:
        limiter = tt.RateLimiter(tt.TokenBucket(rate=1, per=3600.0, burst=1, initial_tokens=0))

        def wake() -> None:
            limiter.refund(1)

    errors: list[str] = []
    waiting = threading.Event()
    done = threading.Event()

    async def other_loop() -> None:
        with pytest.raises(RuntimeError, match=THREAD_ERROR) as acquire_error:
            await limiter.acquire()
        errors.append(str(acquire_error.value))
        with pytest.raises(RuntimeError, match=THREAD_ERROR):
            wake()

    def second_thread() -> None:
        waiting.wait(10)
        try:
            anyio.run(other_loop, backend=backend)
        finally:
            done.set()

    async def first_loop() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(limiter.acquire)
            await settle()
            assert limiter.statistics().tasks_waiting == 1
            waiting.set()
            await anyio.to_thread.run_sync(done.wait, 10)
            wake()  # in its own thread: fine, the waiter goes
            await settle()

    thread = threading.Thread(target=second_thread)
    thread.start()
    # The real clock: a virtual one would jump to the waiter's deadline while loop A waits
    # for the thread, and admit it.
    anyio.run(first_loop, backend=backend)
    thread.join(10)
    assert done.is_set()
    assert len(errors) == 1
    assert "make one per thread" in errors[0]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_one_loop_after_another_in_other_threads_is_fine(backend: str) -> None:
    """Nothing waits between the loops: each thread's loop uses the limiter in turn."""
    limiter = tt.CapacityLimiter(1)

    async def use() -> None:
        async with limiter:
            await anyio.lowlevel.checkpoint()

    for _ in range(3):
        thread = threading.Thread(target=anyio.run, args=(use,), kwargs={"backend": backend})
        thread.start()
        thread.join(10)
    assert limiter.statistics().admitted == 3


def test_reads_work_outside_an_event_loop() -> None:
    """statistics(), paused_until and is_pristine() need no loop (they used to raise)."""
    limiter = tt.RateLimiter(tt.TokenBucket(rate=10, per=1.0, burst=10))
    assert limiter.statistics().available == 10
    throttle = tt.Throttle(requests=tt.TokenBucket(rate=10, per=1.0), max_concurrent=2)
    assert throttle.statistics().limits["requests"].available == 10
    assert throttle.paused_until is None
    assert throttle.is_pristine()
    assert tt.CapacityLimiter(3).statistics().borrowed_tokens == 0


@pytest.mark.parametrize("policy", [tt.TokenBucket, tt.GCRA], ids=["TokenBucket", "GCRA"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_read_does_not_start_the_clock(policy: type[tt.TokenBucket], backend: str) -> None:
    """With initial_tokens=0, a statistics() call before the first request changed nothing:
    the first admission of a full burst still comes one period after the first acquire."""

    def fresh() -> tt.RateLimiter[Any]:
        return tt.RateLimiter(policy(rate=10, per=1.0, burst=10, initial_tokens=0))

    async def first_admission(read_first: bool) -> float:
        limiter = fresh()
        if read_first:
            limiter.statistics()
        await anyio.sleep(5)
        started = anyio.current_time()
        await limiter.acquire(10)
        return anyio.current_time() - started

    plain = run_virtual(lambda: first_admission(False), backend)
    read = run_virtual(lambda: first_admission(True), backend)
    assert read == plain == 1.0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_observe_works_outside_an_event_loop(backend: str) -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(rate=100, per=60.0))
    report = tt.parse_rate_limit_headers(
        {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "40"}, 0.0
    )
    throttle.observe(report)
    assert throttle.statistics().limits["requests"].available == 40


# --------------------------------------------------------------------------- httpx vs httpx2


def test_the_httpx_transport_refuses_an_httpx2_transport() -> None:
    throttle = tt.Throttle(max_concurrent=1)
    with pytest.raises(
        TypeError,
        match="^"
        + re.escape(
            "transport must be an httpx object (this is throttle_trio.httpx.ThrottledTransport), "
            "got httpx2.AsyncHTTPTransport; for httpx2 use throttle_trio.httpx2.ThrottledTransport"
        )
        + "$",
    ):
        tt_httpx.ThrottledTransport(httpx2.AsyncHTTPTransport(), throttle=throttle)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"for httpx use throttle_trio\.httpx\.ThrottledTransport$"):
        tt_httpx2.ThrottledTransport(httpx.AsyncHTTPTransport(), throttle=throttle)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_an_httpx2_client_around_the_httpx_transport_says_which_to_use() -> None:
    throttle = tt.Throttle(max_concurrent=1)
    transport = tt_httpx.ThrottledTransport(
        httpx.MockTransport(lambda request: httpx.Response(200)), throttle=throttle
    )
    async with httpx2.AsyncClient(transport=transport) as client:  # type: ignore[arg-type]
        with pytest.raises(
            TypeError, match=r"for httpx2 use throttle_trio\.httpx2\.ThrottledTransport$"
        ):
            await client.get("http://api.test/")
    assert throttle.statistics().in_flight == 0


# --------------------------------------------------------------------------- CapacityLimiter(0)


@pytest.mark.anyio
async def test_capacity_limiter_of_zero_waits_until_raised() -> None:
    """anyio (4.12+) and trio accept 0 tokens: acquire waits until total_tokens is raised."""
    limiter = tt.CapacityLimiter(0)
    got: list[float] = []

    async def borrow() -> None:
        async with limiter:
            got.append(anyio.current_time())

    async with anyio.create_task_group() as group:
        group.start_soon(borrow)
        await anyio.sleep(2)
        assert got == []
        limiter.total_tokens = 1
    assert got == [2.0]
