"""AIMD: never above the ceiling, never below the floor, one decrease per cooldown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttle_trio.policy import AIMD


def test_decrease_then_slow_recovery() -> None:
    aimd = AIMD(100, decrease=0.5, increase=5, cooldown=1.0)
    assert aimd.rate == 100
    assert aimd.on_success() == 100  # never above the ceiling
    assert aimd.on_overload(10.0) == 50
    assert aimd.on_overload(10.5) == 50  # a 429 from a request sent at the old rate
    assert aimd.on_overload(11.0) == 25
    for _ in range(5):
        aimd.on_success()
    assert aimd.rate == 50


def test_floor_and_ceiling_changes() -> None:
    aimd = AIMD(100, floor=30, cooldown=0)
    for t in range(10):
        aimd.on_overload(float(t))
    assert aimd.rate == 30
    assert aimd.set_ceiling(20) == 20
    assert aimd.floor == 20
    assert repr(aimd) == "AIMD(rate=20, floor=20, ceiling=20)"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ceiling": 0}, ValueError, "ceiling must be a finite number > 0, got 0"),
        ({"ceiling": 10, "floor": 20}, ValueError, "floor must be <= ceiling (10), got 20"),
        ({"ceiling": 10, "decrease": 1}, ValueError, "decrease must be < 1, got 1"),
        ({"ceiling": 10, "decrease": 0}, ValueError, "decrease must be a finite number > 0, got 0"),
        (
            {"ceiling": 10, "cooldown": -1},
            ValueError,
            "cooldown must be a finite number >= 0, got -1",
        ),
        ({"ceiling": "10"}, TypeError, "ceiling must be a real number, got str '10'"),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        AIMD(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5000)), max_size=200))
def test_rate_stays_between_floor_and_ceiling(signals: list[tuple[bool, int]]) -> None:
    aimd = AIMD(500, floor=5, increase=7, cooldown=0.25)
    now = 0.0
    for overload, gap_ms in signals:
        now += gap_ms / 1000
        rate = aimd.on_overload(now) if overload else aimd.on_success()
        assert 5 <= rate <= 500
