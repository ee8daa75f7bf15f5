"""A small SVG timeline of a demo run: tokens sent per second, accepted and rejected (429),
against the provider's per-second limit.  No plotting library needed."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = ["write_timeline"]

_ACCEPTED, _REJECTED = "#1f77b4", "#d62728"


def write_timeline(
    path: Path,
    runs: Mapping[str, Sequence[tuple[float, int, float]]],
    tokens_per_second: float,
) -> None:
    """One row per run: per second, the tokens of accepted attempts (blue) and of attempts
    answered 429 (red, stacked), and the limit (dashed).

    Args:
        path: the SVG file to write.
        runs: run name -> attempts as (monotonic time, HTTP status, estimated tokens).
        tokens_per_second: the provider's limit.
    """
    width, row_height, left, top = 900, 200, 70, 40
    height = top + row_height * len(runs) + 10
    series = {name: _per_second(attempts) for name, attempts in runs.items()}
    seconds = max((len(bins) for bins in series.values()), default=1)
    peak = max(
        [tokens_per_second * 1.25]
        + [accepted + rejected for bins in series.values() for accepted, rejected in bins]
    )
    plot_width = width - left - 20
    bar = plot_width / max(seconds, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14">tokens sent per second: '
        f'<tspan fill="{_ACCEPTED}">accepted</tspan>, <tspan fill="{_REJECTED}">rejected '
        f"(429)</tspan>; dashed: the limit, {tokens_per_second:,.0f}/s</text>",
    ]
    for row, (name, bins) in enumerate(series.items()):
        y0 = top + row * row_height
        base = y0 + row_height - 30
        scale = (row_height - 55) / peak
        parts.append(f'<text x="{left}" y="{y0 + 12}">{escape(name)}</text>')
        for i, (accepted, rejected) in enumerate(bins):
            x, w = left + i * bar, max(bar - 2, 1)
            for value, offset, color in (
                (accepted, 0.0, _ACCEPTED),
                (rejected, accepted, _REJECTED),
            ):
                if value:
                    h, y = value * scale, base - (offset + value) * scale
                    parts.append(
                        f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                        f'fill="{color}"/>'
                    )
        limit_y = base - tokens_per_second * scale
        parts.append(
            f'<line x1="{left}" y1="{limit_y:.1f}" x2="{left + plot_width}" y2="{limit_y:.1f}" '
            'stroke="black" stroke-dasharray="4 3"/>'
        )
        parts.append(
            f'<line x1="{left}" y1="{base}" x2="{left + plot_width}" y2="{base}" stroke="#888"/>'
        )
        step = max(1, math.ceil(seconds / 15))
        for second in range(0, seconds + 1, step):
            parts.append(
                f'<text x="{left + second * bar:.1f}" y="{base + 14}" '
                f'text-anchor="middle">{second}s</text>'
            )
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def _per_second(attempts: Sequence[tuple[float, int, float]]) -> list[tuple[float, float]]:
    """(accepted tokens, rejected tokens) per second since the first attempt."""
    if not attempts:
        return []
    start = min(t for t, _, _ in attempts)
    bins = [[0.0, 0.0] for _ in range(int(max(t for t, _, _ in attempts) - start) + 1)]
    for t, status, tokens in attempts:
        bins[int(t - start)][1 if status == 429 else 0] += tokens
    return [(accepted, rejected) for accepted, rejected in bins]
