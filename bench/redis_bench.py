"""``python -m bench.redis_bench``: admissions per second through Redis, and round trips each.

Starts its own ``redis-server`` on loopback (``--port``: use a running one instead) and
measures, in one process:

* **bare**: the physical limit, the same coredis client calling the same Lua script by SHA with
  no Python shell around it: one task in a loop (the shape of our admissions, which a process
  makes one at a time by design), and 50 tasks at once (for reference);
* **ours**: ``RedisThrottle`` with two limits (requests and tokens) and ``RedisRateLimiter``,
  50 concurrent tasks, uncontended (limits far above what is reached), on asyncio and trio;
  then contended (1,000/s, burst 20) to count round trips per admission under contention;
* **peers** (asyncio only): the ``limits`` library's async ``RedisStorage`` (moving window; its
  ``async-redis`` extra pins ``coredis<6``, which cannot live beside coredis 6, so it runs on its
  ``redispy`` implementation, redis-py's asyncio client) and pyrate-limiter's ``RedisBucket``
  over ``redis.asyncio``, both with 50 concurrent tasks.

Round trips are counted on the server: the sum of ``INFO commandstats`` calls (INFO itself
excepted) before and after, divided by the admissions.  The targets printed as PASS/FAIL are the
issue's: exactly one round trip per uncontended admission, several limits included; throughput
within 1.3x of the bare sequential round trip; ahead of both peers.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

__all__ = ["main"]

TASKS = 50
HUGE = 10**9
BARE = "bare EVALSHA of our script, 1 task"
BARE_50 = "bare EVALSHA of our script, 50 tasks"
OURS = "RedisThrottle (2 limits), 50 tasks"
OURS_1 = "RedisRateLimiter, 50 tasks"
LIMITS = "limits RedisStorage (redispy), 50 tasks"
PYRATE = "pyrate-limiter RedisBucket, 50 tasks"
CONTENDED = " @1,000/s"
CONTENDED_N = 2500  # admissions at 1,000/s: past any first burst or window


@dataclass(frozen=True, slots=True)
class Result:
    """One measured row."""

    name: str
    backend: str
    admissions: int
    seconds: float
    commands: int  # sent by the client
    scripts: int  # EVAL/EVALSHA served by Redis

    @property
    def per_second(self) -> float:
        return self.admissions / self.seconds

    @property
    def round_trips(self) -> float:
        return self.commands / self.admissions


# -- the server ---------------------------------------------------------------------------------


@contextmanager
def redis_server(port: int | None) -> Iterator[int]:
    """A port with Redis on it: ``port`` if given, else a private redis-server, stopped after."""
    if port is not None:
        yield port
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install -y redis-server), or pass --port")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = int(sock.getsockname()[1])
    with tempfile.TemporaryDirectory() as directory:
        args = ["--port", str(free), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = subprocess.Popen(
            [binary, *args, "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while _command(free, b"PING") != b"+PONG\r\n":
                if time.monotonic() > deadline:
                    sys.exit("redis-server did not start")
                time.sleep(0.02)
            yield free
        finally:
            process.terminate()
            process.wait()


def _command(port: int, command: bytes) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(command + b"\r\n")
            reply = sock.recv(65536)
            if reply.startswith(b"$"):  # a bulk string: read it whole
                size = int(reply[1 : reply.index(b"\r\n")])
                while len(reply) < size + len(str(size)) + 5:
                    reply += sock.recv(65536)
            return reply
    except OSError:
        return b""


def script_calls(port: int) -> int:
    """Script round trips the server served so far (``INFO commandstats``: EVAL and EVALSHA;
    the commands a script runs inside are counted there too, so they are left out)."""
    total = 0
    for line in _command(port, b"INFO commandstats").decode().splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            total += int(line.split("calls=")[1].split(",")[0])
    return total


class Counter:
    """Counts the commands a client sends (round trips), by wrapping its ``execute_command``."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        inner = client.execute_command

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await inner(*args, **kwargs)

        client.execute_command = counted


