"""The FIFO queue every limiter waits in: one head awake, everyone else parked.

Theory of operation
-------------------
Requests are served strictly in arrival order (their *ticket* is their place in line).  Only
the first waiter, the *head*, is ever active: it asks its owner's ``step`` function whether it
may go.  ``step(now)`` either admits the request (charging everything it needs, in that same
synchronous step) and returns ``None``, or returns the absolute time at which the answer could
change (``math.inf``: only a release, refund or reconfiguration can change it).  The head then
parks until that time or until it is *poked*, and asks again.  Everyone else is parked without
a timer until it becomes the head (or must fail, or its own deadline passes).

Parking is the running loop's own (see ``_eventloop``): a bare future and one ``loop.call_at``
handle on asyncio, ``wait_task_rescheduled`` on trio, an ``anyio.Event`` elsewhere.  An owner
may also give a pure query, ``ready(cost, now)``: when a waiter of this cost could go, without
changing anything.  Where the loop's timers are callbacks (asyncio), the queue then asks it
itself when the head role passes and on a poke, and instead of waking a head that cannot go yet
moves the head's timer to the time it can (or must give up): one task switch per admission.

Rules that follow, each of which a test guards:

* Admission happens in the admitted task's own step.  Hand-off passes the *head role*, never
  capacity: a task that is woken and then cancelled before it runs has taken nothing, and just
  passes the role on (invariant I4).  A stall between wake-up and running cannot admit more
  than the policy allows at the time the task finally runs (I1).  ``ready`` only decides when
  to wake the head; the head's ``step`` decides.
* A newcomer never overtakes a waiter: the fast path is taken only when the queue is empty
  (I3).  A large cost at the head blocks everyone behind it, so it is never starved.
* Admitting one waiter wakes at most one other task, the next head (I7).  Pokes go to the head
  only.  There is no background task and no polling loop.
* Waiters form a doubly linked list: one that leaves (admitted, cancelled, timed out or failed)
  is unlinked at once, in O(1), wherever it is, so a cancelled waiter's memory is given back
  when its task ends, not when it would have reached the front.  The first waiter is always the
  live head.
* A cancelled acquire took nothing.  An admission is *delivered* when ``acquire`` returns; one
  that cannot be (the fast path's final, shielded checkpoint raised: asyncio's native
  ``task.cancel()``, which anyio's shield does not stop, or ``KeyboardInterrupt``) is *undone*
  by the owner's ``undo`` before the exception propagates.  The slow path admits in the head's
  own step and returns without awaiting again, so there is nothing to undo there.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from threading import get_ident
from typing import Any, Generic, TypeVar, final

from ._eventloop import Backend, current_backend

__all__ = ["Ready", "Step", "Undo", "WaitQueue"]

#: ``step(now)``: admit and return ``None``, or return when to ask again (``math.inf``: when poked).
Step = Callable[[float], "float | None"]
#: ``undo()``: take back the admission ``step`` just made, which could not be delivered.
Undo = Callable[[], None]
#: ``ready(cost, now)``: when a waiter of this cost could go (``<= now``: at once); changes nothing.
Ready = Callable[[float, float], float]

T = TypeVar("T")


def _current_time(backend: Backend | None = None) -> float:
    return (current_backend() if backend is None else backend).current_time()


@final
class _Waiter(Generic[T]):
    __slots__ = (
        "alarm",
        "cost",
        "deadline",
        "error",
        "handle",
        "loop",
        "next",
        "payload",
        "prev",
        "ready",
        "ticket",
        "timer",
        "wakeups",
    )

    def __init__(
        self,
        cost: float,
        payload: T,
        ticket: int,
        deadline: float,
        ready: Ready | None,
        loop: Backend,
    ) -> None:
        self.cost = cost
        self.payload = payload  # what the owner needs to judge it in fail_waiters()
        self.ticket = ticket  # the place in line; a retried request keeps its first ticket
        self.deadline = deadline
        self.ready = ready
        self.loop = loop  # the backend it parks with
        self.handle: Any = None  # the backend's wake-up handle while parked
        self.timer: Any = None  # the backend's timer while parked (asyncio)
        self.alarm = math.inf  # when its timer is set to fire (its step's time, or ready's)
        # Its neighbours in line: prev is None only for the first waiter, or once it left.
        self.prev: _Waiter[T] | None = None
        self.next: _Waiter[T] | None = None
        self.error: BaseException | None = None  # set by fail_waiters()
        self.wakeups = 0  # how many times the queue woke this one (tests count these)

    def abort(self, raise_cancel: object) -> Any:
        """Cancelled while parked on trio: nobody may reschedule it any more."""
        self.handle = None
        return self.loop.aborted


@final
class WaitQueue(Generic[T]):
    """The FIFO engine behind :class:`RateLimiter`, :class:`CapacityLimiter` and the Throttle.

    ``T`` is the type of the payload each waiter carries for :meth:`fail_waiters`.
    """

    __slots__ = (
        "_clock",
        "_first",
        "_last",
        "_next_ticket",
        "_on_timer_cb",
        "_queued_cost",
        "_thread",
        "total_wakeups",
        "waiting",
    )

    def __init__(self, clock: Callable[[Backend], float] = _current_time) -> None:
        # The owner's clock, given the running loop's backend: it may carry the owner's state
        # over to another event loop.
        self._clock = clock
        self._next_ticket = 0
        # Waiters in ticket order, linked both ways; only live waiters are linked.
        self._first: _Waiter[T] | None = None
        self._last: _Waiter[T] | None = None
        #: Tasks waiting (the head included).  Read it; only the queue changes it.
        self.waiting = 0
        self._queued_cost = 0.0
        self._thread = 0  # the thread whose event loop the waiters wait in
        # Wake-ups this queue delivered over its lifetime (tests of I7): hand-offs, pokes and
        # failures, and the timers it moved from ``ready``; not a head's own timer.
        self.total_wakeups = 0
        self._on_timer_cb = self._on_timer  # one bound method, not one per park or nudge

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
        ready: Ready | None = None,
    ) -> int:
        """Wait for this request's turn and for ``step`` to admit it.

        A checkpoint on every call (I5), fast path included: cancellation is checked before
        anything is decided, and the scheduler runs after (shielded, so that an admitted
        request stays admitted).  Behind a waiter, the request parks at once, which is the
        checkpoint.

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
            ready: a pure query, ``ready(cost, now)``: when this request could go, ``now``
                or earlier if at once (see the module docstring).  ``None``: the head is woken
                to ask ``step`` whenever something may have changed.

        Returns:
            The ticket this request was admitted with.
        """
        # trio's rule: check for cancellation, decide without yielding (so that the ticket
        # follows the call order), then yield with cancellation shielded: a request that was
        # admitted stays admitted.
        backend = current_backend() if loop is None else loop
        first = self._first
        if first is not None and (ticket is None or first.ticket < ticket):
            # Behind a waiter: it parks at once, and parking is the checkpoint (a pending
            # cancellation is delivered there, before the request took anything).
            return await self.wait_in_line(
                cost,
                step,
                payload,
                deadline=deadline,
                on_timeout=on_timeout,
                ticket=ticket,
                ready=ready,
                loop=backend,
            )
        await backend.checkpoint_if_cancelled()
        first = self._first  # the checkpoint may have yielded
        if ticket is None:
            ticket = self._next_ticket
            self._next_ticket = ticket + 1
            go_first = first is None
        else:
            go_first = first is None or first.ticket > ticket
        if go_first and step(backend.current_time() if now is None else now) is None:
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
        return await self.wait_in_line(
            cost,
            step,
            payload,
            deadline=deadline,
            on_timeout=on_timeout,
            ticket=ticket,
            ready=ready,
            loop=backend,
        )

    async def wait_in_line(
        self,
        cost: float,
        step: Step,
        payload: T,
        *,
        loop: Backend,
        deadline: float = math.inf,
        on_timeout: Callable[[], BaseException] | None = None,
        ticket: int | None = None,
        ready: Ready | None = None,
    ) -> int:
        """:meth:`acquire` after its fast path: join the line and wait to be admitted.

        For owners that check for cancellation and try their own fast path first (it must be
        taken only when :attr:`waiting` is 0).  Not a checkpoint by itself unless it waits:
        the caller has just called ``loop.checkpoint_if_cancelled()``, or the request goes
        behind a waiter, so that it parks at once (parking is a checkpoint: a pending
        cancellation is delivered there).  The arguments are :meth:`acquire`'s.
        """
        thread = get_ident()
        if self.waiting and thread != self._thread:
            self.check_thread()  # raises
        self._thread = thread
        if ticket is None:
            ticket = self._next_ticket
            self._next_ticket = ticket + 1
        waiter = _Waiter(cost, payload, ticket, deadline, ready, loop)
        last = self._last
        if last is None:
            self._first = self._last = waiter
        elif last.ticket <= ticket:  # equal tickets (a ticket passed twice) keep call order
            last.next = waiter
            waiter.prev = last
            self._last = waiter
        else:
            self._insert(waiter)  # a retry: back to its place in line (rare, O(n))
        self.waiting += 1
        self._queued_cost += cost
        on_timer = self._on_timer_cb
        woken = True
        now = math.nan
        try:
            while True:
                if self._first is waiter:
                    now = self._clock(loop)
                    retry_at = step(now)
                    if retry_at is None:
                        return ticket
                    if retry_at > deadline:
                        # A known wait longer than the deadline fails at once; an unknown one
                        # (a release, math.inf) is waited for until the deadline.
                        if retry_at != math.inf or now >= deadline:
                            break
                        retry_at = deadline
                    alarm = waiter.alarm
                    if not woken and now < alarm:
                        # The timer fired early: a clock coarser than the policy's answer
                        # (looptime's microsecond; asyncio fires up to its resolution early).
                        # Waking at the same time again would fire at once, for ever on a
                        # virtual clock: go twice as far past the time, until the clock moves.
                        # (The alarm may have been set by _nudge from ready, not by this loop.)
                        retry_at = max(retry_at, now + 2 * (alarm - now))
                    wake_at = retry_at
                else:
                    wake_at = deadline  # parked until this waiter is the head
                    alarm = waiter.alarm
                    if not woken and now < alarm:  # its deadline timer fired early (as above)
                        wake_at = max(wake_at, now + 2 * (alarm - now))
                waiter.alarm = wake_at
                woken = await loop.park(waiter, wake_at, on_timer)
                if waiter.error is not None:
                    raise waiter.error
                if not woken and self._first is not waiter:
                    now = self._clock(loop)
                    if now >= deadline:
                        break  # the deadline passed while parked
                # Otherwise: woken as the head, or its timer fired: ask again if the head,
                # park again if a retry with an earlier ticket took the head's place meanwhile.
        finally:
            self._leave(waiter)
        raise on_timeout() if on_timeout is not None else TimeoutError

    def _insert(self, waiter: _Waiter[T]) -> None:
        """Link ``waiter`` before the waiters with later tickets (a retry keeps its place)."""
        ticket = waiter.ticket
        after = self._last
        while after is not None and after.ticket > ticket:
            after = after.prev
        before = self._first if after is None else after.next
        assert before is not None
        waiter.prev = after
        waiter.next = before
        before.prev = waiter
        if after is None:
            self._first = waiter
        else:
            after.next = waiter

    def _leave(self, waiter: _Waiter[T], hand_off: bool = True) -> None:
        """Take ``waiter`` out of the line (admitted, cancelled, timed out or failed).

        If it was the head, the head role passes to the next waiter (unless ``hand_off`` is
        false: the caller nudges the head itself).
        """
        before, after = waiter.prev, waiter.next
        if before is None and self._first is not waiter:
            return  # it already left
        timer = waiter.timer
        if timer is not None:  # it stopped waiting before its timer fired (asyncio)
            waiter.timer = None
            timer.cancel()
        self.waiting -= 1
        self._queued_cost = self._queued_cost - waiter.cost if self.waiting else 0.0
        waiter.prev = waiter.next = None
        if after is None:
            self._last = before
        else:
            after.prev = before
        if before is not None:
            before.next = after
        else:
            self._first = after
            if after is not None and hand_off:
                self._nudge(after)

    def poke(self) -> None:
        """Wake the head so that it asks its ``step`` again (capacity or rates changed).

        Raises:
            RuntimeError: called from another thread than the waiters' event loop.
        """
        head = self._first
        if head is not None:
            self.check_thread()
            self._nudge(head)

    def _nudge(self, head: _Waiter[T]) -> None:
        """Something changed for the head: wake it, or (with ``ready``) time it to go."""
        ready = head.ready
        if ready is not None and head.loop.timers:
            now = head.loop.parked_time(head)
            if now is not None:
                try:
                    when = ready(head.cost, now)
                except Exception:  # let its step say what is wrong, in its own task
                    when = now
                if when > now:  # it cannot go yet: wake it when it can, or must give up
                    deadline = head.deadline
                    if when == math.inf and now < deadline:
                        when = deadline  # it gives up then
                    if when <= deadline:
                        head.alarm = when
                        head.loop.arm(head, when, self._on_timer_cb)
                        return
        self._wake(head, True)

    def _on_timer(self, waiter: _Waiter[T]) -> None:
        """A parked waiter's timer fired (asyncio).  Its time came from ``step`` or ``ready``,
        so the head runs its step now; any other waiter's deadline passed."""
        waiter.timer = None
        if waiter.ready is not None and self._first is waiter:
            # The queue's own decision: counted, as a hand-off is (_wake, inlined).
            if waiter.loop.unpark(waiter, False):
                waiter.wakeups += 1
                self.total_wakeups += 1
        else:
            waiter.loop.unpark(waiter, False)  # its own timer, as on a loop without callbacks

    def _wake(self, waiter: _Waiter[T], poked: bool) -> None:
        if waiter.loop.unpark(waiter, poked):
            waiter.wakeups += 1
            self.total_wakeups += 1

    def check_thread(self) -> None:
        """Refuse a second thread while tasks wait in another thread's event loop.

        Owners call it first in every method that changes what waiters wait for, so that a
        refused call changes nothing.

        The waiters' wake-up handles belong to their loop and are not thread-safe: a release,
        refund or acquire from another thread would wake nobody, and the queue would hang for
        good.  (One loop after another in the same thread is fine: the first loop's waiters
        are gone when it ends.)
        """
        if self.waiting and threading.get_ident() != self._thread:
            raise RuntimeError(
                f"this limiter has {self.waiting} task(s) waiting in an event loop of another "
                "thread; a limiter, throttle or capacity limiter serves one event loop at a "
                "time: make one per thread (share a limit across threads or processes with "
                "throttle_trio.redis), or call it in its loop's thread "
                "(anyio.from_thread.run_sync)"
            )

    def fail_waiters(self, doomed: Callable[[T], bool], error: Callable[[T], BaseException]) -> int:
        """Make every waiter whose payload is ``doomed`` raise ``error(payload)``; return how many.

        Used when a reconfiguration lowers a capacity below queued costs (I6): they fail at
        once instead of blocking the queue forever.  O(n) in the queue length.
        """
        self.check_thread()
        failed = [w for w in self._waiters() if doomed(w.payload)]
        if failed:
            head = self._first
            for waiter in failed:
                waiter.error = error(waiter.payload)
                self._wake(waiter, True)
                self._leave(waiter, hand_off=False)
            if self._first is not None and self._first is not head:
                self._nudge(self._first)  # the head role passes once, to a waiter that fits
        return len(failed)

    def _waiters(self) -> list[_Waiter[T]]:
        found = []
        waiter = self._first
        while waiter is not None:
            found.append(waiter)
            waiter = waiter.next
        return found

    def wakeups_per_waiter(self) -> list[int]:
        """How often each queued waiter has been woken so far (tests of I7)."""
        return [w.wakeups for w in self._waiters()]
