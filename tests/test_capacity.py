"""CapacityLimiter on both backends, on virtual time.

It follows anyio's ``CapacityLimiter`` semantics (one token per borrower, a task by default,
``*_on_behalf_of`` for any hashable object, the same ``RuntimeError`` messages), on the FIFO
engine the rate limiters share: no barging, raising ``total_tokens`` admits waiters at once,
cancellation never leaks a token (I4) and every acquire is a checkpoint (I5).

Waiters are queued one at a time with ``settle()`` in between, so their places in line are
their start order on both backends (trio runs a batch of runnable tasks in random order).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import anyio
import pytest
from anyio.lowlevel import checkpoint
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.helpers import BACKENDS, run_virtual, settle
from throttle_trio import CapacityLimiter, CapacityLimiterStatistics

pytestmark = pytest.mark.anyio

ALREADY_HOLDING = (
    "^" + re.escape("this borrower is already holding one of this CapacityLimiter's tokens") + "$"
)
NOT_HOLDING = (
    "^" + re.escape("this borrower isn't holding any of this CapacityLimiter's tokens") + "$"
)


def now() -> float:
    return anyio.current_time()


class Borrower:
    """An arbitrary borrower object (hashable by identity), like a Throttle's reservation."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Borrower({self.name!r})"


# --------------------------------------------------------------------------- basics


async def test_acquire_and_release_count_tokens() -> None:
    """Borrowed and available tokens follow acquire and release."""
    limiter = CapacityLimiter(2)
    assert limiter.total_tokens == 2
    assert limiter.borrowed_tokens == 0
    assert limiter.available_tokens == 2

    await limiter.acquire()
    assert limiter.borrowed_tokens == 1
    assert limiter.available_tokens == 1

    await limiter.acquire_on_behalf_of("other")
    assert limiter.borrowed_tokens == 2
    assert limiter.available_tokens == 0

    limiter.release()
    assert limiter.borrowed_tokens == 1
    limiter.release_on_behalf_of("other")
    assert limiter.borrowed_tokens == 0
    assert limiter.available_tokens == 2


async def test_statistics_fields() -> None:
    """statistics() is a frozen snapshot: borrowed, total, who borrows, who waits, admitted."""
    limiter = CapacityLimiter(1)
    stats = limiter.statistics()
    assert stats == CapacityLimiterStatistics(
        borrowed_tokens=0, total_tokens=1, borrowers=(), tasks_waiting=0, admitted=0
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.borrowed_tokens = 5  # type: ignore[misc]

    await limiter.acquire()
    me = anyio.get_current_task()

    async def waiter() -> None:
        async with limiter:
            pass

    with anyio.fail_after(3600):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await settle()
            stats = limiter.statistics()
            assert stats.borrowed_tokens == 1
            assert stats.total_tokens == 1
            assert stats.borrowers == (me,)
            assert stats.tasks_waiting == 1
            assert stats.admitted == 1
            limiter.release()

    stats = limiter.statistics()
    assert stats == CapacityLimiterStatistics(
        borrowed_tokens=0, total_tokens=1, borrowers=(), tasks_waiting=0, admitted=2
    )


async def test_async_with_holds_a_token_for_the_block() -> None:
    """`async with limiter:` holds the current task's token inside and releases it after,
    also when the block raises."""
    limiter = CapacityLimiter(3)
    async with limiter:
        assert limiter.borrowed_tokens == 1
        assert limiter.statistics().borrowers == (anyio.get_current_task(),)
    assert limiter.borrowed_tokens == 0

    with pytest.raises(KeyError):
        async with limiter:
            raise KeyError("boom")
    assert limiter.borrowed_tokens == 0
    assert limiter.statistics().admitted == 2


async def test_repr_shows_the_counts() -> None:
    limiter = CapacityLimiter(4)
    await limiter.acquire()
    assert repr(limiter) == "CapacityLimiter(borrowed=1, total=4, waiting=0)"
    limiter.release()


# --------------------------------------------------------------------------- borrowers


async def test_a_slot_owned_by_an_object_is_released_from_another_task() -> None:
    """A token taken on behalf of an object belongs to the object, not to the task."""
    limiter = CapacityLimiter(1)
    owner = Borrower("reservation")
    await limiter.acquire_on_behalf_of(owner)
    assert limiter.statistics().borrowers == (owner,)

    # The task that took it does not hold it itself.
    with pytest.raises(RuntimeError, match=NOT_HOLDING):
        limiter.release()

    released_at: list[float] = []

    async def release_elsewhere() -> None:
        await anyio.sleep(1)
        limiter.release_on_behalf_of(owner)
        released_at.append(now())

    with anyio.fail_after(3600):
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_elsewhere)
            await limiter.acquire()  # waits for the other task's release
            assert released_at == [1]
            assert now() == 1
            assert limiter.statistics().borrowers == (anyio.get_current_task(),)
            limiter.release()
    assert limiter.borrowed_tokens == 0


