"""``python -m throttle_trio`` runs the command line, in a subprocess as a user would."""

from __future__ import annotations

import subprocess
import sys

import throttle_trio
from tests.test_exports import ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "throttle_trio", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_names_the_command_and_its_subcommands() -> None:
    result = run("--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("usage: throttle-trio ")
    assert "{batch,serve,demo}" in result.stdout


def test_a_subcommand_runs_as_through_the_console_script() -> None:
    result = run("demo", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: throttle-trio demo ")


def test_no_command_is_a_usage_error() -> None:
    result = run()
    assert result.returncode == 2
    assert "the following arguments are required: command" in result.stderr


def test_version() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout.strip()) == (
        0,
        f"throttle-trio {throttle_trio.__version__}",
    )


def test_importing_the_module_runs_nothing() -> None:
    """Tools import every module (tests/test_exports.py does): no command runs then."""
    code = "import throttle_trio.__main__, sys; print('throttle_trio.cli' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "False"
