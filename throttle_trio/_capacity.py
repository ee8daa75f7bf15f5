"""CapacityLimiter: at most N borrowers at once, on the same FIFO engine as the rate limiters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast, final

import anyio

from ._eventloop import current_backend
from ._waitqueue import WaitQueue

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["CapacityLimiter", "CapacityLimiterStatistics"]

_ALREADY_HOLDING = "this borrower is already holding one of this CapacityLimiter's tokens"


@dataclass(frozen=True, slots=True)
class CapacityLimiterStatistics:
    """A snapshot of a :class:`CapacityLimiter`, from :meth:`CapacityLimiter.statistics`.

    Attributes:
        borrowed_tokens: tokens held right now.
        total_tokens: the most tokens that can be held at once.
        borrowers: who holds them (tasks, or the objects passed to ``*_on_behalf_of``).
        tasks_waiting: tasks queued for a token.
        admitted: tokens handed out so far.
    """

    borrowed_tokens: int
    total_tokens: float
    borrowers: tuple[object, ...]
    tasks_waiting: int
    admitted: int


def _check_total_tokens(value: object) -> float:
    if isinstance(value, bool) or not (isinstance(value, int) or value == math.inf):
        raise TypeError(f"total_tokens must be an int or math.inf, got {value!r}")
    # The check above leaves an int or a value equal to math.inf, both used as a float;
    # pyright does not narrow on `value == math.inf` (mypy does).
    total = cast("float", value)
    if total < 0:
        raise ValueError(f"total_tokens must be >= 0, got {value!r}")
    return total


@final
class _Borrowing:
    """A waiting borrower's step (see WaitQueue): smaller than a closure, for every waiter."""

    __slots__ = ("borrower", "limiter")

    def __init__(self, limiter: CapacityLimiter, borrower: object) -> None:
        self.limiter = limiter
        self.borrower = borrower

    def __call__(self, now: float) -> float | None:
        return None if self.limiter._take(self.borrower) else math.inf


