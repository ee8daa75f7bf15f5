"""How long and how often each benchmark runs: ``--quick`` (under a minute) or full."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Sizes for one ``python -m bench`` run.  Full mode reports medians of ``reps`` runs.

    Attributes:
        quick: the ``--quick`` smoke run.
        reps: runs per measurement (the median is reported).
        uncontended_ops: acquisitions timed per peer in benchmark 1.
        contended_sizes: the numbers of waiting tasks benchmark 2 tries (quick skips 1,000).
        contended_admissions: admissions timed per run in benchmark 2.
        contended_cap: seconds a benchmark-2 run may take before it stops by itself.
        accuracy_seconds: length of one benchmark-3 run.
        fairness_seconds: length of one benchmark-4 run.
        memory_tasks: waiting tasks per measurement of memory per waiting task (benchmark 5).
        memory_cancelled: queued waiters cancelled behind a waiting head (benchmark 5).
    """

    quick: bool
    reps: int
    uncontended_ops: int
    contended_sizes: tuple[int, ...]
    contended_admissions: int
    contended_cap: float
    accuracy_seconds: float
    fairness_seconds: float
    memory_tasks: int
    memory_cancelled: int

    @classmethod
    def for_mode(cls, *, quick: bool) -> Settings:
        if quick:
            return cls(
                quick=True,
                reps=1,
                uncontended_ops=10_000,
                contended_sizes=(100, 10_000),
                contended_admissions=150,
                contended_cap=0.25,
                accuracy_seconds=0.3,
                fairness_seconds=0.4,
                memory_tasks=1_000,
                memory_cancelled=2_000,
            )
        return cls(
            quick=False,
            reps=3,
            uncontended_ops=50_000,
            contended_sizes=(100, 1_000, 10_000),
            contended_admissions=1_000,
            contended_cap=2.5,
            accuracy_seconds=1.3,
            fairness_seconds=2.0,
            memory_tasks=10_000,
            memory_cancelled=20_000,
        )
