"""The public surface: ``__all__`` sorted and complete, names that claim their namespace,
``py.typed`` shipped.  The layering rules on imports are in tests/test_layering.py.
"""

from __future__ import annotations

import importlib
import pickle
import types
from pathlib import Path

import pytest

import throttle_trio
import throttle_trio.policy

PACKAGE_DIR = Path(throttle_trio.__file__).parent
ROOT = PACKAGE_DIR.parent

# Private top-level modules whose ``__all__`` is internal API: none of it is re-exported.
# Every other ``throttle_trio/_*.py`` module's ``__all__`` must appear in the package's.
INTERNAL_MODULES = {
    "throttle_trio._validate": "argument checks shared by the constructors",
    "throttle_trio._waitqueue": "the FIFO engine behind every limiter",
    "throttle_trio._transport": "the engine behind throttle_trio.httpx and throttle_trio.httpx2",
    "throttle_trio._usage": "reads usage from response bodies for the transports",
    "throttle_trio._eventloop": "the running loop's anyio backend, looked up once per acquire",
    "throttle_trio._reserve": "cost checks and the reserve block shared by both throttles",
    "throttle_trio._reexport": "the public namespaces' fix-up of __module__",
    "throttle_trio._extras": "the error for a module used without its extra",
    "throttle_trio._feedback": "header feedback as arithmetic, shared by both throttles",
    "throttle_trio._shell": "one interface to either throttle for the layers above",
    "throttle_trio._shield": "a shield that also holds against asyncio's own cancellation",
    "throttle_trio._events": "the event records, re-exported by throttle_trio.events",
    "throttle_trio._metrics": "the metric catalogue and measurements of otel and prometheus",
}
# The public namespaces: each has a sorted ``__all__`` that lists what it offers.
NAMESPACES = [
    "throttle_trio",
    "throttle_trio.cli",
    "throttle_trio.events",
    "throttle_trio.httpx",
    "throttle_trio.httpx2",
    "throttle_trio.otel",
    "throttle_trio.policy",
    "throttle_trio.prometheus",
    "throttle_trio.redis",
    "throttle_trio.testing",
]


def api_modules() -> list[str]:
    """The modules whose ``__all__`` the package re-exports: the private top-level modules
    (``throttle_trio/_*.py``, not the subpackages) and the policy modules, minus the internal
    ones."""
    names = []
    for name in module_names():
        parent, _, leaf = name.rpartition(".")
        if is_package(name) or name in INTERNAL_MODULES or leaf == "_version":
            continue
        if (parent == "throttle_trio" and leaf.startswith("_")) or parent == (
            "throttle_trio.policy"
        ):
            names.append(name)
    return names


def namespace(name: str) -> types.ModuleType:
    """Import a public namespace, skipping if its optional dependency is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - the dev environment has every extra
        pytest.skip(f"{name} needs an optional dependency: {exc}")


def module_names() -> list[str]:
    """Every module of the package, by dotted name, from the files (no import needed)."""
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def is_package(name: str) -> bool:
    return (ROOT / name.replace(".", "/") / "__init__.py").is_file()


def declared_all(name: str) -> list[str] | None:
    """A module's ``__all__`` as written in its source (None if it has none)."""
    module = importlib.import_module(name)
    value = getattr(module, "__all__", None)
    return None if value is None else list(value)


# --------------------------------------------------------------------------- __all__


@pytest.mark.parametrize("name", NAMESPACES)
def test_all_is_sorted_without_duplicates(name: str) -> None:
    """Sorted as isort (and plain sorted()) orders it: case-sensitive, capitals first."""
    package = namespace(name)
    assert package.__all__ == sorted(package.__all__)
    assert len(set(package.__all__)) == len(package.__all__)


@pytest.mark.parametrize("name", NAMESPACES)
def test_every_name_in_all_exists(name: str) -> None:
    package = namespace(name)
    missing = [name for name in package.__all__ if not hasattr(package, name)]
    assert missing == []


@pytest.mark.parametrize("name", [n for n in NAMESPACES if is_package(n)])
def test_every_public_attribute_is_in_all(name: str) -> None:
    """Nothing is re-exported by a package's ``__init__`` and then left out of ``__all__``."""
    package = namespace(name)
    public = {
        attr
        for attr, value in vars(package).items()
        if not attr.startswith("_")
        and not isinstance(value, types.ModuleType)
        and attr != "annotations"  # from __future__
    }
    assert public - set(package.__all__) == set()


def test_all_is_complete() -> None:
    """Every public name of every public-API module is re-exported by the package, and the
    policy package re-exports its modules' names (which the top level re-exports too)."""
    expected_top: set[str] = {"__version__"}
    expected_policy: set[str] = set()
    for name in api_modules():
        names = set(declared_all(name) or ())
        if name.startswith("throttle_trio.policy."):
            expected_policy |= names
        expected_top |= names
    assert set(throttle_trio.policy.__all__) == expected_policy
    assert set(throttle_trio.__all__) == expected_top