async def test_any_hashable_object_can_borrow() -> None:
    """Strings, tuples, ints and plain objects are distinct borrowers."""
    limiter = CapacityLimiter(math.inf)
    borrowers: list[object] = ["a", ("a", 1), 1, Borrower("x"), Borrower("x")]
    for borrower in borrowers:
        await limiter.acquire_on_behalf_of(borrower)
    assert limiter.borrowed_tokens == len(borrowers)
    assert set(limiter.statistics().borrowers) == {"a", ("a", 1), 1, *borrowers[3:]}
    for borrower in borrowers:
        limiter.release_on_behalf_of(borrower)
    assert limiter.borrowed_tokens == 0


async def test_a_task_token_cannot_be_released_by_another_task() -> None:
    """The default borrower is the current task: another task releasing it is an error."""
    limiter = CapacityLimiter(1)
    await limiter.acquire()
    errors: list[RuntimeError] = []

    async def intruder() -> None:
        try:
            limiter.release()
        except RuntimeError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(intruder)
    assert len(errors) == 1
    assert re.match(NOT_HOLDING, str(errors[0]))
    assert limiter.borrowed_tokens == 1
    limiter.release()


async def test_double_acquire_raises() -> None:
    """A borrower holds at most one token: a second acquire raises, and takes nothing."""
    limiter = CapacityLimiter(5)
    await limiter.acquire()
    with pytest.raises(RuntimeError, match=ALREADY_HOLDING):
        await limiter.acquire()
    with pytest.raises(RuntimeError, match=ALREADY_HOLDING):
        limiter.acquire_nowait()

    owner = Borrower("o")
    await limiter.acquire_on_behalf_of(owner)
    with pytest.raises(RuntimeError, match=ALREADY_HOLDING):
        await limiter.acquire_on_behalf_of(owner)
    with pytest.raises(RuntimeError, match=ALREADY_HOLDING):
        limiter.acquire_on_behalf_of_nowait(owner)
    assert limiter.borrowed_tokens == 2
    assert limiter.statistics().tasks_waiting == 0


async def test_double_acquire_raises_at_once_while_others_wait() -> None:
    """Like anyio: a borrower that already holds a token gets RuntimeError, even when queued
    tasks exist (the check must come before queueing, or it waits for itself)."""
    limiter = CapacityLimiter(1)
    await limiter.acquire_on_behalf_of("a")
    outcome: Exception | None = None
    with anyio.fail_after(3600):
        async with anyio.create_task_group() as tg:
            tg.start_soon(limiter.acquire_on_behalf_of, "b")
            await settle()
            assert limiter.statistics().tasks_waiting == 1
            try:
                with anyio.fail_after(60):
                    await limiter.acquire_on_behalf_of("a")
            except (RuntimeError, TimeoutError) as exc:
                outcome = exc
            limiter.release_on_behalf_of("a")  # lets "b" in
    limiter.release_on_behalf_of("b")
    if isinstance(outcome, TimeoutError):
        raise outcome  # the second acquire waited (for its own release) instead of raising
    assert isinstance(outcome, RuntimeError)
    assert re.match(ALREADY_HOLDING, str(outcome))


async def test_release_without_holding_raises() -> None:
    limiter = CapacityLimiter(1)
    with pytest.raises(RuntimeError, match=NOT_HOLDING):
        limiter.release()
    with pytest.raises(RuntimeError, match=NOT_HOLDING):
        limiter.release_on_behalf_of(Borrower("nobody"))
    await limiter.acquire()
    limiter.release()
    with pytest.raises(RuntimeError, match=NOT_HOLDING):
        limiter.release()  # twice
    assert limiter.borrowed_tokens == 0


# --------------------------------------------------------------------------- nowait


async def test_acquire_nowait_takes_a_free_token_or_would_block() -> None:
    limiter = CapacityLimiter(1)
    limiter.acquire_nowait()
    assert limiter.borrowed_tokens == 1
    with pytest.raises(anyio.WouldBlock):
        limiter.acquire_on_behalf_of_nowait("other")
    assert limiter.borrowed_tokens == 1
    limiter.release()
    limiter.acquire_on_behalf_of_nowait("other")
    assert limiter.statistics().borrowers == ("other",)
    limiter.release_on_behalf_of("other")


