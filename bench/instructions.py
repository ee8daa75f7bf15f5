"""``python -m bench.instructions``: instructions per admission, the repeatable measure.

CPU time on a shared machine moves by 20-30% between runs; instruction counts do not.  Each
workload runs twice under ``valgrind --tool=callgrind`` (instrumentation only, no cache
simulation), with ``short`` and ``long`` operations, and the difference divided by
``long - short`` is the count per operation: start-up, imports and the event loop's set-up
cancel out.  The clocks are virtual, so a count does not include the time the loop sleeps:

* **contended**: N = 1,000 tasks loop on ``acquire(1)`` at 2,000/s, burst 5 (benchmark 2's
  workload), on asyncio with a selector loop whose ``select`` advances the time instead of
  sleeping, and on trio with ``MockClock(autojump_threshold=0)``.  The *loop floor* is the
  same clock waking one task at the same rate beside N - 1 parked ones (a bare future and
  ``loop.call_at`` on asyncio, ``trio.sleep_until`` on trio): what the loop itself costs.
* **uncontended**: one task, an effectively infinite rate (benchmark 1's workload), beside
  ``anyio.CapacityLimiter`` acquire + release.

Usage::

    python -m bench.instructions                  # every row, both backends (about 5 minutes)
    python -m bench.instructions --backend trio --only contended

Run it from a checkout (or with ``PYTHONPATH``) to count another version of the package; the
first line says which ``throttle_trio`` was measured.  Not part of ``python -m bench``: it
needs valgrind, and it measures code, not the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import selectors
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

RATE = 2_000
BURST = 5
TASKS = 1_000
START = 123_456.789  # a clock reading like a machine's uptime (seconds), not 0
#: (short, long) operations per workload: long enough that the difference dwarfs the noise
#: of the interpreter's start-up (a few thousand instructions).
CONTENDED_OPS = (2_000, 6_000)
UNCONTENDED_OPS = (20_000, 60_000)


# -- The workloads (run in a child process, under callgrind) ------------------------------------


class _AdvancingSelector(selectors.DefaultSelector):
    """A selector that, asked to wait, moves its loop's clock forward instead."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: _VirtualLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0 and self.loop is not None:
            self.loop.now += timeout
            timeout = 0
        return super().select(timeout)


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _AdvancingSelector()
        self.now = START
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        return self.now


def _run(backend: str, fn: Callable[[], Awaitable[None]]) -> None:
    if backend == "asyncio":
        anyio.run(fn, backend="asyncio", backend_options={"loop_factory": _VirtualLoop})
    else:
        import trio.testing

        clock = trio.testing.MockClock(autojump_threshold=0)
        clock.jump(START)
        anyio.run(fn, backend="trio", backend_options={"clock": clock})


def _limiter(kind: str, rate: float, burst: float) -> Any:
    from throttle_trio import GCRA, RateLimiter, TokenBucket

    return RateLimiter((GCRA if kind == "gcra" else TokenBucket)(rate, burst=burst))


async def _contended(kind: str, ops: int) -> None:
    limiter = _limiter(kind, RATE, BURST)
    admitted = 0
    done = anyio.Event()

    async def worker() -> None:
        nonlocal admitted
        while True:
            await limiter.acquire(1)
            admitted += 1
            if admitted == ops:
                done.set()

    async with anyio.create_task_group() as tg:
        for _ in range(TASKS):
            tg.start_soon(worker)
        await done.wait()
        tg.cancel_scope.cancel()


async def _floor(backend: str, ops: int) -> None:
    interval = 1 / RATE

    async def ticker() -> None:
        if backend == "asyncio":
            loop = asyncio.get_running_loop()
            due = loop.time()

            def fire(future: asyncio.Future[None]) -> None:
                if not future.done():
                    future.set_result(None)

            for _ in range(ops):
                if due > loop.time():
                    future: asyncio.Future[None] = loop.create_future()
                    timer = loop.call_at(due, fire, future)
                    try:
                        await future
                    finally:
                        timer.cancel()
                else:
                    await asyncio.sleep(0)
                due = max(due, loop.time()) + interval
        else:
            import trio

            due = trio.current_time()
            for _ in range(ops):
                if due > trio.current_time():
                    await trio.sleep_until(due)
                else:
                    await trio.lowlevel.checkpoint()
                due = max(due, trio.current_time()) + interval

    async with anyio.create_task_group() as tg:
        for _ in range(TASKS - 1):
            tg.start_soon(anyio.sleep_forever)
        await ticker()
        tg.cancel_scope.cancel()


async def _uncontended(kind: str, ops: int) -> None:
    if kind == "anyio":
        capacity = anyio.CapacityLimiter(10**9)
        for _ in range(ops):
            await capacity.acquire()
            capacity.release()
        return
    limiter = _limiter(kind, 10**9, 10**9)
    for _ in range(ops):
        await limiter.acquire(1)


def _workload(backend: str, name: str, ops: int) -> None:
    scenario, _, kind = name.partition(":")
    if scenario == "contended":
        if kind == "floor":
            _run(backend, lambda: _floor(backend, ops))
        else:
            _run(backend, lambda: _contended(kind, ops))
    else:
        _run(backend, lambda: _uncontended(kind, ops))


# -- The driver ---------------------------------------------------------------------------------

ROWS = {
    "contended": [
        ("contended:bucket", "RateLimiter(TokenBucket), N = 1,000"),
        ("contended:gcra", "RateLimiter(GCRA), N = 1,000"),
        ("contended:floor", "loop floor (timer + 1 switch), N = 1,000"),
    ],
    "uncontended": [
        ("uncontended:bucket", "RateLimiter(TokenBucket) acquire"),
        ("uncontended:anyio", "anyio.CapacityLimiter acquire + release"),
    ],
}


def _instructions(backend: str, name: str, ops: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--workload",
        f"{backend}/{name}/{ops}",
    ]
    # A fixed hash seed: string hashes decide where dicts and sets probe, which moves the count.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{result.stderr}")
    return int(found.group(1))


def _per_op(backend: str, name: str, ops: tuple[int, int]) -> float:
    short, long = ops
    return (_instructions(backend, name, long) - _instructions(backend, name, short)) / (
        long - short
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], action="append")
    parser.add_argument("--only", choices=sorted(ROWS), action="append")
    parser.add_argument("--workload", help=argparse.SUPPRESS)  # the child's side
    args = parser.parse_args(argv)
    if args.workload:
        backend, name, ops = args.workload.split("/")
        _workload(backend, name, int(ops))
        return 0
    if shutil.which("valgrind") is None:
        print("python -m bench.instructions needs valgrind (apt-get install valgrind)")
        return 2
    import throttle_trio

    print(f"throttle_trio from {os.path.dirname(throttle_trio.__file__)}")
    print(f"load average at start: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| workload | backend | instructions per operation |")
    print("|:--|--:|--:|")
    for scenario in args.only or list(ROWS):
        ops = CONTENDED_OPS if scenario == "contended" else UNCONTENDED_OPS
        for backend in args.backend or ["asyncio", "trio"]:
            for name, label in ROWS[scenario]:
                count = _per_op(backend, name, ops)
                print(f"| {label} | {backend} | {count:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
