"""Tests of throttle_trio.redis against a real redis-server, on the real clock.

Redis's ``TIME`` is real, so these tests cannot use the project's virtual clocks: they assert
counts, order and bounds (with a documented tolerance), never durations.  ``rate_violations`` is
the bound every test of invariant I1 applies to a log of admissions; ``booking_gaps`` measures
the rate a fleet books at, on Redis's clock.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from throttle_trio.redis import RedisThrottle


def us(seconds: float) -> int:
    """A booked instant (Unix seconds, microsecond resolution) as integer microseconds."""
    return round(seconds * 1e6)


def rate_violations(
    admissions: Iterable[tuple[float, float]], rate: float, burst: float, slack: float
) -> list[tuple[float, float]]:
    """Admissions that break "cost in any interval of length T <= burst + rate*T + slack".

    ``admissions`` are ``(time in seconds, cost)`` pairs in any order.  The check replays them
    through a token bucket of ``rate`` per second that starts full at ``burst + slack``: a cost
    that drives it below zero (beyond float noise) breaks the bound over the window that ends
    there, and every window is covered in one pass (a token bucket's level is exactly the worst
    window's remaining allowance).  Returns ``(time, level)`` for each breach.
    """
    capacity = burst + slack
    level = capacity
    last: float | None = None
    breaches: list[tuple[float, float]] = []
    for time, cost in sorted(admissions):
        if last is not None:
            level = min(capacity, level + (time - last) * rate)
        last = time
        level -= cost
        if level < -1e-9:
            breaches.append((time, level))
    return breaches


async def booking_gaps(throttles: Sequence[RedisThrottle]) -> list[int]:
    """Every throttle books one request (``requests=1``) at once; the gaps between the instants
    Redis booked, in microseconds, in order.

    For a drained limit with a burst of one, each booking after the first waits for the one
    before it, so every gap is the emission interval at the shared rate, exactly, whatever the
    scheduling here (as long as each round trip ends within one interval of the booking before
    it).
    """
    booked: list[int] = []

    async def one(throttle: RedisThrottle) -> None:
        async with throttle.reserve(requests=1) as slot:
            booked.append(round(slot.server_admitted_at * 1e6))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for throttle in throttles:
                tg.start_soon(one, throttle)
    booked.sort()
    return [b - a for a, b in itertools.pairwise(booked)]
