"""``python -m bench.redis_bench``: admissions per second through Redis, and round trips each.

Starts its own ``redis-server`` on loopback (``--port``: use a running one instead) and
measures, in one process:

* **one at a time** (the uncontended path, where an admission is exactly one round trip): a
  bare EVALSHA of our script with the same arguments one admission of ``RedisThrottle`` sends,
  from the same coredis client with no Python shell around it (the physical limit), against
  ``RedisThrottle`` with two limits (requests and tokens).  The two run in turns, in alternating
  chunks, so that a machine whose load drifts slows both alike; the ratio judged is the median
  of the chunks' time ratios;
* **50 tasks** at once, uncontended (limits far above what is reached): the bare EVALSHA,
  ``RedisThrottle`` (its head books for up to ``max_batch`` waiting tasks per round trip), the
  same with ``max_batch=1`` (one round trip per admission) and ``RedisRateLimiter``, on asyncio
  and trio; then contended (1,000/s, burst 20) to count round trips per admission under
  contention;
* **peers** (asyncio only): the ``limits`` library's async ``RedisStorage`` (moving window; its
  ``async-redis`` extra pins ``coredis<6``, which cannot live beside coredis 6, so it runs on its
  ``redispy`` implementation, redis-py's asyncio client) and pyrate-limiter's ``RedisBucket``
  over ``redis.asyncio``, both with 50 concurrent tasks.

Round trips are counted twice: commands sent by the client (a wrapper around its
``execute_command``), and scripts served by Redis (``INFO commandstats``: EVAL and EVALSHA),
each divided by the admissions.  The targets printed as PASS/FAIL are the issue's: exactly one
round trip per uncontended admission, several limits included (and at most one under
contention); throughput within 1.3x of the bare round trip, one at a time; at least 15,000
admissions a second with 50 tasks; ahead of both peers with 50 tasks.  The bare EVALSHA is the
one an uncontended admission of ``RedisThrottle`` sent, recorded and replayed through the same
coredis ``Script``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio

from throttle_trio.testing import redis_server as private_redis_server

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

__all__ = ["main"]

TASKS = 50
CHUNKS = 20  # alternating chunks of the paired one-at-a-time measurement
HUGE = 10**9
BARE = "bare EVALSHA of our script, 1 task"
BARE_50 = "bare EVALSHA of our script, 50 tasks"
OURS_SEQ = "RedisThrottle (2 limits), 1 task"
OURS = "RedisThrottle (2 limits), 50 tasks"
OURS_B1 = "RedisThrottle (2 limits, max_batch=1), 50 tasks"
OURS_1 = "RedisRateLimiter, 50 tasks"
LIMITS = "limits RedisStorage (redispy), 50 tasks"
PYRATE = "pyrate-limiter RedisBucket, 50 tasks"
CONTENDED = " @1,000/s"
CONTENDED_N = 2500  # admissions at 1,000/s: past any first burst or window
THROUGHPUT_TARGET = 15_000  # admissions per second, 50 tasks of one process (issue #11)


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
    try:
        started = private_redis_server()
    except FileNotFoundError as missing:
        sys.exit(f"{missing}; or pass --port to use a running Redis")
    with started as server:
        yield server.port


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


async def _recorded_script_call(
    client: Any, new: Callable[[], Any], admit: Callable[[Any], Awaitable[object]]
) -> Callable[[], Awaitable[object]]:
    """What one uncontended admission of a new throttle sends (exactly one EVALSHA), as a call
    that sends it again with the same keys and arguments: through the coredis ``Script`` the
    throttle registered (the round trip without throttle_trio's shell around it), or, if it
    registered none (a script shared by throttles), as a plain EVALSHA of the same SHA."""
    scripts: list[Any] = []
    sent: list[tuple[Any, Any, Any]] = []
    register, evalsha = client.register_script, client.evalsha

    def recording_register(source: Any) -> Any:
        scripts.append(register(source))
        return scripts[-1]

    def recording_evalsha(sha: Any, keys: Any = None, args: Any = None) -> Any:
        sent.append((sha, keys, args))
        return evalsha(sha, keys=keys, args=args)

    client.register_script, client.evalsha = recording_register, recording_evalsha
    try:
        await admit(new())
    finally:
        del client.register_script, client.evalsha  # the class's methods again
    if len(scripts) > 1 or len(sent) != 1:
        raise RuntimeError(
            f"an uncontended admission registered {len(scripts)} scripts and sent "
            f"{len(sent)} EVALSHAs, not 1 and 1"
        )
    sha, keys, args = sent[0]

    async def replay() -> object:
        if scripts:
            return await scripts[0](keys=keys, args=args)
        return await evalsha(sha, keys=keys, args=args)

    return replay


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


async def _paired(
    port: int,
    counter: Counter,
    backend: str,
    pair: tuple[tuple[str, Callable[[], Awaitable[object]]], ...],
    n: int,
) -> tuple[list[Result], list[float]]:
    """One admission at a time, each contender in turn, in ``CHUNKS`` alternating chunks, so
    that a machine whose load drifts slows both alike.  Returns the results (the chunks summed)
    and each chunk's time ratio (the second contender over the first)."""
    for _, admit in pair:
        for _ in range(100):  # connections, script cache
            await admit()
    seconds = [0.0] * len(pair)
    sent = [0] * len(pair)
    served = [0] * len(pair)
    ratios: list[float] = []
    size = max(1, n // CHUNKS)
    for _ in range(CHUNKS):
        chunk = []
        for i, (_, admit) in enumerate(pair):
            before_sent, before_served = counter.count, script_calls(port)
            took = await _sequential(admit, size)
            seconds[i] += took
            sent[i] += counter.count - before_sent
            served[i] += script_calls(port) - before_served
            chunk.append(took)
        ratios.append(chunk[1] / chunk[0])
    results = [
        Result(name, backend, size * CHUNKS, seconds[i], sent[i], served[i])
        for i, (name, _) in enumerate(pair)
    ]
    return results, ratios


async def _ours(port: int, backend: str, n: int) -> tuple[list[Result], list[float]]:
    import coredis

    from throttle_trio.redis import GCRALimit, RedisRateLimiter, RedisThrottle

    results = []

    def new_throttle(**options: Any) -> RedisThrottle:
        return RedisThrottle(
            client,
            f"bench-{uuid.uuid4().hex[:6]}",
            requests=GCRALimit(HUGE),
            tokens=GCRALimit(HUGE * 100),
            **options,
        )

    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        counter = Counter(client)
        throttle = new_throttle()

        # What one admission of a throttle like `throttle` sends, with no Python shell around
        # it: the EVALSHA its first admission sent, replayed through the same coredis Script.
        async def first_admission(bare: RedisThrottle) -> None:
            async with bare.reserve(requests=1, tokens=500):
                pass

        bare_call = await _recorded_script_call(client, new_throttle, first_admission)

        async def reserve() -> None:
            async with throttle.reserve(requests=1, tokens=500):
                pass

        paired, ratios = await _paired(
            port, counter, backend, ((BARE, bare_call), (OURS_SEQ, reserve)), n
        )
        results += paired
        results.append(await _measure(port, counter, BARE_50, backend, bare_call, n))
        results.append(await _measure(port, counter, OURS, backend, reserve, n))
        single = new_throttle(max_batch=1)

        async def reserve_single() -> None:
            async with single.reserve(requests=1, tokens=500):
                pass

        results.append(await _measure(port, counter, OURS_B1, backend, reserve_single, n))
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
    return results, ratios


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
    head = f"{'':50} {'backend':8} {'admissions/s':>12} {'sent/adm.':>10} {'EVALSHA/adm.':>13}"
    print(head)
    for r in results:
        print(
            f"{r.name:50} {r.backend:8} {r.per_second:12,.0f} {r.round_trips:10.3f} "
            f"{r.scripts / r.admissions:13.3f}"
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
        ratios: dict[str, list[float]] = {"asyncio": [], "trio": []}

        def keep(result: Result) -> None:
            key = (result.name, result.backend)
            if key not in best or result.per_second > best[key].per_second:
                best[key] = result

        for _ in range(args.repeat):
            for backend in ("asyncio", "trio"):
                results, chunk_ratios = anyio.run(_ours, port, backend, n, backend=backend)
                ratios[backend] += chunk_ratios
                for result in results:
                    keep(result)
            for contended in (False, True):
                for peer in (_limits_peer, _pyrate_peer):
                    try:
                        keep(anyio.run(peer, port, n, contended, backend="asyncio"))
                    except ImportError as exc:  # pragma: no cover - a peer not installed
                        print(f"skipped a peer: {exc}")
        _print(list(best.values()))
        return _verdict(best, ratios)


def _verdict(best: dict[tuple[str, str], Result], ratios: dict[str, list[float]]) -> int:
    print()
    failed = 0

    def check(label: str, passed: bool, detail: str) -> None:
        nonlocal failed
        failed += not passed
        print(f"{'PASS' if passed else 'FAIL'}  {label}: {detail}")

    for backend in ("asyncio", "trio"):
        seq, bare = best[(OURS_SEQ, backend)], best[(BARE, backend)]
        ours, single = best[(OURS, backend)], best[(OURS_1, backend)]
        bare_50, one_by_one = best[(BARE_50, backend)], best[(OURS_B1, backend)]
        contended = best[(OURS + CONTENDED, backend)]
        check(
            f"[{backend}] exactly one round trip per uncontended admission (2 limits)",
            seq.commands == seq.scripts == seq.admissions,
            f"{seq.round_trips:.3f} sent, {seq.scripts / seq.admissions:.3f} EVALSHA served "
            f"per admission, one at a time",
        )
        chunks = sorted(ratios[backend])
        median = chunks[len(chunks) // 2]
        check(
            f"[{backend}] within 1.3x of the bare sequential round trip",
            median <= 1.3,
            f"{seq.per_second:,.0f}/s vs bare {bare.per_second:,.0f}/s, one at a time "
            f"(best runs {bare.per_second / seq.per_second:.2f}x; median of "
            f"{len(chunks)} alternating chunks {median:.2f}x)",
        )
        check(
            f"[{backend}] at most one round trip per admission with 50 tasks",
            all(r.commands <= r.admissions for r in (ours, single, contended, one_by_one)),
            f"uncontended {ours.round_trips:.3f} (2 limits), {single.round_trips:.3f} (1 limit), "
            f"{one_by_one.round_trips:.3f} (max_batch=1); contended {contended.round_trips:.3f}"
            f" at {contended.per_second:,.0f}/s (limit 1,000/s)",
        )
        check(
            f"[{backend}] at least {THROUGHPUT_TARGET:,} admissions/s with 50 tasks (2 limits)",
            ours.per_second >= THROUGHPUT_TARGET,
            f"{ours.per_second:,.0f}/s, {ours.round_trips:.3f} round trips per admission "
            f"(best of the runs)",
        )
        print(
            f"      [{backend}] 50 tasks: {ours.per_second:,.0f}/s, "
            f"{ours.per_second / bare_50.per_second:.2f}x bare EVALSHA from 50 tasks "
            f"({bare_50.per_second:,.0f}/s), {ours.per_second / bare.per_second:.2f}x bare from "
            f"1 task; max_batch=1: {one_by_one.per_second:,.0f}/s"
        )
    for backend in ("asyncio", "trio"):
        ours = best[(OURS, backend)]
        for peer in (LIMITS, PYRATE):
            result = best.get((peer, "asyncio"))
            if result is None:
                check(f"[{backend}] ahead of {peer}", False, "not measured (not installed)")
                continue
            busy = best.get((peer + CONTENDED, "asyncio"))
            check(
                f"[{backend}] ahead of {peer} (asyncio)",
                ours.per_second > result.per_second,
                f"{ours.per_second:,.0f}/s vs {result.per_second:,.0f}/s "
                f"({ours.per_second / result.per_second:.2f}x); its round trips per admission: "
                f"{result.round_trips:.2f} uncontended, "
                f"{busy.round_trips if busy else math.nan:.2f} contended",
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
