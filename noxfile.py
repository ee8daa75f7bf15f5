"""The test suite on every supported Python that is installed here: ``nox``.

    nox                       # the suite on each installed Python 3.11+, one venv each
    nox -s tests-3.13         # one version
    nox -s tests-3.12 -- -x tests/test_limiter.py   # pytest arguments after --
    nox -l                    # the sessions: one per installed version

Interpreters are found on ``PATH`` and in pyenv's versions (``$PYENV_ROOT/versions``, by
default ``~/.pyenv/versions``; the newest patch release of each minor version), so pyenv's
shims need no ``pyenv global``.  Only installed versions get a session, and nox never downloads
one.  Each session installs the project with its ``test`` extra into a fresh venv and runs
pytest with the ``ci`` Hypothesis profile (``HYPOTHESIS_PROFILE`` overrides it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

SUPPORTED = ["3.11", "3.12", "3.13", "3.14"]  # as the classifiers say, and the next one

nox.options.sessions = ["tests"]
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


@nox.session(python=PYTHONS, venv_backend="venv")
def tests(session: nox.Session) -> None:
    """The test suite (pytest), both event loops, with the ``test`` extra."""
    session.install("-e", ".[test]")
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    session.run("python", "-m", "pytest", *session.posargs, env={"HYPOTHESIS_PROFILE": profile})
