"""The local line of a :class:`~throttle_trio.redis.RedisThrottle`: who books next, in which order.

Theory of operation
-------------------
A process's requests for one Redis throttle wait here, first come, first served by *ticket*
(the place in line; a retry passes its first ticket and goes back to its place).  The line
itself decides nothing: the throttle asks whether its front may take the *booking role*, and
the request that takes it (the head) pulls the next live waiters off the front, in ticket
order, to book them in the same round trip.  A waiter pulled off the line is no longer
counted here: the throttle counts it until its booked instant.

Cancelled waiters that are not at the front are only marked (O(1)); they are discarded when
they reach the front, so the front is always live.  Only the front waiter is ever woken to
ask whether it may book (I7): by the throttle, when the booking role or a concurrency slot
frees up.  Nothing here polls or sleeps on a timer.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .._eventloop import Backend
    from ._protocol import Booked

__all__ = ["BOOKED", "GONE", "LEADING", "PICKED", "QUEUED", "Line", "Waiter"]

# A waiter's state.
QUEUED = 0  # in the line
LEADING = 1  # took the booking role: it books for itself and the waiters it picks
PICKED = 2  # pulled off the line by a head; its booking is on its way
BOOKED = 3  # the head's round trip ended: its outcome (a booking, an error) is set
GONE = 4  # left the line while queued (cancelled, timed out)


@final
class Waiter:
    """One request of this process, from its arrival to its booking's outcome."""

    __slots__ = (
        "admit_at",
        "booking",
        "costs",
        "deadline",
        "done",
        "error",
        "fallback",
        "handle",
        "known",
        "loop",
        "recost",
        "state",
        "ticket",
        "timeout",
        "timer",
        "turn_wait",
        "used",
    )

    def __init__(
        self,
        loop: Backend,
        costs: dict[str, float],
        ticket: int,
        deadline: float,
        timeout: float | None,
        recost: Callable[[], Mapping[str, float]] | None = None,
    ) -> None:
        self.loop = loop  # the backend it parks with
        self.costs = costs
        self.recost = recost  # computes the costs again when a head books it
        self.ticket = ticket
        self.deadline = deadline  # anyio clock; math.inf: none
        self.timeout = timeout  # as given, for the message of a timeout
        self.state = QUEUED
        # While it waits (the line, its booking, its turn): parked with the loop's own
        # primitives, woken by :meth:`wake`; it looks at its state again whenever it wakes.
        self.handle: Any = None  # the backend's wake-up handle while parked
        self.timer: Any = None  # the backend's timer while parked with a deadline (asyncio)
        # The outcome, set by the head that booked it:
        self.error: BaseException | None = None  # raised in the waiter's own task
        self.fallback = False  # admit through the local fallback
        self.admit_at = math.nan  # the booked instant on the anyio clock
        self.booking: Booked | None = None  # what the script booked for it
        self.used: list[Any] = []  # the limits the round trip passed, in order
        # Every limit of the throttle when it was booked: those its admission marks (a limit
        # learned while it slept was not charged, and gives nothing back when it settles).
        self.known: list[Any] = []
        # Admitted (or gone); waiting for the ones before it in its batch to go.
        self.done = False
        self.turn_wait = False

    def wake(self) -> None:
        """Wake it if it is parked (not yet woken); it then looks at its state again."""
        if self.handle is not None:
            self.loop.unpark(self, True)

    def abort(self, raise_cancel: object) -> Any:
        """Cancelled while parked on trio: nobody may reschedule it any more."""
        self.handle = None
        return self.loop.aborted


@final
class Line:
    """Waiters in ticket order; the front is always live."""

    __slots__ = ("_next_ticket", "_waiters", "waiting")

    def __init__(self) -> None:
        self._next_ticket = 0
        self._waiters: deque[Waiter] = deque()
        self.waiting = 0  # live waiters in the line

    def take_ticket(self) -> int:
        """A new place at the end of the line."""
        ticket = self._next_ticket
        self._next_ticket += 1
        return ticket

    def is_first(self, ticket: int) -> bool:
        """Whether a request with ``ticket`` would be the front (nobody live before it)."""
        front = self.front()
        return front is None or front.ticket > ticket

    def add(self, waiter: Waiter) -> None:
        """Queue ``waiter`` at its ticket's place (the end, unless it is a retry)."""
        waiters = self._waiters
        if not waiters or waiters[-1].ticket < waiter.ticket:
            waiters.append(waiter)
        else:  # a retry: back to its place in line (rare, O(n))
            waiters.insert(bisect.bisect_left(waiters, waiter.ticket, key=_ticket), waiter)
        self.waiting += 1

    def front(self) -> Waiter | None:
        """The first live waiter, or ``None``."""
        waiters = self._waiters
        while waiters and waiters[0].state != QUEUED:
            waiters.popleft()
        return waiters[0] if waiters else None

    def pop_front(self) -> Waiter | None:
        """Take the first live waiter out of the line (it leads, or is picked), or ``None``."""
        waiter = self.front()
        if waiter is not None:
            self._waiters.popleft()
            self.waiting -= 1
        return waiter

    def discard(self, waiter: Waiter) -> None:
        """``waiter`` left while queued (cancelled, timed out): wake the new front if it was it."""
        was_front = self.front() is waiter
        waiter.state = GONE  # dropped when it reaches the front
        self.waiting -= 1
        if was_front:
            self.wake_front()

    def wake_front(self) -> None:
        """Wake the front waiter so that it asks whether it may book now."""
        waiter = self.front()
        if waiter is not None:
            waiter.wake()


def _ticket(waiter: Waiter) -> int:
    return waiter.ticket
