"""Header feedback as arithmetic: what a response's rate-limit report says about one limit.

Pure, like the policies: no anyio, no I/O, no clock; every function takes numbers (``now``
included) and returns numbers.  The throttle shells apply the answers to their own store of
levels: the local :class:`~throttle_trio.Throttle` to its policies, the Redis throttle through
its script.  So the rules exist once, and the two cannot drift.

The rules (each one a measured fix; see the CHANGELOG of 2026-11-29):

* **What the server's bucket holds now** (:func:`reported_level`): ``remaining`` was counted
  when the request reached the server, which was no earlier than when its task ran again after
  admission (``resumed_at``).  Since then the server's bucket refilled, and it was charged
  what this client sent after that request, and will be charged what was admitted and not yet
  sent.  So: ``remaining - charged_since + refill_rate * (now - resumed_at)``.
* **Two reports must agree** (:class:`PendingLevel`): a cut is kept for good, and one report can
  be off by the requests in flight (which of them the server had counted is a guess when
  connections deliver them in any order).  A real shortfall (another process on the key, a
  bucket that started refilling before the server's) shows in every report; a miscount does
  not.  So a limit is cut only when the report before also asked for a cut, by the smaller of
  the two.  A limit that has charged nothing yet takes its first report as it is.
* **A 429 proves a shortfall** (:func:`shortfall`): the server had ``remaining`` of a metric
  when the request arrived, less than its cost; the client had at least the cost when it
  admitted it, and the server only refilled since.  So the client was ahead by at least the
  difference: cut at once.
* **Learned limits** (:func:`learned_period`): a limit the user did not configure is learned
  from ``limit``, with the period inferred from the reset time of what is spent.
"""

from __future__ import annotations

import math
from typing import final

__all__ = ["PendingLevel", "learned_period", "reported_level", "shortfall"]

#: The longest period a learned limit can have (a day), and the shortest (a second).
MAX_LEARNED_PERIOD = 86_400.0
MIN_LEARNED_PERIOD = 1.0
#: A reset at least this far away (seconds) gives a learned limit its period even when little
#: of the limit is spent (see :func:`learned_period`).
LONG_RESET = 10.0


def learned_period(limit: float, remaining: float | None, reset_after: float | None) -> float:
    """The period of a limit reported in headers: the time to refill it entirely (seconds).

    ``reset_after`` is when the spent part (``limit - remaining``) is back, so a full refill
    takes ``limit * reset_after / (limit - remaining)``, between a second and a day.  That is
    believed when a tenth of the limit or more is spent, or when the reset is
    :data:`LONG_RESET` (10 s) or more away: a reset's rounding (Anthropic's are whole seconds)
    or a clock difference is a second or two, which makes the period several times off only
    when the reset itself is that short.  Otherwise, or without the figures, a minute (the
    period of the usual RPM and TPM limits).  So Groq's 14,400 requests a day, 30 spent and
    back in 179.56 s, are learned per day, and its 18,000 tokens a minute, 3 spent and back in
    7.66 s, per minute.
    """
    if (
        remaining is not None
        and reset_after
        and 0 <= remaining < limit
        and (remaining <= limit * 0.9 or reset_after >= LONG_RESET)
    ):
        period = limit * reset_after / (limit - remaining)
        return min(MAX_LEARNED_PERIOD, max(MIN_LEARNED_PERIOD, period))
    return 60.0


def reported_level(
    remaining: float,
    *,
    charged_since: float = 0.0,
    refill_rate: float = math.nan,
    resumed_at: float = math.nan,
    now: float = math.nan,
) -> float:
    """What the server's bucket holds at ``now``, by a report of ``remaining`` (units).

    Args:
        remaining: what the server reported left, counted when the request arrived.
        charged_since: what this client charged since that request was sent: later
            admissions (sent or not), overdrafts, net of refunds (units).
        refill_rate: units per second the limit refills continuously; ``nan`` for a limit that
            does not (a sliding window) or is unknown: no refill is credited.
        resumed_at: when the request's task ran again after its admission (the request
            cannot have reached the server earlier); ``nan``: unknown, no refill credited.
        now: the current time, on the same clock as ``resumed_at``.
    """
    level = remaining - charged_since
    elapsed = now - resumed_at
    if elapsed > 0 and refill_rate > 0:  # False for any NaN
        level += refill_rate * elapsed
    return level


def shortfall(cost: float, remaining: float | None) -> float:
    """By how much a 429 proves the client was ahead: its request's cost minus what the server
    reported left (0 when it proves nothing)."""
    if remaining is None:
        return 0.0
    return max(0.0, cost - remaining)


@final
class PendingLevel:
    """One limit's memory between reports: the two-report rule, on levels.

    The store (a policy object, or Redis's script) takes the *minimum* of what it holds and
    the level it is sent, so sending the higher of two consecutive reports' levels (the
    earlier one carried to now: refill since, minus what was charged since) cuts by the
    smaller of the two cuts, and nothing when either report asked for none.  The store's own
    level need not be at hand, so both shells apply the same rule.
    """

    __slots__ = ("charged", "level", "seen_at")

    def __init__(self) -> None:
        self.level = math.nan  # the last report's level, when it was made
        self.charged = 0.0  # what had been charged then
        self.seen_at = math.nan

    def __repr__(self) -> str:
        return f"PendingLevel({self.level!r})"

    def target(
        self,
        level: float,
        *,
        charged: float,
        now: float,
        refill_rate: float = math.nan,
        first: bool,
    ) -> float | None:
        """The level to lower the limit to at ``now`` (``None``: nothing yet).

        Args:
            level: what this report says the limit holds now (:func:`reported_level`).
            charged: what this client has charged the limit so far (a running total).
            now: the current time.
            refill_rate: units per second the limit refills continuously (``nan``: none).
            first: the limit has charged nothing yet: its first report is taken as it is.
        """
        previous, previous_charged, previous_at = self.level, self.charged, self.seen_at
        self.level, self.charged, self.seen_at = level, charged, now
        if first:
            return level
        if math.isnan(previous):
            return None
        carried = reported_level(
            previous,
            charged_since=charged - previous_charged,
            refill_rate=refill_rate,
            resumed_at=previous_at,
            now=now,
        )
        return max(level, carried)
