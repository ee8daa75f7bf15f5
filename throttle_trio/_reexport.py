"""What a public namespace does to the names it re-exports from private modules.

``throttle_trio.Throttle`` is defined in ``throttle_trio._throttle``; left alone, its
``__module__`` would name that private module in reprs, tracebacks, pickles and documentation
tools.  Like trio's ``fixup_module_metadata``, each public ``__init__`` calls
:func:`fixup_module_metadata` once, after its imports, to make every class and function of its
``__all__`` that comes from a private module (one with a ``_``-prefixed component) claim the
public namespace instead, and the methods defined in those classes with it.

Names from public modules (``throttle_trio.policy.gcra``) and objects that are not classes or
functions (type aliases, constants) are left alone.  ``__qualname__`` is kept: the classes are
defined at module level, so ``namespace.__qualname__`` still finds them, which is what pickle and
``typing.get_type_hints`` need.  This module imports nothing from the package, so that the
policy core may use it.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["fixup_module_metadata"]


def fixup_module_metadata(module_name: str, namespace: Mapping[str, object]) -> None:
    """Set ``__module__`` to ``module_name`` on the private-module objects of ``__all__``.

    Args:
        module_name: the public namespace, usually the caller's ``__name__``.
        namespace: the caller's ``globals()``; its ``__all__`` lists the names to fix.
    """
    names = cast("Sequence[str]", namespace["__all__"])
    for name in names:
        _fix(namespace[name], module_name)


def _is_private(module: str) -> bool:
    return module.startswith("throttle_trio.") and any(
        part.startswith("_") for part in module.split(".")
    )


def _fix(obj: object, module_name: str) -> None:
    if not isinstance(obj, type | types.FunctionType):
        return
    original = obj.__module__
    if not _is_private(original):
        return
    obj.__module__ = module_name
    if isinstance(obj, type):
        prefix = obj.__qualname__ + "."
        for member in vars(obj).values():
            for function in _functions_of(member):
                if function.__module__ == original and function.__qualname__.startswith(prefix):
                    function.__module__ = module_name
                    if isinstance(member, staticmethod | classmethod):
                        member.__module__ = module_name  # the wrapper's copy (Python >= 3.10)


def _functions_of(member: object) -> list[types.FunctionType]:
    """The plain functions behind a class attribute: a method, a static or class method, or a
    property's accessors."""
    inner: object = getattr(member, "__func__", member)  # staticmethod, classmethod
    if isinstance(inner, property):
        accessors: list[object] = [inner.fget, inner.fset, inner.fdel]
        return [f for f in accessors if isinstance(f, types.FunctionType)]
    return [inner] if isinstance(inner, types.FunctionType) else []
