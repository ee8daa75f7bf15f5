"""Argument checks shared by every public constructor and method.

Each check returns the value it accepted and raises ``TypeError`` for a wrong type or
``ValueError`` for a wrong range, with a message of the form
``"<name> must be <constraint>, got <value!r>"``.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import cast

from ._exceptions import CostExceedsCapacity

__all__ = [
    "check_cost",
    "check_finite",
    "check_non_negative",
    "check_optional_timeout",
    "check_positive",
    "check_positive_or_inf",
]


def _check_real(name: str, value: object) -> float:
    # bool is an int subclass, but `burst=True` is always a mistake.
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return value  # type: ignore[return-value]  # a Real behaves as a float here


def check_positive(name: str, value: object) -> float:
    """Accept a finite number > 0."""
    number = _check_real(name, value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def check_positive_or_inf(name: str, value: object) -> float:
    """Accept a number > 0, infinity included."""
    number = _check_real(name, value)
    if not number > 0:  # also rejects NaN
        raise ValueError(f"{name} must be a number > 0 or math.inf, got {value!r}")
    return number


def check_finite(name: str, value: object) -> float:
    """Accept any finite number."""
    number = _check_real(name, value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def check_non_negative(name: str, value: object) -> float:
    """Accept a finite number >= 0."""
    number = _check_real(name, value)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def check_optional_timeout(value: object) -> float | None:
    """Accept ``None`` or a number >= 0 (seconds); infinity means no timeout."""
    if value is None:
        return None
    number = _check_real("timeout", value)
    if not number >= 0:
        raise ValueError(f"timeout must be None or a number >= 0, got {value!r}")
    return None if number == math.inf else number


def check_cost(value: object, capacity: float, name: str = "cost") -> float:
    """Accept a finite cost > 0 that fits ``capacity``.

    Raises:
        CostExceedsCapacity: the cost is larger than ``capacity``, so it could never be admitted.
    """
    if value.__class__ is int or value.__class__ is float:
        # The class check above admits only ints and floats: mypy narrows on `__class__`, pyright
        # does not.  (`type(value) is`, which both narrow, would send objects that report an int
        # `__class__`, such as Mock(spec=int), down another path.)
        number = cast("float", value)
        if 0 < number <= capacity:
            return number  # the hot path: already checked
    cost = check_positive(name, value)
    if cost > capacity:
        raise CostExceedsCapacity(f"{name} must be <= the capacity {capacity!r}, got {value!r}")
    return cost
