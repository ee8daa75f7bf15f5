"""The retry policy: which responses to retry, how long to back off, when a key must pause.

Pure: no I/O, no clock, no randomness of its own.  The caller passes ``now`` (wall-clock UNIX
seconds, for HTTP-dates) and ``random`` (a draw from ``random.random()``), so every decision is
reproducible in a test.

The rules (see "The hard parts" in the design notes):

* **Retry** 408, 409, 429 and every 5xx (529, Anthropic's "overloaded", included) while
  attempts remain; ``x-should-retry: true|false`` overrides the status, not the attempt limit.
* **Back off** with full jitter: ``random * min(max_delay, base_delay * 2 ** (attempt - 1))``.
* **Honour the server's wait** (``retry-after-ms``, ``retry-after``) up to ``max_retry_after``;
  a longer one fails the request with :class:`RetryAfterTooLong` and pauses the key for at most
  ``max_retry_after``.
* **Pause the whole key** on a 429 (its shared bucket is empty), and on a 503 or 529 only when
  it carries a valid retry-after; other 5xx cost only the failing request a backoff.
"""

from __future__ import annotations

import math
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from numbers import Real
from typing import Final, final

from ._exceptions import ThrottleTrioError
from ._headers import (
    HeadersLike,
    RateLimitHeaders,
    lowered_headers,
    read_retry_after,
    read_should_retry,
)
from ._validate import check_non_negative

__all__ = ["DEFAULT_RETRY_STATUSES", "RetryAfterTooLong", "RetryPolicy", "ServerDelay"]

DEFAULT_RETRY_STATUSES: Final = frozenset({408, 409, 429, *range(500, 600)})
"""408 Request Timeout, 409 Conflict, 429 Too Many Requests and every 5xx, as openai-python."""

# Statuses that pause their key only when the server says for how long.
_PAUSE_WITH_RETRY_AFTER: Final = frozenset({503, 529})


class RetryAfterTooLong(ThrottleTrioError):
    """The server asked to wait longer than :attr:`RetryPolicy.max_retry_after` allows.

    The request fails with this error instead of waiting (as openai-python gives up on a
    retry-after above its cap); the key is paused for at most ``max_retry_after``.

    Attributes:
        delay: the wait the server asked for (seconds).
        max_retry_after: the configured cap (seconds).
    """

    def __init__(self, delay: float, max_retry_after: float) -> None:
        super().__init__(
            f"the server asked to wait {delay!r} s, more than max_retry_after={max_retry_after!r} s"
        )
        self.delay = delay
        self.max_retry_after = max_retry_after

    def __reduce__(self) -> tuple[type[RetryAfterTooLong], tuple[float, float]]:
        # Pickle by the constructor's arguments (batches may cross process boundaries).
        return (type(self), (self.delay, self.max_retry_after))


@final
@dataclass(frozen=True, slots=True)
class ServerDelay:
    """The wait a response asked for, judged against :attr:`RetryPolicy.max_retry_after`.

    Attributes:
        delay: what the server asked for (seconds, >= 0).
        pause: how long to hold the key back: ``delay`` capped at ``max_retry_after`` (seconds).
        too_long: ``delay`` exceeds ``max_retry_after``: fail the request with
            :class:`RetryAfterTooLong` instead of retrying it (and still pause for ``pause``).
    """

    delay: float
    pause: float
    too_long: bool


