"""Throttle: several rate limits and a concurrency cap, taken at one instant, FIFO by ticket.

Theory of operation
-------------------
A request names its costs per *metric* (``requests=1, tokens=1200``).  A limit named ``m`` or
``m_per_<anything>`` (``tokens_per_day``) counts metric ``m``.  The request waits in one FIFO
queue (:mod:`throttle_trio._waitqueue`) for the whole throttle.  Its head asks, in one
synchronous step: is the pause gate open, is a concurrency slot free, and does every limit admit
its cost *now*?  Only when all say yes is it charged, for everything at once (invariant I8: it
holds nothing while it waits, books nothing in advance).  Otherwise it sleeps until the latest
of the times the limits name, or until a slot is released, a refund arrives or the gate moves.

So the rate applies to the instant requests leave (I9): the seed article's ``LLMThrottler``
takes the rate first and a semaphore second, so a backlog that passed the rate leaves in a
burst when slots free up; the reverse order holds a slot while it waits for the rate.

A :class:`Reservation` is what an admitted request holds: its concurrency slot (owned by the
reservation, not by a task, so a streaming body may release it from another task) and its
charges, which :meth:`Reservation.settle` adjusts to the real usage.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, final

from anyio.lowlevel import checkpoint

from ._core import (
    CONCURRENCY,
    PAUSE,
    Booking,
    Lanes,
    Ledger,
    ReservationError,
    ReservationState,
    ThrottleCore,
)
from ._eventloop import Backend, LoopWatch, current_backend, shift_policy_clock, time_for_read
from ._events import (
    Admitted,
    EventHook,
    LimitLearned,
    LimitLowered,
    Paused,
    RateChanged,
    Rejected,
    Settled,
    TimedOut,
    check_hook,
    emit,
)
from ._exceptions import CostExceedsCapacity, RateLimitTimeout
from ._validate import check_non_negative
from ._waitqueue import WaitQueue
from .policy.adaptive import AIMD
from .policy.base import RatePolicy
from .policy.token_bucket import TokenBucket

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._headers import RateLimitHeaders
from ._concurrency import AutoConcurrency
from ._reserve import (
    Lane,
    ReserveContext,
    check_max_concurrent,
    checked_admission,
    recosted,
)

__all__ = ["LimitStatistics", "Reservation", "ReservationError", "Throttle", "ThrottleStatistics"]

logger = logging.getLogger("throttle_trio.throttle")

_ACTIVE = ReservationState.ACTIVE
_RELEASED = ReservationState.RELEASED


@dataclass(frozen=True, slots=True)
class LimitStatistics:
    """One limit of a :class:`Throttle`, in :attr:`ThrottleStatistics.limits`.

    Attributes:
        metric: the cost this limit counts (``"tokens"`` for a limit named ``tokens_per_day``).
        available: units available now (negative while a debt is repaid).
        capacity: the largest cost it admits at once.
        admitted_cost: units charged at admission, summed.
        refunded: units given back by settles and cancellations.
        overdraft: units charged by settles above the estimate (debts).
        dropped: refunds that did not fit below the capacity (lost, not credited).
        wait_time: seconds the first waiter spent blocked by this limit.
        rate: the rate it admits now, in units per second (lower than configured while the
            adaptive controller backs off).
        learned: the limit was learned from response headers, not configured.
    """

    metric: str
    available: float
    capacity: float
    admitted_cost: float
    refunded: float
    overdraft: float
    dropped: float
    wait_time: float
    rate: float
    learned: bool


@dataclass(frozen=True, slots=True)
class ThrottleStatistics:
    """A snapshot of a :class:`Throttle`, from :meth:`Throttle.statistics`.

    Attributes:
        tasks_waiting: requests queued right now.
        in_flight: reservations holding a concurrency slot.
        max_concurrent: the cap on ``in_flight`` (``math.inf``: none).
        admitted: reservations admitted so far.
        total_wait_time: seconds the admitted requests spent queued, summed.
        binding: what holds back the first waiter now: a limit's name, ``"concurrency"``,
            ``"pause"``, or ``None`` when nobody waits.
        concurrency_wait_time: seconds the first waiter spent waiting for a slot.
        pause_wait_time: seconds the first waiter spent behind the closed gate.
        paused_until: when the pause gate opens (anyio clock), or ``None`` if it is open.
        pauses: how many times the gate was closed or its closing extended.
        rejections: attempts the server rejected (:meth:`Reservation.reject`, e.g. 429s).
        timeouts: requests that gave up because of their ``timeout``.
        clamped: numbers in responses that were out of range and clamped (a usage above
            ``MAX_REPORTED_TOKENS`` in a body), each also logged.
        limits: per-limit statistics, by limit name.
        latency: with ``max_concurrent="auto"``, the mean seconds a reservation holds its
            slot (``None`` otherwise, and before the first release); ``max_concurrent`` is the
            cap it chose.
        shadow: the throttle measures without enforcing (``shadow=True``).
        would_wait: shadow mode: admissions an enforcing throttle would have made wait.
        would_wait_time: shadow mode: the seconds they would have waited, summed (each also
            counted in the ``wait_time`` of what would have bound it: a limit's, or
            ``concurrency_wait_time``, or ``pause_wait_time``).
    """

    tasks_waiting: int
    in_flight: int
    max_concurrent: float
    admitted: int
    total_wait_time: float
    binding: str | None
    concurrency_wait_time: float
    pause_wait_time: float
    paused_until: float | None
    pauses: int
    rejections: int
    timeouts: int
    clamped: int = 0
    limits: Mapping[str, LimitStatistics] = field(default_factory=dict)
    latency: float | None = None
    shadow: bool = False
    would_wait: int = 0
    would_wait_time: float = 0.0


@final
class _Limit(Ledger):
    """One named limit: its policy (the store of its level), its counters and its AIMD."""

    __slots__ = ("aimd", "opening", "policy")

    def __init__(self, name: str, policy: RatePolicy, *, learned: bool = False) -> None:
        super().__init__(name, learned=learned)
        self.policy = policy
        self.aimd: AIMD | None = None
        # After the first admission of a bucket that started full, until a response to it or
        # to a later request arrives: (when it was admitted, the throttle's admissions before
        # it).  That response ends the run's opening wave (see ``Throttle._close_opening``).
        self.opening: tuple[float, int] | None = None

    def rate(self) -> float:
        """Units per second this limit admits now (``math.nan`` for an unknown policy)."""
        return self.policy.units_per_second

    def refill_rate(self) -> float:
        """Units per second this limit refills continuously (``math.nan``: it does not)."""
        return self.policy.units_per_second if self.policy.refills_continuously else math.nan

    def capacity(self) -> float:
        """The largest cost it admits at once."""
        return self.policy.capacity

    def set_rate(self, rate: float, now: float) -> None:
        """Admit ``rate`` units per second from now on; the capacity stays as it is.

        A policy that cannot change its rate (a user's own, without
        ``set_units_per_second``) keeps it: the adaptive controller lets it be, and says so.
        """
        try:
            self.policy.set_units_per_second(rate, now)
        except NotImplementedError:
            logger.warning(
                "limit %r: %r cannot change its rate; no adaptive backoff for it",
                self.name,
                self.policy,
            )
            self.aimd = None


@final
class Reservation:
    """An admitted request: its concurrency slot and what it was charged.

    Get one from :meth:`Throttle.acquire` or, better, ``async with throttle.reserve(...)``.
    It ends exactly once, in one of these ways:

    * :meth:`settle` with the real usage, then :meth:`release` (the context manager releases);
    * :meth:`release` without a settle: the estimate stands (the request may have been sent);
    * :meth:`cancel`: the request was never sent, everything is refunded;
    * :meth:`reject`: the server rejected the attempt (429): it costs only what you keep.

    A reservation is owned by no task: any task may settle or release it.
    """

    __slots__ = ("_booking", "_throttle")

    def __init__(self, throttle: Throttle, costs: dict[str, float], ticket: int) -> None:
        self._throttle = throttle
        self._booking = Booking(costs, ticket)

    @property
    def ticket(self) -> int:
        """The place in line; pass it to a retry so that it keeps its turn (I3)."""
        return self._booking.ticket

    @property
    def costs(self) -> Mapping[str, float]:
        """What this reservation is charged now, per metric."""
        return MappingProxyType(self._booking.costs)

    @property
    def admitted_at(self) -> float:
        """When it was admitted (anyio clock); NaN before."""
        return self._booking.admitted_at

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
        return f"<Reservation {booking.state.value} ticket={booking.ticket} costs={booking.costs}>"

    def settle(self, **actual: float) -> None:
        """Adjust the charges to the real usage, per metric (``tokens=812``).

        A metric not named keeps its estimate.  Below the estimate, the difference is refunded
        (if the throttle's ``refund_unused`` is true; providers that count the estimate up front
        keep it); above it, the overdraft is charged as a debt that is repaid before the next
        admission.  A refund never raises a bucket above its burst: the rest is dropped and
        counted in the statistics.

        Raises:
            ReservationError: settled twice, or after :meth:`release`.
            ValueError: an unknown metric or a negative usage.
        """
        booking = self._booking
        booking.check_settle()
        throttle = self._throttle
        hook = throttle._on_event
        estimate = dict(booking.costs) if hook is not None else None
        throttle._adjust(booking, actual, refund=throttle.refund_unused)
        booking.settled = True
        if hook is not None and estimate is not None:
            usage = ThrottleCore.settled_usage(estimate, actual)
            event = Settled(throttle._source(), throttle._now(), booking.ticket, estimate, usage)
            emit(hook, event)

    def release(self) -> None:
        """Give the concurrency slot back.  Without a :meth:`settle`, the estimate stands.

        Idempotent: releasing twice does nothing the second time.
        """
        booking = self._booking
        if booking.state is _ACTIVE:
            booking.state = _RELEASED
            self._throttle._release_slot(booking, completed=True)

    def sent(self) -> None:
        """Say that the request is on the wire now (its body written).  Optional.

        A provider counts a request when it arrives, and a request can leave well after its
        admission: its connection is opened first (tens of milliseconds on a busy event
        loop), or the program stalls.  So:

        * a :class:`SlidingWindow` counts the request from now instead of from its admission
          (:meth:`RatePolicy.defer`): it leaves the window that much later (never earlier
          than its first-window ``warmup`` record);
        * a ``TokenBucket(..., until_sent=True)`` gives the request's units back: it paces
          what is between admission and the wire;
        * a token bucket that was full when it admitted a request (at the start, or after a
          lull) refills from the first report that a request admitted since is on the wire,
          once, as the provider's bucket, full too, refills only from that request's arrival.
          Without reports, it refills from when the admitted task ran again.

        The httpx transports report each attempt (through httpcore's ``trace`` extension);
        call it yourself after sending by other means.  A no-op once the reservation is
        released, and after the first call (a reservation is one request: a retry takes a
        new one).
        """
        booking = self._booking
        if booking.state is _ACTIVE and math.isnan(booking.sent_at):
            self._throttle._on_the_wire(booking)

    def _give_back(self) -> None:
        # Released without a completed request (cancelled, rejected): nothing to learn from.
        if self._booking.state is _ACTIVE:
            self._booking.state = _RELEASED
            self._throttle._release_slot(self._booking, completed=False)

    def cancel(self) -> None:
        """The request was never sent: refund every charge and release the slot."""
        booking = self._booking
        booking.check_active("cancel")
        self._throttle._adjust(booking, dict.fromkeys(booking.costs, 0.0), refund=True)
        self._give_back()

    def reject(self, status: int | None = None, /, **kept: float) -> None:
        """The server rejected this attempt (a 429): keep only ``kept``, refund the rest.

        For LLM APIs a rejected attempt typically costs one request and no tokens:
        ``reservation.reject(requests=1)``.  The slot is released; retry with
        ``throttle.reserve(..., ticket=reservation.ticket)`` to keep the original turn.
        ``status``, the response's HTTP status if you have it (``reject(429, requests=1)``),
        goes into the :class:`~throttle_trio.events.Rejected` event.
        """
        booking = self._booking
        booking.check_active("reject")
        throttle = self._throttle
        throttle._adjust(booking, ThrottleCore.all_but(booking, kept), refund=True)
        throttle._core.rejections += 1
        self._give_back()
        hook = throttle._on_event
        if hook is not None:
            event = Rejected(
                throttle._source(),
                throttle._now(),
                booking.ticket,
                status=status,
                shortfall=dict(booking.shortfall),
                retry_after=booking.retry_after,
            )
            emit(hook, event)


def _give_back(policy: RatePolicy, amount: float, now: float, booking: Booking) -> float:
    """Refund ``amount`` to ``policy`` from where ``booking``'s units are: its admission, or
    its send once it was reported on the wire (``RatePolicy.defer`` moved them there)."""
    if math.isnan(booking.sent_at):
        return policy.refund(amount, now, admitted_at=booking.admitted_at)
    return policy.refund_sent(amount, now, admitted_at=booking.admitted_at, sent_at=booking.sent_at)


def _recosting(
    step: Callable[[float], float | None],
    costs: dict[str, float],
    recost: Callable[[], Mapping[str, float]],
    check: Callable[[Mapping[str, float]], dict[str, float]],
) -> Callable[[float], float | None]:
    """``step``, computing ``costs`` again with ``recost`` first (see :meth:`Throttle.reserve`).

    A function of its own, so that ``_acquire`` without a ``recost`` makes no closure cells.
    """

    def judge(now: float) -> float | None:
        # In place: the step, the reservation and fail_waiters' payload share `costs`.
        fresh = recosted(recost, check)
        costs.clear()
        costs.update(fresh)
        return step(now)

    return judge


@final
class Throttle:
    """Several rate limits plus a concurrency cap, taken together at one instant.

    Each keyword names a limit and gives its policy; the limit counts the metric of its name
    (``requests``, ``tokens``, ``input_tokens``, ...), or the part before ``_per_``
    (``tokens_per_day`` counts ``tokens``).  A request is admitted, and charged for its
    concurrency slot and every limit, at the first instant all of them admit it; it holds none
    of them while it waits.  Requests are served first come, first served across the whole
    throttle; a retried request keeps its ticket.

    Example::

        throttle = tt.Throttle(
            requests=tt.TokenBucket(rate=500, per=60.0),
            tokens=tt.TokenBucket(rate=200_000, per=60.0),
            max_concurrent=32,
        )
        async with throttle.reserve(requests=1, tokens=estimate) as slot:
            response = await call()
            slot.settle(tokens=response_usage)

    Args:
        max_concurrent: at most this many reservations hold a slot at once (an int >= 1, or
            ``None`` for no cap), or ``"auto"``: a cap that follows rate x latency (Little's
            law), measured as requests complete, between 1 and 256; pass an
            :class:`AutoConcurrency` to choose the bounds.
        refund_unused: whether :meth:`Reservation.settle` refunds an estimate above the real
            usage.  True for providers that settle (Anthropic documents it); False for those
            that count the estimate up front (OpenAI counts ``max_tokens``).
        adaptive: back off on overload: :meth:`record_overload` (a 429, 529 or 5xx) halves
            every limit's rate and :meth:`record_success` adds it back slowly (AIMD), never
            above the configured rate.
        learn_limits: learn the limits of metrics that are not configured from the rate-limit
            headers passed to :meth:`observe` (as per-minute token buckets).  Until some limit
            is known, one request at a time goes (a probe).
        on_event: a listener called with each event (admissions, settles, rejections,
            pauses, rate changes, header cuts, timeouts; see :mod:`throttle_trio.events`), or
            ``None``.  Free when ``None``.
        name: what events call this throttle (default: its ``repr`` when the first event is
            made).
        shadow: measure without enforcing: a request is never made to wait; what an
            enforcing throttle would have done is counted (``would_wait`` in the statistics,
            ``Admitted.would_wait`` in events), to size limits on live traffic before turning
            them on.  Exact for continuously refilled limits (token bucket, GCRA); a lower
            bound for a sliding window (its log takes each request when it came).
        batch_share: while both lanes have waiters, the share of admissions the ``"batch"``
            lane gets (0 < share < 1; the default 0.2: one batch request for every four
            interactive ones).  The batch runners and the CLI use the batch lane.
        limits: limit name -> :class:`~throttle_trio.policy.RatePolicy`, as a mapping.
        **more_limits: the same, as keywords (``requests=TokenBucket(...)``).

    Raises:
        TypeError: a limit is not a RatePolicy, or ``max_concurrent`` is not an int.
        ValueError: no limits and no ``max_concurrent``, or ``max_concurrent < 1``.
    """

    __slots__ = (
        "_adaptive",
        "_auto",
        "_core",
        "_in_flight",
        "_lanes",
        "_limits",
        "_max_concurrent",
        "_name",
        "_on_event",
        "_paused_until",
        "_queue",
        "_shadow",
        "_shadow_next",
        "_watch",
        "_would_wait",
        "_would_wait_time",
    )

    def __init__(
        self,
        limits: Mapping[str, RatePolicy] | None = None,
        /,
        *,
        max_concurrent: int | Literal["auto"] | AutoConcurrency | None = None,
        refund_unused: bool = True,
        adaptive: bool = False,
        learn_limits: bool = False,
        on_event: EventHook | None = None,
        name: str | None = None,
        shadow: bool = False,
        batch_share: float = 0.2,
        **more_limits: RatePolicy,
    ) -> None:
        limits = {**limits, **more_limits} if limits else more_limits
        for limit_name, policy in limits.items():
            if not isinstance(policy, RatePolicy):
                raise TypeError(
                    f"limit {limit_name!r} must be a RatePolicy (TokenBucket, GCRA, "
                    f"SlidingWindow, ...), got {type(policy).__name__} {policy!r}"
                )
        if max_concurrent == "auto":
            max_concurrent = AutoConcurrency()
        if isinstance(max_concurrent, AutoConcurrency):
            self._auto: AutoConcurrency | None = max_concurrent.fresh()
            self._max_concurrent: float = self._auto.cap
        else:
            self._auto = None
            self._max_concurrent = check_max_concurrent(max_concurrent)
        if not limits and max_concurrent is None and not learn_limits:
            raise ValueError(
                "a Throttle needs at least one limit, max_concurrent or learn_limits, got none"
            )
        self._core: ThrottleCore[_Limit] = ThrottleCore(
            (_Limit(limit_name, policy) for limit_name, policy in limits.items()),
            refund_unused=refund_unused,
            learn_limits=learn_limits,
        )
        # The core's own dict: a learned limit added there is seen here.
        self._limits = self._core.limits
        self._adaptive = adaptive
        if adaptive:
            for limit in self._limits.values():
                rate = limit.rate()
                if not math.isnan(rate):
                    limit.aimd = AIMD(rate)
        self._watch = LoopWatch()
        self._queue: WaitQueue[dict[str, float]] = WaitQueue(self._now)
        self._in_flight = 0
        self._paused_until = -math.inf
        self._on_event = check_hook(on_event)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__} {name!r}")
        self._name = name
        self._shadow = bool(shadow)
        self._lanes = Lanes(batch_share)
        # Shadow mode: when the last request would have gone, and what held it.
        self._shadow_next: tuple[float, str | None] = (-math.inf, None)
        self._would_wait = 0
        self._would_wait_time = 0.0

    @classmethod
    def for_openai(
        cls,
        *,
        rpm: float,
        tpm: float,
        max_concurrent: int | None = 64,
        slice_seconds: float = 1.0,
        margin: float = 0.03,
        warmup: float = 0.25,
    ) -> Throttle:
        """The throttle that fits OpenAI's enforcement: per-second slices, ``max_tokens`` kept,
        adaptive (see :func:`throttle_trio.openai_throttle`, which this calls)."""
        from ._presets import openai_throttle

        return openai_throttle(
            rpm=rpm,
            tpm=tpm,
            max_concurrent=max_concurrent,
            slice_seconds=slice_seconds,
            margin=margin,
            warmup=warmup,
        )

    @classmethod
    def for_anthropic(
        cls,
        *,
        rpm: float,
        input_tpm: float,
        output_tpm: float,
        max_concurrent: int | None = 64,
        slice_seconds: float = 1.0,
        margin: float = 0.03,
        warmup: float = 1.0,
    ) -> Throttle:
        """The throttle that fits Anthropic's enforcement: a second's worth of requests,
        input and output tokens in continuously refilled buckets, settled, adaptive (see
        :func:`throttle_trio.anthropic_throttle`, which this calls)."""
        from ._presets import anthropic_throttle

        return anthropic_throttle(
            rpm=rpm,
            input_tpm=input_tpm,
            output_tpm=output_tpm,
            max_concurrent=max_concurrent,
            slice_seconds=slice_seconds,
            margin=margin,
            warmup=warmup,
        )

    def _source(self) -> str:
        """What events call this throttle: its ``name``, else its ``repr`` as first needed
        (kept: a repr per event would cost more than the event)."""
        if self._name is None:
            self._name = repr(self)
        return self._name

    def __repr__(self) -> str:
        limits = ", ".join(f"{name}={limit.policy!r}" for name, limit in self._limits.items())
        if self._auto is not None:
            cap = ", max_concurrent='auto'"
        else:
            cap = (
                ""
                if self._max_concurrent == math.inf
                else f", max_concurrent={self._max_concurrent}"
            )
        return f"Throttle({limits}{cap})"

    @property
    def refund_unused(self) -> bool:
        """Whether :meth:`Reservation.settle` refunds an estimate above the real usage."""
        return self._core.refund_unused

    @refund_unused.setter
    def refund_unused(self, value: bool) -> None:
        self._core.refund_unused = value

    @property
    def metrics(self) -> frozenset[str]:
        """The metrics this throttle counts (costs it accepts in :meth:`reserve`)."""
        return self._core.metrics

    def accepts(self, metric: str) -> bool:
        """Whether :meth:`reserve` accepts a cost for ``metric`` (counted, or learnable)."""
        return self._core.accepts(metric)

    @property
    def limits(self) -> Mapping[str, RatePolicy]:
        """The policies, by limit name.  Change them with :meth:`reconfigure`."""
        return MappingProxyType({name: limit.policy for name, limit in self._limits.items()})

    # -- admission ---------------------------------------------------------------------------

    def _check_costs(self, costs: Mapping[str, float]) -> dict[str, float]:
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
    ) -> ReserveContext[Reservation]:
        """Wait for admission, as an async context manager that yields a :class:`Reservation`.

        ``async with throttle.reserve(requests=1, tokens=estimate) as slot:`` waits (a
        checkpoint, even when admitted at once), charges every cost and takes a slot; leaving
        the block releases the slot.  Settle inside the block with the real usage; without a
        settle the estimate stands (also on an exception or a cancellation after the request
        was sent); call ``slot.cancel()`` if it was never sent.

        Args:
            timeout: seconds to wait at most; fails at once when the wait is known to be longer.
            ticket: a previous reservation's ticket, so that a retry keeps its turn.
            lane: ``"interactive"`` (the default) or ``"batch"``: an interactive request goes
                before the batch lane's backlog, FIFO within each lane; while both have
                waiters, the batch lane still gets ``batch_share`` of the admissions.
            recost: computes the request's costs again when the throttle decides its
                admission: called (synchronously) each time the request is judged at the
                head of the line, on arrival too, and its result, checked like ``costs``,
                replaces them; the reservation is charged what it returned last (settle,
                events and statistics see those costs).  For estimates that improve while a
                request waits (the transports' learned token ratios).  ``costs`` still
                decide the checks on arrival (``timeout``'s known wait).  An error it raises,
                or a result that fails the checks, fails this request alone (the next waiter
                becomes the head).  Not called in ``shadow`` mode (nothing waits).
            costs: cost per metric, as a mapping (``{"requests": 1, "tokens": 1200}``).
            **more_costs: cost per metric, as keywords (>= 0); metrics not named cost 0.

        Raises:
            ValueError: an unknown metric, or a negative or non-finite cost (also in what
                ``recost`` returns, named in the message).
            TypeError: ``recost`` is not callable, or returned something else than a mapping.
            CostExceedsCapacity: a cost above its limit's capacity (at once, or to a waiting
                request when a reconfiguration lowers the capacity or ``recost`` raises its
                cost above it).
            RateLimitTimeout: not admitted within ``timeout``.
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
    ) -> Reservation:
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
    ) -> Reservation:
        if ticket is None:
            ticket = self._lanes.take(lane)
        if self._shadow:
            return await self._acquire_in_shadow(costs, ticket)
        queue = self._queue
        core = self._core
        reservation = Reservation(self, costs, -1 if ticket is None else ticket)
        booking = reservation._booking
        arrived = self._now()
        deadline = math.inf if timeout is None else arrived + timeout
        if timeout is not None and self._known_wait(costs, arrived) > deadline:
            core.timeouts += 1
            if self._on_event is not None:
                emit(self._on_event, TimedOut(self._source(), arrived, 0.0, timeout, dict(costs)))
            raise self._timeout_error(costs, timeout)

        # limit name -> its level right after this admission, for the limits that were full,
        # the throttle's admissions before it, and whether it is the first admission of a
        # bucket that started full.
        from_full: dict[str, tuple[float, int, bool]] = {}
        # What held this request back last while it was first in line (for the event).
        bound_by: list[str | None] = [None]

        def step(now: float) -> float | None:
            # Recomputed at each step: a limit may have been learned while this request waited.
            charged = [
                (limit, costs[limit.metric])
                for limit in self._limits.values()
                if costs.get(limit.metric)
            ]
            retry_at = self._blocked_until(charged, now)
            if retry_at is not None:
                return retry_at
            bound_by[0] = core.binding
            core.note_binding(now, None)
            for limit, cost in charged:
                policy = limit.policy
                full = policy.refills_continuously and policy.is_full(now)
                first = not limit.admitted_cost  # its first admission, from full: the opening
                policy.consume(cost, now)
                if full:
                    from_full[limit.name] = (policy.available(now), core.admitted, first)
            core.admitted_now(booking, now, arrived)
            self._lanes.admitted(booking.ticket)
            self._in_flight += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%r admitted %s after %.6f s", self, costs, now - arrived)
            return None

        judge = step if recost is None else _recosting(step, costs, recost, self._check_costs)

        def undo() -> None:
            # The admission could not be delivered (see _waitqueue): as if it never happened.
            now = self._now()
            for change in core.undone(booking, arrived):
                # What does not fit is refill a full bucket lost meanwhile, not a loss.
                change.limit.policy.refund(-change.delta, now, admitted_at=booking.admitted_at)
            self._in_flight -= 1

        def on_timeout() -> BaseException:
            core.timeouts += 1
            if self._on_event is not None:
                now = self._now()
                emit(
                    self._on_event,
                    TimedOut(self._source(), now, now - arrived, timeout, dict(costs)),
                )
            return self._timeout_error(costs, timeout)

        try:
            booking.ticket = await queue.acquire(
                1, judge, costs, undo, deadline=deadline, on_timeout=on_timeout, ticket=ticket
            )
        finally:
            if not queue.waiting:
                core.note_binding(self._now(), None)
        # The task runs again: from now on its request may be on the wire.
        now = self._now()
        marks = booking.marks
        for name, (level, before, first) in from_full.items():
            # A full bucket starts refilling at its first admission, the server's when that
            # request arrives, which is no earlier than now: refill nothing before now (or
            # the client leads the server by the refill of the lag, and meets 429s when the
            # burst runs out), and nothing before the first request admitted since is on the
            # wire, if a transport says when (``ThrottleCore.on_the_wire``).
            limit = self._limits[name]
            limit.policy.limit_available(level - (limit.net_charged - marks[name]), now)
            core.admitted_from_full(limit, booking, level)
            if first:
                limit.opening = (booking.admitted_at, before)
        core.resumed(booking, now)
        hook = self._on_event
        if hook is not None:
            admitted = booking.admitted_at
            event = Admitted(
                self._source(),
                admitted,
                admitted - arrived,
                bound_by[0],
                booking.ticket,
                dict(costs),
            )
            emit(hook, event)
        return reservation

    async def _acquire_in_shadow(self, costs: dict[str, float], ticket: int) -> Reservation:
        """Admit at once, and count what an enforcing throttle would have made it wait.

        The limits are charged as usual, at once, so a burst above a limit leaves it in debt:
        the next request's ready time includes the wait of every request before it, as an
        enforcing FIFO queue would (``_shadow_next`` keeps them in order across metrics).
        """
        await checkpoint()  # a checkpoint, like every admission
        self._queue.check_thread()
        core = self._core
        reservation = Reservation(self, costs, ticket)
        booking = reservation._booking
        now = self._now()
        # Behind the requests before it, which would still be waiting for what bound them.
        ready, binding = now, None
        if self._shadow_next[0] > now:
            ready, binding = self._shadow_next
        if now < self._paused_until:
            ready, binding = max(ready, self._paused_until), PAUSE
        for limit in self._limits.values():
            cost = costs.get(limit.metric)
            if cost:
                at = limit.policy.ready_at(cost, now)
                if at > ready:
                    ready, binding = at, limit.name
        if self._in_flight >= self._max_concurrent and binding is None:
            binding = CONCURRENCY  # for a slot: how long is unknown (0 is a lower bound)
        would_wait = ready - now
        self._shadow_next = (ready, binding)
        if binding is not None:
            self._would_wait += 1
            self._would_wait_time += would_wait
            if binding == PAUSE:
                core.pause_wait += would_wait
            elif binding == CONCURRENCY:
                pass
            else:
                self._limits[binding].wait_time += would_wait
        for limit in self._limits.values():
            cost = costs.get(limit.metric)
            if cost:
                limit.policy.consume(cost, now)
        core.admitted_now(booking, now, now)
        self._lanes.admitted(ticket)
        self._in_flight += 1
        core.resumed(booking, now)
        hook = self._on_event
        if hook is not None:
            event = Admitted(
                self._source(),
                now,
                0.0,
                binding,
                booking.ticket,
                dict(costs),
                would_wait=would_wait,
            )
            emit(hook, event)
        return reservation

    def _now(self, backend: Backend | None = None) -> float:
        """The running loop's time, after carrying every limit over from another loop."""
        if backend is None:
            backend = current_backend()
        now = backend.current_time()
        shift = self._watch.moved(backend, now)
        if shift:
            for limit in self._limits.values():
                shift_policy_clock(limit.policy, shift, self)
                if limit.aimd is not None:
                    limit.aimd.shift_clock(shift)
            self._paused_until += shift
            self._core.binding_since += shift
        return now

    def _blocked_until(self, charged: list[tuple[_Limit, float]], now: float) -> float | None:
        """When the head might go (``None``: now).  Records what is binding, for statistics."""
        core = self._core
        if now < self._paused_until:
            core.note_binding(now, PAUSE)
            return self._paused_until
        if self._in_flight >= self._max_concurrent or (
            self._in_flight and core.learn_limits and not self._limits
        ):  # the cap, or a probe in flight while no limit is known yet
            core.note_binding(now, CONCURRENCY)
            return math.inf
        latest, binding = now, None
        for limit, cost in charged:
            ready = limit.policy.ready_at(cost, now)
            if ready > latest:
                latest, binding = ready, limit.name
        if binding is None:
            return None
        core.note_binding(now, binding)
        return latest

    def _known_wait(self, costs: dict[str, float], now: float) -> float:
        """A lower bound on the admission time, for failing a timeout at once.

        Only this request's own costs and the gate count: the waiters ahead have costs in
        several metrics, so their sum is no bound on any one limit.
        """
        bound = max(now, self._paused_until)
        for limit in self._limits.values():
            cost = costs.get(limit.metric)
            if cost:
                bound = max(bound, limit.policy.ready_at(cost, now))
        return bound

    def _timeout_error(self, costs: Mapping[str, float], timeout: float | None) -> RateLimitTimeout:
        shown = ", ".join(f"{metric}={cost!r}" for metric, cost in costs.items())
        return RateLimitTimeout(
            f"reserve({shown}) could not be admitted within timeout={timeout!r} seconds"
        )

    # -- after admission ---------------------------------------------------------------------

    def _adjust(self, booking: Booking, usage: Mapping[str, float], *, refund: bool) -> None:
        self._queue.check_thread()
        now = self._now()
        core = self._core
        checked, changes = core.adjustments(booking, usage, refund=refund)
        for change in changes:
            policy = change.limit.policy
            if change.delta > 0:
                policy.consume(change.delta, now)
                core.applied(change, change.delta)
            else:
                dropped = _give_back(policy, -change.delta, now, booking)
                core.applied(change, -change.delta - dropped)
        core.settled(booking, checked, refund=refund)
        self._queue.poke()

    def _release_slot(self, booking: Booking, *, completed: bool) -> None:
        """``booking`` ends; ``completed``: its request got a response (or may have)."""
        self._queue.check_thread()
        self._in_flight -= 1
        self._core.ended(booking)
        auto = self._auto
        if auto is not None and completed:
            held = time_for_read(self._watch, self._now) - booking.resumed_at
            rates = [(limit.metric, limit.rate()) for limit in self._limits.values()]
            self._max_concurrent = auto.observe(held, booking.costs, rates)
        self._queue.poke()

    # -- the gate, feedback, configuration ----------------------------------------------------

    def pause_until(self, deadline: float, *, reason: str = "user") -> None:
        """Close the gate for every waiter until ``deadline`` (anyio clock, seconds).

        No request is admitted while the gate is closed.  A later deadline extends the pause;
        an earlier one does not shorten it.  Requests already admitted are not affected.
        ``reason`` is what the :class:`~throttle_trio.events.Paused` event reports
        (``"retry-after"`` when the transports honour a server's Retry-After).
        """
        if math.isnan(deadline):
            raise ValueError(f"deadline must be a time, got {deadline!r}")
        self._queue.check_thread()
        if deadline > self._paused_until:
            self._paused_until = deadline
            self._core.pauses += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%r paused until %.6f", self, deadline)
            self._queue.poke()
            hook = self._on_event
            if hook is not None:
                now = self._now()
                emit(hook, Paused(self._source(), now, deadline, deadline - now, reason))

    def pause_for(self, seconds: float, *, reason: str = "user") -> None:
        """Close the gate for ``seconds`` from now (see :meth:`pause_until`)."""
        self.pause_until(self._now() + check_non_negative("seconds", seconds), reason=reason)

    @property
    def paused_until(self) -> float | None:
        """When the gate opens (anyio clock), or ``None`` if it is open."""
        until = self._paused_until
        return until if until > time_for_read(self._watch, self._now) else None

    def reconfigure(self, limit: str, **changes: float) -> None:
        """Change one limit's parameters now (``throttle.reconfigure("tokens", rate=90_000)``).

        Waiters are re-timed; those whose cost no longer fits the new capacity fail with
        :class:`CostExceedsCapacity` instead of blocking the queue (I6).
        """
        try:
            target = self._limits[limit]
        except KeyError:
            raise ValueError(
                f"limit must be one of {sorted(self._limits)}, got {limit!r}"
            ) from None
        rate_changed = bool(changes.keys() & {"rate", "per", "limit", "window"})
        self._queue.check_thread()
        target.policy.reconfigure(self._now(), **changes)
        if target.aimd is not None and rate_changed:  # a newly configured rate: the ceiling
            target.aimd = AIMD(target.rate())
        self._fail_misfits()

    def _fail_misfits(self) -> None:
        """Fail the waiters whose cost no longer fits a capacity (I6), and re-time the head."""

        def misfit(costs: dict[str, float]) -> _Limit | None:
            for limit in self._limits.values():
                if costs.get(limit.metric, 0.0) > limit.policy.capacity:
                    return limit
            return None

        def error(costs: dict[str, float]) -> BaseException:
            limit = misfit(costs)
            assert limit is not None
            return CostExceedsCapacity(
                f"{limit.metric} must be <= the capacity {limit.policy.capacity!r} of limit "
                f"{limit.name!r}, got {costs[limit.metric]!r} "
                f"(the capacity was lowered while the request waited)"
            )

        failed = self._queue.fail_waiters(lambda costs: misfit(costs) is not None, error)
        if failed and logger.isEnabledFor(logging.DEBUG):
            logger.debug("%r: %d waiters no longer fit and failed", self, failed)
        self._queue.poke()

    def observe(self, report: RateLimitHeaders, reservation: Reservation | None = None) -> None:
        """Feed a response's rate-limit headers back (the server knows better).

        For each metric the server reports, the limit named after it is lowered to what the
        server says is left: ``remaining`` (counted when ``reservation``, the request the
        response answers, arrived), plus what the bucket refilled since the admitted task ran
        again (the request cannot have arrived earlier), minus what this throttle sent since
        (requests whose tasks ran again later, overdrafts, net of refunds) and what it admitted
        and has not sent yet.  ``reservation`` ``None``: ``remaining`` as it is.  It is never
        raised: a server reporting more than we think is left is ignored.

        A cut is kept for good, and one report can be off by the requests in flight (which of
        them the server had counted is a guess when connections deliver them in any order): a
        limit is cut only when the report before it also asked for a cut, and by the smaller
        of the two.  A limit that has charged nothing yet takes its first report as it is.

        With ``learn_limits``, a metric that has no limit yet gets one: a token bucket of
        ``limit`` per period, the period inferred from the headers (the reset time of what is
        spent: ``limit * reset / (limit - remaining)``, between 1 s and a day), else (or with
        less than a tenth spent) a minute; it is then synced the same way.  Configured limits
        are never changed, only their available units.

        Parse headers with ``parse_rate_limit_headers(response.headers, time.time())``.  Works
        outside an event loop too (at the time the throttle last saw).
        """
        self._queue.check_thread()
        now = time_for_read(self._watch, self._now)
        core = self._core
        learned = core.to_learn(report)
        hook = self._on_event
        for spec in learned:
            limit = _Limit(spec.metric, TokenBucket(spec.limit, per=spec.per), learned=True)
            if self._adaptive:
                limit.aimd = AIMD(limit.rate())
            core.add_limit(limit)
            logger.info("%r learned %s: %g per %g s", self, spec.metric, spec.limit, spec.per)
            if hook is not None:
                emit(hook, LimitLearned(self._source(), now, spec.metric, spec.limit, spec.per))
        booking = None if reservation is None else reservation._booking
        if booking is not None:
            self._close_opening(booking, now)
        for target in core.feedback(report, booking, now, _Limit.refill_rate):
            policy = target.limit.policy
            available = policy.available(now)
            if target.level < available:
                policy.limit_available(target.level, now)
                if hook is not None:
                    event = LimitLowered(
                        self._source(), now, target.limit.name, target.level, available
                    )
                    emit(hook, event)
        if learned:  # the probe is over; a learned capacity may be below a queued cost (I6)
            self._fail_misfits()

    def _on_the_wire(self, booking: Booking) -> None:
        """``booking``'s request is on the wire now: each bucket admitted from full since
        which no request was on the wire refills from now (``ThrottleCore.on_the_wire``), and
        each window counts the request from now (``RatePolicy.defer``).  Then the head of
        the line asks again: a pace (``TokenBucket(..., until_sent=True)``) gave its units
        back."""
        self._queue.check_thread()
        now = booking.sent_at = self._now()
        for target in self._core.on_the_wire(booking):
            target.limit.policy.limit_available(target.level, now)
        costs, admitted_at = booking.costs, booking.admitted_at
        for limit in self._limits.values():
            cost = costs.get(limit.metric)
            if cost and limit.name in booking.marks:
                limit.policy.defer(cost, admitted_at, now)
        self._queue.poke()

    def _close_opening(self, booking: Booking, now: float) -> None:
        """A response to a request admitted at or after a full bucket's opening admission:
        the run's opening wave, from that admission to now, is over.

        For a bucket that started full (the default, mirroring a provider's that starts full:
        its first request went at once), the requests admitted before the first response left
        together, most on new connections, and reached the server in any order, so their
        reports are guesses (``Ledger.wave``: the core's feedback skips them).  A wave of one
        request has no order to guess: its report counts as usual.
        """
        for limit in self._limits.values():
            opening = limit.opening
            if opening is None or booking.admitted_at < opening[0]:
                continue
            limit.opening = None
            opened, before = opening
            limit.wave = (opened, now) if self._core.admitted - before > 1 else None

    def rejected(self, report: RateLimitHeaders, reservation: Reservation) -> None:
        """A 429 answered ``reservation``: cut each limit by the shortfall it proves.

        When the request arrived the server had ``remaining`` of a metric, less than its
        cost; this throttle had at least the cost when it admitted it, and the server only
        refilled since.  So the throttle was ahead by at least the difference: cut it at once
        (two reports need not agree: a 429 is proof, and the cut is at most one request's
        cost).  Call it before :meth:`Reservation.reject`, while the costs are the estimate.
        """
        now = self._now()
        for change in self._core.shortfalls(report, reservation._booking):
            policy = change.limit.policy
            policy.limit_available(policy.available(now) - change.delta, now)

    def record_success(self) -> None:
        """A request succeeded: with ``adaptive``, raise the rates a little (up to configured)."""
        if self._adaptive:
            self._queue.check_thread()
            now = self._now()
            for limit in self._limits.values():
                aimd = limit.aimd
                if aimd is not None and aimd.rate < aimd.ceiling:
                    before = aimd.rate
                    limit.set_rate(aimd.on_success(), now)
                    self._rate_changed(limit, before, "recovery", now)
            self._queue.poke()

    def record_clamped(self, count: int) -> None:
        """Count ``count`` numbers a response reported out of range, clamped by the reader."""
        self._core.clamped += count

    @property
    def rejections(self) -> int:
        """Attempts the server rejected (:meth:`Reservation.reject`)."""
        return self._core.rejections

    def record_overload(self) -> None:
        """The server is overloaded (a 429, 529 or 5xx): with ``adaptive``, cut the rates.

        The cut happens at most once per second per limit: the responses to requests sent at
        the old rate say nothing about the new one.
        """
        if self._adaptive:
            self._queue.check_thread()
            now = self._now()
            for limit in self._limits.values():
                if limit.aimd is not None:
                    before = limit.aimd.rate
                    rate = limit.aimd.on_overload(now)
                    if rate != before:
                        limit.set_rate(rate, now)
                        logger.debug("%r: %s rate cut to %g/s", self, limit.name, rate)
                        self._rate_changed(limit, before, "overload", now)

    def _measured_latency(self) -> float | None:
        """The mean time in flight with ``max_concurrent="auto"``; ``None`` if not measured
        (``None`` rather than NaN: two snapshots that are alike compare equal)."""
        if self._auto is None or math.isnan(self._auto.latency):
            return None
        return self._auto.latency

    def _rate_changed(self, limit: _Limit, before: float, cause: str, now: float) -> None:
        hook, aimd = self._on_event, limit.aimd
        if hook is not None and aimd is not None:
            event = RateChanged(
                self._source(), now, limit.name, aimd.rate, before, aimd.ceiling, cause
            )
            emit(hook, event)

    def is_pristine(self) -> bool:
        """True if this throttle is indistinguishable from a freshly made one.

        Nobody waits, nothing is in flight, the gate is open and every limit is full.  Only such
        a throttle may be forgotten (by :class:`ThrottleRegistry`): forgetting one that still
        remembers spent capacity would grant a burst the provider will not.
        """
        if self._queue.waiting or self._in_flight:
            return False
        now = time_for_read(self._watch, self._now)
        if self._paused_until > now:
            return False
        return all(
            not limit.learned
            and (limit.aimd is None or limit.aimd.rate == limit.aimd.ceiling)
            and limit.policy.available(now) >= limit.policy.capacity
            for limit in self._limits.values()
        )

    def statistics(self) -> ThrottleStatistics:
        """Return a snapshot of this throttle (see :class:`ThrottleStatistics`).

        Works anywhere, also outside an event loop, and changes nothing.
        """
        now = time_for_read(self._watch, self._now)
        core = self._core
        return ThrottleStatistics(
            tasks_waiting=self._queue.waiting,
            in_flight=self._in_flight,
            max_concurrent=self._max_concurrent,
            admitted=core.admitted,
            total_wait_time=core.wait_time,
            binding=core.binding if self._queue.waiting else None,
            concurrency_wait_time=core.concurrency_wait,
            pause_wait_time=core.pause_wait,
            paused_until=self._paused_until if self._paused_until > now else None,
            pauses=core.pauses,
            rejections=core.rejections,
            timeouts=core.timeouts,
            clamped=core.clamped,
            limits={
                name: LimitStatistics(
                    metric=limit.metric,
                    available=limit.policy.available(now),
                    capacity=limit.policy.capacity,
                    admitted_cost=limit.admitted_cost,
                    refunded=limit.refunded,
                    overdraft=limit.overdraft,
                    dropped=limit.policy.dropped,
                    wait_time=limit.wait_time,
                    rate=limit.rate(),
                    learned=limit.learned,
                )
                for name, limit in self._limits.items()
            },
            latency=self._measured_latency(),
            shadow=self._shadow,
            would_wait=self._would_wait,
            would_wait_time=self._would_wait_time,
        )
