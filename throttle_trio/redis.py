"""One limit shared by many processes, kept in Redis (extra: ``throttle_trio[redis]``).

:class:`RedisThrottle` and :class:`RedisRateLimiter` have the API of
:class:`~throttle_trio.Throttle` and :class:`~throttle_trio.RateLimiter`, but their rate limits
live in Redis, so that every process of a fleet (asyncio or trio, on any host) draws from the
same buckets::

    import coredis
    import throttle_trio as tt
    from throttle_trio.redis import GCRALimit, RedisThrottle

    async with coredis.Redis(host="redis.internal") as client:   # the application owns it
        throttle = RedisThrottle(
            client,
            "openai-" + tt.api_key_hash(api_key),
            requests=GCRALimit(500, per=60.0, burst=50),
            tokens=GCRALimit(200_000, per=60.0, burst=20_000),
            max_concurrent=32,                                      # per process
        )
        async with throttle.reserve(requests=1, tokens=estimate) as slot:
            response = await call()
            await slot.settle(tokens=response_usage)

The client is coredis 6 (built on anyio: the same code runs on asyncio and trio).  coredis
requires that the task that enters a client also exits it, so the application enters it once in
a long-lived task (its lifespan, or the root of its task group) and hands it over; the throttle
never enters, exits or closes it, and can be created before the client is entered.

Theory of operation
-------------------
**One script, one round trip per booking.**  Every limit is a GCRA, or a sliding window
(:class:`WindowLimit`: the log of what it admitted within the window), whose state is a Redis
hash; one Lua script (:mod:`throttle_trio._redis._script`), registered once and sent by SHA
(NOSCRIPT-safe), decides all the limits of a request atomically on Redis's own clock (``TIME``,
integer microseconds).  It does not answer "no, try later": it *books* the earliest instant at
which every limit admits the cost, advances every limit as if the request went then, and
returns the wait (rounded up to the microsecond).  The caller sleeps that long and goes, without
asking again.  So an admission costs at most one round trip whether it waits or not, the order of
bookings is the order of admissions across the whole fleet (FIFO across processes), and a large
request is never starved by a stream of small ones from other processes: it holds its place.

**Only the local head talks to Redis, and books for the waiters behind it.**  Within a
process, requests queue first come, first served in a local line
(:mod:`throttle_trio._redis._line`, with tickets, so a retry keeps its turn, and deadlines).
Its front takes the *booking role* and a concurrency slot in one step, pulls up to
``max_batch - 1`` more waiters off the line (in ticket order, each taking a slot), and books
all of them in one round trip: the script books each request in that order, atomically,
exactly as that many calls in a row would (each after the previous one, every request its own
instant and its own costs; one that would pass its timeout books nothing and fails alone).
Each request then sleeps until its own instant in its own task.  The role passes on only when
every request of the batch has been admitted or has given its booking back, so a process never
has more than ``max_batch`` bookings outstanding.  Uncontended and alone, a request books
itself alone: one round trip per admission.  Under contention, one round trip admits up to
``max_batch`` requests.

**Why booking is bounded here.**  Invariant I8 forbids booking in a local limiter: if the event
loop stalls, every task that booked a future slot wakes at once and they leave together.  Here a
process holds at most ``max_batch`` bookings, so a stall lets at most that many requests per
process leave later than they were charged: in any window of length T the fleet sends at most
``burst + rate * T + sum over the stalled processes of their booked costs`` units, that is at
most ``max_batch`` requests (the costs of one batch) per stalled process; ``max_batch=1`` gives
the bound of one request per process.  Deny-and-poll would avoid that overshoot, but costs a
round trip per retry, and lets small requests from one process starve a large one from another;
the design note prefers booking.  Batches keep the fleet's FIFO order: each batch takes its
place in the order of bookings, so a large request from another process waits for at most the
batches booked before it, never for a stream of them.

**max_concurrent is per process, and the slot is taken before booking.**  The head waits for a
free slot (holding nothing in Redis), then books while holding it.  Taking the slot after the
booked wait would charge the rate at one instant and send later, in a burst, when slots free up
(invariant I9); taking it first costs, at most, ``max_batch`` idle slots per process for the
length of one batch's booked waits, which is the bounded cost this module documents (a head
books for no more waiters than there are free slots).

**Cancellation.**  The script call is shielded: a cancelled round trip may already have run on
the server.  When it returns, a cancelled caller gives back what it booked (a waiter cancelled
while the head books for it waits, shielded, for that reply, then gives its booking back): if
nobody booked after it, the keys are restored exactly; otherwise it is refunded like a settle,
as far as the bookings made after it allow.  A cancelled acquire therefore took nothing (I4),
except when Redis cannot be reached to give it back (then the booking stands: the error is on
the safe side).

**Refunds and bookings.**  :meth:`RedisReservation.settle` refunds or charges the difference on
the server.  A refund never lifts a bucket above full, nor frees room that a request booked in
the future relies on (see the script's notes); what is not credited is counted as ``dropped``.
A refund does not make a head that already booked go earlier (its instant is fixed).

**Shared pause, feedback and adaptive rate.**  :meth:`RedisThrottle.pause_for` closes the gate
for every process, :meth:`RedisThrottle.observe` lowers the shared buckets, and with
``adaptive=True`` :meth:`RedisThrottle.record_overload` halves the shared rate of every limit (at
most once per second, decided by the script on Redis's clock, so that a wave of 429s seen by
many processes cuts once) while :meth:`RedisThrottle.record_success` adds 1/100 of the
configured rate back, never above it and never below 1/100 of it.  The rate is stored beside
the limit's state and every booking uses it (the emission interval is ``per / rate`` at the
shared rate): one process's 429 slows the whole fleet at its next booking.  A change keeps each
bucket's level and changes how fast it refills; a booking already made keeps its instant.

**Failures.**  A connection error, or no answer within ``redis_timeout``, raises
:class:`BackendUnavailable` (or, with ``on_unavailable=LocalFallback(fraction)``, admits through
a local :class:`~throttle_trio.Throttle` at that fraction of the rates, with a warning logged once
per outage and the admissions counted in :meth:`RedisThrottle.statistics`; never unlimited).
After ``retry_interval`` seconds the next head tries Redis again; once it answers, new requests
use it again.  A key that holds something other than this module's state raises
:class:`RedisBackendError` naming the key.  coredis's default retry policy retries a command
whose connection broke; if the script had already run, the request is charged twice (safe).

**What Redis forgets.**  A restarted or flushed Redis without persistence starts every bucket
full, at the configured rate.  Keys expire on their own once they mean nothing (a bucket full
again, a pause over; a lowered rate once its bucket is full and no process has reported an
overload or a success for an hour).

Every process of a fleet must configure the same limits for the same ``name``.
"""

