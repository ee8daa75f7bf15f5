"""RateLimiter: a fair, cancellation-safe async shell over one rate policy."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from ._eventloop import Backend, LoopWatch, current_backend, shift_policy_clock, time_for_read
from ._events import Admitted, EventHook, TimedOut, check_hook, emit
from ._exceptions import CostExceedsCapacity, RateLimitTimeout
from ._validate import check_cost, check_non_negative, check_optional_timeout
from ._waitqueue import WaitQueue
from .policy.base import RatePolicy

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["RateLimiter", "RateLimiterStatistics"]

logger = logging.getLogger("throttle_trio.limiter")

P = TypeVar("P", bound=RatePolicy)


@dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """A snapshot of a :class:`RateLimiter`, from :meth:`RateLimiter.statistics`.

    Attributes:
        tasks_waiting: tasks queued in :meth:`~RateLimiter.acquire` right now.
        queued_cost: the sum of their costs (units).
        admitted: acquisitions admitted so far.
        admitted_cost: the sum of their costs (units).
        total_wait_time: seconds the admitted acquisitions spent waiting, summed.
        timeouts: acquisitions that gave up because of their ``timeout``.
        available: units that could be admitted now (negative while repaying a debt).
        capacity: the largest cost the policy admits at once (units).
        refunded: units given back through :meth:`~RateLimiter.refund`.
    """

    tasks_waiting: int
    queued_cost: float
    admitted: int
    admitted_cost: float
    total_wait_time: float
    timeouts: int
    available: float
    capacity: float
    refunded: float


@final
class _Request:
    """A waiting request's step (see WaitQueue): smaller than a closure, for every waiter."""

    __slots__ = ("arrived", "cost", "limiter")

    def __init__(self, limiter: RateLimiter[Any], cost: float, arrived: float) -> None:
        self.limiter = limiter
        self.cost = cost
        self.arrived = arrived

    def __call__(self, now: float) -> float | None:
        """Admit the cost if it fits at ``now``; otherwise say when it could."""
        limiter, cost = self.limiter, self.cost
        policy: RatePolicy = limiter._policy
        ready = policy.admit_or_ready_at(cost, now)
        if ready is not None:
            return ready
        limiter._admitted += 1
        limiter._admitted_cost += cost
        limiter._wait_time += now - self.arrived
        return None


