"""The layering rules of shared/DESIGN.md, on the package's own source: each layer imports only
the ones above it.

* the policy core (``throttle_trio/policy``) and the other pure modules never import anyio;
* ``import throttle_trio`` needs anyio only, none of the extras;
* the fake provider (``throttle_trio.testing``'s server) does not use the client's policy math
  or throttles, so it checks them independently;
* the Redis script's protocol, its arithmetic and the public values of ``throttle_trio.redis``
  need neither coredis nor an event loop (they are tested without a server);
* the library does not import the command line;
* no module reaches into another module's private names (``_name``): what crosses a module
  boundary is named without an underscore (the exceptions are listed, each with its reason);
* every layer logs to its own child of the ``throttle_trio`` logger.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.test_exports import PACKAGE_DIR, ROOT, is_package, module_names, module_path

if TYPE_CHECKING:
    from pathlib import Path


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter on this checkout; return its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


OPTIONAL = ["trio", "httpx", "httpcore", "coredis", "redis", "looptime", "hypothesis", "pytest"]


def test_core_imports_without_optional_dependencies() -> None:
    """``import throttle_trio`` loads anyio and the standard library, none of the extras."""
    out = run_python(
        f"""
        import json, sys
        import throttle_trio
        assert throttle_trio.__file__.startswith({str(PACKAGE_DIR)!r}), throttle_trio.__file__
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
        """
    )
    loaded = set(json.loads(out))
    assert "anyio" in loaded
    assert loaded & set(OPTIONAL) == set()


def test_core_imports_when_optional_dependencies_are_missing() -> None:
    """Even with trio and httpx absent (imports of them fail), the core imports and works."""
    blocked = dict.fromkeys(OPTIONAL)
    run_python(
        f"""
        import sys
        sys.modules.update({blocked!r})
        import anyio
        import throttle_trio as tt

        async def main():
            limiter = tt.RateLimiter(tt.TokenBucket(4))
            await limiter.acquire()
            async with tt.CapacityLimiter(1):
                pass

        anyio.run(main)
        """
    )


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every import in a file, anywhere in it (TYPE_CHECKING blocks included): (module, level)."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.module is None:  # `from . import x`: the modules x
                found.extend((alias.name, node.level) for alias in node.names)
            else:
                found.append((node.module, node.level))
    return found


def resolve(importer: str, module: str, level: int) -> str:
    """The absolute name of an import made in module ``importer``."""
    if level == 0:
        return module
    package = importer if is_package(importer) else importer.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{module}" if module else package


def test_policy_core_never_imports_anyio() -> None:
    """Statically: no module under throttle_trio/policy, nor any module of the package it
    imports (transitively), imports anyio, trio, sniffio or the package's ``__init__``
    (which imports anyio)."""
    todo = [name for name in module_names() if name.startswith("throttle_trio.policy")]
    seen: set[str] = set()
    offenders: list[tuple[str, str]] = []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_path(name)
        assert path is not None, name
        for module, level in imports_of(path):
            target = resolve(name, module, level)
            top = target.split(".")[0]
            if top in ("anyio", "trio", "sniffio", "httpx") or target == "throttle_trio":
                offenders.append((name, target))
            elif top == "throttle_trio":
                todo.append(target)
    assert offenders == []
    # What the policy core is allowed to need from the rest of the package.
    assert {n for n in seen if not n.startswith("throttle_trio.policy")} == {
        "throttle_trio._validate",
        "throttle_trio._exceptions",
    }


def test_policy_core_runs_with_anyio_unimportable() -> None:
    """Dynamically: with ``import anyio`` made to fail, and the package's ``__init__`` (which
    needs anyio) bypassed, the policy package imports and works."""
    out = run_python(
        f"""
        import sys, types
        sys.modules["anyio"] = None  # any `import anyio` now raises ImportError
        stub = types.ModuleType("throttle_trio")
        stub.__path__ = [{str(PACKAGE_DIR)!r}]
        sys.modules["throttle_trio"] = stub
        from throttle_trio.policy import GCRA, AIMD, SlidingWindow, TokenBucket
        bucket = TokenBucket(2, per=1.0)
        assert bucket.try_admit(2, 0.0).allowed
        assert bucket.ready_at(1, 0.0) == 0.5
        assert GCRA(2).try_admit(1, 0.0).allowed
        assert SlidingWindow(1).try_admit(1, 0.0).allowed
        assert AIMD(10).on_overload(0.0) == 5
        loaded = [m for m, v in sys.modules.items() if v is not None]
        print(sorted(m for m in loaded if m.startswith(("anyio", "trio", "sniffio"))))
        """
    )
    assert out.strip() == "[]"


def imported_modules(name: str) -> set[str]:
    """The absolute names of the modules that module ``name`` imports (statically)."""
    path = module_path(name)
    assert path is not None, name
    return {resolve(name, module, level) for module, level in imports_of(path)}


# Pure modules beside the policy core: sans-IO, usable without an event loop.
PURE = ["throttle_trio._feedback", "throttle_trio._usage", "throttle_trio._headers"]


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_no_event_loop_library(name: str) -> None:
    loops = {"anyio", "trio", "sniffio", "asyncio"}
    assert {target for target in imported_modules(name) if target.split(".")[0] in loops} == set()


# The Redis modules that need no client: the protocol, the script and its arithmetic, the values.
REDIS_PURE = [
    "throttle_trio._redis._protocol",
    "throttle_trio._redis._script",
    "throttle_trio._redis._types",
]


@pytest.mark.parametrize("name", REDIS_PURE)
def test_the_redis_protocol_needs_no_client_nor_event_loop(name: str) -> None:
    banned = {"anyio", "trio", "sniffio", "asyncio", "coredis", "redis"}
    assert {target for target in imported_modules(name) if target.split(".")[0] in banned} == set()


def test_the_redis_protocol_runs_with_coredis_unimportable() -> None:
    """Dynamically: with ``import coredis`` made to fail, a reply decodes."""
    out = run_python(
        """
        import sys
        sys.modules["coredis"] = None
        from throttle_trio._redis._protocol import Adjust
        print(Adjust((-5,)).decode([0, 1, -2, 1_000_000]).applied)
        """
    )
    assert out.strip() == "(-2,)"


def test_the_library_does_not_import_the_command_line() -> None:
    offenders = [
        (name, target)
        for name in module_names()
        if not name.startswith("throttle_trio.cli")
        for target in imported_modules(name)
        if target == "throttle_trio.cli" or target.startswith("throttle_trio.cli.")
    ]
    assert offenders == []


FAKE_PROVIDER = [
    name
    for name in module_names()
    if name.startswith("throttle_trio.testing._")
    and name.rpartition(".")[2]
    in ("_fake_server", "_fake_limits", "_openai_shapes", "_anthropic_shapes")
]


def test_the_fake_provider_keeps_its_own_books() -> None:
    """The fake server enforces limits with its own arithmetic, never the client's policies,
    throttles or feedback rules: otherwise a bug in them would pass unnoticed in every test
    that checks the client against it."""
    assert len(FAKE_PROVIDER) == 4
    client_side = (
        "throttle_trio.policy",
        "throttle_trio._throttle",
        "throttle_trio._limiter",
        "throttle_trio._feedback",
        "throttle_trio._waitqueue",
        "throttle_trio.redis",
    )
    offenders = [
        (name, target)
        for name in FAKE_PROVIDER
        for target in imported_modules(name)
        if target.startswith(client_side)
    ]
    assert offenders == []


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_members(tree: ast.Module) -> set[str]:
    """The ``_names`` that the classes of a module define for their instances: methods and
    class attributes in their bodies, ``__slots__`` entries, attributes set on ``self``/``cls``.
    Only these may be read on another object of the same module (a friend class, as
    ``RedisReservation`` and ``RedisThrottle``); a module-level ``_name`` does not count."""
    names: set[str] = set()
    for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
        for member in cls.body:
            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(member.name)
            value: ast.expr | None
            if isinstance(member, ast.Assign):
                targets, value = member.targets, member.value
            elif isinstance(member, ast.AnnAssign):
                targets, value = [member.target], member.value
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                    if target.id == "__slots__" and value is not None:
                        names.update(
                            c.value
                            for c in ast.walk(value)
                            if isinstance(c, ast.Constant) and isinstance(c.value, str)
                        )
        for node in ast.walk(cls):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            ):
                names.add(node.attr)
    return {name for name in names if is_private(name)}


def reaches(source: str) -> list[str]:
    """The private names a module's source uses that belong to another module: a ``_name``
    imported from a module of the package, a ``_name`` read or set on an object other than
    ``self``/``cls`` that no class of this module defines, and ``getattr``/``setattr``/
    ``hasattr``/``delattr`` of such a name."""
    tree = ast.parse(source)
    own = private_members(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or module == "throttle_trio" or module.startswith("throttle_trio."):
                found.extend(
                    (node.lineno, f"from {'.' * node.level}{module} import {alias.name}")
                    for alias in node.names
                    if is_private(alias.name)
                )
        elif isinstance(node, ast.Attribute):
            # self._x and cls._x may be inherited (a base class's helper for subclasses)
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if is_private(node.attr) and not on_self and node.attr not in own:
                found.append((node.lineno, f".{node.attr}"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and is_private(node.args[1].value)
            and node.args[1].value not in own
        ):
            found.append((node.lineno, f"{node.func.id}(..., {node.args[1].value!r})"))
    return [f"{reach} (line {line})" for line, reach in sorted(found)]


# Private names of another module that a module may use, each with its reason.  Keep it short:
# what crosses a module boundary is named without an underscore.
ALLOWED_REACHES = {
    # asyncio's Future protocol: a task takes a future yielded to it for one it must wait on
    # when this attribute is true (what asyncio.Future.__await__ sets); the shielded yield
    # hands the loop a future that is already done.
    ("throttle_trio._eventloop", "._asyncio_future_blocking"),
}


def test_no_module_reaches_into_another_modules_private_names() -> None:
    """What one module uses of another is named without an underscore: no ``from x import
    _y``, no ``obj._attr`` on an object of another module's class, no ``getattr(obj, "_attr")``
    (a class may use its own and its friends' in the same module, and ``self._x``)."""
    offenders = {}
    for name in module_names():
        path = module_path(name)
        assert path is not None
        found = [
            reach
            for reach in reaches(path.read_text(encoding="utf-8"))
            if (name, reach.split(" (line")[0]) not in ALLOWED_REACHES
        ]
        if found:
            offenders[name] = found
    assert offenders == {}


def test_every_allowed_reach_is_still_needed() -> None:
    """An exception that no longer matches anything is removed from the list."""
    used = {
        (name, reach.split(" (line")[0])
        for name in module_names()
        if (path := module_path(name)) is not None
        for reach in reaches(path.read_text(encoding="utf-8"))
    }
    assert ALLOWED_REACHES - used == set()


def test_the_private_name_rule_sees_every_kind_of_reach() -> None:
    """The checker itself: each way into another module's privates is found; a module's own
    classes, friends within the module and self are not."""
    source = textwrap.dedent(
        """
        from ._throttle import _Limit, Throttle
        from .. import _helpers
        from . import _script  # import from the private module instead: from ._script import X
        import anyio

        class Shell:
            __slots__ = ("_state",)

            def _own(self): ...

            def go(self, other, throttle, friend: "Shell"):
                self._state = 1
                self._inherited()
                friend._state, friend._own()         # a friend: this module's class
                throttle._limits[0]                  # another module's private attribute
                throttle._call("adjust")             # ... and method
                getattr(throttle, "_enter_fallback")
                setattr(other, "_x", 1)
                other._y = 2                          # setting one is reaching too
                anyio._core                           # a library's private module
        """
    )
    assert reaches(source) == [
        "from ._throttle import _Limit (line 2)",
        "from .. import _helpers (line 3)",
        "from . import _script (line 4)",
        "._limits (line 16)",
        "._call (line 17)",
        "getattr(..., '_enter_fallback') (line 18)",
        "setattr(..., '_x') (line 19)",
        "._y (line 20)",
        "._core (line 21)",
    ]


def logger_names() -> dict[str, set[str]]:
    """The names every module of the package passes to ``logging.getLogger``, by module."""
    found: dict[str, set[str]] = {}
    for name in module_names():
        path = module_path(name)
        assert path is not None
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
            ):
                assert len(node.args) == 1, (name, ast.unparse(node))
                argument = node.args[0]
                assert isinstance(argument, ast.Constant), (name, ast.unparse(node))
                found.setdefault(name, set()).add(str(argument.value))
    return found


def test_every_layer_logs_under_throttle_trio() -> None:
    """A level or filter set on ``"throttle_trio"`` reaches every record: each module logs to
    its layer's child of it (``throttle_trio.limiter``, ``.transport``, ``.redis``, ``.cli``,
    ...) or to ``throttle_trio`` itself, never to a logger of its own elsewhere."""
    names = logger_names()
    assert names  # the walk finds them
    outside = {
        module: sorted(loggers)
        for module, loggers in names.items()
        if any(not (n == "throttle_trio" or n.startswith("throttle_trio.")) for n in loggers)
    }
    assert outside == {}
    assert names["throttle_trio._limiter"] == {"throttle_trio.limiter"}
    assert names["throttle_trio._attempts"] == {"throttle_trio.transport"}
    assert names["throttle_trio._redis._throttle"] == {"throttle_trio.redis"}
    assert names["throttle_trio._redis._fallback"] == {"throttle_trio.redis"}
    assert names["throttle_trio.cli._batch"] == {"throttle_trio.cli"}
