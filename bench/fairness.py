"""Benchmark 4: weighted fairness (capacity 100 at 1,000/s; twenty cost-1 loops, one cost-50 loop).

Twenty worker tasks loop on ``acquire(1)`` and one loops on ``acquire(50)`` for a fixed time.
Every request takes a *ticket* (a global counter) right before it calls ``acquire``.  In strict
FIFO order nobody is admitted before a request with a smaller ticket; an *overtake* is a
request admitted before a cost-50 request whose ticket is smaller than its own.  The cost-50
request is *starved* when it waits longer than :data:`STARVED` (a FIFO limiter makes it wait
about (20 + 50) / 1,000 s = 70 ms: the twenty small requests ahead of it, then its own cost).

Only peers with a weighted acquire take part.  limits' windows are whole seconds, so it runs
with 1,000 per 1-second window (capacity 1,000, not 100).
"""

from __future__ import annotations

import itertools
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

SPEC = RateSpec(1_000, 100)
SMALL, BIG = 1, 50
SMALL_WORKERS = 20
STARVED = 0.5  # seconds: a cost-50 request that waited longer than this was starved


@dataclass(frozen=True, slots=True)
class Sample:
    big: int  # cost-50 admissions
    small: int  # cost-1 admissions
    throughput: float  # admitted cost per second, after the initial burst / configured rate
    overtakes: int  # later tickets admitted before a cost-50 request (pending one included)
    max_wait: float  # longest cost-50 wait, seconds (a request still waiting at the end counts)


async def _run_peer(peer: RatePeer, backend: str, seconds: float) -> Sample:
    tickets = itertools.count()
    admitted: list[tuple[int, int]] = []  # (ticket, cost) in admission order
    big_waits: list[float] = []
    pending: list[tuple[int, float]] = []  # the cost-50 request waiting now: (ticket, since)
    clock = time.perf_counter

    async with peer.open(SPEC, backend) as acquire:

        async def worker(cost: int) -> None:
            while True:
                ticket, since = next(tickets), clock()
                if cost == BIG:
                    pending.append((ticket, since))
                await acquire(cost)
                admitted.append((ticket, cost))
                if cost == BIG:
                    pending.clear()
                    big_waits.append(clock() - since)

        start = clock()
        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:
                for i in range(SMALL_WORKERS):
                    if i == SMALL_WORKERS // 2:
                        tg.start_soon(worker, BIG)
                    tg.start_soon(worker, SMALL)
        end = clock()

    overtakes = 0
    seen: list[int] = []  # tickets admitted so far
    for ticket, cost in admitted:
        if cost == BIG:
            overtakes += sum(1 for t in seen if t > ticket)
        seen.append(ticket)
    if pending:
        ticket, since = pending[0]
        overtakes += sum(1 for t in seen if t > ticket)
        big_waits.append(end - since)
    cost = sum(c for _, c in admitted)
    return Sample(
        big=sum(1 for _, c in admitted if c == BIG),
        small=sum(1 for _, c in admitted if c == SMALL),
        throughput=(cost - SPEC.burst) / (end - start) / SPEC.rate,
        overtakes=overtakes,
        max_wait=max(big_waits, default=math.nan),
    )


def run(settings: Settings) -> Section:
    seconds = settings.fairness_seconds
    section = Section(
        "4. Weighted fairness",
        f"Capacity {SPEC.burst} at {SPEC.rate:,}/s; {SMALL_WORKERS} tasks loop on `acquire(1)` "
        f"and one on `acquire(50)` for {seconds} s. *cost-50*: its admissions; *overtakes*: "
        "requests admitted before a cost-50 request that arrived after it (0 = FIFO); *max "
        f"wait*: its longest wait (starved above {STARVED} s); *throughput*: admitted cost per "
        "second after the initial burst / configured rate; *cost-50 share*: its part of the "
        "admitted cost (strict FIFO gives about 50/70 = 71%)."
        + (
            f" Medians of {settings.reps} runs; overtakes and max wait are the worst run."
            if settings.reps > 1
            else " One run."
        ),
    )
    started = time.perf_counter()
    peers = [p for p in RATE_PEERS if p.weighted]
    samples: dict[tuple[str, str], list[Sample]] = {}
    for _ in range(settings.reps):
        for backend in BACKENDS:
            for peer in peers:
                if backend in peer.backends:
                    sample = anyio.run(_run_peer, peer, backend, seconds, backend=backend)
                    samples.setdefault((backend, peer.name), []).append(sample)

    def big(backend: str, name: str) -> float:
        return median([s.big for s in samples[(backend, name)]])

    for backend in BACKENDS:
        table = Table(
            [
                "peer",
                "configured as",
                "cost-50",
                "x tt",
                "cost-1",
                "cost-50 share",
                "overtakes",
                "max wait s",
                "throughput",
                "FIFO",
                "starved",
            ],
            caption=backend,
        )
        for peer in peers:
            found = samples.get((backend, peer.name))
            if not found:
                continue
            n_big, n_small = big(backend, peer.name), median([s.small for s in found])
            share = n_big * BIG / (n_big * BIG + n_small * SMALL) if n_big or n_small else 0.0
            overtakes = max(s.overtakes for s in found)
            wait = max(s.max_wait for s in found)
            table.add(
                peer.name,
                peer.describe(SPEC),
                fmt(n_big, 0),
                ratio(n_big, big(backend, OURS)),
                fmt(n_small, 0),
                f"{share:.0%}",
                f"{overtakes:,}",
                fmt(wait, 3),
                fmt(median([s.throughput for s in found]), 3),
                "yes" if overtakes == 0 else "no",
                "yes" if wait > STARVED else "no",
            )
        section.tables.append(table)
    section.notes += [
        "A ticket is taken in the caller's task just before `acquire` is called; a limiter "
        "cannot see it, so an overtake can also come from two requests that arrive in the same "
        "scheduler pass (trio runs each batch of ready tasks in random order).",
        "aiolimiter keeps waiters in a heap ordered by amount, so small requests go first; "
        "limits and the blog window let whichever waiter wakes first take what is free.",
    ]
    for backend in BACKENDS:
        for peer in peers:
            if not peer.ours or (backend, peer.name) not in samples:
                continue
            found = samples[(backend, peer.name)]
            overtakes = max(s.overtakes for s in found)
            wait = max(s.max_wait for s in found)
            admissions = min(s.big for s in found)
            section.checks.append(
                Check(
                    f"[{backend}] {peer.name}: cost-50 admitted in FIFO order, never starved",
                    overtakes == 0 and wait <= STARVED and admissions > 0,
                    f"{admissions} to {max(s.big for s in found)} cost-50 admissions per run, "
                    f"{overtakes} overtakes, max wait {fmt(wait, 3)} s",
                )
            )
    section.seconds = time.perf_counter() - started
    return section
