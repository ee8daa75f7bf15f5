"""The demo's timeline (``throttle-trio demo --plot``): drawn from known runs, rendered to PNG,
its size and every label checked; and the error without the plot extra."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("matplotlib", reason="the plot extra is not installed")

from typing import TYPE_CHECKING

from matplotlib.image import imread
from matplotlib.text import Text

from throttle_trio.cli._timeline import (
    RunTimeline,
    check_plotting,
    draw_timeline,
    per_second,
    write_timeline,
)

if TYPE_CHECKING:
    from pathlib import Path

LIMIT = 3000.0


def naive() -> RunTimeline:
    attempts = [(100.0 + i * 0.01, 200 if i < 10 else 429, 250.0) for i in range(150)]
    attempts += [(103.5, 429, 250.0)] * 40
    return RunTimeline("naive", attempts, 100.0, 4.6, 35, 115, 150)


def throttled() -> RunTimeline:
    attempts = [(50.0 + i / 12, 200, 250.0) for i in range(150)]
    return RunTimeline("throttle_trio", attempts, 50.0, 15.7, 150, 0, 150)


def texts(figure: object) -> list[str]:
    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]  # type: ignore[attr-defined]


def test_the_bins_split_accepted_and_rejected_tokens_per_second() -> None:
    accepted, rejected = per_second(naive())
    assert len(accepted) == 5  # 4.6 s: five one-second bins
    assert accepted[0] == 10 * 250
    assert rejected[0] == 90 * 250
    assert rejected[1] == 50 * 250
    assert rejected[3] == 40 * 250
    assert sum(accepted) + sum(rejected) == 190 * 250


def test_the_figure_has_units_numbers_and_explains_each_run(tmp_path: Path) -> None:
    figure = draw_timeline([naive(), throttled()], LIMIT, 13.6)
    shown = texts(figure)
    assert "naive: 35/150 done in 4.6 s, 180 attempts answered 429" in shown
    assert "throttle_trio: 150/150 done in 15.7 s, 0 attempts answered 429" in shown
    assert "ends at 4.6 s:\n115 requests failed\nafter their retries (429s)" in shown
    assert "all done at 15.7 s\n(1.15x the minimum)" in shown
    assert shown.count("limit 3,000 tokens/s") == 2
    assert {"accepted", "rejected (429)"} <= set(shown)
    naive_axes, throttled_axes = figure.axes
    assert naive_axes.get_ylabel() == throttled_axes.get_ylabel() == "tokens sent per second"
    assert throttled_axes.get_xlabel() == (
        "seconds since the run started (dotted: the minimum, 13.6 s)"
    )
    # Each panel on its own scale: the throttled run's bars fill its panel.
    assert naive_axes.get_ylim()[1] > 5 * throttled_axes.get_ylim()[1]
    assert throttled_axes.get_ylim()[1] < 2 * LIMIT
    # Numbers on both axes.
    figure.canvas.draw()
    assert any(label.get_text() for label in throttled_axes.get_xticklabels())
    assert "3k" in [label.get_text() for label in throttled_axes.get_yticklabels()]


def test_it_renders_to_png_at_its_size(tmp_path: Path) -> None:
    path = tmp_path / "timeline.png"
    write_timeline(path, [naive(), throttled()], LIMIT, 13.6)
    pixels = imread(path)
    assert pixels.shape[:2] == (640, 1000)  # 10 x 6.4 inches at 100 dpi
    assert pixels.std() > 0.05  # not blank
    svg = tmp_path / "timeline.svg"
    write_timeline(svg, [naive(), throttled()], LIMIT, 13.6)
    assert "tokens sent per second" in svg.read_text()


def test_without_matplotlib_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(
        ImportError, match=r'the \'plot\' extra .*pip install "throttle_trio\[plot\]"'
    ):
        check_plotting()
