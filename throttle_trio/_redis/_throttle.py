"""The shell of :class:`~throttle_trio.redis.RedisThrottle`: its local line, the booking of
batches, the round trips, and the bookkeeping of this process.

How it works is the theory of operation of :mod:`throttle_trio.redis`.  The script's arguments
and replies go through :mod:`throttle_trio._redis._protocol`; the outage state and the local
fallback are :mod:`throttle_trio._redis._fallback`'s.
"""

from __future__ import annotations

import logging
import math
import threading
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, final

import anyio
import anyio.lowlevel
from coredis.exceptions import ClusterDownError, RedisError, TryAgainError
from coredis.exceptions import ConnectionError as RedisConnectionError

from .._core import (
    Adjustment,
    Booking,
    Lanes,
    Ledger,
    ReservationState,
    ThrottleCore,
)
from .._eventloop import current_backend, running_backend
from .._events import (
    Admitted,
    EventHook,
    LimitLearned,
    Paused,
    RateChanged,
    Rejected,
    Settled,
    TimedOut,
    check_hook,
    emit,
)
from .._exceptions import CostExceedsCapacity, RateLimitTimeout
from .._reserve import (
    Lane,
    ReserveContext,
    check_max_concurrent,
    checked_admission,
    recosted,
)
from .._shield import DeadlinePassed, finish_then_cancel
from .._validate import check_non_negative, check_optional_timeout
from ..policy.adaptive import DEFAULT_COOLDOWN, DEFAULT_DECREASE, DEFAULT_DIVISOR
from ..policy.sliding_window import SlidingWindow
from ..policy.token_bucket import TokenBucket
from ._fallback import Fallback
from ._line import BOOKED, LEADING, PICKED, QUEUED, Line, Waiter
from ._protocol import (
    Acquire,
    Adjust,
    Booked,
    BookingRequest,
    Cut,
    Exceeds,
    Foreign,
    Grow,
    Late,
    Learn,
    LearnedSpec,
    Lower,
    MalformedReply,
    OutOfRange,
    Pause,
    ReadState,
    Reply,
    Request,
    Unbook,
)
from ._script import (
    MAX_US,
    RATE_ONE,
    SCRIPT,
    SPAN_US,
    Interval,
    gate_key,
    learned_key,
    learned_limit_key,
    limit_key,
    microseconds_up,
)
from ._types import (
    DEFAULT_MAX_BATCH,
    MAX_SPAN,
    BackendUnavailable,
    GCRALimit,
    LocalFallback,
    RedisBackendError,
    RedisLimitStatistics,
    RedisThrottleState,
    RedisThrottleStatistics,
    WindowLimit,
    as_limit,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from coredis.client import Client
    from coredis.commands.script import Script

    from .._eventloop import Backend
    from .._headers import RateLimitHeaders
    from .._throttle import Reservation, Throttle
    from ..policy.gcra import GCRA

__all__ = ["RedisReservation", "RedisThrottle", "refund", "try_acquire"]

logger = logging.getLogger("throttle_trio.redis")

R = TypeVar("R", bound=Reply)

# Errors that mean "Redis cannot answer now" rather than "Redis answered no".
_UNAVAILABLE = (RedisConnectionError, TimeoutError, ClusterDownError, TryAgainError)

# The adaptive rate (AIMD), in millionths of the configured rate (RATE_ONE), as the local
# Throttle's AIMD defaults: an overload halves it (at most once per cooldown), a success adds
# 1/100 of the configured rate, never above it, never below 1/100 of it.
_CUT_FACTOR = round(RATE_ONE * DEFAULT_DECREASE)
_RATE_FLOOR = RATE_ONE // DEFAULT_DIVISOR
_RATE_STEP = RATE_ONE // DEFAULT_DIVISOR
_COOLDOWN_US = round(DEFAULT_COOLDOWN * 1_000_000)
# A lowered rate is forgotten once its bucket is full and nothing was reported for this long.
_RATE_MEMORY_US = 3_600_000_000
# The fleet's learned limits are kept this long after they were last read or written: a day,
# the longest period a learned limit has.
_LEARNED_MEMORY_US = 86_400_000_000
_LEARNED_REFRESH = 3600.0  # seconds between a process's refreshes of the record


@final
class _Limit(Ledger):
    """One shared limit: its counters (the core's ledger), its key and the script's units."""

    __slots__ = (
        "burst",
        "interval",
        "key",
        "rate",
        "scale",
        "tau",
        "warmup_us",
        "window",
        "window_us",
    )

    def __init__(
        self, name: str, limit: GCRALimit | WindowLimit, key: str, *, learned: bool = False
    ) -> None:
        super().__init__(name, learned=learned)
        self.key = key
        if isinstance(limit, WindowLimit):
            # A window sums amounts, it does no time arithmetic with them: the script counts
            # its units in exact thousandths (charges rounded up, the capacity down), and is
            # told its length in microseconds (rounded up: a longer window errs on the safe side).
            self.interval = Interval(1_000, 1)
            self.tau = self.interval.credit(limit.limit)
            self.burst = self.tau / 1_000  # what the script holds it to: whole thousandths
            self.rate = limit.limit / limit.window
            self.window: float | None = limit.window
            self.window_us = microseconds_up(limit.window)
            self.warmup_us = microseconds_up(limit.warmup)
        else:
            self.burst = limit.burst
            self.rate = limit.rate / limit.per
            self.interval = Interval(limit.rate, limit.per)
            self.window = None
            self.window_us = self.warmup_us = 0
            self.tau = self.interval.charge(self.burst)  # the same rounding as every charge
        self.scale = RATE_ONE  # the shared adaptive rate, as the last reply reported it

    @property
    def effective_rate(self) -> float:
        """Units per second admitted now, as far as this process knows."""
        return self.rate * self.scale / RATE_ONE

    def refill_rate(self) -> float:
        """What header feedback credits as refill (the core asks): the effective rate."""
        return self.rate * self.scale / RATE_ONE

    def capacity(self) -> float:
        """The largest cost it admits at once."""
        return self.burst


def _timer_fired(waiter: Waiter) -> None:
    """A parked waiter's deadline came (asyncio's timer): it looks at the time again."""
    waiter.timer = None
    waiter.loop.unpark(waiter, False)


def _described(exc: BaseException) -> str:
    """``exc`` as ``Type: text``, and what caused it at the root when that says more (a failed
    certificate check under coredis's "unable to connect")."""
    text = f"{type(exc).__name__}: {exc}"
    root, seen = exc, {id(exc)}
    while (cause := root.__cause__ or root.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        root = cause
    if root is not exc and str(root) and str(root) not in text:
        text += f" (caused by {type(root).__name__}: {root})"
    return text


def _check_max_batch(value: object) -> int:
    """Accept an int >= 1 (``max_batch``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_batch must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"max_batch must be >= 1, got {value!r}")
    return value


def _check_name(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__} {value!r}")
    if not value or "{" in value or "}" in value:
        raise ValueError(f"{what} must be a non-empty str without '{{' or '}}', got {value!r}")
    return value


_ACTIVE = ReservationState.ACTIVE
_RELEASED = ReservationState.RELEASED


@final
class RedisReservation:
    """An admitted request of a :class:`RedisThrottle`: its slot and what it was charged.

    The counterpart of :class:`~throttle_trio.Reservation`, with the same life cycle; the methods
    that change the shared state are async (one shielded round trip each):

    * ``await settle(tokens=812)`` with the real usage, then :meth:`release`;
    * :meth:`release` without a settle: the estimate stands;
    * ``await cancel()``: the request was never sent, everything is refunded;
    * ``await reject(requests=1)``: the server rejected the attempt; it costs what you keep.

    A reservation is owned by no task: any task may settle or release it.
    """

    __slots__ = ("_booking", "_local", "_server_admitted_at", "_throttle")

    def __init__(self, throttle: RedisThrottle, costs: dict[str, float], ticket: int) -> None:
        self._throttle = throttle
        self._booking = Booking(costs, ticket)
        self._server_admitted_at = math.nan
        self._local: Reservation | None = None

    @property
    def ticket(self) -> int:
        """The place in line in this process; pass it to a retry so that it keeps its turn."""
        return self._booking.ticket

    @property
    def costs(self) -> Mapping[str, float]:
        """What this reservation is charged now, per metric."""
        if self._local is not None:
            return self._local.costs
        return MappingProxyType(self._booking.costs)

    @property
    def admitted_at(self) -> float:
        """When it was admitted (anyio clock); NaN before."""
        return self._booking.admitted_at

    @property
    def server_admitted_at(self) -> float:
        """The instant Redis booked for it (Unix seconds, Redis's clock); NaN if the local
        fallback admitted it."""
        return self._server_admitted_at

    @property
    def via_fallback(self) -> bool:
        """Admitted by the local fallback while Redis was unavailable."""
        return self._local is not None

    @property
    def state(self) -> ReservationState:
        """Pending, active or released."""
        return self._booking.state

    @property
    def active(self) -> bool:
        """Admitted and not yet released."""
        return self._booking.state is _ACTIVE

    def __repr__(self) -> str:
        booking = self._booking
        via = " via fallback" if self._local is not None else ""
        return (
            f"<RedisReservation {booking.state.value}{via} ticket={booking.ticket} "
            f"costs={booking.costs}>"
        )

    async def settle(self, **actual: float) -> None:
        """Adjust the charges to the real usage, per metric (``tokens=812``).

        A metric not named keeps its estimate.  Below the estimate, the difference is refunded
        (if the throttle's ``refund_unused`` is true), never lifting a bucket above full;
        above it, the overdraft is charged as a debt repaid before later admissions.  One
        shielded round trip (none if nothing changes).

        Raises:
            ReservationError: settled twice, or after :meth:`release`.
            ValueError: an unknown metric or a negative usage.
            BackendUnavailable: Redis cannot be reached and there is no fallback.
        """
        booking = self._booking
        booking.check_settle()
        if self._local is not None:  # admitted by the fallback: settled there
            self._local.settle(**actual)
            booking.settled = True
            return
        booking.settled = True
        throttle = self._throttle
        estimate = dict(booking.costs) if throttle._on_event is not None else None
        try:
            await throttle._adjust(self, actual, refund=throttle.refund_unused)
        except BaseException:
            booking.settled = False
            raise
        if throttle._on_event is not None and estimate is not None:
            usage = ThrottleCore.settled_usage(estimate, actual)
            now = anyio.current_time()
            emit(throttle._on_event, Settled(throttle._name, now, booking.ticket, estimate, usage))

    def release(self) -> None:
        """Give the concurrency slot back.  Without a settle, the estimate stands.

        Idempotent: releasing twice does nothing the second time.  Not async: it touches only
        this process.
        """
        if self._booking.state is _ACTIVE:
            throttle = self._throttle
            if throttle._line.waiting and threading.get_ident() != throttle._thread:
                throttle._check_thread()  # raises: the slot it frees would wake nobody
            self._booking.state = _RELEASED
            if self._local is not None:
                self._local.release()
            throttle._release_slot()

    async def cancel(self) -> None:
        """The request was never sent: refund every charge and release the slot.

        Raises:
            ReservationError: the reservation is not active.
            BackendUnavailable: Redis cannot be reached and there is no fallback (the slot is
                released all the same).
        """
        self._booking.check_active("cancel")
        if self._local is not None:
            self._local.cancel()
            self.release()
            return
        try:
            usage = dict.fromkeys(self._booking.costs, 0.0)
            await self._throttle._adjust(self, usage, refund=True)
        finally:
            self.release()

    async def reject(self, status: int | None = None, /, **kept: float) -> None:
        """The server rejected this attempt (a 429): keep only ``kept``, refund the rest.

        For LLM APIs a rejected attempt typically costs one request and no tokens:
        ``await reservation.reject(requests=1)``.  The slot is released; retry with
        ``throttle.reserve(..., ticket=reservation.ticket)`` to keep the original turn.
        """
        self._booking.check_active("reject")
        self._throttle._core.rejections += 1
        if self._local is not None:
            self._local.reject(**kept)
            self.release()
            self._throttle._rejected_event(self._booking, status)
            return
        usage = ThrottleCore.all_but(self._booking, kept)
        try:
            await self._throttle._adjust(self, usage, refund=True)
        finally:
            self.release()
        self._throttle._rejected_event(self._booking, status)


@final
class RedisThrottle:
    """Several rate limits shared through Redis, plus a per-process concurrency cap.

    The distributed counterpart of :class:`~throttle_trio.Throttle` (see the module docstring for
    how it works): the same ``reserve``/``acquire``, ticket and timeout semantics, the same
    metric naming (``tokens_per_day`` counts ``tokens``).  Methods that change the shared state
    (settle, cancel, reject, pauses, header feedback, the adaptive rate) are async.

    Args:
        client: a coredis ``Redis`` or ``RedisCluster`` client, which the application enters
            (``async with``) and exits in one long-lived task.
        name: the throttle's name, shared by every process that shares its limits (no ``{`` or
            ``}``).  Never put an API key in it: use :func:`throttle_trio.api_key_hash`.
        limits: limit name -> :class:`GCRALimit` or :class:`WindowLimit` (a sliding window),
            as a mapping.
        max_concurrent: at most this many reservations of *this process* hold a slot at once
            (an int >= 1, or ``None`` for no cap).
        max_batch: at most this many requests of this process booked in one round trip (an
            int >= 1; default :data:`DEFAULT_MAX_BATCH`): the head books for itself and the
            next waiters in line.  It is also the most a process may send late after an event
            loop stall (see the module docstring); ``1`` gives the tightest bound, at one round
            trip per admission.
        prefix: the first part of every key (``prefix:{name}`` and ``prefix:{name}:<limit>``;
            the braces are a hash tag that keeps a throttle on one Redis Cluster slot).
        refund_unused: whether a settle refunds an estimate above the real usage.
        adaptive: back off on overload, for the whole fleet: :meth:`record_overload` (a 429,
            529 or 5xx seen by any process) halves the shared rate of every limit (at most once
            a second) and :meth:`record_success` adds 1/100 of the configured rate back, never
            above it, never below 1/100 of it (AIMD, as :class:`~throttle_trio.Throttle`).
        on_unavailable: ``"raise"`` (:class:`BackendUnavailable`) or a :class:`LocalFallback`.
        redis_timeout: seconds one round trip may take before Redis counts as unavailable
            (``None``: wait as long as coredis does).
        batch_share: while both lanes of this process have waiters, the share of its
            admissions the ``"batch"`` lane gets (0 < share < 1; 0.2).
        learn_limits: learn the limits of metrics that are not configured from the rate-limit
            headers, for the whole fleet (the rule of :class:`~throttle_trio.Throttle`'s
            ``learn_limits``): the first process to learn a metric records its limit and period
            in Redis, every process reads the record at its first admission and after a report
            names a new metric, and all of them charge one shared key per learned metric.
            While this process knows no limit at all, it sends one request at a time (a probe)
            until a response teaches one.
        on_event: a listener for this process's events (admissions, timeouts, settles,
            rejections, pauses, rate cuts, learned limits, the fallback's entry and exit; see
            :mod:`throttle_trio.events`), named by ``name``; or ``None``.
        **more_limits: limits as keywords (``requests=GCRALimit(500, per=60)``).

    Raises:
        TypeError: a limit is not a GCRALimit or WindowLimit (a GCRA or TokenBucket is read as
            a GCRALimit, a SlidingWindow as a WindowLimit), or an
            argument has the wrong type.
        ValueError: no limits (and no ``learn_limits``), a bad name, or an argument out of
            range.
    """

    __slots__ = (
        "_adaptive",
        "_batch",
        "_batch_left",
        "_booked",
        "_booked_wait",
        "_booking",
        "_cap",
        "_capacities",
        "_clamp_logged",
        "_cooldown_us",
        "_core",
        "_fallback",
        "_gate",
        "_held",
        "_lanes",
        "_learned",
        "_learned_at",
        "_learned_key",
        "_learned_loaded",
        "_limits",
        "_line",
        "_max_batch",
        "_max_concurrent",
        "_name",
        "_on_event",
        "_paused_locally",
        "_prefix",
        "_rate_cuts",
        "_redis_timeout",
        "_round_trips",
        "_script",
        "_thread",
        "_turn",
        "_unavailable",
        "_unbooked",
    )

    def __init__(
        self,
        client: Client[Any],
        name: str,
        limits: Mapping[str, GCRALimit | WindowLimit | GCRA | TokenBucket | SlidingWindow]
        | None = None,
        /,
        *,
        max_concurrent: int | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        prefix: str = "throttle_trio",
        refund_unused: bool = True,
        adaptive: bool = False,
        on_unavailable: Literal["raise"] | LocalFallback = "raise",
        redis_timeout: float | None = 5.0,
        batch_share: float = 0.2,
        learn_limits: bool = False,
        on_event: EventHook | None = None,
        **more_limits: GCRALimit | WindowLimit | GCRA | TokenBucket | SlidingWindow,
    ) -> None:
        self._name = _check_name("name", name)
        self._prefix = prefix = _check_name("prefix", prefix)
        merged = {**limits, **more_limits} if limits else more_limits
        if not isinstance(learn_limits, bool):
            raise TypeError(f"learn_limits must be a bool, got {learn_limits!r}")
        if not merged and not learn_limits:
            raise ValueError("a RedisThrottle needs at least one limit or learn_limits, got none")
        self._limits = [
            _Limit(limit_name, as_limit(limit_name, value), limit_key(prefix, name, limit_name))
            for limit_name, value in merged.items()
            if _check_name("limit name", limit_name)
        ]
        # The rules and counters both throttles share (_core); the limits stay a list here,
        # in the order of the script's keys.
        self._core: ThrottleCore[_Limit] = ThrottleCore(
            self._limits, refund_unused=refund_unused, learn_limits=learn_limits
        )
        self._learned_key = learned_key(prefix, name)
        self._learned_loaded = not learn_limits  # what the fleet learned is read at first use
        self._learned: dict[str, LearnedSpec] = {}  # what this process counts, by metric
        self._learned_at = -math.inf  # when it last read the record (anyio clock)
        self._lanes = Lanes(batch_share)
        self._on_event = check_hook(on_event)
        self._capacities: dict[str, float] = {}  # metric -> the smallest burst that counts it
        for limit in self._limits:
            known = self._capacities.get(limit.metric, math.inf)
            self._capacities[limit.metric] = min(known, limit.burst)
        self._max_concurrent = check_max_concurrent(max_concurrent)
        # The slots this process may hold now: one (a probe) while learning with no limit yet.
        self._cap = 1 if learn_limits and not self._limits else self._max_concurrent
        if on_unavailable != "raise" and not isinstance(on_unavailable, LocalFallback):
            raise TypeError(
                f"on_unavailable must be 'raise' or a LocalFallback, got {on_unavailable!r}"
            )
        self._fallback = (
            Fallback(
                on_unavailable,
                self._limits,
                refund_unused=refund_unused,
                adaptive=adaptive,
                learn_limits=learn_limits,
                owner=self,
                on_event=on_event,
                source=name,
            )
            if isinstance(on_unavailable, LocalFallback)
            else None
        )
        self._redis_timeout = check_optional_timeout(redis_timeout)
        self._adaptive = bool(adaptive)
        self._cooldown_us = _COOLDOWN_US  # every process sends the same; tests may lower it
        self._rate_cuts = 0
        self._gate = gate_key(prefix, name)
        self._script: Script[Any] = client.register_script(SCRIPT)
        self._line = Line()
        self._max_batch = _check_max_batch(max_batch)
        # A head holds the booking role from its round trip until every request it booked is
        # admitted or gone; _batch_left counts those.
        self._booking = False
        self._batch_left = 0
        self._batch: list[Waiter] = []  # the requests of the latest batch, in booking order
        self._turn = 0  # the first of them not yet admitted nor gone
        self._thread = 0  # the thread whose event loop the line's waiters are in
        self._booked = 0  # of which, booked in Redis and sleeping until their instant
        self._held = 0  # concurrency slots held: admitted reservations, and the booking head
        self._booked_wait = 0.0
        self._round_trips = 0
        self._unbooked = 0
        self._unavailable = 0
        self._paused_locally = -math.inf  # the latest pause this process asked for (anyio clock)
        self._clamp_logged: set[str] = set()

    @classmethod
    def for_openai(
        cls,
        client: Client[Any],
        name: str,
        *,
        rpm: float,
        tpm: float,
        max_concurrent: int | None = 64,
        slice_seconds: float = 1.0,
        margin: float = 0.03,
        warmup: float = 0.25,
        max_batch: int = DEFAULT_MAX_BATCH,
        prefix: str = "throttle_trio",
        on_unavailable: Literal["raise"] | LocalFallback = "raise",
        redis_timeout: float | None = 5.0,
        on_event: EventHook | None = None,
    ) -> RedisThrottle:
        """OpenAI's preset (:func:`throttle_trio.openai_throttle`) for a fleet: the per-second
        slices as sliding windows kept in Redis, counted from the booking, and the pacing as a
        shared bucket that spaces every request (a fleet gets no reports that a request is on
        the wire), ``max_tokens`` kept (no refund), adaptive.  ``max_concurrent`` is per
        process; the warm-up is the fleet's: what the slices admit in the window after they
        were empty counts ``warmup`` seconds longer (:class:`WindowLimit`)."""
        from .._presets import openai_throttle

        local = openai_throttle(
            rpm=rpm,
            tpm=tpm,
            max_concurrent=max_concurrent,
            slice_seconds=slice_seconds,
            margin=margin,
            warmup=warmup,
        )
        return cls._from_preset(
            client,
            name,
            local,
            max_concurrent=max_concurrent,
            max_batch=max_batch,
            prefix=prefix,
            on_unavailable=on_unavailable,
            redis_timeout=redis_timeout,
            on_event=on_event,
        )

    @classmethod
    def for_anthropic(
        cls,
        client: Client[Any],
        name: str,
        *,
        rpm: float,
        input_tpm: float,
        output_tpm: float,
        max_concurrent: int | None = 64,
        slice_seconds: float = 1.0,
        margin: float = 0.03,
        max_batch: int = DEFAULT_MAX_BATCH,
        prefix: str = "throttle_trio",
        on_unavailable: Literal["raise"] | LocalFallback = "raise",
        redis_timeout: float | None = 5.0,
        on_event: EventHook | None = None,
    ) -> RedisThrottle:
        """Anthropic's preset (:func:`throttle_trio.anthropic_throttle`) for a fleet: its
        buckets shared in Redis, settled, adaptive.  ``max_concurrent`` is per process; the
        local preset's warm-up (buckets that start below full) is not shared."""
        from .._presets import anthropic_throttle

        local = anthropic_throttle(
            rpm=rpm,
            input_tpm=input_tpm,
            output_tpm=output_tpm,
            max_concurrent=max_concurrent,
            slice_seconds=slice_seconds,
            margin=margin,
            warmup=0.0,
        )
        return cls._from_preset(
            client,
            name,
            local,
            max_concurrent=max_concurrent,
            max_batch=max_batch,
            prefix=prefix,
            on_unavailable=on_unavailable,
            redis_timeout=redis_timeout,
            on_event=on_event,
        )

    @classmethod
    def _from_preset(
        cls,
        client: Client[Any],
        name: str,
        local: Throttle,
        *,
        max_concurrent: int | None,
        max_batch: int,
        prefix: str,
        on_unavailable: Literal["raise"] | LocalFallback,
        redis_timeout: float | None,
        on_event: EventHook | None,
    ) -> RedisThrottle:
        """A preset's limits (``local``'s), shared through Redis, with its other settings."""
        limits = {
            limit: policy
            for limit, policy in local.limits.items()
            if isinstance(policy, TokenBucket | SlidingWindow)
        }
        assert len(limits) == len(local.limits)  # what the presets make
        return cls(
            client,
            name,
            limits,
            max_concurrent=max_concurrent,
            max_batch=max_batch,
            prefix=prefix,
            refund_unused=local.refund_unused,
            adaptive=True,
            on_unavailable=on_unavailable,
            redis_timeout=redis_timeout,
            on_event=on_event,
        )

    def __repr__(self) -> str:
        limits = ", ".join(
            f"{limit.name}={limit.rate:g}/s burst {limit.burst:g}" for limit in self._limits
        )
        cap = "" if self._max_concurrent == math.inf else f", max_concurrent={self._max_concurrent}"
        return f"RedisThrottle({self._name!r}, {limits}{cap})"

    @property
    def name(self) -> str:
        """The name shared by every process of the fleet."""
        return self._name

    @property
    def refund_unused(self) -> bool:
        """Whether a settle refunds an estimate above the real usage."""
        return self._core.refund_unused

    @refund_unused.setter
    def refund_unused(self, value: bool) -> None:
        self._core.refund_unused = value

    @property
    def metrics(self) -> frozenset[str]:
        """The metrics this throttle counts (costs it accepts in :meth:`reserve`)."""
        return self._core.metrics

    def accepts(self, metric: str) -> bool:
        """Whether :meth:`reserve` accepts a cost for ``metric`` (as :meth:`Throttle.accepts`)."""
        return self._core.accepts(metric)

    @property
    def keys(self) -> Mapping[str, str]:
        """The Redis keys: ``"gate"`` (pause and booking order), then one per limit name."""
        return MappingProxyType(
            {"gate": self._gate, **{limit.name: limit.key for limit in self._limits}}
        )

    # -- admission: the local line, batches booked in one round trip -------------------------

    def _check_costs(self, costs: dict[str, float]) -> dict[str, float]:
        capacities = self._capacities
        for metric, cost in costs.items():  # the usual case, checked fast
            capacity = capacities.get(metric)
            if (
                capacity is None
                or not (cost.__class__ is int or cost.__class__ is float)
                or not 0 <= cost <= capacity
            ):
                break
        else:
            return costs
        return self._core.check_costs(costs, _Limit.capacity)

    def reserve(
        self,
        costs: Mapping[str, float] | None = None,
        /,
        *,
        timeout: float | None = None,
        ticket: int | None = None,
        lane: Lane = "interactive",
        recost: Callable[[], Mapping[str, float]] | None = None,
        **more_costs: float,
    ) -> ReserveContext[RedisReservation]:
        """Wait for admission, as an async context manager that yields a :class:`RedisReservation`.

        ``async with throttle.reserve(requests=1, tokens=estimate) as slot:`` queues in this
        process, takes a slot, books the earliest shared instant in Redis (one round trip,
        which also books for up to ``max_batch - 1`` waiters behind it) and sleeps until it;
        leaving the block releases the slot.  A checkpoint, even when admitted at once.  If
        cancelled, it took nothing: a booking is given back.

        Args:
            timeout: seconds to wait at most, queueing included; fails at once (and books
                nothing) when the booked instant would be later.
            ticket: a previous reservation's ticket, so that a retry keeps its turn.
            lane: ``"interactive"`` (the default) or ``"batch"``: this process's interactive
                requests go before its batch backlog, FIFO within each lane, the batch lane
                keeping ``batch_share`` of the admissions (as :meth:`Throttle.reserve`).
            recost: computes the request's costs again when they are booked: called
                (synchronously, in the task of the head that books the batch) once, as the
                booking round trip is prepared, and its result, checked like ``costs``,
                replaces them (as :meth:`Throttle.reserve`'s); the reservation is charged
                what it returned.  An error it raises, or a result that fails the checks,
                fails this request alone, in its own task; the rest of the batch is booked.
            costs: cost per metric, as a mapping.
            **more_costs: cost per metric, as keywords (>= 0); metrics not named cost 0.

        Raises:
            ValueError: an unknown metric, or a negative or non-finite cost (also in what
                ``recost`` returns, named in the message).
            TypeError: ``recost`` is not callable, or returned something else than a mapping.
            CostExceedsCapacity: a cost above its limit's burst (at once, no round trip; or
                when ``recost`` raises it above).
            RateLimitTimeout: not admitted within ``timeout``.
            BackendUnavailable: Redis cannot be reached and there is no fallback.
            RedisBackendError: a key holds data this module did not write.
        """
        return ReserveContext(
            checked_admission(
                self._acquire, self._check_costs, costs, more_costs, timeout, ticket, lane, recost
            )
        )

    # `timeout=` rather than a cancel scope: it fails at once when the wait is known to be longer.
    async def acquire(
        self,
        costs: Mapping[str, float] | None = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        ticket: int | None = None,
        lane: Lane = "interactive",
        recost: Callable[[], Mapping[str, float]] | None = None,
        **more_costs: float,
    ) -> RedisReservation:
        """Like :meth:`reserve`, but returns the reservation; you must release it yourself."""
        admission = checked_admission(
            self._acquire, self._check_costs, costs, more_costs, timeout, ticket, lane, recost
        )
        return await admission()

    async def _acquire(
        self,
        costs: dict[str, float],
        timeout: float | None,  # noqa: ASYNC109
        ticket: int | None,
        lane: Lane = "interactive",
        recost: Callable[[], Mapping[str, float]] | None = None,
    ) -> RedisReservation:
        backend = current_backend()
        await backend.checkpoint_if_cancelled()
        self._check_thread()
        arrived = backend.current_time()
        line = self._line
        if ticket is None:
            ticket = self._lanes.take(lane)
        first = line.is_first(ticket)
        deadline = math.inf if timeout is None else arrived + timeout
        waiter = Waiter(backend, costs, ticket, deadline, timeout, recost)
        if first and not self._booking and self._held < self._cap:
            waiter.state = LEADING  # the fast path: nobody here waits, nothing is booked
        else:
            await self._wait_in_line(waiter, backend)
        try:
            if waiter.state == LEADING:
                await self._book(waiter, self._max_batch, backend.current_time())
            reservation = await self._admit(waiter, arrived, backend)
        except RateLimitTimeout:
            if self._on_event is not None:
                now = backend.current_time()
                timed_out = TimedOut(self._name, now, now - arrived, timeout, dict(costs))
                emit(self._on_event, timed_out)
            raise
        if self._on_event is not None:
            booking = reservation._booking
            event = Admitted(
                self._name,
                booking.admitted_at,
                booking.admitted_at - arrived,
                None,
                ticket,
                dict(costs),
            )
            emit(self._on_event, event)
        return reservation

    async def _wait_in_line(self, waiter: Waiter, backend: Backend) -> None:
        """Wait until ``waiter`` takes the booking role, or a head has booked for it."""
        line = self._line
        line.add(waiter)
        deadline = waiter.deadline
        try:
            while True:
                state = waiter.state
                if state == QUEUED:
                    if line.front() is waiter and not self._booking and self._held < self._cap:
                        line.pop_front()
                        waiter.state = LEADING
                        return
                    if deadline != math.inf and backend.current_time() >= deadline:
                        line.discard(waiter)
                        self._core.timeouts += 1
                        raise self._timeout_error(waiter.costs, waiter.timeout)
                    # Woken to look again, or its deadline came (looked at above: a timer
                    # that fired early, by up to the loop clock's resolution, parks again).
                    await backend.park(waiter, deadline, _timer_fired)
                elif state == PICKED:
                    # The head's round trip: bounded by redis_timeout.
                    await backend.park(waiter, math.inf, _timer_fired)
                else:
                    return
        except BaseException:
            timer = waiter.timer
            if timer is not None:  # cancelled before its deadline (asyncio)
                waiter.timer = None
                timer.cancel()
            if waiter.state == QUEUED:
                line.discard(waiter)
                raise
            if waiter.state == PICKED:
                # Cancelled while a head books for it: the booking may already be in Redis.
                # Wait for the reply (shielded, bounded by redis_timeout) to give it back.
                with anyio.CancelScope(shield=True):
                    while waiter.state == PICKED:
                        await backend.park(waiter, math.inf, _timer_fired)
            if waiter.state == BOOKED:
                await self._give_back(waiter)
            raise

    async def _book(self, head: Waiter, most: int, now: float) -> None:
        """Take the booking role and book ``head`` and up to ``most - 1`` waiters behind it.

        Every waiter it books gets its outcome (and is woken), whatever happens here; ``head``
        handles its own in :meth:`_admit`.  The role is held until every one of them has been
        admitted or has given its booking back: a process has at most ``max_batch`` bookings
        outstanding.
        """
        self._booking = True
        self._held += 1
        members = self._batch = [head]
        self._turn = 0
        failed = head.recost is not None and not self._recost(head)
        fallback = self._fallback
        if fallback is not None and fallback.active(now):  # it admits, one at a time
            head.fallback = True
            head.state = BOOKED
            self._batch_left = 1
            return
        if not self._learned_loaded:  # once: what the fleet learned before this process asked
            self._batch_left = 1
            try:
                await self._learn(())
            except BackendUnavailable as exc:
                head.state = BOOKED
                if fallback is None:
                    self._unavailable += 1
                    head.error = exc
                else:
                    self._enter_fallback(exc)
                    head.fallback = True
                return
            except BaseException as exc:
                head.error = exc
                head.state = BOOKED
                return
        line = self._line
        while len(members) < most and self._held < self._cap:
            waiter = line.pop_front()
            if waiter is None:
                break
            waiter.state = PICKED
            self._held += 1
            members.append(waiter)
        self._batch_left = len(members)
        try:
            booked = members
            for waiter in members[1:]:
                if waiter.recost is not None and not self._recost(waiter):
                    failed = True
            if failed:  # booked without them: each raises its error in its own task
                booked = [waiter for waiter in members if waiter.error is None]
                for waiter in members:
                    if waiter.error is not None:
                        waiter.state = BOOKED
            if booked:
                await self._book_in_redis(booked, now)
        except BaseException as exc:  # not an error of ours: the others must not wait forever
            for waiter in members:
                if waiter.state != BOOKED:
                    waiter.error = (
                        exc
                        if waiter is head
                        else RedisBackendError(f"the round trip that booked it failed: {exc!r}")
                    )
                    waiter.state = BOOKED
                    waiter.wake()
            return
        for waiter in members[1:]:
            waiter.wake()

    def _recost(self, waiter: Waiter) -> bool:
        """Compute ``waiter``'s costs again (its ``recost``), in place; or set its error and
        return false."""
        assert waiter.recost is not None
        try:
            fresh = recosted(waiter.recost, self._check_costs)
        except Exception as exc:  # the caller's code: it fails that request alone
            waiter.error = exc
            return False
        costs = waiter.costs  # shared with the caller's event
        costs.clear()
        costs.update(fresh)
        return True

    async def _book_in_redis(self, members: list[Waiter], now: float) -> None:
        """One round trip that books every member, in order, and sets each one's outcome."""
        if len(members) == 1:
            costs = members[0].costs
            used = [limit for limit in self._limits if costs.get(limit.metric)]
        else:
            used = [
                limit
                for limit in self._limits
                if any(waiter.costs.get(limit.metric) for waiter in members)
            ]
        requests = []
        for waiter in members:
            costs, deadline = waiter.costs, waiter.deadline
            incs = tuple(
                [
                    limit.interval.charge(cost) if (cost := costs.get(limit.metric)) else 0
                    for limit in used
                ]
            )
            waiter.used, waiter.known = used, self._limits
            max_wait = -1 if deadline == math.inf else max(0, math.floor((deadline - now) * 1e6))
            if max_wait > MAX_US:  # nothing is booked that late: as good as no max wait
                max_wait = -1
            requests.append(BookingRequest(max_wait, incs))
        request = Acquire(tuple(limit.tau for limit in used), tuple(requests))
        try:
            reply = await self._call(request, used)
        except BackendUnavailable as exc:
            if self._fallback is None:
                self._unavailable += len(members)
                for waiter in members:  # each its own error, with the same cause
                    waiter.error = BackendUnavailable(str(exc))
                    waiter.error.__cause__ = exc.__cause__
                    waiter.state = BOOKED
                return
            self._enter_fallback(exc)
            for waiter in members:
                waiter.fallback = True
                waiter.state = BOOKED
            return
        except RedisBackendError as exc:
            for waiter in members:
                waiter.error = RedisBackendError(str(exc))
                waiter.error.__cause__ = exc.__cause__
                waiter.state = BOOKED
            return
        replied = members[0].loop.current_time()
        for waiter, asked, outcome in zip(members, requests, reply.outcomes, strict=True):
            if type(outcome) is Booked:
                waiter.admit_at = replied + outcome.wait / 1e6
                waiter.booking = outcome
                self._booked += 1
            elif type(outcome) is Late:
                self._core.timeouts += 1
                waiter.error = self._timeout_error(waiter.costs, waiter.timeout)
            elif type(outcome) is OutOfRange:  # its instant, or a limit's, after 2**53 µs
                index = outcome.limit
                where = "the shared pause" if index is None else f"limit {used[index].name!r}"
                shown = ", ".join(f"{metric}={cost!r}" for metric, cost in waiter.costs.items())
                waiter.error = RedisBackendError(
                    f"reserve({shown}) cannot be booked for throttle {self._name!r}: "
                    f"{where} would hold it until after 2**53 µs on Redis's clock (the year "
                    f"2255), the latest time the script stores; nothing was booked"
                )
            else:  # Exceeds: the limits Redis holds differ from ours
                assert type(outcome) is Exceeds
                limit = used[outcome.limit]
                unit = "µs of burst" if limit.window is None else "thousandths"
                waiter.error = CostExceedsCapacity(
                    f"{limit.metric} must be <= the capacity Redis holds for limit "
                    f"{limit.name!r} ({limit.tau} {unit}), got "
                    f"{waiter.costs[limit.metric]!r} ({asked.incs[outcome.limit]} {unit}): do all "
                    f"processes configure {self._name!r} alike?"
                )
            waiter.state = BOOKED

    async def _admit(self, waiter: Waiter, arrived: float, backend: Backend) -> RedisReservation:
        """Sleep until the booked instant (or admit through the fallback); hand the role on."""
        reservation = RedisReservation(self, waiter.costs, waiter.ticket)
        try:
            if waiter.error is not None:
                raise waiter.error
            if waiter.fallback:
                assert self._fallback is not None
                try:
                    reservation._local = await self._fallback.admit(
                        reservation._booking.costs, waiter.deadline
                    )
                except RateLimitTimeout:
                    self._core.timeouts += 1
                    raise self._timeout_error(waiter.costs, waiter.timeout) from None
            else:
                wait = waiter.admit_at - backend.current_time()
                try:
                    if wait > 0:
                        await anyio.sleep(wait)
                    else:
                        # The round trip (or the wake-up) was the schedule point: this is the
                        # cancellation point, and a cancelled caller gives its booking back.
                        await backend.checkpoint_if_cancelled()
                    if self._batch[self._turn] is not waiter:
                        await self._wait_for_turn(waiter)
                except BaseException:
                    self._booked -= 1
                    await self._unbook(waiter)
                    raise
                self._booked -= 1
                booking = waiter.booking
                assert booking is not None
                self._booked_wait += booking.wait / 1e6
                reservation._server_admitted_at = booking.start / 1e6
        except BaseException:
            self._held -= 1
            raise
        finally:
            self._booked_one(waiter)
        now = backend.current_time()
        core = self._core
        # Charged in Redis (not by the fallback): the core marks every limit; the task runs
        # again now, so its request may leave from now on.
        core.admitted_now(
            reservation._booking,
            now,
            arrived,
            charged=reservation._local is None,
            limits=waiter.known,
        )
        self._lanes.admitted(reservation._booking.ticket)
        core.resumed(reservation._booking, now)
        return reservation

    async def _wait_for_turn(self, waiter: Waiter) -> None:
        """Wait until every request booked before ``waiter`` in its batch has gone.

        The requests of a batch are woken together; the scheduler may run them in any order
        (trio reverses a batch of runnable tasks half of the time), and those booked for the
        same instant would then return out of line.  Each one that goes wakes the next.
        """
        waiter.turn_wait = True
        try:
            while self._batch[self._turn] is not waiter:
                await waiter.loop.park(waiter, math.inf, _timer_fired)
        finally:
            waiter.turn_wait = False

    def _booked_one(self, waiter: Waiter) -> None:
        """A request of the batch was admitted or is gone: the next one's turn; the last one
        hands the booking role on."""
        waiter.done = True
        batch = self._batch
        while self._turn < len(batch) and batch[self._turn].done:
            self._turn += 1
        self._batch_left -= 1
        if not self._batch_left:
            self._booking = False
            self._line.wake_front()
        elif batch[self._turn].turn_wait:
            batch[self._turn].wake()

    async def _give_back(self, waiter: Waiter) -> None:
        """A picked waiter was cancelled before it saw its booking: give the booking back."""
        try:
            if waiter.error is None and not waiter.fallback:
                self._booked -= 1
                await self._unbook(waiter)
        finally:
            self._held -= 1
            self._booked_one(waiter)

    async def _unbook(self, waiter: Waiter) -> None:
        """Give back a booking whose caller was cancelled before its instant."""
        booking = waiter.booking
        assert booking is not None
        charged = [
            limit
            for limit, part in zip(waiter.used, booking.limits, strict=True)
            if part is not None
        ]
        request = Unbook.of(booking)
        try:
            answer = await self._call(request, charged)
        except RedisBackendError as exc:
            logger.warning("%r could not give back a cancelled booking (it stands): %s", self, exc)
            return
        self._unbooked += 1
        if not answer.exact:  # credited like a refund, as far as later bookings allow
            for limit, part, credited in zip(charged, request.limits, answer.credited, strict=True):
                limit.dropped += limit.interval.units(part.inc - credited)

    async def _try_acquire(self, costs: dict[str, float]) -> RedisReservation | None:
        """Admit ``costs`` only if they fit now and nobody here waits (RedisRateLimiter)."""
        backend = current_backend()
        await backend.checkpoint_if_cancelled()
        self._check_thread()
        if self._line.waiting or self._booking or self._held >= self._cap:
            return None
        now = backend.current_time()
        waiter = Waiter(backend, costs, self._lanes.take("interactive"), now, 0.0)
        await self._book(waiter, 1, now)
        try:
            return await self._admit(waiter, now, backend)
        except RateLimitTimeout:
            self._core.timeouts -= 1  # a refusal, not a timeout
            return None

    def _rejected_event(self, booking: Booking, status: int | None) -> None:
        hook = self._on_event
        if hook is not None:
            event = Rejected(
                self._name,
                anyio.current_time(),
                booking.ticket,
                status=status,
                shortfall=dict(booking.shortfall),
                retry_after=booking.retry_after,
            )
            emit(hook, event)

    def _check_thread(self) -> None:
        """Refuse a second thread while this process's requests wait in another thread's
        event loop (their wake-ups belong to that loop and are not thread-safe); otherwise
        this thread's loop is the one they wait in from now on."""
        thread = threading.get_ident()
        if thread != self._thread:
            if self._line.waiting or self._booking:
                raise RuntimeError(
                    f"RedisThrottle {self._name!r} has requests waiting in an event loop of "
                    "another thread; one RedisThrottle object serves one event loop at a time: "
                    "make one per thread (with the same name they share the limit through "
                    "Redis), or call it in its loop's thread (anyio.from_thread.run)"
                )
            self._thread = thread

    def _release_slot(self) -> None:
        full = self._held >= self._cap
        self._held -= 1
        if full and not self._booking:  # only a freed slot can let the front go
            self._line.wake_front()

    def _timeout_error(self, costs: Mapping[str, float], timeout: float | None) -> RateLimitTimeout:
        shown = ", ".join(f"{metric}={cost!r}" for metric, cost in costs.items())
        return RateLimitTimeout(
            f"reserve({shown}) could not be admitted within timeout={timeout!r} seconds"
        )

    # -- round trips: the script through the protocol, Redis's failures as ours --------------

    async def _call(
        self, request: Request[R], limits: Sequence[_Limit], extra_key: str | None = None
    ) -> R:
        """One round trip of ``request`` (:meth:`_round_trip`), its reply read through the
        protocol; ``limits`` are the limits it passes, in order, and ``extra_key`` the key
        after them, if any.  Raises our errors."""
        op = request.op
        raw = await self._round_trip(op, limits, request.encode(), extra_key)
        try:
            reply = request.decode(raw)
        except MalformedReply as exc:
            raise RedisBackendError(
                f"Redis answered the throttle script for {self._name!r} ({op}) with a "
                f"malformed reply: {exc.detail}"
            ) from None
        if type(reply) is Foreign:
            if reply.key == 0:
                key = self._gate
            elif reply.key <= len(limits):
                key = limits[reply.key - 1].key
            else:
                assert extra_key is not None
                key = extra_key
            raise RedisBackendError(
                f"key {key!r} holds data throttle_trio did not write (a Redis {reply.kind}); "
                f"delete it, or choose another name or prefix for throttle {self._name!r}"
            )
        assert not isinstance(reply, Foreign)
        for limit, scale in zip(limits, reply.rates, strict=True):  # every reply ends with them
            limit.scale = scale
        if self._fallback is not None and self._fallback.in_outage:
            self._fallback.redis_is_back()
        return reply

    async def _round_trip(
        self,
        op: str,
        limits: Sequence[_Limit],
        args: list[int | str],
        extra_key: str | None = None,
    ) -> Any:
        """One shielded round trip of the script: its raw reply; raises our errors, never
        coredis's."""
        keys = [self._gate, *(limit.key for limit in limits)]
        if extra_key is not None:
            keys.append(extra_key)
        if limits and any(limit.window is not None for limit in limits):
            # 'n:kinds': the script must know which limits are sliding windows, and how long.
            kinds = ",".join(
                "g"
                if limit.window is None
                else f"w{limit.window_us}+{limit.warmup_us}"
                if limit.warmup_us
                else f"w{limit.window_us}"
                for limit in limits
            )
            args = [args[0], f"{args[1]}:{kinds}", *args[2:]]
        self._round_trips += 1
        timeout = self._redis_timeout
        deadline = math.inf if timeout is None else current_backend().current_time() + timeout
        # Shielded: a cancelled round trip may have run on the server, so it runs to its end
        # and the caller gives back what it booked.  Also against asyncio's own task.cancel(),
        # which anyio's shield lets in: that one is delivered when the round trip is over.
        try:
            return await finish_then_cancel(partial(self._script, keys=keys, args=args), deadline)
        except DeadlinePassed:
            pass
        except _UNAVAILABLE as exc:
            raise self._unavailable_error(op, _described(exc)) from exc
        except RedisError as exc:
            if str(exc).startswith("OOM "):  # maxmemory with noeviction: nothing written
                raise self._unavailable_error(op, _described(exc)) from exc
            raise RedisBackendError(
                f"Redis refused the throttle script for {self._name!r} ({op}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        raise self._unavailable_error(op, f"no answer within redis_timeout={timeout!r} seconds")

    def _unavailable_error(self, op: str, detail: str) -> BackendUnavailable:
        return BackendUnavailable(
            f"Redis is unavailable for throttle {self._name!r} ({op}): {detail}"
        )

    def _enter_fallback(self, exc: BackendUnavailable) -> None:
        """Redis failed: re-raise ``exc`` (counted) without a fallback, else start using it."""
        if self._fallback is None:
            self._unavailable += 1
            raise exc
        self._fallback.enter(exc)

    def _bounded(self, us: int, kind: str, detail: str) -> int:
        """``us``, an amount for the script (µs, either sign), within ``MAX_SPAN``: a larger one
        is clamped to it, counted, and logged the first time for ``kind``."""
        if -SPAN_US <= us <= SPAN_US:
            return us
        self._core.clamped += 1
        if kind not in self._clamp_logged:
            self._clamp_logged.add(kind)
            logger.warning(
                "%r clamped %s to MAX_SPAN=%.0f s (365 days), the longest span the Redis script "
                "takes: %s (further clamps of %s are counted in statistics().clamped)",
                self,
                kind,
                MAX_SPAN,
                detail,
                kind,
            )
        return SPAN_US if us > 0 else -SPAN_US

    # -- the shared gate, and what Redis holds -----------------------------------------------

    async def pause_for(self, seconds: float, *, reason: str = "user") -> None:
        """Close the shared gate for ``seconds`` from now, for every process.

        No request of any process is booked before the gate opens (a booking already made
        stands).  A later end extends the pause; an earlier one does not shorten it.  One
        shielded round trip; the local fallback, if any, is paused too.

        A pause longer than :data:`MAX_SPAN` (365 days) is clamped to it, logged once and
        counted in :attr:`RedisThrottleStatistics.clamped`.  To honour a server's Retry-After
        within your retry policy, pass ``policy.server_delay(headers, time.time()).pause`` (the
        delay capped at :attr:`~throttle_trio.RetryPolicy.max_retry_after`).

        Args:
            seconds: how long to close the gate (a finite number >= 0).
            reason: what the :class:`~throttle_trio.events.Paused` event says
                (``"retry-after"`` when the transports honour a server's Retry-After).

        Raises:
            ValueError: ``seconds`` is negative, NaN or infinite.
            BackendUnavailable: Redis cannot be reached and there is no fallback.
        """
        seconds = check_non_negative("seconds", seconds)
        await self._pause(seconds, f"pause_for({seconds!r})", reason)

    async def pause_until(self, deadline: float, *, reason: str = "user") -> None:
        """Close the gate until ``deadline`` (anyio clock, seconds; ``math.inf``: for
        :data:`MAX_SPAN`): see :meth:`pause_for`."""
        if math.isnan(deadline):
            raise ValueError(f"deadline must be a time, got {deadline!r}")
        seconds = max(0.0, deadline - anyio.current_time())
        await self._pause(seconds, f"pause_until({deadline!r})", reason)

    async def _pause(self, seconds: float, call: str, reason: str = "user") -> None:
        if seconds > MAX_SPAN:
            self._bounded(SPAN_US + 1, "a pause", f"{call} is {seconds:g} s")
            seconds = MAX_SPAN
        if self._fallback is not None:
            self._fallback.local.pause_for(seconds, reason=reason)
        self._core.pauses += 1
        now = anyio.current_time()
        self._paused_locally = max(self._paused_locally, now + seconds)
        if self._on_event is not None:
            emit(self._on_event, Paused(self._name, now, now + seconds, seconds, reason))
        try:
            await self._call(Pause(microseconds_up(seconds)), [])
        except BackendUnavailable as exc:
            self._enter_fallback(exc)

    @property
    def paused_until(self) -> float | None:
        """When the shared gate opens (anyio clock) as far as this process knows: the latest
        pause it asked for itself (another process's pause shows in its next admission)."""
        until = self._paused_locally
        backend = running_backend()  # outside a loop: as it was last seen
        if until == -math.inf or (backend is not None and until <= backend.current_time()):
            return None
        return until

    async def state(self) -> RedisThrottleState:
        """Read what Redis holds for this throttle now (one round trip; changes nothing).

        Raises:
            BackendUnavailable: Redis cannot be reached (also with a fallback).
        """
        limits = self._limits  # a limit learned meanwhile is not in this reply
        reply = await self._call(ReadState(len(limits)), limits)
        now, pause, last = reply.now, reply.paused_until, reply.last
        available = {}
        for limit, tat in zip(limits, reply.tats, strict=True):
            used = limit.interval.units(max(0, tat - now)) if tat >= 0 else 0.0
            if limit.window is None:  # a bucket's TAT is at its rate now; a window's log is not
                used *= limit.scale / RATE_ONE
            available[limit.name] = limit.burst - used
        return RedisThrottleState(
            server_time=now / 1e6,
            paused_for=(pause - now) / 1e6 if pause > now else None,
            booked_for=(last - now) / 1e6 if last > now else None,
            available=MappingProxyType(available),
            rates=MappingProxyType({limit.name: limit.effective_rate for limit in limits}),
        )

    # ========================================================================================
    # Feedback: settles and refunds, header reports, 429 shortfalls, the adaptive rate (AIMD).
    # The same bookkeeping as the local Throttle's (throttle_trio._throttle), on this shell's own
    # fields (each _Limit's admitted_cost, refunded, overdraft, dropped, scale and pending; each
    # reservation's _costs, _marks and _admitted_at), with the rules of throttle_trio._feedback;
    # kept together here so that the shared throttle core can take it over in one piece.  Its
    # constants (_CUT_FACTOR, _RATE_FLOOR, _RATE_STEP, _COOLDOWN_US, _RATE_MEMORY_US) are at the
    # top of the module.
    # ========================================================================================

    async def _adjust(
        self, reservation: RedisReservation, usage: Mapping[str, float], *, refund: bool
    ) -> None:
        core, booking = self._core, reservation._booking
        checked, changes = core.adjustments(booking, usage, refund=refund)
        sent: list[tuple[Adjustment[_Limit], int, bool]] = []
        for change in changes:
            limit, delta = change.limit, change.delta
            asked = limit.interval.charge(delta) if delta > 0 else -limit.interval.credit(-delta)
            kind = "an overdraft" if delta > 0 else "a refund"
            us = self._bounded(asked, kind, f"{limit.metric} for limit {limit.name!r}, {delta:+g}")
            sent.append((change, us, us != asked))
        if sent:
            request = Adjust(tuple(us for _, us, _ in sent))
            try:
                reply = await self._call(request, [change.limit for change, _, _ in sent])
            except BackendUnavailable as exc:
                self._enter_fallback(exc)
                logger.warning("%r lost a settle while Redis was unavailable: %s", self, exc)
                return
            for i, (change, us, clamped) in enumerate(sent):
                interval = change.limit.interval
                if change.delta > 0:
                    core.applied(change, interval.units(us) if clamped else change.delta)
                else:
                    credited = -reply.applied[i]
                    full = credited >= -us and not clamped
                    core.applied(change, -change.delta if full else interval.units(credited))
        core.settled(booking, checked, refund=refund)

    async def _refund(self, amount: float) -> float:
        """Give back ``amount`` units of the first limit (:meth:`RedisRateLimiter.refund`);
        returns the units dropped."""
        limit = self._limits[0]
        asked = limit.interval.credit(amount)
        if not asked:
            return amount
        us = self._bounded(asked, "a refund", f"refund({amount!r})")
        try:
            reply = await self._call(Adjust((-us,)), [limit])
        except BackendUnavailable as exc:
            self._enter_fallback(exc)
            return amount
        got = -reply.applied[0]
        credited = limit.interval.units(got) if got < asked else amount
        limit.refunded += credited
        limit.dropped += amount - credited
        return amount - credited

    async def _learn(self, specs: tuple[LearnedSpec, ...]) -> None:
        """Record ``specs`` as the fleet's learned limits where no process has recorded one for
        their metric yet (``()``: record nothing), and count every recorded limit from now on.
        One shielded round trip."""
        reply = await self._call(Learn(specs, _LEARNED_MEMORY_US), [], self._learned_key)
        self._learned_loaded = True
        self._learned_at = anyio.current_time()
        core = self._core
        for spec in reply.learned:
            if spec.metric in core.metrics:  # counted already: configured, or learned before
                continue
            if not core.accepts(spec.metric):  # not a metric headers report: not ours
                logger.debug("%r ignores a learned limit of unknown metric %r", self, spec.metric)
                continue
            self._add_learned(spec)

    def _add_learned(self, spec: LearnedSpec) -> None:
        """Count the fleet's learned limit ``spec`` in this process: one more key per request
        that names its metric, the same key in every process."""
        metric, per = spec.metric, spec.per / 1e6
        key = learned_limit_key(self._prefix, self._name, metric)
        limit = _Limit(metric, GCRALimit(spec.limit, per=per), key, learned=True)
        self._learned[metric] = spec
        self._limits = [*self._limits, limit]  # a new list: round trips in flight keep theirs
        self._core.add_limit(limit)
        known = self._capacities.get(metric, math.inf)
        self._capacities[metric] = min(known, limit.burst)
        logger.info("%r learned %s: %g per %g s", self, metric, spec.limit, per)
        if self._on_event is not None:
            now = anyio.current_time()
            emit(self._on_event, LimitLearned(self._name, now, metric, float(spec.limit), per))
        if self._cap != self._max_concurrent:  # the probe is over: every slot is open again
            self._cap = self._max_concurrent
            if not self._booking:
                self._line.wake_front()

    async def observe(
        self, report: RateLimitHeaders, reservation: RedisReservation | None = None
    ) -> None:
        """Feed a response's rate-limit headers back into the shared limits.

        The rules of :meth:`throttle_trio.Throttle.observe`, from one implementation
        (:mod:`throttle_trio._feedback`): for each metric the server reports, the level it
        implies now is ``remaining``, plus the refill since ``reservation`` was admitted, minus
        what this process charged since; a limit is lowered only when the report before also
        asked for it, to the higher of the two levels (the smaller cut), and never raised.
        Admissions by other processes since the response are not subtracted (this process
        cannot know them), so the correction errs on the generous side by those.  One shielded
        round trip when a cut is due; the local fallback, if any, is synced too.

        Raises:
            BackendUnavailable: Redis cannot be reached and there is no fallback.
        """
        if self._fallback is not None:
            self._fallback.observe(report)
        now = anyio.current_time()
        specs = []
        for spec in self._core.to_learn(report):
            metric, units = spec.metric, spec.limit
            if 1 <= units <= MAX_US:
                specs.append(LearnedSpec(metric, math.floor(units), round(spec.per * 1e6)))
            else:  # a limit the script cannot store (or below one unit): not learned
                self._core.clamped += 1
                logger.warning("%r: %s limit %g reported, not learned", self, metric, units)
        # The record of what the fleet learned is kept while processes use it: each one that
        # counts a learned limit writes it back (and refreshes it) at most once an hour.
        if specs or (self._learned and now - self._learned_at >= _LEARNED_REFRESH):
            try:
                await self._learn((*self._learned.values(), *specs))
            except BackendUnavailable as exc:
                self._enter_fallback(exc)
        booking = None if reservation is None else reservation._booking
        targets: list[tuple[_Limit, int]] = []
        for target in self._core.feedback(report, booking, now, _Limit.refill_rate):
            limit = target.limit
            missing = limit.burst - target.level
            if missing > 0:
                level_us = self._bounded(
                    limit.interval.charge(missing),
                    "a header-feedback level",
                    f"{limit.metric} level {target.level:g}",
                )
                targets.append((limit, level_us))
        if not targets:
            return
        try:
            await self._call(
                Lower(tuple(level for _, level in targets)), [limit for limit, _ in targets]
            )
        except BackendUnavailable as exc:
            self._enter_fallback(exc)

    async def rejected(self, report: RateLimitHeaders, reservation: RedisReservation) -> None:
        """A 429 answered ``reservation``: charge each shared limit the shortfall it proves.

        The same rule as :meth:`throttle_trio.Throttle.rejected`
        (:func:`throttle_trio._feedback.shortfall`): the server had ``remaining`` when the
        request arrived, less than its cost, so the fleet was ahead by at least the difference.
        One shielded round trip, only when there is a shortfall.
        """
        charges: list[tuple[_Limit, int]] = []
        for change in self._core.shortfalls(report, reservation._booking):
            limit, proven = change.limit, change.delta
            us = self._bounded(
                limit.interval.charge(proven), "a 429 shortfall", f"{limit.metric}={proven:g}"
            )
            charges.append((limit, us))
        if not charges:
            return
        try:
            await self._call(
                Adjust(tuple(us for _, us in charges)), [limit for limit, _ in charges]
            )
        except BackendUnavailable as exc:
            self._enter_fallback(exc)

    async def record_overload(self) -> None:
        """The server is overloaded (a 429, 529 or 5xx): with ``adaptive``, cut the fleet's rate.

        Every limit's shared rate is halved, down to 1/100 of its configured rate, at most once
        per second: Redis decides, on its clock, so that the 429s that many processes see for
        one wave of requests cut once (:attr:`RedisThrottleStatistics.rate_cuts` counts the
        reports of this process that did).  Each bucket keeps its level; it refills more slowly.
        One shielded round trip; the local fallback, if any, backs off too (alone while it
        admits: Redis is not asked then).  Without ``adaptive``, nothing.

        Raises:
            BackendUnavailable: Redis cannot be reached and there is no fallback.
        """
        if not await self._adapts_in_redis(overload=True):
            return
        limits = self._limits
        request = Cut(
            len(limits),
            _CUT_FACTOR,
            _RATE_FLOOR,
            self._cooldown_us,
            max(_RATE_MEMORY_US, self._cooldown_us),
        )
        try:
            reply = await self._call(request, limits)
        except BackendUnavailable as exc:
            self._enter_fallback(exc)
            return
        if reply.changed:
            self._rate_cuts += 1
            hook = self._on_event
            if hook is not None:
                now = anyio.current_time()
                for limit in limits:
                    rate = limit.effective_rate
                    previous = min(limit.rate, rate / DEFAULT_DECREASE)  # before this cut
                    event = RateChanged(
                        self._name, now, limit.name, rate, previous, limit.rate, "overload"
                    )
                    emit(hook, event)
            if logger.isEnabledFor(logging.DEBUG):
                rates = ", ".join(f"{lim.name}={lim.effective_rate:g}/s" for lim in limits)
                logger.debug("%r: overload, shared rates cut to %s", self, rates)

    async def record_success(self) -> None:
        """A request succeeded: with ``adaptive``, raise the fleet's rate a little.

        Every limit's shared rate gains 1/100 of its configured rate, never above it.  One
        shielded round trip, made only while the last reply this process saw had a rate below
        the configured one (a process that has not seen a cut yet sees it in its next
        admission; until then its successes are not counted, which errs on the slow side).
        The local fallback, if any, recovers too (alone while it admits).

        Raises:
            BackendUnavailable: Redis cannot be reached and there is no fallback.
        """
        if not await self._adapts_in_redis(overload=False):
            return
        limits = self._limits
        if all(limit.scale >= RATE_ONE for limit in limits):
            return
        request = Grow(len(limits), _RATE_STEP, max(_RATE_MEMORY_US, self._cooldown_us))
        try:
            await self._call(request, limits)
        except BackendUnavailable as exc:
            self._enter_fallback(exc)

    async def _adapts_in_redis(self, *, overload: bool) -> bool:
        """The start of an AIMD step: a checkpoint, then whether Redis takes it (``adaptive``,
        and no fallback admitting now).  The local fallback, if any, takes every step."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if not self._adaptive:
            return False
        fallback = self._fallback
        if fallback is None:
            return True
        if overload:
            fallback.local.record_overload()
        else:
            fallback.local.record_success()
        return not fallback.active(anyio.current_time())

    # ========================================================================================
    # End of the feedback.

    # -- the interface of every throttle (throttle_trio._shell.ThrottleShell) ----------------
    # What the transports, call_with_retries, the batch runners and the CLI call, so that a
    # fleet gets every door one process has.

    async def settle(self, slot: RedisReservation, usage: Mapping[str, float]) -> None:
        """Settle ``slot`` to the real usage (:meth:`RedisReservation.settle`)."""
        await slot.settle(**usage)

    async def reject(
        self,
        slot: RedisReservation,
        kept: Mapping[str, float],
        report: RateLimitHeaders | None,
        status: int | None = None,
    ) -> None:
        """The server rejected ``slot``'s attempt: with the 429's ``report``, first cut each
        limit by the shortfall it proves (:meth:`rejected`), then keep ``kept`` and refund the
        rest (:meth:`RedisReservation.reject`)."""
        if report is not None:
            await self.rejected(report, slot)
        await slot.reject(status, **kept)

    async def cancel(self, slot: RedisReservation) -> None:
        """``slot``'s request was never sent (:meth:`RedisReservation.cancel`)."""
        await slot.cancel()

    @property
    def rejections(self) -> int:
        """Attempts the server rejected, seen by this process."""
        return self._core.rejections

    def record_clamped(self, count: int) -> None:
        """Count ``count`` numbers a response reported out of range (see ``statistics()``)."""
        self._core.clamped += count

    def is_pristine(self) -> bool:
        """Whether forgetting this object loses nothing: nobody waits and nothing is in flight
        in this process.  The shared state lives in Redis, so a registry may drop a pristine
        one and make it again later without granting a burst."""
        return not (self._line.waiting or self._booking or self._held)

    def statistics(self) -> RedisThrottleStatistics:
        """Return a snapshot of this process's view (no round trip; see the dataclass)."""
        batch, fallback = self._batch_left, self._fallback
        backend = running_backend()  # works outside an event loop too, and changes nothing
        if fallback is None:
            fallback_active = False
        elif backend is None:  # outside a loop: whether an outage is still going on
            fallback_active = fallback.in_outage
        else:
            fallback_active = fallback.active(backend.current_time())
        return RedisThrottleStatistics(
            tasks_waiting=self._line.waiting + batch,
            booked=self._booked,
            in_flight=self._held - batch,
            max_concurrent=self._max_concurrent,
            admitted=self._core.admitted,
            total_wait_time=self._core.wait_time,
            booked_wait_time=self._booked_wait,
            round_trips=self._round_trips,
            unbooked=self._unbooked,
            pauses=self._core.pauses,
            rate_cuts=self._rate_cuts,
            rejections=self._core.rejections,
            timeouts=self._core.timeouts,
            unavailable=self._unavailable,
            outages=fallback.outages if fallback is not None else 0,
            fallback_active=fallback_active,
            fallback_admissions=fallback.admissions if fallback is not None else 0,
            fallback=fallback.local.statistics() if fallback is not None else None,
            clamped=self._core.clamped,
            limits={
                limit.name: RedisLimitStatistics(
                    metric=limit.metric,
                    key=limit.key,
                    capacity=limit.burst,
                    rate=limit.effective_rate,
                    configured_rate=limit.rate,
                    admitted_cost=limit.admitted_cost,
                    refunded=limit.refunded,
                    overdraft=limit.overdraft,
                    dropped=limit.dropped,
                    learned=limit.learned,
                )
                for limit in self._limits
            },
        )


# -- what RedisRateLimiter (throttle_trio._redis._limiter) needs beyond the public surface ---


async def try_acquire(throttle: RedisThrottle, costs: dict[str, float]) -> RedisReservation | None:
    """Admit ``costs`` only if they fit now and nobody in this process waits: one round trip
    that books nothing in the future (``None``: they do not fit, or someone waits)."""
    return await throttle._try_acquire(costs)


async def refund(throttle: RedisThrottle, amount: float) -> float:
    """Give back ``amount`` units of ``throttle``'s first limit; returns the units dropped."""
    return await throttle._refund(amount)