async def test_no_barging_while_a_task_waits() -> None:
    """I3: once a waiter is queued, a free token is its: acquire_nowait and a newcomer's
    acquire do not take it, even in the instant between the release and the waiter running."""
    limiter = CapacityLimiter(1)
    order: list[str] = []

    async def job(name: str) -> None:
        async with limiter:
            order.append(name)
            await anyio.sleep(1)

    await limiter.acquire()
    with anyio.fail_after(3600):
        async with anyio.create_task_group() as tg:
            tg.start_soon(job, "waiter")
            await settle()
            limiter.release()
            # The token is free, but the woken waiter has not run yet: it is still its.
            assert limiter.borrowed_tokens == 0
            assert limiter.statistics().tasks_waiting == 1
            with pytest.raises(anyio.WouldBlock):
                limiter.acquire_nowait()
            with pytest.raises(anyio.WouldBlock):
                limiter.acquire_on_behalf_of_nowait("newcomer")
            tg.start_soon(job, "newcomer")
            await settle()
    assert order == ["waiter", "newcomer"]
    assert now() == 2


async def test_a_newcomer_never_overtakes_a_woken_waiter() -> None:
    """I3: a newcomer whose acquire runs after the release but before the woken head has run
    still queues behind it.

    Two orders, alternately: the newcomer's task starts in the step of the release (its first
    step is scheduled before the head's wake-up), or it starts one checkpoint earlier (it is
    then inside acquire when the release comes).  asyncio runs tasks in the order they were
    scheduled, so the newcomer goes first; trio runs a batch in random order, so 20 rounds
    make a miss (on a barging implementation) a one-in-a-million event.
    """
    limiter = CapacityLimiter(1)
    order: list[str] = []

    async def job(name: str) -> None:
        async with limiter:
            order.append(name)

    with anyio.fail_after(3600):
        for round_ in range(20):
            order.clear()
            await limiter.acquire()
            async with anyio.create_task_group() as tg:
                tg.start_soon(job, "head")
                await settle()
                tg.start_soon(job, "newcomer")
                if round_ % 2:
                    await checkpoint()  # the newcomer is now inside acquire()
                limiter.release()  # wakes the head, which has not run yet
            assert order == ["head", "newcomer"]


# --------------------------------------------------------------------------- FIFO


async def test_waiters_are_served_in_arrival_order() -> None:
    limiter = CapacityLimiter(1)
    log: list[tuple[int, float]] = []

    async def job(i: int) -> None:
        async with limiter:
            log.append((i, now()))
            await anyio.sleep(1)

    with anyio.fail_after(3600):
        await limiter.acquire()
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(job, i)
                await settle()
            assert limiter.statistics().tasks_waiting == 6
            await anyio.sleep(1)
            limiter.release()
    assert log == [(i, 1 + i) for i in range(6)]


async def test_two_tokens_serve_waiters_in_order() -> None:
    limiter = CapacityLimiter(2)
    log: list[tuple[int, float]] = []

    async def job(i: int, hold: float) -> None:
        async with limiter:
            log.append((i, now()))
            await anyio.sleep(hold)

    with anyio.fail_after(3600):
        async with anyio.create_task_group() as tg:
            for i, hold in enumerate([3, 1, 1, 1, 1]):
                tg.start_soon(job, i, hold)
                await settle()
    assert log == [(0, 0), (1, 0), (2, 1), (3, 2), (4, 3)]


# --------------------------------------------------------------------------- total_tokens


async def test_raising_total_tokens_admits_waiters_at_once() -> None:
    limiter = CapacityLimiter(1)
    admitted: list[tuple[str, float]] = []
    release = anyio.Event()

    async def job(name: str) -> None:
        async with limiter:
            admitted.append((name, now()))
            await release.wait()

    with anyio.fail_after(3600):
        await limiter.acquire()
        async with anyio.create_task_group() as tg:
            for name in "ABC":
                tg.start_soon(job, name)
                await settle()
            await anyio.sleep(5)
            limiter.total_tokens = 3
            await settle()
            assert admitted == [("A", 5), ("B", 5)]
            assert limiter.borrowed_tokens == 3
            assert limiter.statistics().tasks_waiting == 1

            limiter.total_tokens = math.inf
            await settle()
            assert admitted == [("A", 5), ("B", 5), ("C", 5)]
            assert limiter.available_tokens == math.inf
            release.set()
        limiter.release()
    assert limiter.borrowed_tokens == 0


