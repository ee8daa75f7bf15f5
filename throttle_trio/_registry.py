"""One throttle per key (host, API key, model), made on demand and forgotten when pristine."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar, final

if TYPE_CHECKING:
    from ._throttle import Throttle

__all__ = ["RequestKey", "ThrottleRegistry", "api_key_hash"]

K = TypeVar("K", bound=Hashable)


def api_key_hash(api_key: str) -> str:
    """A short, stable digest of an API key: what throttle_trio shows instead of the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class RequestKey(NamedTuple):
    """The default registry key: a provider limits per (host, API key, model).

    Build it with :meth:`of`, which hashes the API key: keys never appear in ``repr``,
    statistics or logs.
    """

    host: str
    key_hash: str
    model: str

    @classmethod
    def of(cls, host: str, api_key: str | None, model: str | None) -> RequestKey:
        """The key for a request to ``host`` with ``api_key`` for ``model``."""
        return cls(host, api_key_hash(api_key) if api_key else "", model or "")


@final
class ThrottleRegistry(Generic[K]):
    """Makes one :class:`Throttle` per key from ``factory``, and forgets idle ones safely.

    A throttle is forgotten only when :meth:`Throttle.is_pristine` says it is
    indistinguishable from a fresh one (nobody waiting, nothing in flight, no pause, every
    bucket full), so forgetting it never re-grants a burst.  Sweeps run automatically when the
    registry has doubled since the last one, so memory stays proportional to the keys in use,
    whatever the number of keys seen (amortized O(1) per :meth:`get`).

    Args:
        factory: makes the throttle for a new key (for example from the limits of its model).
        sweep_at: the size at which the first automatic sweep runs (>= 1).
    """

    __slots__ = ("_factory", "_next_sweep", "_sweep_at", "_throttles")

    def __init__(self, factory: Callable[[K], Throttle], *, sweep_at: int = 1024) -> None:
        if isinstance(sweep_at, bool) or not isinstance(sweep_at, int) or sweep_at < 1:
            raise ValueError(f"sweep_at must be an int >= 1, got {sweep_at!r}")
        self._factory = factory
        self._throttles: dict[K, Throttle] = {}
        self._sweep_at = sweep_at
        self._next_sweep = sweep_at

    def __repr__(self) -> str:
        return f"ThrottleRegistry({len(self._throttles)} throttles)"

    def __len__(self) -> int:
        return len(self._throttles)

    def __contains__(self, key: object) -> bool:
        return key in self._throttles

    def __iter__(self) -> Iterator[K]:
        return iter(self._throttles)

    def get(self, key: K) -> Throttle:
        """The throttle for ``key``, made by the factory if there is none."""
        throttle = self._throttles.get(key)
        if throttle is None:
            if len(self._throttles) >= self._next_sweep:
                self.sweep()
                self._next_sweep = max(self._sweep_at, 2 * len(self._throttles))
            throttle = self._throttles[key] = self._factory(key)
        return throttle

    def sweep(self) -> int:
        """Forget every pristine throttle now; return how many were forgotten."""
        pristine = [key for key, throttle in self._throttles.items() if throttle.is_pristine()]
        for key in pristine:
            del self._throttles[key]
        return len(pristine)
