"""Testing helpers: a fake OpenAI- and Anthropic-compatible LLM server that rate-limits, and a
private redis-server.

``FakeLLMServer`` is a raw ASGI app: call it in-process through ``httpx.ASGITransport`` (on
virtual time, if the event loop runs on one), or serve it on loopback with :func:`serve`
(which needs the ``server`` extra, for hypercorn).  It keeps its own accounting of the
limits, independent of the rest of throttle_trio, so it can referee the library.

:func:`redis_server` runs a private ``redis-server`` on a free loopback port for the length of a
``with`` block, for tests, examples and benchmarks of ``throttle_trio.redis``.
"""

from .._reexport import fixup_module_metadata as _fixup_module_metadata
from ._fake_server import Admission as Admission
from ._fake_server import ASGIApp as ASGIApp
from ._fake_server import FakeLLMServer as FakeLLMServer
from ._fake_server import FakeServerStats as FakeServerStats
from ._redis_server import RedisServer as RedisServer
from ._redis_server import redis_server as redis_server
from ._serve import ServerAddress as ServerAddress
from ._serve import serve as serve

__all__ = [
    "ASGIApp",
    "Admission",
    "FakeLLMServer",
    "FakeServerStats",
    "RedisServer",
    "ServerAddress",
    "redis_server",
    "serve",
]

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