@final
class RateLimiter(Generic[P]):
    """Admit weighted requests at the rate a :class:`~throttle_trio.policy.RatePolicy` allows.

    Requests are served strictly first come, first served: a newcomer never overtakes a
    waiter, and a large cost at the front holds back the small ones behind it instead of
    starving.  Only the first waiter sleeps on a timer, until the exact instant its cost fits;
    the others wait on private events, so admitting one request wakes one task.

    A limiter has no background task and touches no event loop until it is used, so it can be
    created at module level.  It reads ``anyio.current_time()``, so trio's ``MockClock`` and
    other virtual clocks drive it.  Use it from one event loop at a time; used by one loop after
    another (one ``anyio.run`` per test), it carries on where it was, as if no time passed
    between the loops.

    Unlike a capacity limiter, nothing is released: a rate limiter's permits are spent.  Use
    :class:`~throttle_trio.CapacityLimiter` (or the Throttle) to also bound requests in flight.

    Args:
        policy: the rate policy, for example ``TokenBucket(rate=60, per=60, burst=10)``.
        on_event: a listener for its admissions and timeouts
            (:class:`~throttle_trio.events.Admitted`, binding ``"rate"`` when it waited;
            :class:`~throttle_trio.events.TimedOut`), or ``None`` (free).
        name: what the events call it (default: ``RateLimiter(<its policy>)``, when the first
            event is made).
    """

    __slots__ = (
        "_admitted",
        "_admitted_cost",
        "_name",
        "_on_event",
        "_policy",
        "_queue",
        "_refunded",
        "_timeouts",
        "_wait_time",
        "_watch",
    )

    def __init__(
        self, policy: P, *, on_event: EventHook | None = None, name: str | None = None
    ) -> None:
        if not isinstance(policy, RatePolicy):
            raise TypeError(
                f"policy must be a RatePolicy (TokenBucket, GCRA, SlidingWindow, ...), "
                f"got {type(policy).__name__} {policy!r}"
            )
        self._policy: P = policy
        self._queue: WaitQueue[float] = WaitQueue(self._now)
        self._admitted = 0
        self._admitted_cost = 0.0
        self._wait_time = 0.0
        self._timeouts = 0
        self._refunded = 0.0
        self._watch = LoopWatch()
        self._on_event = check_hook(on_event)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__} {name!r}")
        self._name = name

    @property
    def policy(self) -> P:
        """The policy this limiter asks.  Change it with :meth:`reconfigure`, not directly."""
        return self._policy

    def __repr__(self) -> str:
        return f"RateLimiter({self._policy!r}, waiting={self._queue.waiting})"

    # A cancel scope cannot tell the limiter its deadline in advance; `timeout=` lets acquire()
    # fail at once when the computed wait is longer (as Go's WaitN does).
    async def acquire(self, cost: float = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until ``cost`` units may go, then take them.

        This is always a checkpoint (cancellation is checked and other tasks run), even when
        the units are available at once.  If it is cancelled, or times out, it took nothing.

        Args:
            cost: units to take (> 0, at most the policy's capacity).
            timeout: seconds to wait at most (``None``: no limit).  When a lower bound of the
                wait (the requests queued ahead, then this cost) is already longer, fails at
                once instead of waiting for the timeout to pass.  The bound is exact for
                :class:`TokenBucket` and :class:`GCRA`; with :class:`SlidingWindow` a request
                may still queue and time out later.

        Raises:
            CostExceedsCapacity: ``cost`` is above the capacity (a ``ValueError``); also raised
                to a queued request when :meth:`reconfigure` lowers the capacity below it.
            RateLimitTimeout: the units could not be taken within ``timeout`` (a
                ``TimeoutError``).
            TypeError, ValueError: ``cost`` or ``timeout`` is not a valid number.
        """
        policy = self._policy
        capacity = policy.capacity
        if not ((cost.__class__ is int or cost.__class__ is float) and 0 < cost <= capacity):
            cost = check_cost(cost, capacity)
        if timeout is not None:
            timeout = check_optional_timeout(timeout)
        backend = current_backend()
        watch = self._watch
        if backend.current_token() is watch.token:  # _now()'s hot path: the same loop
            arrived = watch.last = watch.time()
        else:
            arrived = self._now(backend)
        queue = self._queue
        deadline = math.inf
        on_timeout: Callable[[], BaseException] | None = None
        if timeout is not None:
            deadline = arrived + timeout
            # Fail at once if even everyone queued ahead, then this cost, cannot make it.
            if policy.queue_ready_at(queue.queued_cost, cost, arrived) > deadline:
                raise self._timed_out(cost, timeout, arrived)
            # Not a closure: one would make cells of this frame's variables on every call.
            on_timeout = partial(self._timed_out, cost, timeout, arrived)

        # WaitQueue.acquire's checkpoint rule, with its fast path inlined: nobody waits and the
        # policy admits the cost now (RatePolicy.admit_or_ready_at: it fits, and is charged).
        # Behind a waiter it parks at once, and parking is the checkpoint: a pending
        # cancellation is delivered there, before anything is taken (see WaitQueue.acquire).
        if not queue.waiting:
            await backend.checkpoint_if_cancelled()  # it may yield: ask again who waits
            if not queue.waiting and policy.admit_or_ready_at(cost, arrived) is None:
                self._admitted += 1
                self._admitted_cost += cost
                try:
                    await backend.cancel_shielded_checkpoint()
                except BaseException:
                    # Not delivered (see _waitqueue): give everything back.  What does not
                    # fit is refill a full bucket lost meanwhile, not a loss.
                    policy.refund(cost, self._now(), admitted_at=arrived)
                    self._admitted -= 1
                    self._admitted_cost -= cost
                    queue.poke()  # a waiter that queued meanwhile may fit now
                    raise
                if self._on_event is not None:
                    self._admitted_event(cost, arrived, arrived, queue.take_ticket())
                return

        ticket = await queue.wait_in_line(
            cost,
            _Request(self, cost, arrived),
            cost,
            deadline=deadline,
            on_timeout=on_timeout,
            ready=policy.ready_at,
            loop=backend,
        )
        if self._on_event is not None:
            self._admitted_event(cost, self._now(), arrived, ticket)

    def _admitted_event(self, cost: float, now: float, arrived: float, ticket: int) -> None:
        assert self._on_event is not None
        source = self._source()
        waited = now - arrived
        binding = "rate" if waited > 0 else None
        emit(self._on_event, Admitted(source, now, waited, binding, ticket, {"rate": cost}))

    def _now(self, backend: Backend | None = None) -> float:
        """The running loop's time, after carrying the policy over from another loop."""
        if backend is None:
            backend = current_backend()
        watch = self._watch
        if backend.current_token() is watch.token:  # the hot path: the same loop as before
            now: float = watch.time()
            watch.last = now
            return now
        now = backend.current_time()
        shift = watch.moved(backend, now)
        if shift:
            shift_policy_clock(self._policy, shift, self)
        return now

    def try_acquire(self, cost: float = 1) -> bool:
        """Take ``cost`` units now if they are available and nobody is waiting.

        Never overtakes a waiting task.  Not a checkpoint (it never waits).

        Raises:
            CostExceedsCapacity: ``cost`` is above the capacity.
            TypeError, ValueError: ``cost`` is not a finite number > 0.
        """
        cost = check_cost(cost, self._policy.capacity)
        if self._queue.waiting:
            return False
        now = self._now()
        if self._policy.ready_at(cost, now) > now:
            return False
        self._policy.consume(cost, now)
        self._admitted += 1
        self._admitted_cost += cost
        return True

    def refund(self, amount: float) -> float:
        """Give back ``amount`` units that were acquired but not used.

        The bucket never rises above its burst: what does not fit is dropped and returned.
        Wakes the first waiter if the refund lets it go.

        Returns:
            The units dropped (0 if all were credited).
        """
        amount = check_non_negative("amount", amount)
        self._queue.check_thread()
        dropped = self._policy.refund(amount, self._now())
        self._refunded += amount - dropped
        self._queue.poke()
        return dropped

    def reconfigure(self, **changes: float) -> None:
        """Change the policy's parameters now (for example ``rate=``, ``per=``, ``burst=``).

        Waiting tasks are re-timed at once.  Those whose cost no longer fits the new capacity
        fail with :class:`CostExceedsCapacity` instead of blocking the queue (I6).
        """
        policy = self._policy
        self._queue.check_thread()
        policy.reconfigure(self._now(), **changes)
        capacity = policy.capacity
        failed = self._queue.fail_waiters(
            lambda cost: cost > capacity,
            lambda cost: CostExceedsCapacity(
                f"cost must be <= the capacity {capacity!r}, got {cost!r} "
                f"(the capacity was lowered while the request waited)"
            ),
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("reconfigured %r: %s; %d waiters failed", policy, changes, failed)
        self._queue.poke()

    def statistics(self) -> RateLimiterStatistics:
        """Return a snapshot of this limiter's counters (see :class:`RateLimiterStatistics`).

        Works anywhere, also outside an event loop, and changes nothing.
        """
        return RateLimiterStatistics(
            tasks_waiting=self._queue.waiting,
            queued_cost=self._queue.queued_cost,
            admitted=self._admitted,
            admitted_cost=self._admitted_cost,
            total_wait_time=self._wait_time,
            timeouts=self._timeouts,
            available=self._policy.available(time_for_read(self._watch, self._now)),
            capacity=self._policy.capacity,
            refunded=self._refunded,
        )

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def _source(self) -> str:
        """What events call this limiter: its ``name``, else its policy's ``repr``."""
        if self._name is None:
            self._name = f"RateLimiter({self._policy!r})"
        return self._name

    def _timed_out(self, cost: float, timeout: float | None, arrived: float) -> RateLimitTimeout:
        """Count a timeout (and report it) and make its error."""
        self._timeouts += 1
        if self._on_event is not None:
            now = self._now()
            source = self._source()
            event = TimedOut(source, now, now - arrived, timeout, {"rate": cost})
            emit(self._on_event, event)
        return self._timeout_error(cost, timeout)

    def _timeout_error(self, cost: float, timeout: float | None) -> RateLimitTimeout:
        return RateLimitTimeout(
            f"acquire(cost={cost!r}) could not be admitted within timeout={timeout!r} seconds"
        )