def test_exported_objects_are_the_modules_objects() -> None:
    """A re-export is the object itself, not a copy or a stale alias."""
    for name in api_modules():
        module = importlib.import_module(name)
        for attr in declared_all(name) or ():
            assert getattr(throttle_trio, attr) is getattr(module, attr), (name, attr)


def test_internal_modules_exist() -> None:
    """The exemptions above name real modules (a renamed module must not escape the check)."""
    for name in INTERNAL_MODULES:
        assert module_path(name) is not None, name


# --------------------------------------------------------------------------- __module__


def public_objects() -> list[tuple[str, str, object]]:
    """(namespace, name, object) for every class and function a public namespace exports."""
    found: list[tuple[str, str, object]] = []
    for name in NAMESPACES:
        package = namespace(name)
        for attr in package.__all__:
            value = getattr(package, attr)
            if isinstance(value, type | types.FunctionType):
                found.append((name, attr, value))
    return found


def is_public_module(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def test_public_names_claim_a_public_module() -> None:
    """Every exported class and function says it lives in a public module (the namespace that
    re-exports it, or the public module that defines it), and is found there by its
    ``__qualname__``, as pickle, reprs and documentation tools look it up."""
    wrong = []
    for space, attr, value in public_objects():
        module: str = getattr(value, "__module__")  # noqa: B009 - functions and classes
        qualname: str = getattr(value, "__qualname__")  # noqa: B009
        if not is_public_module(module) or not module.startswith("throttle_trio"):
            wrong.append((space, attr, module))
        elif getattr(importlib.import_module(module), qualname, None) is not value:
            wrong.append((space, attr, f"{module}.{qualname} is not it"))
    assert wrong == []


def test_private_module_names_are_rewritten_to_their_namespace() -> None:
    """A name defined in a private module claims the namespace that exports it."""
    import throttle_trio.testing

    assert throttle_trio.Throttle.__module__ == "throttle_trio"
    assert repr(throttle_trio.Throttle) == "<class 'throttle_trio.Throttle'>"
    assert throttle_trio.run_batch.__module__ == "throttle_trio"
    assert throttle_trio.testing.FakeLLMServer.__module__ == "throttle_trio.testing"
    # Public modules are left alone: the policy classes keep their own module.
    assert throttle_trio.TokenBucket.__module__ == "throttle_trio.policy.token_bucket"


def test_methods_follow_their_class() -> None:
    """The methods, properties and dataclass-made methods of a re-exported class claim the
    public namespace too (documentation tools read them)."""
    wrong = []
    for _space, _attr, value in public_objects():
        if not isinstance(value, type):
            continue
        for member_name, member in vars(value).items():
            if isinstance(member, staticmethod | classmethod):
                copied = getattr(member, "__module__", "")  # the wrapper keeps a copy
                if copied.startswith("throttle_trio.") and not is_public_module(copied):
                    wrong.append((value.__qualname__, member_name, copied))
                member = member.__func__
            if isinstance(member, property):
                member = member.fget
            if not isinstance(member, types.FunctionType):
                continue
            if member.__module__.startswith("throttle_trio.") and not is_public_module(
                member.__module__
            ):
                wrong.append((value.__qualname__, member_name, member.__module__))
    assert wrong == []


def test_type_aliases_and_constants_are_left_alone() -> None:
    """The fix-up touches only classes and functions: a type alias such as ``RequestCost``
    (``dict[str, float]``) must not rename ``dict``."""
    assert dict.__module__ == "builtins"
    assert throttle_trio.RequestCost == dict[str, float]
    assert frozenset.__module__ == "builtins"


def test_exported_objects_pickle_by_their_public_name() -> None:
    """Pickle finds a class by ``__module__`` and ``__qualname__``: after the fix-up the
    public name must resolve (statistics and decisions are values users store and send)."""
    decision = throttle_trio.TokenBucket(2).try_admit(1, 0.0)
    assert pickle.loads(pickle.dumps(decision)) == decision
    error = throttle_trio.RateLimitTimeout("timed out")
    assert b"throttle_trio\n" in pickle.dumps(error, protocol=0)
    assert type(pickle.loads(pickle.dumps(error))) is throttle_trio.RateLimitTimeout


def test_version_is_a_string() -> None:
    assert isinstance(throttle_trio.__version__, str)
    assert throttle_trio.__version__


# --------------------------------------------------------------------------- packaging


def test_py_typed_ships_in_the_package() -> None:
    marker = PACKAGE_DIR / "py.typed"
    assert marker.is_file()
    # The wheel ships the whole package directory.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'packages = ["throttle_trio"]' in pyproject


def module_path(name: str) -> Path | None:
    """The source file of a module of the package, by dotted name (None if there is none)."""
    base = ROOT / name.replace(".", "/")
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None
