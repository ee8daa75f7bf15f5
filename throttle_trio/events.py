"""Events: what throttles do, reported to a listener you pass as ``on_event=``.

::

    import throttle_trio as tt
    from throttle_trio import events

    def listen(event: events.Event) -> None:
        if isinstance(event, events.Admitted) and event.waited > 1:
            print(f"waited {event.waited:.1f} s for {event.binding}")

    throttle = tt.Throttle(requests=tt.TokenBucket(500, per=60.0), on_event=listen)

A listener is called synchronously in the task that caused the event, with a frozen record; it
must not await or block.  What it raises is logged (logger ``throttle_trio.events``) and counted
(:func:`listener_errors`), never raised into the request.  With no listener, nothing is built.
"""

from __future__ import annotations

from ._events import Admitted as Admitted
from ._events import Event as Event
from ._events import EventHook as EventHook
from ._events import FallbackEntered as FallbackEntered
from ._events import FallbackExited as FallbackExited
from ._events import LimitLearned as LimitLearned
from ._events import LimitLowered as LimitLowered
from ._events import Paused as Paused
from ._events import RateChanged as RateChanged
from ._events import Rejected as Rejected
from ._events import Settled as Settled
from ._events import TimedOut as TimedOut
from ._events import listener_errors as listener_errors
from ._reexport import fixup_module_metadata as _fixup_module_metadata

__all__ = [
    "Admitted",
    "Event",
    "EventHook",
    "FallbackEntered",
    "FallbackExited",
    "LimitLearned",
    "LimitLowered",
    "Paused",
    "RateChanged",
    "Rejected",
    "Settled",
    "TimedOut",
    "listener_errors",
]

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