@final
class CapacityLimiter:
    """At most ``total_tokens`` borrowers hold a token at once ("at most N in flight").

    The semantics of anyio's and trio's ``CapacityLimiter``: each borrower (by default the
    current task) holds at most one token and must give it back with :meth:`release`.  Waiters
    are served first come, first served; raising :attr:`total_tokens` admits waiters at once;
    a waiter cancelled after being woken passes its turn on.  It shares its queue engine with
    :class:`~throttle_trio.RateLimiter`, so a token bucket caps the *rate* and this caps how
    many requests are *in flight*; the Throttle combines both atomically.

    Like anyio's (4.12 and later) and trio's, it accepts 0 tokens: every acquire then waits
    until :attr:`total_tokens` is raised.

    Args:
        total_tokens: the most tokens held at once (an int >= 0, or ``math.inf``).
    """

    __slots__ = ("_admitted", "_borrowers", "_queue", "_total_tokens")

    def __init__(self, total_tokens: float) -> None:
        self._total_tokens = _check_total_tokens(total_tokens)
        self._borrowers: set[object] = set()
        self._queue: WaitQueue[None] = WaitQueue()
        self._admitted = 0

    def __repr__(self) -> str:
        return (
            f"CapacityLimiter(borrowed={len(self._borrowers)}, total={self._total_tokens!r}, "
            f"waiting={self._queue.waiting})"
        )

    @property
    def total_tokens(self) -> float:
        """The most tokens held at once.  Settable; raising it admits waiters at once."""
        return self._total_tokens

    @total_tokens.setter
    def total_tokens(self, value: float) -> None:
        total = _check_total_tokens(value)
        self._queue.check_thread()
        self._total_tokens = total
        self._queue.poke()

    @property
    def borrowed_tokens(self) -> int:
        """Tokens held right now."""
        return len(self._borrowers)

    @property
    def available_tokens(self) -> float:
        """Tokens that could be borrowed now (0 while over-subscribed after a decrease)."""
        return max(0, self._total_tokens - len(self._borrowers))

    def _take(self, borrower: object) -> bool:
        if borrower in self._borrowers:
            raise RuntimeError(
                "this borrower is already holding one of this CapacityLimiter's tokens"
            )
        if len(self._borrowers) >= self._total_tokens:
            return False
        self._borrowers.add(borrower)
        self._admitted += 1
        return True

    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        """Take a token for ``borrower`` without waiting.

        Raises:
            anyio.WouldBlock: no token is free, or other tasks are waiting (no barging).
            RuntimeError: ``borrower`` already holds a token.
        """
        if self._queue.waiting and borrower not in self._borrowers:
            raise anyio.WouldBlock
        if not self._take(borrower):
            raise anyio.WouldBlock

    def acquire_nowait(self) -> None:
        """Take a token for the current task without waiting (see the ``on_behalf_of`` form)."""
        self.acquire_on_behalf_of_nowait(current_backend().current_task())

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        """Wait for a token and give it to ``borrower`` (any hashable object).

        A checkpoint on every call.  If cancelled, nothing was taken.

        Raises:
            RuntimeError: ``borrower`` already holds a token.
        """
        # The same body as acquire()'s: one coroutine less per call and per waiting task.
        backend = current_backend()
        borrowers = self._borrowers
        if borrower in borrowers:  # before queueing, or it would wait for itself
            raise RuntimeError(_ALREADY_HOLDING)
        # WaitQueue.acquire's checkpoint rule, with its fast path inlined (behind a waiter it
        # parks at once, and parking is the checkpoint).
        queue = self._queue
        if queue.waiting:
            await queue.wait_in_line(
                1, self._step(borrower), None, ready=self._token_free, loop=backend
            )
            return
        await backend.checkpoint_if_cancelled()
        if not queue.waiting and len(borrowers) < self._total_tokens:
            borrowers.add(borrower)
            self._admitted += 1
            try:
                await backend.cancel_shielded_checkpoint()
            except BaseException:  # not delivered (see _waitqueue): as if never taken
                self._undo(borrower)
                raise
            return
        await queue.wait_in_line(
            1, self._step(borrower), None, ready=self._token_free, loop=backend
        )

    async def acquire(self) -> None:
        """Wait for a token for the current task."""
        backend = current_backend()
        borrower = backend.current_task()
        borrowers = self._borrowers
        if borrower in borrowers:
            raise RuntimeError(_ALREADY_HOLDING)
        queue = self._queue
        if queue.waiting:  # it parks at once: the checkpoint
            await queue.wait_in_line(
                1, self._step(borrower), None, ready=self._token_free, loop=backend
            )
            return
        await backend.checkpoint_if_cancelled()
        if not queue.waiting and len(borrowers) < self._total_tokens:
            borrowers.add(borrower)
            self._admitted += 1
            try:
                await backend.cancel_shielded_checkpoint()
            except BaseException:
                self._undo(borrower)
                raise
            return
        await queue.wait_in_line(
            1, self._step(borrower), None, ready=self._token_free, loop=backend
        )

    def _step(self, borrower: object) -> Callable[[float], float | None]:
        """The queue's step for ``borrower``: take a token if one is free."""
        return _Borrowing(self, borrower)

    def _token_free(self, cost: float, now: float) -> float:
        """The queue's ``ready`` query: now if a token is free, else when one is released."""
        return now if len(self._borrowers) < self._total_tokens else math.inf

    def _undo(self, borrower: object) -> None:
        """Take back a token whose acquire could not return (see _waitqueue)."""
        self._borrowers.discard(borrower)
        self._admitted -= 1
        self._queue.poke()

    def release_on_behalf_of(self, borrower: object) -> None:
        """Give back ``borrower``'s token and wake the first waiter.

        Raises:
            RuntimeError: ``borrower`` holds no token.
        """
        self._queue.check_thread()
        try:
            self._borrowers.remove(borrower)
        except KeyError:
            raise RuntimeError(
                "this borrower isn't holding any of this CapacityLimiter's tokens"
            ) from None
        self._queue.poke()

    def release(self) -> None:
        """Give back the current task's token."""
        self.release_on_behalf_of(current_backend().current_task())

    def statistics(self) -> CapacityLimiterStatistics:
        """Return a snapshot of this limiter (see :class:`CapacityLimiterStatistics`)."""
        return CapacityLimiterStatistics(
            borrowed_tokens=len(self._borrowers),
            total_tokens=self._total_tokens,
            borrowers=tuple(self._borrowers),
            tasks_waiting=self._queue.waiting,
            admitted=self._admitted,
        )

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
