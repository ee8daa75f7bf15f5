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
that line off when the batch resumes, and the requests already in the file are skipped.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["BatchFileError", "BatchRequest", "OutputFile", "completed_ids", "read_requests"]

_KNOWN_FIELDS = frozenset({"custom_id", "method", "url", "body"})


class BatchFileError(Exception):
    """The input file cannot be run as it is (the message says where and why)."""


@final
@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One line of the input file."""

    line: int
    custom_id: str
    method: str
    url: str
    body: dict[str, Any]


def read_requests(path: Path) -> tuple[list[BatchRequest], list[str]]:
    """Read and check the input file.

    Returns:
        The valid requests, and one problem message per line that was skipped or had unknown
        fields (``"line 7: ..."``).

    Raises:
        BatchFileError: two requests share a ``custom_id`` (before anything is sent), or the
            file cannot be read.
    """
    requests: list[BatchRequest] = []
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BatchFileError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError as exc:
                problems.append(f"line {number}: not valid JSON ({exc}); skipped")
                continue
            request, problem = _check_entry(entry, number)
            if problem:
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
    return requests, problems


def _check_entry(entry: Any, number: int) -> tuple[BatchRequest | None, str | None]:
    if not isinstance(entry, dict):
        return None, f"line {number}: expected a JSON object, got {type(entry).__name__}; skipped"
    custom_id = entry.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None, f"line {number}: custom_id must be a non-empty string; skipped"
    method = entry.get("method", "POST")
    if method != "POST":
        return None, f"line {number}: method must be POST, got {method!r}; skipped"
    url = entry.get("url")
    if not isinstance(url, str) or not url.startswith("/"):
        return None, f"line {number}: url must be a path such as /v1/chat/completions; skipped"
    body = entry.get("body")
    if not isinstance(body, dict):
        return None, f"line {number}: body must be a JSON object; skipped"
    unknown = sorted(set(entry) - _KNOWN_FIELDS)
    problem = f"line {number}: unknown fields {unknown} ignored" if unknown else None
    return BatchRequest(number, custom_id, method, url, body), problem


def completed_ids(path: Path) -> set[str]:
    """The ``custom_id`` of every complete line of an output file; cuts off a torn last line.

    A missing file is an empty result.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return set()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # a line torn by a kill: drop it, the request will run again
        with path.open("r+b") as handle:
            handle.truncate(end)
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
    """Appends result lines, each with a single ``write`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(
        self, custom_id: str, response: dict[str, Any] | None, error: dict[str, str] | None
    ) -> None:
        """Append one result line."""
        line = {
            "id": f"batch_req_{secrets.token_hex(12)}",
            "custom_id": custom_id,
            "response": response,
            "error": error,
        }
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        written = os.write(self._fd, data)
        while written < len(data):  # a short write (rare for regular files): finish the line
            written += os.write(self._fd, data[written:])

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