from __future__ import annotations

from ._extras import missing_extra

try:
    import coredis.exceptions  # noqa: F401 - the redis extra: fail here, with how to install it
except ImportError as _error:  # pragma: no cover - exercised in a subprocess by the tests
    raise missing_extra("throttle_trio.redis", "redis", _error) from _error

from ._redis._connect import client_from_url as client_from_url
from ._redis._limiter import RedisRateLimiter as RedisRateLimiter
from ._redis._throttle import RedisReservation as RedisReservation
from ._redis._throttle import RedisThrottle as RedisThrottle
from ._redis._types import DEFAULT_MAX_BATCH as DEFAULT_MAX_BATCH
from ._redis._types import MAX_SPAN as MAX_SPAN
from ._redis._types import BackendUnavailable as BackendUnavailable
from ._redis._types import GCRALimit as GCRALimit
from ._redis._types import LocalFallback as LocalFallback
from ._redis._types import RedisBackendError as RedisBackendError
from ._redis._types import RedisLimitStatistics as RedisLimitStatistics
from ._redis._types import RedisThrottleState as RedisThrottleState
from ._redis._types import RedisThrottleStatistics as RedisThrottleStatistics
from ._redis._types import WindowLimit as WindowLimit
from ._reexport import fixup_module_metadata as _fixup_module_metadata

__all__ = [
    "BackendUnavailable",
    "DEFAULT_MAX_BATCH",
    "GCRALimit",
    "LocalFallback",
    "MAX_SPAN",
    "RedisBackendError",
    "RedisLimitStatistics",
    "RedisRateLimiter",
    "RedisReservation",
    "RedisThrottle",
    "RedisThrottleState",
    "RedisThrottleStatistics",
    "WindowLimit",
    "client_from_url",
]

_fixup_module_metadata(__name__, globals())  # the private modules' names claim this namespace