async def test_lowering_total_tokens_makes_the_excess_wait() -> None:
    """After a decrease, over-subscription is drained before anyone else gets in."""
    limiter = CapacityLimiter(3)
    holders = [Borrower(str(i)) for i in range(3)]
    for holder in holders:
        await limiter.acquire_on_behalf_of(holder)
    limiter.total_tokens = 1
    assert limiter.total_tokens == 1
    assert limiter.borrowed_tokens == 3
    assert limiter.available_tokens == 0
    with pytest.raises(anyio.WouldBlock):
        limiter.acquire_nowait()

    admitted: list[float] = []

    async def waiter() -> None:
        async with limiter:
            admitted.append(now())

    with anyio.fail_after(3600):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            for second, holder in enumerate(holders, start=1):
                await anyio.sleep(1)
                limiter.release_on_behalf_of(holder)
                await settle()
                if second < 3:
                    assert admitted == []  # still borrowed >= total
                    assert limiter.statistics().tasks_waiting == 1
    assert admitted == [3]
    assert limiter.borrowed_tokens == 0


async def test_math_inf_never_waits() -> None:
    limiter = CapacityLimiter(math.inf)
    owners = [Borrower(str(i)) for i in range(1000)]
    for owner in owners:
        limiter.acquire_on_behalf_of_nowait(owner)
    await limiter.acquire()
    assert limiter.borrowed_tokens == 1001
    assert limiter.available_tokens == math.inf
    assert limiter.statistics().total_tokens == math.inf
    assert now() == 0


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (2.0, TypeError, "total_tokens must be an int or math.inf, got 2.0"),
        (1.5, TypeError, "total_tokens must be an int or math.inf, got 1.5"),
        (math.nan, TypeError, "total_tokens must be an int or math.inf, got nan"),
        (-math.inf, TypeError, "total_tokens must be an int or math.inf, got -inf"),
        ("3", TypeError, "total_tokens must be an int or math.inf, got '3'"),
        (None, TypeError, "total_tokens must be an int or math.inf, got None"),
        (True, TypeError, "total_tokens must be an int or math.inf, got True"),
        (-1, ValueError, "total_tokens must be >= 0, got -1"),
    ],
)
def test_total_tokens_validation(value: Any, error: type[Exception], message: str) -> None:
    """The constructor and the setter check total_tokens the same way (no loop needed)."""
    pattern = f"^{re.escape(message)}$"
    with pytest.raises(error, match=pattern):
        CapacityLimiter(value)
    limiter = CapacityLimiter(4)
    with pytest.raises(error, match=pattern):
        limiter.total_tokens = value
    assert limiter.total_tokens == 4  # unchanged


# --------------------------------------------------------------------------- cancellation


async def test_a_waiter_cancelled_while_queued_takes_nothing() -> None:
    limiter = CapacityLimiter(1)
    order: list[str] = []
    scopes: dict[str, anyio.CancelScope] = {}

    async def job(name: str) -> None:
        with anyio.CancelScope() as scope:
            scopes[name] = scope
            async with limiter:
                order.append(name)
                await anyio.sleep(1)

    with anyio.fail_after(3600):
        await limiter.acquire()
        async with anyio.create_task_group() as tg:
            for name in "ABC":
                tg.start_soon(job, name)
                await settle()
            scopes["B"].cancel()  # parked behind the head
            await settle()
            assert limiter.statistics().tasks_waiting == 2
            scopes["A"].cancel()  # the head, not woken
            await settle()
            assert limiter.statistics().tasks_waiting == 1
            assert limiter.borrowed_tokens == 1
            limiter.release()
    assert order == ["C"]
    assert scopes["A"].cancelled_caught
    assert scopes["B"].cancelled_caught
    assert limiter.borrowed_tokens == 0
    assert limiter.statistics().admitted == 2


async def test_a_waiter_that_times_out_takes_nothing() -> None:
    limiter = CapacityLimiter(1)
    await limiter.acquire()
    with anyio.move_on_after(5) as scope:
        await limiter.acquire_on_behalf_of("late")
    assert scope.cancelled_caught
    assert now() == 5
    assert limiter.statistics().borrowers == (anyio.get_current_task(),)
    assert limiter.statistics().tasks_waiting == 0
    limiter.release()
    limiter.acquire_on_behalf_of_nowait("next")  # the queue is really empty
    limiter.release_on_behalf_of("next")


