"""Tests of throttle_trio.redis against a real redis-server, on the real clock.

Redis's ``TIME`` is real, so these tests cannot use the project's virtual clocks: they assert
counts, order and bounds (with a documented tolerance), never durations.  ``check_rate`` is the
bound every test of invariant I1 applies to a log of admissions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable


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
