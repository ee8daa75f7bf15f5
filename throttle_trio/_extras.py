"""The message for a module used without the extra that installs what it needs."""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(module: str, extra: str, error: ImportError) -> ImportError:
    """An ImportError that says which extra to install, for ``raise ... from error``."""
    missing = error.name.partition(".")[0] if error.name else str(error)
    return ImportError(
        f"{module} needs the {extra!r} extra ({missing} is not installed): "
        f'pip install "throttle_trio[{extra}]"'
    )
