"""The typed public surface, as pyright sees it.

* ``pyright --verifytypes throttle_trio --ignoreexternal`` scores 100%: every public function,
  class, attribute and constant has a declared type (an inferred one "could be inferred
  differently by type checkers"), as trio and anyio check in their CI.
* ``tests/type_tests/check_public_api.py`` passes pyright strict (pyproject's ``[tool.pyright]``):
  its ``assert_type`` calls pin what callers get back.  mypy checks the same file in
  ``make check``.

pyright is a dev dependency (``.[dev]``); its first run downloads its Node package from npm.
If it is missing the tests are skipped with the reason, except under ``CI=true``, where they
fail: CI must run them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PYRIGHT = shutil.which("pyright", path=str(BIN)) or shutil.which("pyright")
API_FILE = ROOT / "tests" / "type_tests" / "check_public_api.py"

# The first run downloads pyright's Node package; allow for it beyond the usual 120 s.
pytestmark = pytest.mark.timeout(600)


def run_pyright(*args: str) -> dict[str, Any]:
    """Run pyright with ``--outputjson`` on this interpreter's environment; return its report."""
    if PYRIGHT is None:
        reason = "pyright is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the typing checks", pytrace=False)
        pytest.skip(reason)
    # pyright finds the packages through the `python` on PATH (its --pythonpath option is not
    # honoured by --verifytypes), so put this interpreter's directory first.
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": sys.prefix,
    }
    result = subprocess.run(
        [PYRIGHT, *args, "--outputjson"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"pyright {' '.join(args)} did not report JSON (exit {result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}",
            pytrace=False,
        )
    return report


def describe(diagnostic: dict[str, Any]) -> str:
    line = diagnostic.get("range", {}).get("start", {}).get("line", -1) + 1
    message = str(diagnostic["message"]).replace("\u00a0", " ")
    return f"{diagnostic.get('file', '?')}:{line}: {message}"


def test_public_surface_is_completely_typed() -> None:
    """Every symbol ``throttle_trio`` exports has a known, unambiguous type."""
    report = run_pyright("--verifytypes", "throttle_trio", "--ignoreexternal")
    completeness = report["typeCompleteness"]
    assert completeness["packageRootDirectory"] == str(ROOT / "throttle_trio"), (
        "pyright verified another copy of the package",
        completeness["packageRootDirectory"],
    )
    problems = [
        f"{symbol['name']}: {describe(diagnostic)}"
        for symbol in completeness["symbols"]
        for diagnostic in symbol.get("diagnostics", [])
        if diagnostic.get("severity") == "error"
    ]
    problems += [describe(d) for d in report["generalDiagnostics"] if d["severity"] == "error"]
    score = completeness["completenessScore"]
    assert not problems, f"type completeness {score:.1%}; fix these:\n" + "\n".join(problems)
    assert score == 1.0


def test_typing_file_passes_pyright_strict() -> None:
    """The ``assert_type`` checks of the public API hold under pyright strict."""
    report = run_pyright(str(API_FILE.relative_to(ROOT)))
    errors = [describe(d) for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert report["summary"]["filesAnalyzed"] == 1
    assert errors == []


def test_typing_file_is_never_collected() -> None:
    """The typing file only declares checks; pytest must not import or run it."""
    assert not API_FILE.name.startswith("test_")
    assert not API_FILE.name.endswith("_test.py")
