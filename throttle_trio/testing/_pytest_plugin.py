"""The entry point of throttle_trio's pytest plugin (``pytest11``: ``throttle_trio``).

The hooks and fixtures are defined in :mod:`throttle_trio.testing._kit.pytest_plugin`, which
says what they do; pytest finds them here by name.
"""

from ._kit.pytest_plugin import pytest_collection_modifyitems as pytest_collection_modifyitems
from ._kit.pytest_plugin import pytest_configure as pytest_configure
from ._kit.pytest_plugin import pytest_generate_tests as pytest_generate_tests
from ._kit.pytest_plugin import pytest_pycollect_makeitem as pytest_pycollect_makeitem
from ._kit.pytest_plugin import pytest_runtest_setup as pytest_runtest_setup
from ._kit.pytest_plugin import tt_backend as tt_backend
from ._kit.pytest_plugin import tt_fake_llm as tt_fake_llm
from ._kit.pytest_plugin import tt_fake_llm_transport as tt_fake_llm_transport
from ._kit.pytest_plugin import tt_redis_server as tt_redis_server
from ._kit.pytest_plugin import tt_redis_url as tt_redis_url

__all__: list[str] = []  # a plugin: pytest finds the hooks and fixtures by name
