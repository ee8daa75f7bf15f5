"""Testing helpers: virtual clocks on both event loops, a recorder of admissions, workloads, a
fake OpenAI- and Anthropic-compatible LLM server that rate-limits, and a private redis-server
(or Redis Cluster).

The kit around them lives in submodules: :mod:`throttle_trio.testing.oracle` (an independent
checker of admission logs, standard library only), :mod:`throttle_trio.testing.strategies`
(Hypothesis strategies) and :mod:`throttle_trio.testing.stateful` (state-machine templates),
both of which need Hypothesis (the ``testing`` extra); the pytest plugin (fixtures and the
``tt_virtual_clock`` marker) is registered by installing the package and stays inert until a
test uses it.

:func:`run_virtual` runs an async function on a fresh virtual clock (trio's ``MockClock`` or
asyncio's ``looptime``); :class:`Recorder` wraps a limiter, a throttle, a transport or any
acquire function and logs each admission for the oracle; :func:`play` runs a workload of
:class:`Arrival` and :class:`Reconfiguration` steps against a limiter.

``FakeLLMServer`` is a raw ASGI app: call it in-process through ``httpx.ASGITransport`` (on
virtual time, if the event loop runs on one), or serve it on loopback with :func:`serve`
(which needs the ``server`` extra, for hypercorn).  It keeps its own accounting of the
limits, independent of the rest of throttle_trio, so it can referee the library.

:func:`redis_server` runs a private ``redis-server`` on a free loopback port for the length of a
``with`` block, for tests, examples and benchmarks of ``throttle_trio.redis``; :func:`redis_cluster`
a private Redis Cluster of several of them, :func:`redis_sentinel` a Sentinel that monitors one.
All take ``valkey-server`` too.
"""

from .._reexport import fixup_module_metadata as _fixup_module_metadata
from ._fake_server import Admission as Admission
from ._fake_server import ASGIApp as ASGIApp
from ._fake_server import FakeLLMServer as FakeLLMServer
from ._fake_server import FakeServerStats as FakeServerStats
from ._kit.recorder import Recorder as Recorder
from ._kit.recorder import RecordingLimiter as RecordingLimiter
from ._kit.recorder import RecordingThrottle as RecordingThrottle
from ._kit.recorder import limit_for as limit_for
from ._kit.recorder import limits_for as limits_for
from ._kit.virtual import run_virtual as run_virtual
from ._kit.virtual import virtual_backend as virtual_backend
from ._kit.workload import Arrival as Arrival
from ._kit.workload import Outcome as Outcome
from ._kit.workload import Played as Played
from ._kit.workload import Reconfiguration as Reconfiguration
from ._kit.workload import Step as Step
from ._kit.workload import play as play
from ._kit.workload import segments as segments
from ._redis_server import RedisClusterServer as RedisClusterServer
from ._redis_server import RedisServer as RedisServer
from ._redis_server import redis_cluster as redis_cluster
from ._redis_server import redis_sentinel as redis_sentinel
from ._redis_server import redis_server as redis_server
from ._serve import ServerAddress as ServerAddress
from ._serve import serve as serve

__all__ = [
    "ASGIApp",
    "Admission",
    "Arrival",
    "FakeLLMServer",
    "FakeServerStats",
    "Outcome",
    "Played",
    "Reconfiguration",
    "Recorder",
    "RecordingLimiter",
    "RecordingThrottle",
    "RedisClusterServer",
    "RedisServer",
    "ServerAddress",
    "Step",
    "limit_for",
    "limits_for",
    "play",
    "redis_cluster",
    "redis_sentinel",
    "redis_server",
    "run_virtual",
    "segments",
    "serve",
    "virtual_backend",
]

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
