"""``python -m bench``: run every benchmark, print the tables, write a markdown report."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from . import accuracy, contended, fairness, fleet, memory, uncontended
from ._settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._report import Section

BENCHMARKS: dict[str, Callable[[Settings], Section]] = {
    "uncontended": uncontended.run,
    "contended": contended.run,
    "accuracy": accuracy.run,
    "fairness": fairness.run,
    "memory": memory.run,
}
# Run only when named with --only: it needs redis-server and takes a minute or more.
OPT_IN: dict[str, Callable[[Settings], Section]] = {"fleet": fleet.run}
DISTRIBUTIONS = (
    "throttle_trio",
    "anyio",
    "trio",
    "aiolimiter",
    "pyrate-limiter",
    "limits",
    "aiometer",
)
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.md"
REQUIRED = ("trio", "aiolimiter", "pyrate_limiter", "limits", "aiometer")


def _source_digest() -> str:
    """A short hash of throttle_trio's source files, to tie results to the code measured."""
    import throttle_trio

    root = Path(throttle_trio.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _environment(argv: list[str]) -> str:
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = ", ".join(f"{d} {_version(d)}" for d in DISTRIBUTIONS)
    return "\n".join(
        [
            f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}",
            f"- command: `{' '.join(['python', '-m', 'bench', *argv])}`",
            f"- machine: {platform.platform()}, {len(os.sched_getaffinity(0))} CPUs (nproc), "
            f"load average at start {load}",
            f"- python: {platform.python_implementation()} {platform.python_version()}",
            f"- versions: {versions}",
            f"- throttle_trio source digest: {_source_digest()} (sha256 of its .py files)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark throttle_trio against its peers on asyncio and trio.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"where to write the markdown report (default: {DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted({**BENCHMARKS, **OPT_IN}),
        help=f"run only this benchmark (repeatable; {', '.join(OPT_IN)} only when named)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"missing benchmark dependencies: {', '.join(missing)}; "
            "install them with: pip install -e '.[bench]'",
            file=sys.stderr,
        )
        return 2
    settings = Settings.for_mode(quick=args.quick)

    mode = "quick" if settings.quick else f"full (medians of {settings.reps})"
    header = f"# throttle_trio benchmarks\n\n{_environment(argv)}\n- mode: {mode}\n"
    print(header, flush=True)
    started = time.perf_counter()
    sections: list[Section] = []
    for name, run in {**BENCHMARKS, **OPT_IN}.items():
        if name not in (args.only or BENCHMARKS):
            continue
        print(f"... running {name}", file=sys.stderr, flush=True)
        section = run(settings)
        print(section.markdown(), flush=True)
        sections.append(section)

    checks = [check for section in sections for check in section.checks]
    failed = [check for check in checks if not check.passed]
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    summary = "\n".join(
        [
            "## Targets",
            "",
            "```",
            *(check.line() for check in checks),
            "```",
            "",
            f"{len(checks) - len(failed)} of {len(checks)} targets met. Total time "
            f"{time.perf_counter() - started:.0f} s; load average at the end {load}.",
            "",
        ]
    )
    print(summary, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        header + "\n" + "\n".join(s.markdown() for s in sections) + "\n" + summary,
        encoding="utf-8",
    )
    print(f"report written to {args.output}", file=sys.stderr)
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
