"""The batch files: OpenAI's batch input format in, OpenAI's batch output format out.

Input, one JSON object per line::

    {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

Output, one line per request, written as soon as it completes::

    {"id": "batch_req_...", "custom_id": "req-1",
     "response": {"status_code": 200, "request_id": "...", "body": {...}}, "error": null}
    {"id": "batch_req_...", "custom_id": "req-2", "response": null,
     "error": {"code": "connection_error", "message": "..."}}

Each output line is one ``write`` to a file opened in append mode, so a process killed at
any moment leaves whole lines plus at most one torn last line; :func:`completed_ids` cuts
that line off when the batch resumes, and the requests already in the file are skipped.  A
write that fails part-way (a full disk, a file-size limit) cuts its own partial line at once.

Output that cannot be used at all (a directory, a missing parent, a read-only file system)
is found before anything is sent: :func:`completed_ids` and :class:`OutputFile` raise
:class:`BatchFileError` with a one-line message, ``cannot write PATH: <the system's reason>``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "BatchFileError",
    "BatchRequest",
    "LineProblem",
    "OutputFile",
    "cannot_write",
    "completed_ids",
    "read_requests",
]

_KNOWN_FIELDS = frozenset({"custom_id", "method", "url", "body"})


class BatchFileError(Exception):
    """The input or output file cannot be used as it is (the message says where and why)."""


def cannot_write(path: Path | str, error: OSError) -> str:
    """``"cannot write PATH: <reason>"``: the one-line message for an output ``error``."""
    return f"cannot write {path}: {error.strerror or error}"


@final
@dataclass(frozen=True, slots=True)
class LineProblem:
    """Something wrong with one line of the input file.

    Attributes:
        line: the line's number in the file (the first is 1; blank lines count).
        message: what is wrong, on one line.
        skipped: the line is malformed and does not run; ``False`` for a warning (unknown
            fields, ignored) about a line that runs.
    """

    line: int
    message: str
    skipped: bool

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" + ("; skipped" if self.skipped else "")


@final
@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One line of the input file."""

    line: int
    custom_id: str
    method: str
    url: str
    body: dict[str, Any]


def read_requests(path: Path) -> tuple[list[BatchRequest], list[LineProblem]]:
    """Read and check the input file.

    Returns:
        The valid requests, and one problem per line that was skipped (malformed) or had
        unknown fields, in line order (``str(problem)``: ``"line 7: ...; skipped"``).

    Raises:
        BatchFileError: two requests share a ``custom_id`` (before anything is sent), or the
            file cannot be read.
    """
    requests: list[BatchRequest] = []
    problems: list[LineProblem] = []
    first_seen: dict[str, int] = {}
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                request, problem = _parse_line(raw, number)
                if problem is not None:
                    problems.append(problem)
                if request is None:
                    continue
                if request.custom_id in first_seen:
                    raise BatchFileError(
                        f"line {number}: duplicate custom_id {request.custom_id!r} "
                        f"(first on line {first_seen[request.custom_id]}); nothing was sent"
                    )
                first_seen[request.custom_id] = number
                requests.append(request)
    except OSError as exc:
        raise BatchFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return requests, problems


def _parse_line(raw: bytes, number: int) -> tuple[BatchRequest | None, LineProblem | None]:
    try:
        entry = json.loads(raw)
    except json.JSONDecodeError as exc:
        # Not str(exc): it says "line 1", the line's own first line, beside ours.
        return None, LineProblem(number, f"not valid JSON ({exc.msg} at column {exc.colno})", True)
    except UnicodeDecodeError as exc:
        return None, LineProblem(
            number, f"not valid UTF-8 ({exc.reason} at byte {exc.start + 1})", True
        )
    return _check_entry(entry, number)


def _check_entry(entry: Any, number: int) -> tuple[BatchRequest | None, LineProblem | None]:
    def skip(message: str) -> tuple[None, LineProblem]:
        return None, LineProblem(number, message, skipped=True)

    if not isinstance(entry, dict):
        return skip(f"expected a JSON object, got {type(entry).__name__}")
    custom_id = entry.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return skip("custom_id must be a non-empty string")
    method = entry.get("method", "POST")
    if method != "POST":
        return skip(f"method must be POST, got {method!r}")
    url = entry.get("url")
    if not isinstance(url, str) or not url.startswith("/"):
        return skip("url must be a path such as /v1/chat/completions")
    body = entry.get("body")
    if not isinstance(body, dict):
        return skip("body must be a JSON object")
    unknown = sorted(set(entry) - _KNOWN_FIELDS)
    problem = (
        LineProblem(number, f"unknown fields {unknown} ignored", skipped=False) if unknown else None
    )
    return BatchRequest(number, custom_id, method, url, body), problem


def completed_ids(path: Path) -> set[str]:
    """The ``custom_id`` of every complete line of an output file; cuts off a torn last line.

    A missing file (or a missing parent: :class:`OutputFile` reports that) is an empty result,
    and so is a file that is not a regular one (``/dev/stdout``, a pipe): there is nothing to
    resume from, and reading it could block or never end.

    Raises:
        BatchFileError: the output is a directory, cannot be read, or its torn last line cannot
            be cut off (a read-only file system).
    """
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return set()
    except OSError as exc:
        raise BatchFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise BatchFileError(cannot_write(path, IsADirectoryError(errno.EISDIR, "Is a directory")))
    if not stat.S_ISREG(mode):
        return set()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BatchFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    end = data.rfind(b"\n") + 1
    if end < len(data):  # a line torn by a kill: drop it, the request will run again
        try:
            with path.open("r+b") as handle:
                handle.truncate(end)
        except OSError as exc:
            raise BatchFileError(cannot_write(path, exc)) from None
    done: set[str] = set()
    for raw in data[:end].splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("custom_id"), str):
            done.add(entry["custom_id"])
    return done


@final
class OutputFile:
    """Appends result lines, each with a single ``write`` (see the module docstring).

    Raises:
        BatchFileError: the file cannot be opened for appending (a directory, a missing parent,
            a read-only file system, no permission), with the one-line message.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BatchFileError(cannot_write(path, exc)) from None
        self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)

    def write(
        self, custom_id: str, response: dict[str, Any] | None, error: dict[str, str] | None
    ) -> None:
        """Append one result line.

        Raises:
            OSError: the line could not be written in full (``ENOSPC``: the disk is full,
                ``EFBIG``: a file-size limit).  What it wrote of the line is cut off again, so
                the file still holds whole lines only.
        """
        line = {
            "id": f"batch_req_{secrets.token_hex(12)}",
            "custom_id": custom_id,
            "response": response,
            "error": error,
        }
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        written = 0
        try:
            while written < len(data):  # a short write (a limit reached part-way): go on
                written += os.write(self._fd, data[written:])
        except OSError:
            if written and self._regular:
                self._cut(written)
            raise

    def _cut(self, torn: int) -> None:
        """Cut the last ``torn`` bytes (a partial line); if that fails, a resume cuts them."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - torn)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
