"""Provider presets: a :class:`Throttle` set up the way a provider enforces its limits.

A provider's limits are per minute, but neither provider lets a minute's quota go at once,
and they differ in what they charge:

========================  ===============================  ===============================
                          OpenAI                           Anthropic
========================  ===============================  ===============================
limits                    RPM, TPM                         RPM, ITPM (input), OTPM (output)
short-term enforcement    "may be quantized": 60,000 RPM   "60 RPM may be enforced as 1
                          "may be enforced as 1,000        request per second"; token
                          requests/second" (RPM and TPM)   buckets "continuously
                                                           replenished up to your maximum
                                                           limit"
``max_tokens``            counted up front, kept           counted up front (OTPM),
                                                           "adjusted at the end"
a 429                     "unsuccessful requests           (not documented)
                          contribute to your per-minute
                          limit"
========================  ===============================  ===============================

(OpenAI's rate-limit guide, platform.openai.com/docs/guides/rate-limits; Anthropic's
rate-limits page, docs.anthropic.com/en/api/rate-limits.)  So the presets build:

* :func:`openai_throttle`: ``requests`` and ``tokens`` as :class:`SlidingWindow` s of one
  slice's share (``rpm / 60`` and ``tpm / 60`` per second) over a window ``margin`` longer
  than the slice (the first one ``warmup`` longer: the first requests of a run leave late
  behind its start-up work), so that no slice the provider counts from arrival times ever
  holds more, whatever the trip times do within the margin; a request reported on the wire
  (:meth:`~throttle_trio.Reservation.sent`, as the transports do) counts from its send
  instead of its admission (in the first window, never before its admission's record).
  ``requests_per_second``, a token bucket of the same rate holding
  a fifth of a slice's requests until they are on the wire (``until_sent``), paces what is
  between admission and the wire (a stall of the program delays all that were admitted and
  not yet sent) and, at the bucket's rate, the requests that are never reported (sent at one
  instant, the first of them would reach the provider late behind the connections they
  open, later than the next slice's on open connections: measured, 30 ms and more for 20
  requests on loopback); ``refund_unused=False`` (the estimate, prompt plus ``max_tokens``,
  stays charged, as OpenAI keeps it).
* :func:`anthropic_throttle`: ``requests`` as a :class:`TokenBucket` holding one slice's
  worth (at least one request), ``input_tokens`` and ``output_tokens`` as token buckets of a
  minute's worth; each bucket holds ``margin`` seconds of its rate less than the provider's
  (which costs no rate, only that much burst) and starts ``warmup`` seconds of its rate below
  that (the first requests open the connections, and the program stalls when the first
  responses come back); ``refund_unused=True`` (Anthropic settles).

Both are ``adaptive`` (a 429, 529 or 5xx halves the rates, successes win them back) and name
their limits after the metrics of the providers' rate-limit headers, so that the header
feedback of the transports and of :func:`call_with_retries` (``observe``) lowers each limit
when the provider counts more than the throttle did (other programs on the same key).  The
transports need nothing else: their default estimate counts ``max_tokens`` (times ``n``) up
front, and their default :class:`RetryPolicy` pauses the key on a 429.

A request whose estimate is larger than what a limit holds (for OpenAI's tokens, one slice:
``tpm / 60`` tokens at the default slice) fails at once with
:class:`~throttle_trio.CostExceedsCapacity`, naming the limit: set ``max_tokens``, or give a
longer ``slice_seconds`` if your provider accepts larger requests.
"""

from __future__ import annotations

from ._throttle import Throttle
from ._validate import check_non_negative, check_positive
from .policy.sliding_window import SlidingWindow
from .policy.token_bucket import TokenBucket

__all__ = ["anthropic_throttle", "openai_throttle"]

_MINUTE = 60.0
DEFAULT_MAX_CONCURRENT = 64
DEFAULT_SLICE = 1.0
DEFAULT_MARGIN = 0.03
# The first requests of a run open the connections, and the program stalls when the first
# response comes back (the openai SDK: 0.2 to 1 s in ``python -m bench.http --presets``).
DEFAULT_WARMUP = 1.0
# OpenAI's first window: what delays the first requests is the program's start-up (300 tasks
# building their requests at once stalled the loop up to 0.39 s in 60 runs of ``python -m
# bench.http --presets --provider openai``; the first requests are admitted within that stall,
# and wait for its rest), and ``margin`` adds 30 ms.  With a quarter second no run met a 429
# (20 of 20, both loops, 1.034-1.039x the provider's fastest schedule for 300 requests), nor
# with half a second (20 of 20, 1.043-1.049x); a second cost 3.8% of that makespan
# (1.063-1.069x).
DEFAULT_OPENAI_WARMUP = 0.25


