"""The demo's timeline: what each run sent per second, accepted and rejected, against the limit.

One panel per run, one above the other on a shared time axis (seconds since the run started):
bars of the tokens its attempts carried per second, accepted (blue) and answered 429 (red,
stacked on top), the provider's limit as a dashed line, and a vertical line where the run
ended, labelled with what it achieved (requests done, failed after retries, 429s).  Each panel
has its own token scale, so the throttled run (which stays at the limit) is as readable as the
naive one (which bursts to many times it).  Written with matplotlib (the ``plot`` extra) in the
format the file name says (``.svg``, ``.png``, ``.pdf``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._extras import missing_extra

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["RunTimeline", "check_plotting", "draw_timeline", "write_timeline"]

_ACCEPTED, _REJECTED, _LIMIT = "#1f77b4", "#d62728", "#333333"


@dataclass(frozen=True)
class RunTimeline:
    """What one run of the demo did, for its panel.

    Attributes:
        name: the run's name (the panel's title).
        attempts: every attempt that reached the provider: (monotonic time, HTTP status,
            estimated tokens).
        started: when the run started (same clock).
        makespan: seconds from the start to the last answer.
        succeeded: requests answered 200.
        failed: requests that gave up (after their retries).
        requests: requests in the batch.
    """

    name: str
    attempts: Sequence[tuple[float, int, float]]
    started: float
    makespan: float
    succeeded: int
    failed: int
    requests: int


def check_plotting() -> None:
    """Raise a clear ImportError, naming the extra, if matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise missing_extra("throttle-trio demo --plot", "plot", error) from error


def per_second(run: RunTimeline) -> tuple[list[float], list[float]]:
    """Tokens of accepted and of rejected (429) attempts, per second since the run started."""
    seconds = max(1, int(run.makespan) + 1)
    accepted, rejected = [0.0] * seconds, [0.0] * seconds
    for at, status, tokens in run.attempts:
        second = min(seconds - 1, max(0, int(at - run.started)))
        (rejected if status == 429 else accepted)[second] += tokens
    return accepted, rejected


def draw_timeline(runs: Sequence[RunTimeline], tokens_per_second: float, minimum: float) -> Any:
    """The figure (see the module docstring); ``minimum`` is the theoretical makespan."""
    check_plotting()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(10, 2.8 * len(runs) + 0.8), dpi=100, layout="constrained")
    axes = figure.subplots(len(runs), 1, sharex=True, squeeze=False)[:, 0]
    horizon = max([run.makespan for run in runs] + [minimum]) * 1.04 + 1
    thousands = FuncFormatter(
        lambda value, _: f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"
    )
    for ax, run in zip(axes, runs, strict=True):
        accepted, rejected = per_second(run)
        seconds = [second + 0.5 for second in range(len(accepted))]
        ax.bar(seconds, accepted, width=0.9, color=_ACCEPTED, label="accepted")
        ax.bar(
            seconds, rejected, width=0.9, bottom=accepted, color=_REJECTED, label="rejected (429)"
        )
        ax.axhline(tokens_per_second, color=_LIMIT, linestyle="--", linewidth=1.2)
        ax.annotate(
            f"limit {tokens_per_second:,.0f} tokens/s",
            xy=(horizon, tokens_per_second),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color=_LIMIT,
        )
        peak = max([a + r for a, r in zip(accepted, rejected, strict=True)] + [tokens_per_second])
        ax.set_ylim(0, peak * 1.3)
        ax.yaxis.set_major_formatter(thousands)
        ax.set_ylabel("tokens sent per second")
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
        rejections = sum(1 for _, status, _ in run.attempts if status == 429)
        ax.set_title(
            f"{run.name}: {run.succeeded}/{run.requests} done in {run.makespan:.1f} s, "
            f"{rejections} attempts answered 429",
            loc="left",
            fontsize=10,
        )
        ax.axvline(run.makespan, color=_REJECTED if run.failed else _ACCEPTED, linewidth=1.5)
        if run.failed:
            ending = (
                f"ends at {run.makespan:.1f} s:\n{run.failed} requests failed\n"
                "after their retries (429s)"
            )
        else:
            ending = (
                f"all done at {run.makespan:.1f} s\n({run.makespan / minimum:.2f}x the minimum)"
            )
        right = run.makespan > 0.7 * horizon  # no room on the right: write it on the left
        ax.annotate(
            ending,
            xy=(run.makespan, peak * 1.2),
            xytext=(-4 if right else 4, 0),
            textcoords="offset points",
            ha="right" if right else "left",
            va="top",
            fontsize=8,
        )
        ax.axvline(minimum, color="#999999", linestyle=":", linewidth=1)
    axes[0].legend(loc="upper center", fontsize=8, ncols=2, frameon=False)
    axes[-1].set_xlim(0, horizon)
    axes[-1].set_xlabel(f"seconds since the run started (dotted: the minimum, {minimum:.1f} s)")
    return figure


def write_timeline(
    path: Path, runs: Sequence[RunTimeline], tokens_per_second: float, minimum: float
) -> None:
    """Draw the timeline and write it to ``path`` (the format from its suffix)."""
    draw_timeline(runs, tokens_per_second, minimum).savefig(path)
