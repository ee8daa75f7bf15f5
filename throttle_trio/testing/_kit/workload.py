"""Workloads: traffic as data (arrivals, cancellations, timeouts, reconfigurations), and a player.

A workload is a sequence of :class:`Arrival` and :class:`Reconfiguration` steps, each at a time
relative to the start.  :func:`play` runs one against a limiter on the current event loop (on
a virtual clock, in milliseconds) and returns what happened to each arrival with the admission
log.  :mod:`throttle_trio.testing.strategies` generates workloads; the stateful template builds
them step by step.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, final

import anyio
import anyio.lowlevel

from ..oracle import Limit, LogEntry

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["Arrival", "Outcome", "Played", "Reconfiguration", "Step", "play", "segments"]

Outcome: TypeAlias = Literal["admitted", "cancelled", "timed out", "refused"]
"""What became of an arrival: admitted, cancelled while waiting, timed out (``timeout=``), or
refused at once or while queued (its cost above the capacity: ``CostExceedsCapacity``)."""


def _check_time(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'>' if positive else '>='} 0, got {value!r}")
    return float(value)


@final
@dataclass(frozen=True, slots=True)
class Arrival:
    """A request that arrives ``at`` seconds after the start and acquires ``cost``.

    Attributes:
        at: when it arrives, in seconds from the start (>= 0).
        cost: what it acquires (> 0).
        timeout: passed to ``acquire(timeout=...)`` (``None``: none).
        cancel_after: it is cancelled this many seconds after arriving, if still waiting
            (``None``: never).
    """

    at: float
    cost: float = 1
    timeout: float | None = None
    cancel_after: float | None = None

    def __post_init__(self) -> None:
        _check_time("at", self.at)
        _check_time("cost", self.cost, positive=True)
        if self.timeout is not None:
            _check_time("timeout", self.timeout)
        if self.cancel_after is not None:
            _check_time("cancel_after", self.cancel_after)

    def __repr__(self) -> str:  # only what differs from the defaults: readable counterexamples
        return _short_repr(self)


@final
@dataclass(frozen=True, slots=True)
class Reconfiguration:
    """``limiter.reconfigure(**changes)`` ``at`` seconds after the start.

    Attributes:
        at: when, in seconds from the start (>= 0).
        changes: the new parameters (``{"rate": 4}``, ``{"limit": 10, "window": 2}``).
    """

    at: float
    changes: Mapping[str, float]

    def __post_init__(self) -> None:
        _check_time("at", self.at)
        object.__setattr__(self, "changes", MappingProxyType(dict(self.changes)))

    def __repr__(self) -> str:
        return f"Reconfiguration(at={self.at!r}, changes={dict(self.changes)!r})"


Step: TypeAlias = Arrival | Reconfiguration
"""One step of a workload."""


def _short_repr(step: Arrival) -> str:
    fields = [f"at={step.at!r}"]
    for field in dataclasses.fields(step)[1:]:
        value = getattr(step, field.name)
        if value != field.default:
            fields.append(f"{field.name}={value!r}")
    return f"Arrival({', '.join(fields)})"


@final
@dataclass(frozen=True, slots=True)
class Played:
    """What :func:`play` saw.

    Attributes:
        start: the clock's reading when the workload started; step times are relative to it.
        outcomes: what became of each :class:`Arrival`, in the workload's order.
        admitted_at: when each arrival was admitted (``None`` if it was not), same order.
        log: the admissions, for :func:`~throttle_trio.testing.oracle.check` (times are the
            clock's; each entry's ``label`` is ``"#<index of the arrival>"``).
    """

    start: float
    outcomes: tuple[Outcome, ...]
    admitted_at: tuple[float | None, ...]
    log: tuple[LogEntry, ...]

    def count(self, outcome: Outcome) -> int:
        """How many arrivals had this outcome."""
        return self.outcomes.count(outcome)


async def play(
    workload: Sequence[Step],
    limiter: Any,
    *,
    clock: Callable[[], float] = anyio.current_time,
) -> Played:
    """Run a workload against a limiter on the current event loop; return what happened.

    Steps run in the order of their times (steps at the same time in the workload's order);
    each arrival starts its own task and is queued in the limiter before the next step runs,
    so arrival order is the workload's order on both backends.  Returns when every arrival has
    been admitted, cancelled, timed out or refused.

    Args:
        workload: the steps.
        limiter: anything with ``async acquire(cost, timeout=...)`` (and ``reconfigure(**changes)``
            if the workload reconfigures).
        clock: the clock of the log (``anyio.current_time``).

    Returns:
        A :class:`Played`.

    Raises:
        TypeError: the workload reconfigures, and ``limiter`` has no ``reconfigure()`` (said
            before any step runs, on both loops).
    """
    from ..._exceptions import CostExceedsCapacity

    if any(isinstance(step, Reconfiguration) for step in workload) and not callable(
        getattr(limiter, "reconfigure", None)
    ):
        raise TypeError(
            f"the workload has Reconfiguration steps, but {type(limiter).__name__} has no "
            "reconfigure(**changes) method to apply them: give it one (a Throttle's takes the "
            "limit's name first: wrap it), or play a workload without reconfigurations"
        )
    arrivals = [step for step in workload if isinstance(step, Arrival)]
    outcomes: list[Outcome] = ["cancelled"] * len(arrivals)
    admitted_at: list[float | None] = [None] * len(arrivals)
    log: list[LogEntry] = []
    start = clock()

    async def arrive(index: int, step: Arrival, queued: anyio.Event) -> None:
        requested = clock()
        scope = anyio.CancelScope(
            deadline=math.inf if step.cancel_after is None else requested + step.cancel_after
        )
        with scope:
            queued.set()  # runs on into acquire() before the player's next step
            try:
                if step.timeout is None:
                    await limiter.acquire(step.cost)
                else:
                    await limiter.acquire(step.cost, timeout=step.timeout)
            except CostExceedsCapacity:
                outcomes[index] = "refused"
                return
            except TimeoutError:
                outcomes[index] = "timed out"
                return
            now = clock()
            outcomes[index] = "admitted"
            admitted_at[index] = now
            log.append(LogEntry(now, step.cost, requested, f"#{index}"))

    order = sorted(range(len(workload)), key=lambda i: workload[i].at)
    numbers = {id(step): n for n, step in enumerate(arrivals)}
    async with anyio.create_task_group() as tasks:
        for position in order:
            step = workload[position]
            await anyio.sleep_until(start + step.at)
            if isinstance(step, Reconfiguration):
                limiter.reconfigure(**step.changes)
                continue
            queued = anyio.Event()
            tasks.start_soon(arrive, numbers[id(step)], step, queued)
            await queued.wait()
            await anyio.lowlevel.checkpoint()  # let it reach its first wait inside acquire()
    return Played(start, tuple(outcomes), tuple(admitted_at), tuple(log))


def segments(limit: Limit, workload: Sequence[Step], *, start: float = 0.0) -> list[Limit]:
    """The oracle's limits over time for a limiter that ``workload`` reconfigures.

    One copy of ``limit`` per stretch between reconfigurations, with the changes applied in
    order and ``since``/``until`` set (times are ``start`` plus the steps' ``at``).  The
    changes are applied by field name, so a limiter's ``rate``/``per``/``burst`` (buckets) or
    ``limit``/``window`` (windows) map onto the oracle's fields of the same names.  Each copy
    judges its own stretch alone (see the oracle's module documentation).
    """
    current = limit
    since: float | None = limit.since
    result: list[Limit] = []
    changes = sorted(
        (step for step in workload if isinstance(step, Reconfiguration)), key=lambda s: s.at
    )
    for step in changes:
        at = start + step.at
        result.append(dataclasses.replace(current, since=since, until=at))
        changed: Any = dataclasses.replace  # the fields are the policies' parameter names
        current = changed(current, **dict(step.changes))
        since = at
    result.append(dataclasses.replace(current, since=since, until=limit.until))
    return result
