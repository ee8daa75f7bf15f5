"""The FIFO queue every limiter waits in: one head awake, everyone else parked.

Theory of operation
-------------------
Requests are served strictly in arrival order (their *ticket* is their place in the deque).
Only the first live waiter, the *head*, is ever active: it asks its owner's ``step`` function
whether it may go.  ``step(now)`` either admits the request (charging everything it needs, in
that same synchronous step) and returns ``None``, or returns the absolute time at which the
answer could change (``math.inf``: only a release, refund or reconfiguration can change it).
The head then sleeps until that time or until it is *poked* (its private event is set), and
asks again.  Everyone else waits on a private event that is set exactly once, when it becomes
the head (or when it must fail).

Rules that follow, each of which a test guards:

* Admission happens in the admitted task's own step.  Hand-off passes the *head role*, never
  capacity: a task that is woken and then cancelled before it runs has taken nothing, and just
  passes the role on (invariant I4).  A stall between wake-up and running cannot admit more
  than the policy allows at the time the task finally runs (I1).
* A newcomer never overtakes a waiter: the fast path is taken only when the queue is empty
  (I3).  A large cost at the head blocks everyone behind it, so it is never starved.
* Admitting one waiter wakes exactly one other task, the next head (I7).  Pokes go to the
  head only.  There is no background task and no polling loop.
* Cancelled waiters that are not the head are only marked; they are discarded when they reach
  the front, so cancellation is O(1) and the front of the deque is always a live waiter.
* A cancelled acquire took nothing.  An admission is *delivered* when ``acquire`` returns; one
  that cannot be (the fast path's final, shielded checkpoint raised: asyncio's native
  ``task.cancel()``, which anyio's shield does not stop, or ``KeyboardInterrupt``) is *undone*
  by the owner's ``undo`` before the exception propagates.  The slow path admits in the head's
  own step and returns without awaiting again, so there is nothing to undo there.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar, final

import anyio

from ._backend import Backend, current_backend

__all__ = ["Step", "Undo", "WaitQueue"]

#: ``step(now)``: admit and return ``None``, or return when to ask again (``math.inf``: when poked).
Step = Callable[[float], "float | None"]
#: ``undo()``: take back the admission ``step`` just made, which could not be delivered.
Undo = Callable[[], None]

T = TypeVar("T")


@final
class _Waiter(Generic[T]):
    __slots__ = ("cost", "error", "event", "payload", "queued", "ticket", "wakeups")

    def __init__(self, cost: float, payload: T, ticket: int) -> None:
        self.cost = cost
        self.payload = payload  # what the owner needs to judge it in fail_waiters()
        self.ticket = ticket  # the place in line; a retried request keeps its first ticket
        self.event = anyio.Event()
        self.queued = True  # counted in the queue's totals; False once admitted or gone
        self.error: BaseException | None = None  # set by fail_waiters()
        self.wakeups = 0  # how many times another task woke this one (tests count these)


@final
class WaitQueue(Generic[T]):
    """The FIFO engine behind :class:`RateLimiter`, :class:`CapacityLimiter` and the Throttle.

    ``T`` is the type of the payload each waiter carries for :meth:`fail_waiters`.
    """

    __slots__ = (
        "_clock",
        "_next_ticket",
        "_queue",
        "_queued_cost",
        "_thread",
        "_waiting",
        "total_wakeups",
    )

    def __init__(self, clock: Callable[[], float] = anyio.current_time) -> None:
        # The owner's clock: it may carry the owner's state over to another event loop.
        self._clock = clock
        self._next_ticket = 0
        # Live waiters in ticket order; waiters that left are discarded once at the front,
        # so the front is always the live head.
        self._queue: deque[_Waiter[T]] = deque()
        self._waiting = 0
        self._queued_cost = 0.0
        self._thread = 0  # the thread whose event loop the waiters wait in
        self.total_wakeups = 0  # events set by this queue over its lifetime (tests of I7)

    @property
    def waiting(self) -> int:
        """Tasks waiting (the head included)."""
        return self._waiting

    @property
    def queued_cost(self) -> float:
        """The sum of the costs of the waiting tasks."""
        return self._queued_cost

    def take_ticket(self) -> int:
        """A new place at the end of the line."""
        ticket = self._next_ticket
        self._next_ticket += 1
        return ticket

    async def acquire(
        self,
        cost: float,
        step: Step,
        payload: T,
        undo: Undo,
        *,
        deadline: float = math.inf,
        on_timeout: Callable[[], BaseException] | None = None,
        ticket: int | None = None,
        now: float | None = None,
        loop: Backend | None = None,
    ) -> int:
        """Wait for this request's turn and for ``step`` to admit it.

        A checkpoint on every call (I5), fast path included: cancellation is checked before
        anything is decided, and the scheduler runs after (shielded, so that an admitted
        request stays admitted).

        Args:
            cost: the request's cost, summed in :attr:`queued_cost`.
            step: the owner's admission function (see the module docstring).  It may raise:
                the request then leaves the queue and the error propagates.
            payload: handed to :meth:`fail_waiters`' functions to judge this waiter.
            undo: takes back what ``step`` charged, when the admission made on the fast path
                cannot be delivered because the final checkpoint raised (see the module
                docstring).  Called at most once, synchronously, before the error propagates.
            deadline: the absolute time (anyio clock) after which the request gives up.
                The head gives up at once when ``step`` says it cannot go before then.
            on_timeout: makes the error raised when the request gives up.
            ticket: the place in line from :meth:`take_ticket`: a retried request passes
                its original ticket and goes before every waiter that arrived after it.
                ``None`` (the default): a new ticket at the end of the line, in call order.
            now: the current time if the caller has just read it (saves a clock read).
            loop: the running loop's backend if the caller has it (saves a lookup).

        Returns:
            The ticket this request was admitted with.
        """
        # trio's rule: check for cancellation, decide without yielding (so that the ticket
        # follows the call order), then yield with cancellation shielded: a request that was
        # admitted stays admitted.
        backend = current_backend() if loop is None else loop
        await backend.checkpoint_if_cancelled()
        queue = self._queue
        if ticket is None:
            ticket = self.take_ticket()
            first = not queue
        else:
            first = not queue or queue[0].ticket > ticket
        if first and step(backend.current_time() if now is None else now) is None:
            try:
                await backend.cancel_shielded_checkpoint()
            except BaseException:
                # Not stopped by the shield: asyncio's task.cancel() (TaskGroup, timeout(),
                # wait_for()) or KeyboardInterrupt.  The caller sees the acquire fail, so it
                # must have taken nothing (anyio #398 is the same bug in anyio's own locks).
                undo()
                self.poke()  # a waiter that queued meanwhile may fit now
                raise
            return ticket
        self.check_thread()
        self._thread = threading.get_ident()
        waiter = _Waiter(cost, payload, ticket)
        if not queue or queue[-1].ticket < ticket:
            queue.append(waiter)
        else:  # a retry: back to its place in line (rare, O(n))
            queue.insert(bisect.bisect_left(queue, ticket, key=lambda w: w.ticket), waiter)
        self._waiting += 1
        self._queued_cost += cost
        try:
            admitted = await self._wait(waiter, step, deadline)
        finally:
            self._leave(waiter)
        if not admitted:
            raise on_timeout() if on_timeout is not None else TimeoutError
        return ticket

    async def _wait(self, waiter: _Waiter[T], step: Step, deadline: float) -> bool:
        queue = self._queue
        while True:
            if queue[0] is waiter:
                now = self._clock()
                retry_at = step(now)
                if retry_at is None:
                    return True
                if retry_at > deadline:
                    # A known wait longer than the deadline fails at once; an unknown one
                    # (a release, math.inf) is waited for until the deadline.
                    if retry_at != math.inf or now >= deadline:
                        return False
                    wake_at = deadline
                else:
                    wake_at = retry_at
            else:
                wake_at = deadline  # parked until this waiter is the head
            if wake_at == math.inf:  # no timer: the cheapest wait there is
                await waiter.event.wait()
            else:
                with anyio.CancelScope(deadline=wake_at):
                    await waiter.event.wait()
            if waiter.event.is_set():
                if waiter.error is not None:
                    raise waiter.error
                waiter.event = anyio.Event()
            elif queue[0] is not waiter and self._clock() >= deadline:
                return False  # the deadline passed while parked
            # Otherwise the timer fired: ask again if still the head, park if a retry with an
            # earlier ticket took the head's place meanwhile.

    def _leave(self, waiter: _Waiter[T]) -> None:
        """Take ``waiter`` out of the counts (admitted, cancelled, timed out or failed).

        If it was the head, the head role passes to the next live waiter, which is woken.
        """
        if not waiter.queued:
            return
        waiter.queued = False
        self._waiting -= 1
        self._queued_cost = self._queued_cost - waiter.cost if self._waiting else 0.0
        queue = self._queue
        if queue[0] is waiter:
            queue.popleft()
            while queue and not queue[0].queued:
                queue.popleft()
            self.poke()

    def poke(self) -> None:
        """Wake the head so that it asks its ``step`` again (capacity or rates changed).

        Raises:
            RuntimeError: called from another thread than the waiters' event loop.
        """
        if self._queue:
            self.check_thread()
            self._wake(self._queue[0])

    def check_thread(self) -> None:
        """Refuse a second thread while tasks wait in another thread's event loop.

        Owners call it first in every method that changes what waiters wait for, so that a
        refused call changes nothing.

        The waiters' events belong to their loop and are not thread-safe: a release, refund or
        acquire from another thread would wake nobody, and the queue would hang for good.
        (One loop after another in the same thread is fine: the first loop's waiters are
        gone when it ends.)
        """
        if self._waiting and threading.get_ident() != self._thread:
            raise RuntimeError(
                f"this limiter has {self._waiting} task(s) waiting in an event loop of another "
                "thread; a limiter, throttle or capacity limiter serves one event loop at a "
                "time: make one per thread (share a limit across threads or processes with "
                "throttle_trio.redis), or call it in its loop's thread "
                "(anyio.from_thread.run_sync)"
            )

    def _wake(self, waiter: _Waiter[T]) -> None:
        if not waiter.event.is_set():
            waiter.wakeups += 1
            self.total_wakeups += 1
            waiter.event.set()

    def fail_waiters(self, doomed: Callable[[T], bool], error: Callable[[T], BaseException]) -> int:
        """Make every waiter whose payload is ``doomed`` raise ``error(payload)``; return how many.

        Used when a reconfiguration lowers a capacity below queued costs (I6): they fail at
        once instead of blocking the queue forever.  O(n) in the queue length.
        """
        self.check_thread()
        failed = [w for w in self._queue if w.queued and doomed(w.payload)]
        for waiter in failed:
            waiter.error = error(waiter.payload)
            self._wake(waiter)
            self._leave(waiter)
        return len(failed)

    def wakeups_per_waiter(self) -> list[int]:
        """How often each queued live waiter has been woken so far (tests of I7)."""
        return [w.wakeups for w in self._queue if w.queued]
