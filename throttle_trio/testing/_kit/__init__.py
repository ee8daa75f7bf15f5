"""The implementation of throttle_trio.testing's kit (private: import the public names).

It lives in a subpackage of its own because, unlike the fake server (whose modules sit beside
this one and share no code with the library they referee), the kit builds on the library: the
recorder wraps its limiters, the strategies build its policies.  The oracle, which referees
the library too, stays beside the fake server (``throttle_trio/testing/oracle.py``, standard
library only).
"""

from ..._reexport import fixup_module_metadata as fixup_module_metadata

__all__ = ["fixup_module_metadata"]
