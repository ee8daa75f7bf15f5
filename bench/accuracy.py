"""Benchmark 3: accuracy at 500/s (bursts 2 and 10), with and without event-loop stalls.

Twenty worker tasks loop on ``await acquire(1)`` for a fixed time; each records
``time.perf_counter()`` the moment ``acquire`` returns.  From those admission times:

* achieved rate / configured rate = ``(n - b) / (t_last - t_first) / r``, with ``b`` the
  burst the peer really allows (the first ``b`` go at once);
* the worst count in any closed window of 1 s and of 0.1 s, against the bound
  ``floor(b + r*T)`` (the token-bucket guarantee; a sliding window of ``b`` per ``b/r`` s
  implies it too).  A count above the bound is a violation.

The *stalled* variant adds a task that blocks the event loop with ``time.sleep(0.1)`` every
0.4 s: a limiter that books future slots, or admits on a timer that fired during the stall,
releases a burst when the loop comes back.  Stalls lower the achievable rate (the loop is
blocked a quarter of the time), so only the bound is judged there.
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from ._peers import BACKENDS, OURS, RATE_PEERS, RatePeer, RateSpec
from ._report import Check, Section, Table, fmt, median, ratio

if TYPE_CHECKING:
    from ._settings import Settings

__all__ = ["run"]

RATE = 500
BURSTS = (2, 10)
WORKERS = 20
WINDOWS = (1.0, 0.1)
STALL_EVERY = 0.4
STALL_FOR = 0.1
STALL_FIRST = 0.1
AIOMETER = "aiometer"


@dataclass(frozen=True, slots=True)
class Sample:
    rate: float  # achieved / configured
    worst: tuple[int, ...]  # worst count per window of WINDOWS
    admitted: int


def bound(burst: float, window: float) -> int:
    """The most admissions a limiter of rate RATE and burst ``burst`` allows in ``window``."""
    return math.floor(burst + RATE * window + 1e-9)


def worst_count(stamps: list[float], window: float) -> int:
    """The largest number of ``stamps`` (sorted) in any closed interval of length ``window``."""
    return max(
        (bisect.bisect_right(stamps, t + window) - i for i, t in enumerate(stamps)), default=0
    )


def _sample(stamps: list[float], burst: float) -> Sample:
    stamps.sort()
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    # Runs that end inside the first burst (limits' 1 s window in quick mode) show no rate.
    rate = (len(stamps) - burst) / span / RATE if span > 0 and len(stamps) > burst else math.nan
    return Sample(rate, tuple(worst_count(stamps, w) for w in WINDOWS), len(stamps))


async def _staller() -> None:
    # Blocked during [0.1, 0.2], [0.5, 0.6], [0.9, 1.0] ... seconds into the run.
    await anyio.sleep(STALL_FIRST)
    while True:
        time.sleep(STALL_FOR)  # noqa: ASYNC251 - blocking the event loop is the point
        await anyio.sleep(STALL_EVERY - STALL_FOR)


async def _run_peer(
    peer: RatePeer, backend: str, burst: int, stall: bool, seconds: float
) -> list[float]:
    stamps: list[float] = []
    clock = time.perf_counter

    async with peer.open(RateSpec(RATE, burst), backend) as acquire:

        async def worker() -> None:
            while True:
                await acquire(1)
                stamps.append(clock())

        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:
                for _ in range(WORKERS):
                    tg.start_soon(worker)
                if stall:
                    tg.start_soon(_staller)
    return stamps


async def _run_aiometer(stall: bool, seconds: float) -> list[float]:
    import aiometer

    stamps: list[float] = []
    clock = time.perf_counter

    async def item(_: int) -> None:
        stamps.append(clock())

    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: aiometer.run_on_each(item, range(10**9), max_per_second=RATE))
            if stall:
                tg.start_soon(_staller)
    return stamps


def _cell(worst: int, limit: int) -> str:
    mark = " ✗" if worst > limit else ""
    return f"{worst}/{limit}{mark}"


def run(settings: Settings) -> Section:
    seconds = settings.accuracy_seconds
    section = Section(
        "3. Accuracy at 500/s",
        f"{WORKERS} tasks loop on `acquire(1)` for {seconds} s at {RATE}/s; admission times are "
        "taken when `acquire` returns. *rate*: achieved / configured rate. *1 s*, *0.1 s*: the "
        "worst count in any window of that length / the bound floor(b + r·T) (✗ = violation). "
        f"*stalled*: the event loop is blocked {STALL_FOR * 1000:.0f} ms every {STALL_EVERY} s."
        + (
            f" Medians of {settings.reps} runs for rates; worst counts are the worst of the "
            f"{settings.reps} runs."
            if settings.reps > 1
            else " One run."
        ),
    )
    started = time.perf_counter()
    peers = [p for p in RATE_PEERS if not p.fairness_only]
    samples: dict[tuple[str, str, int, bool], list[Sample]] = {}
    bursts: dict[tuple[str, int], float] = {}
    for _ in range(settings.reps):
        for backend in BACKENDS:
            for burst in BURSTS:
                for stall in (False, True):
                    for peer in peers:
                        if backend not in peer.backends:
                            continue
                        effective = peer.effective_burst(RateSpec(RATE, burst))
                        bursts[(peer.name, burst)] = effective
                        stamps = anyio.run(
                            _run_peer, peer, backend, burst, stall, seconds, backend=backend
                        )
                        samples.setdefault((backend, peer.name, burst, stall), []).append(
                            _sample(stamps, effective)
                        )
                    bursts[(AIOMETER, burst)] = 1
                    stamps = anyio.run(_run_aiometer, stall, seconds, backend=backend)
                    samples.setdefault((backend, AIOMETER, burst, stall), []).append(
                        _sample(stamps, 1)
                    )

    def rate(backend: str, name: str, burst: int, stall: bool) -> float:
        found = samples.get((backend, name, burst, stall))
        return median([s.rate for s in found]) if found else math.nan

    def worst(backend: str, name: str, burst: int, stall: bool, index: int) -> int:
        return max(s.worst[index] for s in samples[(backend, name, burst, stall)])

    names = [p.name for p in peers] + [AIOMETER]
    describe = {p.name: p.describe for p in peers}
    for backend in BACKENDS:
        for burst in BURSTS:
            table = Table(
                [
                    "peer",
                    "configured as",
                    "b",
                    "rate",
                    "x tt",
                    "1 s",
                    "0.1 s",
                    "stalled rate",
                    "stalled 1 s",
                    "stalled 0.1 s",
                ],
                caption=f"{backend}, burst {burst}",
            )
            for name in names:
                if (backend, name, burst, False) not in samples:
                    continue
                effective = bursts[(name, burst)]
                spec = RateSpec(RATE, burst)
                config = describe[name](spec) if name in describe else f"max_per_second={RATE}"
                value = rate(backend, name, burst, False)
                cells = [
                    name,
                    config,
                    fmt(effective, 0),
                    fmt(value, 3),
                    ratio(value, rate(backend, OURS, burst, False)),
                ]
                for stall in (False, True):
                    if stall:
                        cells.append(fmt(rate(backend, name, burst, True), 3))
                    cells += [
                        _cell(worst(backend, name, burst, stall, i), bound(effective, w))
                        for i, w in enumerate(WINDOWS)
                    ]
                table.add(*cells)
            section.tables.append(table)
    section.notes += [
        "b: the burst the peer really allows, used in its bound. limits' windows are whole "
        f"seconds, so its burst is {RATE} (one window); aiometer has no burst setting (1).",
        "A sliding window of b per b/r seconds has no refill slack: every wake-up delay "
        "pushes the next admission later, so its achieved rate falls short when the window is "
        "a few milliseconds long (b = 2 gives a 4 ms window). A token bucket with burst >= 2 "
        "absorbs the delay.",
    ]
    if seconds < max(WINDOWS):
        section.notes.append(
            f"Quick mode: runs last {seconds} s, so the 1 s column counts the whole run."
        )
    ours = [p for p in peers if p.ours]
    for backend in BACKENDS:
        for peer in ours:
            violations = []
            for burst in BURSTS:
                effective = bursts[(peer.name, burst)]
                for stall in (False, True):
                    for i, w in enumerate(WINDOWS):
                        seen = worst(backend, peer.name, burst, stall, i)
                        if seen > bound(effective, w):
                            violations.append(
                                f"burst {burst}{' stalled' if stall else ''} {w} s: "
                                f"{seen} > {bound(effective, w)}"
                            )
            section.checks.append(
                Check(
                    f"[{backend}] {peer.name}: zero window violations, stalls included",
                    not violations,
                    "; ".join(violations) or "none",
                )
            )
        for peer in ours:
            rates = {b: rate(backend, peer.name, b, False) for b in BURSTS}
            detail = ", ".join(f"burst {b}: {fmt(v, 3)}" for b, v in rates.items())
            check = Check(
                f"[{backend}] {peer.name}: achieved rate >= 0.99x at 500/s, burst >= 2",
                all(v >= 0.99 for v in rates.values()),
                detail,
            )
            if "SlidingWindow" in peer.name:
                # Not a target: an exact sliding window has no slack (see the notes).
                section.notes.append(f"Not a target, for information: {check.line()}")
            else:
                section.checks.append(check)
    section.seconds = time.perf_counter() - started
    return section
