"""Stateful test templates: Hypothesis state machines that generate traffic and check invariants.

Subclass one, fill in how to build what is tested, and run it
(``TestMine = Mine.TestCase``, or ``run_state_machine_as_test(lambda: Mine("asyncio"))`` for
a chosen event loop):

* :class:`LimiterMachine` drives a limiter (anything with ``acquire(cost, timeout=...)``).
* :class:`ClientMachine` drives your HTTP client against the fake provider
  (:class:`~throttle_trio.testing.FakeLLMServer`, in process).

The rules (``arrive``, ``arrive_and_cancel``, ``arrive_with_timeout``, ``reconfigure``) only
*write down* traffic, a step at a time, so a failing example prints as a readable list of
steps.  At the end of each example (``teardown``) the traffic is played once, in a fresh event
loop on a fresh virtual clock (an hour of traffic takes milliseconds), and the invariants are
checked; a failure raises ``AssertionError`` there, and Hypothesis shrinks the steps.  Event
loops do not survive between synchronous rules, which is why the run waits for the end.

Needs Hypothesis (the ``testing`` extra); :class:`ClientMachine` needs httpx too.
"""

from ._kit import fixup_module_metadata as _fixup_module_metadata
from ._kit.stateful import ClientMachine as ClientMachine
from ._kit.stateful import LimiterMachine as LimiterMachine
from ._kit.stateful import TrafficMachine as TrafficMachine

__all__ = [
    "ClientMachine",
    "LimiterMachine",
    "TrafficMachine",
]

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
