"""The recorder's transport wrapper, for httpx and httpx2 (imported only when used).

httpx and httpx2 have distinct base classes that do not mix, so there is one small class per
library, built the first time it is needed.
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from .recorder import Recorder

__all__ = ["recording_transport"]


@functools.cache
def _transport_class(library: str) -> type[Any]:
    base: type[Any] = sys.modules[library].AsyncBaseTransport

    class RecordingTransport(base):  # type: ignore[misc]
        """Forwards every request to ``inner`` and records it as it leaves."""

        def __init__(
            self, inner: Any, recorder: Recorder, label: Callable[[Any], str] | None
        ) -> None:
            self.inner = inner
            self._recorder = recorder
            self._label = label

        def __repr__(self) -> str:
            return f"RecordingTransport({self.inner!r})"

        async def handle_async_request(self, request: Any) -> Any:
            if self._label is None:
                name = f"{request.method} {request.url.path}"
            else:
                name = self._label(request)
            self._recorder.record(1, label=name)
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    RecordingTransport.__module__ = "throttle_trio.testing"
    RecordingTransport.__qualname__ = f"Recorder.transport.<{library}>"
    return RecordingTransport


def recording_transport(
    inner: object, recorder: Recorder, label: Callable[[Any], str] | None = None
) -> Any:
    """A transport of ``inner``'s library that records each request, then forwards it."""
    for library in ("httpx", "httpx2"):
        module = sys.modules.get(library)
        if module is not None and isinstance(inner, module.AsyncBaseTransport):
            return _transport_class(library)(inner, recorder, label)
    kind = type(inner)
    raise TypeError(
        "transport must be an httpx.AsyncBaseTransport or an httpx2.AsyncBaseTransport, "
        f"got {kind.__module__}.{kind.__qualname__}"
    )
