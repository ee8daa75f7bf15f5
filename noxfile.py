"""The test suite on every supported Python that is installed here: ``nox``.

    nox                       # the full suite on each installed Python 3.11+, one venv each
    nox -s tests-3.13         # one version
    nox -s tests-3.12 -- -x tests/test_limiter.py   # pytest arguments after --
    nox -s ci-3.13            # what CI runs on the versions beside its main one (see below)
    nox -l                    # the sessions: one per installed version

Interpreters are found on ``PATH`` and in pyenv's versions (``$PYENV_ROOT/versions``, by
default ``~/.pyenv/versions``; the newest patch release of each minor version), so pyenv's
shims need no ``pyenv global``.  Only installed versions get a session, and nox never downloads
one.  Each session installs the project with its ``test`` extra into a fresh venv.

* ``tests``: the whole suite, with the ``ci`` Hypothesis profile (``HYPOTHESIS_PROFILE``
  overrides it).
* ``ci``: a bounded subset for CI's extra versions (``.ci/run`` runs ``make test`` on its main
  Python, then this on 3.12, 3.13 and 3.14): the suite without :data:`CI_LEFT_OUT` (the tests
  of Redis deployments: Cluster, Sentinel, fleets of processes, their launcher; and the runs of
  the documentation's code blocks and examples; the typing checks, which ``make test`` runs),
  with the ``dev`` Hypothesis profile (100 examples a property instead of 400).
* Python 3.14 is tried when installed but not yet claimed (no classifier): when its
  dependencies do not install there, its session is skipped, saying why, instead of failing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox
from nox.command import CommandFailed

SUPPORTED = ["3.11", "3.12", "3.13", "3.14"]  # as the classifiers say, and the next one
NEXT = {"3.14"}  # not in the classifiers yet: skipped, not failed, when its dependencies fail

# Left out of the ``ci`` session: the tests of Redis deployments (a cluster, a sentinel, fleets
# of processes, the launcher of them) and the runs of the documentation's code blocks and
# examples (whose code the other tests cover), not of our code on another Python.  In the full
# suite on 3.12 here they took 234 s of its 710 s; the Hypothesis profile saves some more.
CI_LEFT_OUT = [
    "tests/redis/test_cluster.py",
    "tests/redis/test_sentinel.py",
    "tests/redis/test_multiprocess.py",
    "tests/redis/test_fleet.py",
    "tests/redis/test_fleet_bench.py",
    "tests/testing/test_redis_server.py",
    "tests/test_docs.py",
    "tests/test_examples.py",
    # The typing checks (mypy and pyright on the public surface) run once, in `make test` on
    # the main Python: the ci session installs the test extra, not pyright's Node.js.
    "tests/test_typing.py",
]

nox.options.sessions = ["tests"]  # `nox` alone: the full suite
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = True  # every listed version is installed


def _runs(python: str) -> bool:
    """Whether ``python`` starts (pyenv's shims exist for versions that are not selected)."""
    try:
        return (
            subprocess.run([python, "-c", "pass"], capture_output=True, timeout=30).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _pyenv_bins() -> dict[str, Path]:
    """Minor version -> the bin directory of pyenv's newest patch release of it."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found: dict[str, tuple[tuple[int, ...], Path]] = {}
    for directory in root.glob("3.*"):
        match = re.fullmatch(r"(3\.\d+)\.(\d+)", directory.name)
        if match is None or not (directory / "bin").is_dir():
            continue
        key = tuple(int(part) for part in directory.name.split("."))
        minor = match.group(1)
        if minor not in found or key > found[minor][0]:
            found[minor] = (key, directory / "bin")
    return {minor: path for minor, (_, path) in found.items()}


def _installed() -> list[str]:
    """The supported versions that are installed; pyenv's go first on PATH for nox to find."""
    bins = _pyenv_bins()
    extra = [str(bins[v]) for v in SUPPORTED if v in bins and _runs(str(bins[v] / f"python{v}"))]
    os.environ["PATH"] = os.pathsep.join([*extra, os.environ.get("PATH", "")])
    return [v for v in SUPPORTED if (found := shutil.which(f"python{v}")) and _runs(found)]


PYTHONS = _installed()


def _install(session: nox.Session) -> None:
    """The project with its ``test`` extra; on a version not claimed yet, skip if it fails."""
    try:
        session.install("-e", ".[test]")
    except CommandFailed:
        if session.python in NEXT:
            session.skip(f"Python {session.python}: the test extra does not install (see above)")
        raise


@nox.session(python=PYTHONS, venv_backend="venv")
def tests(session: nox.Session) -> None:
    """The test suite (pytest), both event loops, with the ``test`` extra."""
    _install(session)
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    session.run("python", "-m", "pytest", *session.posargs, env={"HYPOTHESIS_PROFILE": profile})


@nox.session(python=PYTHONS, venv_backend="venv")
def ci(session: nox.Session) -> None:
    """CI's run on its extra versions: the suite without CI_LEFT_OUT, 100 examples a property."""
    _install(session)
    profile = os.environ.get("HYPOTHESIS_PROFILE", "dev")
    left_out = [f"--ignore={path}" for path in CI_LEFT_OUT]
    session.run(
        "python", "-m", "pytest", *left_out, *session.posargs, env={"HYPOTHESIS_PROFILE": profile}
    )