@final
@dataclass(frozen=True, slots=True, repr=False)
class RetryPolicy:
    """When and how long to retry a request that failed with an HTTP error status.

    A value object: it holds no state between calls, so one policy serves every request.

    Args:
        max_attempts: attempts per request, the first one included (int >= 1; 1 never retries).
        base_delay: the backoff cap of the first retry, doubled at each later one (seconds >= 0).
        max_delay: the largest backoff cap (seconds >= 0).
        max_retry_after: the longest server-requested wait honoured (seconds >= 0); a longer
            one fails the request with :class:`RetryAfterTooLong`.
        total_timeout: the time budget of one request across all its attempts and waits
            (seconds > 0), or ``None`` for no budget; enforced by the caller, which knows when
            the request started.
        retry_statuses: the HTTP statuses worth retrying (a set of ints from 100 to 599);
            defaults to :data:`DEFAULT_RETRY_STATUSES`.

    Raises:
        TypeError: a parameter has the wrong type (the message names it).
        ValueError: a parameter is out of range (the message names it).
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    total_timeout: float | None = None
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES

    def __post_init__(self) -> None:
        _check_int_at_least("max_attempts", self.max_attempts, 1)
        for name in ("base_delay", "max_delay", "max_retry_after"):
            object.__setattr__(self, name, float(check_non_negative(name, getattr(self, name))))
        if self.total_timeout is not None:
            object.__setattr__(self, "total_timeout", _check_total_timeout(self.total_timeout))
        object.__setattr__(self, "retry_statuses", _check_statuses(self.retry_statuses))

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts!r}, base_delay={self.base_delay!r}, "
            f"max_delay={self.max_delay!r}, max_retry_after={self.max_retry_after!r}, "
            f"total_timeout={self.total_timeout!r}, "
            f"retry_statuses={_format_statuses(self.retry_statuses)})"
        )

    def should_retry(
        self, status: int, headers: HeadersLike | RateLimitHeaders, attempt: int
    ) -> bool:
        """Whether to retry a request whose ``attempt``-th attempt got ``status``.

        No once ``attempt`` reaches ``max_attempts``, and never for a status below 400.
        Otherwise ``x-should-retry: true`` or ``false`` decides, and without it the status
        does: retried when it is in :attr:`retry_statuses`.

        Args:
            status: the response's HTTP status.
            headers: the response's headers, or what :func:`parse_rate_limit_headers` made of
                them (then nothing is parsed, or logged, a second time).
            attempt: which attempt this was, counting from 1.
        """
        _check_int_at_least("attempt", attempt, 1)
        if attempt >= self.max_attempts or status < 400:
            return False
        if isinstance(headers, RateLimitHeaders):
            verdict = headers.should_retry
        else:
            verdict = read_should_retry(lowered_headers(headers))
        if verdict is not None:
            return verdict
        return status in self.retry_statuses

    def backoff(self, attempt: int, random: float) -> float:
        """The backoff before retrying after attempt ``attempt``: full jitter, capped.

        ``random * min(max_delay, base_delay * 2 ** (attempt - 1))``: uniform between zero and
        a cap that doubles at each attempt until ``max_delay``.  Full jitter spreads retries
        of requests that failed together, so they do not fail together again.

        Args:
            attempt: the attempt that just failed, counting from 1.
            random: a number in [0, 1), such as ``random.random()``.

        Returns:
            Seconds, in ``[0, max_delay]``.
        """
        _check_int_at_least("attempt", attempt, 1)
        draw: object = random  # checked as any object: callers pass what they like
        if isinstance(draw, bool) or not isinstance(draw, Real):
            raise TypeError(f"random must be a real number, got {type(draw).__name__} {draw!r}")
        number = float(draw)
        if not 0 <= number < 1:
            raise ValueError(f"random must be a number in [0, 1), got {draw!r}")
        try:
            cap = math.ldexp(self.base_delay, attempt - 1)
        except OverflowError:  # a huge attempt number
            cap = math.inf
        return number * min(self.max_delay, cap)

    def server_delay(self, headers: HeadersLike, now: float) -> ServerDelay | None:
        """The wait the server asked for (``retry-after-ms``, ``retry-after``), if any.

        Args:
            headers: the response's headers.
            now: the wall-clock UNIX time (seconds) at which the response arrived.

        Returns:
            ``None`` if no valid value is present (malformed values are logged and ignored),
            otherwise a :class:`ServerDelay`; when its ``too_long`` is true, fail the request
            with ``RetryAfterTooLong(delay.delay, policy.max_retry_after)``.
        """
        return self.judge_delay(read_retry_after(lowered_headers(headers), now, log=True))

    def judge_delay(self, delay: float | None) -> ServerDelay | None:
        """Judge a wait the server asked for against :attr:`max_retry_after`.

        Every wait a response imposes goes through here, whatever said it: ``retry-after``
        (already parsed, e.g. :attr:`RateLimitHeaders.retry_after`) or the reset time of an
        exhausted limit.  So no pause is ever longer than ``max_retry_after``.

        Args:
            delay: seconds (>= 0), or ``None`` (the response asked for nothing).

        Returns:
            ``None`` for ``None``, otherwise a :class:`ServerDelay`.
        """
        if delay is None:
            return None
        delay = check_non_negative("delay", delay)
        return ServerDelay(
            delay=delay,
            pause=min(delay, self.max_retry_after),
            too_long=delay > self.max_retry_after,
        )

    def pauses_key(self, status: int, headers: HeadersLike) -> bool:
        """Whether this response must pause every request of its key, not just this one.

        A 429 always does: the key's shared bucket is empty.  A 503 or 529 does only when it
        carries a valid ``retry-after-ms`` or ``retry-after``; any other status does not (other
        5xx cost the failing request a backoff, nothing more).
        """
        if status == 429:
            return True
        if status not in _PAUSE_WITH_RETRY_AFTER:
            return False
        # Whether a value is valid does not depend on `now` (a past HTTP-date is valid: 0 s).
        # Not logged here: server_delay() reads the same headers and logs what it ignores.
        return read_retry_after(lowered_headers(headers), 0.0, log=False) is not None


def _check_int_at_least(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_total_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"total_timeout must be None or a real number, got {type(value).__name__} {value!r}"
        )
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"total_timeout must be None or a finite number > 0, got {value!r}")
    return number


def _check_statuses(value: object) -> frozenset[int]:
    if not isinstance(value, AbstractSet):
        raise TypeError(
            f"retry_statuses must be a set of ints, got {type(value).__name__} {value!r}"
        )
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(
                "retry_statuses must be a set of ints, "
                f"got {type(status).__name__} {status!r} in it"
            )
        if not 100 <= status <= 599:
            raise ValueError(
                f"retry_statuses must hold HTTP statuses from 100 to 599, got {status!r} in it"
            )
    return frozenset(value)


def _format_statuses(statuses: frozenset[int]) -> str:
    """``frozenset({408, 409, 429, *range(500, 600)})``: runs of 3 or more as ranges."""
    if not statuses:
        return "frozenset()"
    parts: list[str] = []
    ordered = sorted(statuses)
    start = previous = ordered[0]
    for status in [*ordered[1:], None]:
        if status is not None and status == previous + 1:
            previous = status
            continue
        if previous - start >= 2:
            parts.append(f"*range({start}, {previous + 1})")
        else:
            parts.extend(str(s) for s in range(start, previous + 1))
        if status is not None:
            start = previous = status
    return f"frozenset({{{', '.join(parts)}}})"