# -- runners ------------------------------------------------------------------------------------


async def _run_tasks(admit: Callable[[], Awaitable[object]], admissions: int) -> float:
    """Seconds for ``TASKS`` tasks to make ``admissions`` admissions between them."""
    remaining = admissions

    async def task() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await admit()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(TASKS):
            tg.start_soon(task)
    return time.perf_counter() - started


async def _sequential(admit: Callable[[], Awaitable[object]], admissions: int) -> float:
    started = time.perf_counter()
    for _ in range(admissions):
        await admit()
    return time.perf_counter() - started


async def _measure(
    port: int,
    counter: Counter,
    name: str,
    backend: str,
    admit: Callable[[], Awaitable[object]],
    n: int,
    *,
    tasks: bool = True,
    warm_up: bool = True,
) -> Result:
    if warm_up:
        for _ in range(100):  # connections, script cache
            await admit()
    sent, served = counter.count, script_calls(port)
    seconds = await (_run_tasks(admit, n) if tasks else _sequential(admit, n))
    return Result(name, backend, n, seconds, counter.count - sent, script_calls(port) - served)


async def _ours(port: int, backend: str, n: int) -> list[Result]:
    import coredis

    from throttle_trio.redis import GCRALimit, RedisRateLimiter, RedisThrottle

    results = []
    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        counter = Counter(client)
        bare = RedisThrottle(client, "bare", requests=GCRALimit(HUGE), tokens=GCRALimit(HUGE))
        script, keys = bare._script, [bare.keys["gate"], bare.keys["requests"], bare.keys["tokens"]]

        async def bare_call() -> None:  # what one admission sends, with no Python shell
            await script(keys=keys, args=["acquire", 2, -1, 1, HUGE, 1, HUGE])

        results.append(await _measure(port, counter, BARE, backend, bare_call, n, tasks=False))
        results.append(await _measure(port, counter, BARE_50, backend, bare_call, n))
        throttle = RedisThrottle(
            client,
            f"bench-{uuid.uuid4().hex[:6]}",
            requests=GCRALimit(HUGE),
            tokens=GCRALimit(HUGE * 100),
        )

        async def reserve() -> None:
            async with throttle.reserve(requests=1, tokens=500):
                pass

        results.append(await _measure(port, counter, OURS, backend, reserve, n))
        limiter = RedisRateLimiter(client, f"bench-{uuid.uuid4().hex[:6]}", GCRALimit(HUGE))
        results.append(await _measure(port, counter, OURS_1, backend, limiter.acquire, n))
        contended = RedisThrottle(
            client,
            f"bench-{uuid.uuid4().hex[:6]}",
            requests=GCRALimit(1000, burst=20),
            tokens=GCRALimit(HUGE * 100),
        )

        async def reserve_contended() -> None:
            async with contended.reserve(requests=1, tokens=500):
                pass

        results.append(
            await _measure(
                port,
                counter,
                OURS + CONTENDED,
                backend,
                reserve_contended,
                CONTENDED_N,
                warm_up=False,
            )
        )
    return results


async def _limits_peer(port: int, n: int, contended: bool) -> Result:
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    storage = RedisStorage(f"redis://127.0.0.1:{port}", implementation="redispy")
    limiter = MovingWindowRateLimiter(storage)
    await storage.check()  # connects
    counter = Counter(cast("Any", storage).bridge.storage)  # limits' internals: untyped
    item = RateLimitItemPerSecond(1000 if contended else HUGE)
    key = uuid.uuid4().hex

    async def admit() -> None:
        while not await limiter.hit(item, key):  # no wait API: poll until the window allows
            stats = await limiter.get_window_stats(item, key)
            await asyncio.sleep(max(0.0, stats.reset_time - time.time()))

    name = LIMITS + (CONTENDED if contended else "")
    count = CONTENDED_N if contended else n
    return await _measure(port, counter, name, "asyncio", admit, count, warm_up=not contended)