def _check_max_concurrent(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"max_concurrent must be an int or None, got {type(value).__name__} {value!r}"
        )
    if value < 1:
        raise ValueError(f"max_concurrent must be >= 1 or None, got {value!r}")
    return value


def _check_margin(margin: object, slice_seconds: float) -> float:
    checked = check_non_negative("margin", margin)
    if checked >= slice_seconds:
        raise ValueError(f"margin must be < slice_seconds ({slice_seconds!r}), got {margin!r}")
    return checked


def _slice_window(
    per_minute: float, slice_seconds: float, margin: float, warmup: float
) -> SlidingWindow:
    """One slice's share of ``per_minute`` over a window ``margin`` longer than the slice,
    the first window's admissions counting ``warmup`` longer.

    A rate below one unit per slice gets a longer slice, that of one unit: a provider cannot
    admit less than one request.
    """
    length = max(slice_seconds, _MINUTE / per_minute)
    return SlidingWindow(per_minute * length / _MINUTE, window=length + margin, warmup=warmup)


def _pace(per_minute: float, slice_seconds: float) -> TokenBucket:
    """``per_minute``, a fifth of a slice's share at a time (at least one unit), held only
    until the request is on the wire."""
    return TokenBucket(
        per_minute,
        per=_MINUTE,
        burst=max(1.0, per_minute * slice_seconds / _MINUTE / 5),
        until_sent=True,
    )


def _short_bucket(per_minute: float, holds: float, margin: float, warmup: float) -> TokenBucket:
    """A bucket refilled at ``per_minute``, holding ``holds`` less ``margin`` s of the rate,
    and starting ``warmup`` s of the rate below that.

    When that is below one unit, the bucket holds one and refills it ``margin`` later than the
    provider's does instead (the only margin left for a bucket that holds a single request).
    """
    rate = per_minute / _MINUTE
    burst = holds - rate * margin
    if burst < 1:
        return TokenBucket(
            1, per=1 / rate + margin, burst=1, initial_tokens=max(0.0, 1 - rate * warmup)
        )
    initial = max(0.0, burst - rate * warmup)
    return TokenBucket(per_minute, per=_MINUTE, burst=burst, initial_tokens=initial)


def openai_throttle(
    *,
    rpm: float,
    tpm: float,
    max_concurrent: int | None = DEFAULT_MAX_CONCURRENT,
    slice_seconds: float = DEFAULT_SLICE,
    margin: float = DEFAULT_MARGIN,
    warmup: float = DEFAULT_OPENAI_WARMUP,
) -> Throttle:
    """A :class:`Throttle` for OpenAI's API: per-second slices, ``max_tokens`` kept.

    ``requests`` and ``tokens`` are sliding windows holding one slice's share of the
    per-minute limits (``rpm / 60`` requests and ``tpm / 60`` tokens at the default one-second
    slice) over ``slice_seconds + margin`` seconds (the first window ``warmup`` longer),
    counted from when each request is reported on the wire, and ``requests_per_second``
    holds at most a fifth of a slice's requests between admission and the wire (requests
    never reported on the wire: paced at ``rpm / 60`` a second); unused estimates are not
    refunded; the
    rates back off on 429s and server errors (``adaptive``).  The price of the margin is a
    fraction ``margin / (slice_seconds + margin)`` of the rate (3% by default).

    Example::

        throttle = tt.openai_throttle(rpm=500, tpm=200_000)
        transport = ThrottledTransport(httpx2.AsyncHTTPTransport(), throttle=throttle)

    Args:
        rpm: your requests-per-minute limit for the model (> 0).
        tpm: your tokens-per-minute limit for the model (> 0).
        max_concurrent: requests in flight at most (an int >= 1, or ``None`` for no cap).
        slice_seconds: the slice the provider enforces its per-minute limits over, in
            seconds (> 0; OpenAI's guide gives one second as its example).  Limits below one
            request (or token) per slice get the slice of one.
        margin: seconds added to each window (>= 0, < ``slice_seconds``): how much later than
            the one before it a request may reach the provider, compared with when it left,
            without meeting a slice that is still full.
        warmup: seconds longer the first window's admissions count (>= 0; a quarter second):
            the first requests of a run reach the provider later after they leave than the
            ones after them (start-up work, new connections: the program's start-up stalled
            the loop up to 0.39 s in ``python -m bench.http --presets``, with 300 tasks
            starting at once; and a request reported on the wire can still wait for a
            provider as busy as the program, as a fake provider in the same process does).
            Costs that much once, at the start; give more if your program does more before
            its first requests are sent.

    Raises:
        TypeError: a parameter is not a number (``max_concurrent``: not an int or ``None``).
        ValueError: a parameter is out of range (the message names it).
    """
    rpm = check_positive("rpm", rpm)
    tpm = check_positive("tpm", tpm)
    max_concurrent = _check_max_concurrent(max_concurrent)
    slice_seconds = check_positive("slice_seconds", slice_seconds)
    margin = _check_margin(margin, slice_seconds)
    warmup = check_non_negative("warmup", warmup)
    return Throttle(
        requests=_slice_window(rpm, slice_seconds, margin, warmup),
        # Paced: at most a fifth of a slice's requests between their admission and the wire,
        # so that few are delayed when the program stalls (a stall delays them, not the next
        # slice's); requests that never report leave a fifth of a slice at a time, so that
        # the first ones do not reach the provider late behind the connections they open.
        requests_per_second=_pace(rpm, slice_seconds),
        tokens=_slice_window(tpm, slice_seconds, margin, warmup),
        max_concurrent=max_concurrent,
        refund_unused=False,
        adaptive=True,
    )


