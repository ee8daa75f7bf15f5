"""``throttle-trio batch`` with an output it cannot write: one line, the documented status,
nothing lost.

* Output that cannot be opened (a directory, a missing parent, a read-only file system) is
  found before anything is sent: exit status 2.
* A write that fails during the run (a full disk, a file-size limit) stops it: exit status 1,
  the file keeps whole lines only, and rerunning the command resumes.

The tests run as root here, and root writes through file permissions: the read-only case
mounts a read-only tmpfs when root (and uses a ``chmod`` when not).  A full disk is
``/dev/full``; a file-size limit is ``RLIMIT_FSIZE`` in the command's process.  Real I/O on the
real clock: the tests assert messages, statuses and counts, never durations.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio
import pytest

from throttle_trio.cli import main
from throttle_trio.testing import FakeLLMServer, ServerAddress, serve

from .test_cli import batch_file, outputs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

CLI = [sys.executable, "-m", "throttle_trio.cli"]

# The command under a file-size limit (bytes, the first argument).  Python ignores SIGXFSZ
# already; saying so here keeps the test honest if that ever changes.
LIMITED = [
    sys.executable,
    "-c",
    "import resource, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "limit = int(sys.argv.pop(1))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "from throttle_trio.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n",
]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the real clock: loopback I/O and subprocesses


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeLLMServer, ServerAddress]]:
    server = FakeLLMServer(latency=(0.0, 0.02), seed=7)
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server)
        yield server, address
        tg.cancel_scope.cancel()


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory nobody can create files in, and the reason the system gives."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory, "Permission denied"
        directory.chmod(0o755)
        return
    mount = shutil.which("mount")
    umount = shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("root writes through permissions, and there is no mount(8)")
    command = [mount, "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(directory)]
    if subprocess.run(command, capture_output=True, check=False).returncode:
        pytest.skip("root writes through permissions, and mounting a read-only tmpfs failed")
    try:
        yield directory, "Read-only file system"
    finally:
        subprocess.run([umount, str(directory)], check=True)


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("a directory", "Is a directory"),
        ("a missing parent", "No such file or directory"),
        ("a file as parent", "Not a directory"),
    ],
)
def test_an_output_that_cannot_be_opened_is_one_line_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, reason: str
) -> None:
    """Nothing is sent (it would find nothing listening, exit status 1): status 2, one line."""
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-dir").mkdir()
    output = {
        "a directory": tmp_path / "a-dir",
        "a missing parent": tmp_path / "missing" / "out.jsonl",
        "a file as parent": tmp_path / "a-file" / "out.jsonl",
    }[where]
    argv = [
        "batch", str(batch_file(tmp_path / "in.jsonl", 3)), "-o", str(output),
        "--base-url", "http://127.0.0.1:9/v1", "--rpm", "60",
    ]  # fmt: skip
    status, err = run_main(argv, capsys)
    assert (status, err) == (2, f"throttle-trio batch: cannot write {output}: {reason}\n")


def test_an_output_on_a_read_only_file_system_is_one_line_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], read_only_dir: tuple[Path, str]
) -> None:
    directory, reason = read_only_dir
    output = directory / "out.jsonl"
    argv = [
        "batch", str(batch_file(tmp_path / "in.jsonl", 3)), "-o", str(output),
        "--base-url", "http://127.0.0.1:9/v1", "--rpm", "60",
    ]  # fmt: skip
    status, err = run_main(argv, capsys)
    assert (status, err) == (2, f"throttle-trio batch: cannot write {output}: {reason}\n")


async def test_a_full_disk_stops_the_batch_with_one_line(
    tmp_path: Path, provider: tuple[FakeLLMServer, ServerAddress]
) -> None:
    """``/dev/full`` takes the open and fails every write with ENOSPC: the run stops taking
    requests at the first result it cannot write, and says so in its last line."""
    server, address = provider
    command = [
        *CLI, "batch", str(batch_file(tmp_path / "in.jsonl", 40)), "-o", "/dev/full",
        "--base-url", address.base_url, "--rpm", "60000", "--max-concurrent", "2",
    ]  # fmt: skip
    with anyio.fail_after(60):
        result = await anyio.run_process(command, check=False)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "Traceback" not in err
    assert err.splitlines()[-2:] == [
        "stopped: the results cannot be written; rerun the same command to resume",
        "throttle-trio batch: cannot write /dev/full: No space left on device",
    ]
    assert "requests: 40 in the file, 0 already done, 0 succeeded, 0 failed, 40 not done" in err
    assert server.stats.received < 40  # it stopped taking requests


async def test_a_file_size_limit_keeps_whole_lines_and_the_rerun_completes(
    tmp_path: Path, provider: tuple[FakeLLMServer, ServerAddress]
) -> None:
    """Under ``RLIMIT_FSIZE`` the write that reaches the limit is cut short (EFBIG next): the
    run stops with one line, the file holds whole lines only (the partial one is cut at once),
    and the same command without the limit completes it, each request exactly once."""
    _, address = provider
    count, limit = 100, 16 * 1024
    output = tmp_path / "out.jsonl"
    arguments = [
        "batch", str(batch_file(tmp_path / "in.jsonl", count)), "-o", str(output),
        "--base-url", address.base_url, "--rpm", "60000", "--max-concurrent", "4",
    ]  # fmt: skip
    with anyio.fail_after(60):
        limited = await anyio.run_process([*LIMITED, str(limit), *arguments], check=False)
    err = limited.stderr.decode()
    assert limited.returncode == 1, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"throttle-trio batch: cannot write {output}: File too large"
    data = output.read_bytes()
    assert len(data) <= limit
    assert data.endswith(b"\n")  # no torn line left behind
    written = [json.loads(line) for line in data.splitlines()]
    assert 0 < len(written) < count
    with anyio.fail_after(60):
        rerun = await anyio.run_process([*CLI, *arguments], check=False)
    assert rerun.returncode == 0, rerun.stderr.decode()
    ids = [line["custom_id"] for line in outputs(output)]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(count))  # each exactly once