async def _pyrate_peer(port: int, n: int, contended: bool) -> Result:
    from pyrate_limiter import Duration, Limiter, Rate, RedisBucket
    from redis.asyncio import Redis

    client: Any = Redis(host="127.0.0.1", port=port)
    counter = Counter(client)
    rate = Rate(1000 if contended else HUGE, Duration.SECOND)
    bucket = await RedisBucket.init([rate], client, uuid.uuid4().hex)
    limiter = Limiter(bucket, buffer_ms=0)

    async def admit() -> None:
        await limiter.try_acquire_async("bench", blocking=True)

    name = PYRATE + (CONTENDED if contended else "")
    count = CONTENDED_N if contended else n
    try:
        return await _measure(port, counter, name, "asyncio", admit, count, warm_up=not contended)
    finally:
        await client.aclose()


def _print(results: list[Result]) -> None:
    head = f"{'':46} {'backend':8} {'admissions/s':>12} {'sent/adm.':>10} {'EVALSHA/adm.':>13}"
    print(head)
    for r in results:
        print(
            f"{r.name:46} {r.backend:8} {r.per_second:12,.0f} {r.round_trips:10.2f} "
            f"{r.scripts / r.admissions:13.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--port", type=int, help="use the Redis on this loopback port")
    parser.add_argument("-n", type=int, default=5000, help="admissions per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is kept")
    args = parser.parse_args(argv)
    n = args.n
    with redis_server(args.port) as port:
        best: dict[tuple[str, str], Result] = {}

        def keep(result: Result) -> None:
            key = (result.name, result.backend)
            if key not in best or result.per_second > best[key].per_second:
                best[key] = result

        for _ in range(args.repeat):
            for backend in ("asyncio", "trio"):
                for result in anyio.run(_ours, port, backend, n, backend=backend):
                    keep(result)
            for contended in (False, True):
                for peer in (_limits_peer, _pyrate_peer):
                    try:
                        keep(anyio.run(peer, port, n, contended, backend="asyncio"))
                    except ImportError as exc:  # pragma: no cover - a peer not installed
                        print(f"skipped a peer: {exc}")
        _print(list(best.values()))
        return _verdict(best)


def _verdict(best: dict[tuple[str, str], Result]) -> int:
    print()
    failed = 0

    def check(label: str, passed: bool, detail: str) -> None:
        nonlocal failed
        failed += not passed
        print(f"{'PASS' if passed else 'FAIL'}  {label}: {detail}")

    for backend in ("asyncio", "trio"):
        ours, single = best[(OURS, backend)], best[(OURS_1, backend)]
        bare, contended = best[(BARE, backend)], best[(OURS + CONTENDED, backend)]
        exact = all(r.commands == r.scripts == r.admissions for r in (ours, single, contended))
        check(
            f"[{backend}] exactly one round trip per admission",
            exact,
            f"uncontended {ours.round_trips:.3f} (2 limits), {single.round_trips:.3f} (1 limit); "
            f"contended {contended.round_trips:.3f} at {contended.per_second:,.0f}/s "
            "(limit 1,000/s)",
        )
        check(
            f"[{backend}] within 1.3x of the bare sequential round trip",
            bare.per_second <= 1.3 * ours.per_second,
            f"{ours.per_second:,.0f}/s vs bare {bare.per_second:,.0f}/s "
            f"({bare.per_second / ours.per_second:.2f}x)",
        )
    ours = best[(OURS, "asyncio")]
    for peer in (LIMITS, PYRATE):
        result = best.get((peer, "asyncio"))
        if result is None:
            check(f"[asyncio] ahead of {peer}", False, "not measured (not installed)")
            continue
        busy = best.get((peer + CONTENDED, "asyncio"))
        check(
            f"[asyncio] ahead of {peer}",
            ours.per_second > result.per_second,
            f"{ours.per_second:,.0f}/s vs {result.per_second:,.0f}/s "
            f"({ours.per_second / result.per_second:.2f}x); its round trips per admission: "
            f"{result.round_trips:.2f} uncontended, "
            f"{busy.round_trips if busy else math.nan:.2f} contended",
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