async def test_woken_head_cancelled_before_it_runs_passes_the_turn_on() -> None:
    """I4: A is cancelled and then woken by the release, in one step, before it runs.  A
    takes nothing; the head role goes on to B, which gets the token at once."""
    limiter = CapacityLimiter(1)
    log: list[tuple[str, float]] = []
    scopes: dict[str, anyio.CancelScope] = {}
    peak = 0

    async def job(name: str) -> None:
        nonlocal peak
        with anyio.CancelScope() as scope:
            scopes[name] = scope
            async with limiter:
                peak = max(peak, limiter.borrowed_tokens)
                log.append((name, now()))
                await anyio.sleep(1)

    with anyio.fail_after(3600):
        await limiter.acquire()
        async with anyio.create_task_group() as tg:
            tg.start_soon(job, "A")
            await settle()
            tg.start_soon(job, "B")
            await settle()
            # One synchronous step: A is cancelled, then the release makes A's turn come.
            scopes["A"].cancel()
            limiter.release()
            assert limiter.borrowed_tokens == 0
    assert log == [("B", 0)]
    assert scopes["A"].cancelled_caught
    assert not scopes["B"].cancelled_caught
    assert peak == 1
    assert limiter.borrowed_tokens == 0
    assert limiter.statistics().admitted == 2  # this task, then B


async def test_head_role_skips_several_cancelled_waiters() -> None:
    """The head and the next waiter are cancelled in the step of the release: the token goes
    to the first live waiter, at once."""
    limiter = CapacityLimiter(1)
    log: list[tuple[str, float]] = []
    scopes: dict[str, anyio.CancelScope] = {}

    async def job(name: str) -> None:
        with anyio.CancelScope() as scope:
            scopes[name] = scope
            async with limiter:
                log.append((name, now()))
                await anyio.sleep(1)

    with anyio.fail_after(3600):
        await limiter.acquire()
        async with anyio.create_task_group() as tg:
            for name in "ABCD":
                tg.start_soon(job, name)
                await settle()
            await anyio.sleep(2)
            scopes["A"].cancel()
            scopes["B"].cancel()
            limiter.release()
    assert log == [("C", 2), ("D", 3)]
    assert limiter.borrowed_tokens == 0


async def test_woken_then_cancelled_never_oversubscribes() -> None:
    """The release wakes A, then A is cancelled, in one step.  Whether A's acquire completes
    first (its cancellation then arrives at its next checkpoint) or is cancelled, B gets the
    token at the same instant, and at most one token is ever borrowed."""
    limiter = CapacityLimiter(1)
    log: list[tuple[str, float]] = []
    scopes: dict[str, anyio.CancelScope] = {}
    peak = 0

    async def job(name: str) -> None:
        nonlocal peak
        with anyio.CancelScope() as scope:
            scopes[name] = scope
            async with limiter:
                peak = max(peak, limiter.borrowed_tokens)
                log.append((name, now()))
                await anyio.sleep(1)

    with anyio.fail_after(3600):
        await limiter.acquire()
        async with anyio.create_task_group() as tg:
            tg.start_soon(job, "A")
            await settle()
            tg.start_soon(job, "B")
            await settle()
            limiter.release()
            scopes["A"].cancel()
    assert log in ([("B", 0)], [("A", 0), ("B", 0)])
    assert scopes["A"].cancelled_caught
    assert peak == 1
    assert limiter.borrowed_tokens == 0
    assert limiter.statistics().tasks_waiting == 0


# --------------------------------------------------------------------------- checkpoints


async def test_acquire_in_a_cancelled_scope_takes_nothing() -> None:
    """I5: the fast path is a cancellation point too."""
    limiter = CapacityLimiter(2)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire()
        pytest.fail("acquire() in a cancelled scope returned")
    assert scope.cancelled_caught

    with anyio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire_on_behalf_of("owner")
        pytest.fail("acquire_on_behalf_of() in a cancelled scope returned")
    assert scope.cancelled_caught

    with anyio.CancelScope() as scope:
        scope.cancel()
        async with limiter:
            pytest.fail("`async with` in a cancelled scope entered")
    assert scope.cancelled_caught

    assert limiter.borrowed_tokens == 0
    assert limiter.statistics().admitted == 0


async def test_uncontended_acquire_lets_other_tasks_run() -> None:
    """I5: the fast path is a schedule point."""
    limiter = CapacityLimiter(2)
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        # trio may run `other` after us within the first batch: two acquires guarantee it ran.
        await limiter.acquire()
        await limiter.acquire_on_behalf_of("owner")
        assert ran
    limiter.release()
    limiter.release_on_behalf_of("owner")