def anthropic_throttle(
    *,
    rpm: float,
    input_tpm: float,
    output_tpm: float,
    max_concurrent: int | None = DEFAULT_MAX_CONCURRENT,
    slice_seconds: float = DEFAULT_SLICE,
    margin: float = DEFAULT_MARGIN,
    warmup: float = DEFAULT_WARMUP,
) -> Throttle:
    """A :class:`Throttle` for Anthropic's API: RPM in slices, ITPM and OTPM settled.

    ``requests`` is a token bucket of ``rpm`` a minute holding one slice's worth (``rpm / 60``
    at the default one-second slice, at least one request); ``input_tokens`` and
    ``output_tokens`` are token buckets of ``input_tpm`` and ``output_tpm`` a minute holding a
    minute's worth.  Each holds ``margin`` seconds of its rate less than Anthropic's, which
    costs no rate.  Estimates are settled to the real usage (``refund_unused=True``: Anthropic
    adjusts ``max_tokens`` to the output at the end); the rates back off on 429s, 529s and
    other server errors (``adaptive``).

    Example::

        throttle = tt.anthropic_throttle(rpm=1_000, input_tpm=80_000, output_tpm=16_000)
        transport = ThrottledTransport(httpx2.AsyncHTTPTransport(), throttle=throttle)

    Args:
        rpm: your requests-per-minute limit for the model (> 0).
        input_tpm: your input-tokens-per-minute limit (ITPM, > 0).
        output_tpm: your output-tokens-per-minute limit (OTPM, > 0); also the largest
            ``max_tokens`` (times ``n``) a request may ask for.
        max_concurrent: requests in flight at most (an int >= 1, or ``None`` for no cap).
        slice_seconds: how many seconds of ``rpm`` the provider lets go at once (> 0).
        margin: seconds of each rate the throttle keeps in hand (>= 0, < ``slice_seconds``):
            how much later than the one before it a request may reach the provider, compared
            with when it left, without finding a bucket emptier than the throttle's.
        warmup: seconds of each rate the buckets start below full (>= 0).  Anthropic's
            buckets start when the first request arrives, which opens a connection (and a TLS
            session) on its way and may wait behind the program's start-up work: the requests
            that follow arrive sooner after they leave, and would find less refilled than the
            throttle counted.  Costs that much of the burst once, at the start.

    Raises:
        TypeError: a parameter is not a number (``max_concurrent``: not an int or ``None``).
        ValueError: a parameter is out of range (the message names it).
    """
    rpm = check_positive("rpm", rpm)
    input_tpm = check_positive("input_tpm", input_tpm)
    output_tpm = check_positive("output_tpm", output_tpm)
    max_concurrent = _check_max_concurrent(max_concurrent)
    slice_seconds = check_positive("slice_seconds", slice_seconds)
    margin = _check_margin(margin, slice_seconds)
    warmup = check_non_negative("warmup", warmup)
    return Throttle(
        requests=_short_bucket(rpm, max(1.0, rpm * slice_seconds / _MINUTE), margin, warmup),
        input_tokens=_short_bucket(input_tpm, input_tpm, margin, warmup),
        output_tokens=_short_bucket(output_tpm, output_tpm, margin, warmup),
        max_concurrent=max_concurrent,
        refund_unused=True,
        adaptive=True,
    )
