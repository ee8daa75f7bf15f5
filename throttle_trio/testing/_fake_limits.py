"""The fake server's own rate accounting: how a provider decides to answer 429.

Deliberately independent of :mod:`throttle_trio.policy` and of the header parsers: the fake
server is the referee the library is tested against, so it must not share the library's code
(or a bug in the library would make its tests pass by construction).  Pure and synchronous:
every method takes ``now`` (seconds).

Three models, chosen per server (``mode=``):

``"settle"``
    A per-minute token bucket per metric, one minute of capacity, refilled continuously.  A
    request is charged its estimate at arrival; the difference to its real usage is refunded
    (or charged) when it completes.  A 429 costs nothing.

``"openai"``
    OpenAI's rate-limit guide (platform.openai.com/docs/guides/rate-limits): limits are per
    minute (RPM, TPM), "may be quantized, meaning they are enforced over shorter periods of
    time (e.g. 60,000 requests/minute may be enforced as 1,000 requests/second)"; a request
    counts its prompt plus ``max_tokens`` ("your rate limit is calculated as the maximum of
    max_tokens and the estimated number of tokens based on the character count of your
    request": the prompt plus the bound here, the conservative reading), and "unsuccessful
    requests contribute to your per-minute limit".  So: the same per-minute buckets, charged
    the estimate up front with no refund, *plus* per-slice sliding windows: at most
    ``limit * slice / 60`` in any ``slice`` seconds (one second by default), so a burst of a
    whole minute's quota gets 429s.  A request larger than one slice is admitted only into an
    empty window (else it could never go).  A rejected request counts one request, but only
    while the minute's bucket holds one (see :meth:`KeyLimits.charge_rejected`).

``"anthropic"``
    Anthropic's rate-limits page (docs.anthropic.com/en/api/rate-limits): RPM, input tokens
    per minute (ITPM) and output tokens per minute (OTPM) are separate limits, each a "token
    bucket algorithm ... your capacity is continuously replenished up to your maximum limit,
    rather than being reset at fixed intervals"; ITPM is estimated when a request arrives and
    OTPM "estimated based on ``max_tokens`` at the beginning of each request and adjusted at
    the end of the request to reflect the actual number of output tokens used"; and "a rate of
    60 requests per minute (RPM) may be enforced as 1 request per second".  So: the settle
    model (per-minute buckets, estimate up front, settled to the real usage at the end), plus
    a short bucket for requests: ``rpm / 60`` per second refilled continuously, holding one
    slice's worth (``rpm * slice / 60``, at least one request).  A 429 costs nothing.

Each key has a bucket per limited metric: ``requests``, ``tokens``, and Anthropic's
``input_tokens`` and ``output_tokens``.  Costs are whole tokens and requests (ints), so the
windows never drift.  Bucket levels are
floats; a cost fits when it is within ``1e-9`` (relative to the capacity) of the level, so a
client whose own bucket admits at the exact instant is not refused over a rounding error.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal, final

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "KeyLimits",
    "LimitCheck",
    "MinuteBucket",
    "SliceWindow",
    "format_go_duration",
    "format_rfc3339",
    "retry_after_headers",
]

Metric = Literal["requests", "tokens", "input_tokens", "output_tokens"]
"""What a limit counts: requests, tokens, or only the input or output tokens of requests."""

_OPENAI_METRICS: Final[tuple[Metric, ...]] = ("requests", "tokens")

_RELATIVE_SLACK: Final = 1e-9


def _slack(capacity: float) -> float:
    return _RELATIVE_SLACK * max(1.0, capacity)


@final
class MinuteBucket:
    """A token bucket refilled at ``limit / 60`` per second, holding one minute's ``limit``.

    The level may go below zero (a debt: a settle above the estimate, or a rejected request
    counted against an empty bucket); it refills from there.

    Args:
        limit: units per minute (> 0).
        now: the time the bucket is created, full (seconds).
        capacity: what the bucket holds when full (> 0; default ``limit``, one minute's
            worth).  A cost above a smaller capacity goes only into a full bucket, which it
            leaves in debt (Anthropic-mode's short request bucket).
    """

    __slots__ = ("_level", "_updated", "capacity", "limit", "rate")

    def __init__(self, limit: int, now: float, capacity: float | None = None) -> None:
        self.limit = limit
        self.rate = limit / 60.0
        self.capacity = float(limit) if capacity is None else capacity
        self._level = self.capacity
        self._updated = now

    def level(self, now: float) -> float:
        """Units available at ``now`` (negative while in debt)."""
        elapsed = max(0.0, now - self._updated)  # a clock that steps back refills nothing
        self._level = min(self.capacity, self._level + elapsed * self.rate)
        self._updated = max(self._updated, now)
        return self._level

    def wait(self, cost: int, now: float) -> float:
        """Seconds until ``cost`` fits (0 if it fits now; ``inf`` if it never can)."""
        if cost > self.limit:
            return math.inf
        missing = min(cost, self.capacity) - self.level(now)
        if missing <= _slack(self.capacity):
            return 0.0
        return missing / self.rate

    def charge(self, amount: int, now: float) -> None:
        """Take ``amount`` units; a negative amount refunds, never above the capacity."""
        self._level = min(self.capacity, self.level(now) - amount)

    def remaining(self, now: float) -> int:
        """Whole units available now, for ``x-ratelimit-remaining-*`` (never negative)."""
        return max(0, math.floor(self.level(now) + _slack(self.capacity)))

    def reset_after(self, now: float) -> float:
        """Seconds until the bucket is full again (``x-ratelimit-reset-*``)."""
        return max(0.0, (self.capacity - self.level(now)) / self.rate)


@final
class SliceWindow:
    """At most ``allowance`` units in any window of ``length`` seconds (exact, by log).

    An admission at ``t`` counts until ``t + length`` (excluded).  A cost above the allowance
    is admitted only into an empty window.

    Args:
        allowance: units per window (> 0, may be fractional: ``rpm / 60`` per second).
        length: the window, in seconds (> 0).
    """

    __slots__ = ("_entries", "_used", "allowance", "length")

    def __init__(self, allowance: float, length: float) -> None:
        self.allowance = allowance
        self.length = length
        self._entries: deque[tuple[float, int]] = deque()
        self._used = 0

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries and entries[0][0] + self.length <= now:
            self._used -= entries.popleft()[1]

    def wait(self, cost: int, now: float) -> float:
        """Seconds until ``cost`` fits in the window (0 if it fits now)."""
        self._expire(now)
        if not self._entries:
            return 0.0
        if cost > self.allowance:
            return self._entries[-1][0] + self.length - now  # wait for an empty window
        excess = self._used + cost - self.allowance
        if excess <= _slack(self.allowance):
            return 0.0
        freed = 0
        for admitted_at, entry_cost in self._entries:
            freed += entry_cost
            if freed >= excess - _slack(self.allowance):
                return admitted_at + self.length - now
        raise AssertionError("unreachable: an empty window fits any cost")

    def charge(self, cost: int, now: float) -> None:
        """Record ``cost`` units at ``now``."""
        self._expire(now)
        self._entries.append((now, cost))
        self._used += cost

    def used(self, now: float) -> int:
        """Units admitted in the window that ends at ``now``."""
        self._expire(now)
        return self._used


@dataclass(frozen=True, slots=True)
class LimitCheck:
    """The answer to "may this request go now?" for one key.

    Attributes:
        wait: seconds until it could go (0: it may go now; ``inf``: never, it is too large).
        metric: the limit that binds (``None`` when it may go).
        limit: that limit's per-minute value.
        used: units in use now of what binds: the minute's bucket, or with ``slice_seconds``
            the slice (OpenAI mode's window, Anthropic mode's short requests bucket).
        cost: the request's cost in that metric.
        slice_seconds: ``None`` when the per-minute bucket binds; else the length of the
            short-term limit that does, in seconds.
        slice_limit: that short-term limit's allowance (units per ``slice_seconds``).
    """

    wait: float
    metric: Metric | None = None
    limit: int = 0
    used: int = 0
    cost: int = 0
    slice_seconds: float | None = None
    slice_limit: float = 0.0


@final
class KeyLimits:
    """The limits of one API key (or of the whole server when it has no keys).

    Args:
        limits: the per-minute limit of each metric that has one (metrics absent: unlimited).
        slice_seconds: the OpenAI-mode slice, in seconds; ``None`` for the other modes.
        now: when the key was first seen (its buckets start full).
        request_slice: the Anthropic-mode slice of the requests limit, in seconds: a short
            bucket of ``rpm / 60`` per second holding ``rpm * request_slice / 60`` requests
            (at least one); ``None`` for the other modes.
    """

    __slots__ = ("_buckets", "_short", "_slices")

    def __init__(
        self,
        limits: Mapping[Metric, int],
        slice_seconds: float | None,
        now: float,
        *,
        request_slice: float | None = None,
    ) -> None:
        self._buckets: dict[Metric, MinuteBucket] = {
            metric: MinuteBucket(limit, now) for metric, limit in limits.items()
        }
        self._slices: dict[Metric, SliceWindow] = {}
        if slice_seconds is not None:
            self._slices = {
                metric: SliceWindow(limit * slice_seconds / 60.0, slice_seconds)
                for metric, limit in limits.items()
            }
        self._short: dict[Metric, MinuteBucket] = {}
        rpm = limits.get("requests")
        if request_slice is not None and rpm is not None:
            capacity = max(1.0, rpm * request_slice / 60.0)
            self._short["requests"] = MinuteBucket(rpm, now, capacity=capacity)

    def check(self, costs: Mapping[Metric, int], now: float) -> LimitCheck:
        """Whether one request costing ``costs`` may go at ``now``, and if not, when.

        The answer names what binds: the per-minute bucket, or (``slice_seconds`` set) the
        short-term limit, with its own allowance and use, so that a 429 can say which.
        """
        worst = LimitCheck(0.0)
        for metric, bucket in self._buckets.items():
            cost = costs.get(metric, 0)
            wait = bucket.wait(cost, now)
            if wait > worst.wait:
                used = bucket.limit - math.floor(bucket.level(now))
                worst = LimitCheck(wait, metric, bucket.limit, max(0, used), cost)
            window = self._slices.get(metric)
            if window is not None and (wait := window.wait(cost, now)) > worst.wait:
                worst = LimitCheck(
                    wait,
                    metric,
                    bucket.limit,
                    window.used(now),
                    cost,
                    slice_seconds=window.length,
                    slice_limit=window.allowance,
                )
            short = self._short.get(metric)
            if short is not None and (wait := short.wait(cost, now)) > worst.wait:
                used = math.ceil(round(short.capacity - short.level(now), 6))
                worst = LimitCheck(
                    wait,
                    metric,
                    bucket.limit,
                    max(0, used),
                    cost,
                    slice_seconds=short.capacity / short.rate,
                    slice_limit=short.capacity,
                )
        return worst

    def charge(self, costs: Mapping[Metric, int], now: float) -> None:
        """Charge an admission."""
        for metric, amount in costs.items():
            if amount and metric in self._buckets:
                self._buckets[metric].charge(amount, now)
                if metric in self._slices:
                    self._slices[metric].charge(amount, now)
                if metric in self._short:
                    self._short[metric].charge(amount, now)

    def charge_rejected(self, now: float) -> None:
        """Count a rejected request: one request from the minute bucket, if it holds one.

        Never into debt and never into the slices, so that a crowd retrying in lockstep
        drains the budget but cannot lock the key out for good (each rejection would
        otherwise push every waiter's turn back, and the crowd would keep it there).
        """
        bucket = self._buckets.get("requests")
        if bucket is not None and bucket.level(now) >= 1:
            bucket.charge(1, now)

    def settle(self, differences: Mapping[Metric, int], now: float) -> None:
        """Charge each metric's difference (negative: refund) at the end of a request."""
        for metric, difference in differences.items():
            if difference and metric in self._buckets:
                self._buckets[metric].charge(difference, now)

    def headers(self, now: float) -> list[tuple[str, str]]:
        """OpenAI's ``x-ratelimit-*`` headers for this key at ``now`` (requests and tokens)."""
        headers: list[tuple[str, str]] = []
        for metric in _OPENAI_METRICS:
            bucket = self._buckets.get(metric)
            if bucket is not None:
                headers += [
                    (f"x-ratelimit-limit-{metric}", str(bucket.limit)),
                    (f"x-ratelimit-remaining-{metric}", str(bucket.remaining(now))),
                    (f"x-ratelimit-reset-{metric}", format_go_duration(bucket.reset_after(now))),
                ]
        return headers

    def anthropic_headers(self, now: float, wall_now: float) -> list[tuple[str, str]]:
        """Anthropic's ``anthropic-ratelimit-*`` headers for this key at ``now``.

        One family per limited metric (``requests``, ``tokens``, ``input-tokens``,
        ``output-tokens``); the reset is the RFC 3339 time at which the bucket is full again.

        Args:
            now: the server's clock (seconds), as for every other method.
            wall_now: the same instant as a UNIX time (seconds), to date the resets.
        """
        headers: list[tuple[str, str]] = []
        for metric, bucket in self._buckets.items():
            family = f"anthropic-ratelimit-{metric.replace('_', '-')}"
            reset = format_rfc3339(wall_now + bucket.reset_after(now))
            headers += [
                (f"{family}-limit", str(bucket.limit)),
                (f"{family}-remaining", str(bucket.remaining(now))),
                (f"{family}-reset", reset),
            ]
        return headers


def _ceil_scaled(seconds: float, scale: int) -> int:
    # Round up, but not over float noise: 0.1 s is 100 ms, not 101.
    return math.ceil(round(seconds * scale, 6))


def format_go_duration(seconds: float) -> str:
    """Format a duration as Go's ``time.Duration.String`` does, rounded up to milliseconds.

    ``0s``, ``12ms``, ``1s``, ``1.5s``, ``6m0s``, ``23h47m36.648s``: the form of OpenAI's
    ``x-ratelimit-reset-*`` headers.  Whole milliseconds keep it ASCII (Go writes ``µs``).

    Args:
        seconds: the duration (>= 0, finite), in seconds.
    """
    millis = _ceil_scaled(seconds, 1000)
    if millis <= 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    whole, fraction = divmod(millis, 1000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs}.{fraction:03d}".rstrip("0") if fraction else str(secs)
    if hours:
        return f"{hours}h{minutes}m{text}s"
    if minutes:
        return f"{minutes}m{text}s"
    return f"{text}s"


def format_rfc3339(timestamp: float) -> str:
    """A UNIX time as an RFC 3339 UTC date-time in whole seconds, rounded up.

    ``2025-08-21T12:40:59Z``: the form of Anthropic's ``anthropic-ratelimit-*-reset`` headers
    (rounding up never announces a reset before it happens).

    Args:
        timestamp: seconds since the epoch (finite).
    """
    moment = datetime.fromtimestamp(_ceil_scaled(timestamp, 1), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_after_headers(wait: float, *, milliseconds: bool = True) -> list[tuple[str, str]]:
    """``retry-after`` (whole seconds) and ``retry-after-ms``, both rounded up.

    Args:
        wait: seconds until the request would be admitted (> 0, finite).
        milliseconds: also send OpenAI's ``retry-after-ms`` (Anthropic sends only
            ``retry-after``).
    """
    headers = [("retry-after", str(max(1, _ceil_scaled(wait, 1))))]
    if milliseconds:
        headers.append(("retry-after-ms", str(max(1, _ceil_scaled(wait, 1000)))))
    return headers