# --------------------------------------------------------------------------- properties

# An operation: ("job", hold_ms, cancel_after_ms | None), ("sleep", ms, None) or
# ("total", new_total_tokens, None).
Op = tuple[str, int, int | None]

OP_STRATEGIES: dict[str, st.SearchStrategy[Op]] = {
    "job": st.tuples(st.just("job"), st.integers(1, 100), st.none() | st.integers(0, 150)),
    "sleep": st.tuples(st.just("sleep"), st.integers(0, 30), st.none()),
    "total": st.tuples(st.just("total"), st.integers(1, 4), st.none()),
}
ops_strategy = st.lists(
    # Mostly jobs, so that they outnumber the tokens and queue in most examples.
    st.sampled_from(["job"] * 4 + ["sleep"] * 2 + ["total"]).flatmap(OP_STRATEGIES.__getitem__),
    min_size=5,  # Hypothesis then averages ~10 operations per example
    max_size=40,
)


async def quiesce() -> None:
    """Let every hand-off chain at this instant finish (each link takes a few checkpoints)."""
    for _ in range(5):
        await settle()


async def run_ops(total: int, ops: list[Op]) -> None:
    limiter = CapacityLimiter(total)
    events: list[tuple[str, int]] = []  # ("admitted" | "left" | "released", job)
    holding = 0
    jobs = 0
    seen: set[str] = set()  # what this example exercised (Hypothesis statistics)

    def check_admission() -> None:
        assert limiter.borrowed_tokens == holding
        assert limiter.borrowed_tokens <= limiter.total_tokens

    async def job(i: int, hold_ms: int, cancel_ms: int | None) -> None:
        nonlocal holding
        started = now()
        with anyio.CancelScope() as scope:
            if cancel_ms is not None:
                scope.deadline = started + cancel_ms / 1000
            try:
                await limiter.acquire()
            except anyio.get_cancelled_exc_class():
                events.append(("left", i))
                if now() > started:
                    seen.add("a waiter was cancelled in the queue")
                raise
            holding += 1
            events.append(("admitted", i))
            check_admission()
            if now() > started:
                seen.add("a job waited")
            try:
                await anyio.sleep(hold_ms / 1000)
            finally:
                limiter.release()
                holding -= 1
                events.append(("released", i))
        if scope.cancelled_caught and ("admitted", i) in events:
            seen.add("a holder was cancelled")

    with anyio.fail_after(2 * 3600):
        async with anyio.create_task_group() as tg:
            for kind, value, cancel_ms in ops:
                if kind == "job":
                    tg.start_soon(job, jobs, value, cancel_ms)
                    jobs += 1
                elif kind == "sleep":
                    await anyio.sleep(value / 1000)
                else:
                    if value < limiter.borrowed_tokens:
                        seen.add("total_tokens lowered below the borrowed tokens")
                    limiter.total_tokens = value
                await quiesce()
                stats = limiter.statistics()
                assert stats.borrowed_tokens == holding
                # No lost wake-up: nobody waits while a token is free.
                assert stats.tasks_waiting == 0 or stats.borrowed_tokens >= stats.total_tokens

    # FIFO: when job i is admitted, every earlier job was admitted or had left the line.
    done: set[int] = set()
    admitted: list[int] = []
    for kind, i in events:
        if kind == "admitted":
            assert all(j in done for j in range(i)), f"job {i} overtook a waiter: {events}"
            admitted.append(i)
        if kind in ("admitted", "left"):
            assert i not in done
            done.add(i)
    assert admitted == sorted(admitted)
    assert done == set(range(jobs))  # every job was admitted or left, exactly once
    stats = limiter.statistics()
    assert stats.borrowed_tokens == 0
    assert stats.borrowers == ()
    assert stats.tasks_waiting == 0
    assert stats.admitted == len(admitted)
    for what in sorted(seen):
        event(what)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(deadline=None)
@given(total=st.integers(1, 3), ops=ops_strategy)
def test_random_operations_keep_the_invariants(backend: str, total: int, ops: list[Op]) -> None:
    """Generated jobs (some cancelled while waiting or holding), sleeps and total_tokens
    changes, on a fresh virtual clock per example: never more than total_tokens borrowed at
    an admission, FIFO among the waiters that stayed, no lost wake-ups, nothing left over."""

    async def main() -> None:
        await run_ops(total, ops)

    run_virtual(main, backend)
