"""The batch files: input checks with line numbers, resumable output."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from throttle_trio.cli._files import BatchFileError, OutputFile, completed_ids, read_requests

if TYPE_CHECKING:
    from pathlib import Path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def line(custom_id: str, **extra: object) -> str:
    entry = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": {}}
    return json.dumps({**entry, **extra})


def test_malformed_lines_are_reported_once_each_with_their_line_number(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        [
            line("a"),
            "{not json",
            "[1, 2]",
            json.dumps({"custom_id": "", "url": "/v1/x", "body": {}}),
            json.dumps({"custom_id": "b", "method": "GET", "url": "/v1/x", "body": {}}),
            json.dumps({"custom_id": "c", "url": "v1/x", "body": {}}),
            json.dumps({"custom_id": "d", "url": "/v1/x", "body": "text"}),
            line("e", priority=1),
            "",
            line("f") + line("g"),
            "4",
            line("i"),
        ],
    )
    with path.open("ab") as handle:  # line 13, not UTF-8
        handle.write(b'{"custom_id": "\xff"}\n')
    requests, problems = read_requests(path)
    assert [r.custom_id for r in requests] == ["a", "e", "i"]
    assert [r.line for r in requests] == [1, 8, 12]
    assert [str(problem) for problem in problems] == [
        "line 2: not valid JSON (Expecting property name enclosed in double quotes at column 2)"
        "; skipped",
        "line 3: expected a JSON object, got list; skipped",
        "line 4: custom_id must be a non-empty string; skipped",
        "line 5: method must be POST, got 'GET'; skipped",
        "line 6: url must be a path such as /v1/chat/completions; skipped",
        "line 7: body must be a JSON object; skipped",
        "line 8: unknown fields ['priority'] ignored",
        f"line 10: not valid JSON (Extra data at column {len(line('f')) + 1}); skipped",
        "line 11: expected a JSON object, got int; skipped",
        "line 13: not valid UTF-8 (invalid start byte at byte 16); skipped",
    ]
    assert [problem.skipped for problem in problems] == [True] * 6 + [False] + [True] * 3


def test_a_duplicate_custom_id_fails_before_anything_is_sent(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", [line("a"), line("b"), line("a")])
    with pytest.raises(
        BatchFileError,
        match=r"^line 3: duplicate custom_id 'a' \(first on line 1\); nothing was sent$",
    ):
        read_requests(path)


def test_a_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        BatchFileError, match=r"^cannot read .*missing.jsonl: No such file or directory$"
    ):
        read_requests(tmp_path / "missing.jsonl")


def test_output_lines_and_resume_after_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    assert completed_ids(path) == set()
    with OutputFile(path) as output:
        output.write("a", {"status_code": 200, "request_id": "r1", "body": {"ok": True}}, None)
        output.write("b", None, {"code": "ReadTimeout", "message": "timed out"})
    with path.open("ab") as handle:
        handle.write(b'{"id": "batch_req_x", "custom_id": "c", "respo')  # killed mid-write
    assert completed_ids(path) == {"a", "b"}
    assert path.read_bytes().endswith(b"}\n")  # the torn line is gone
    entries = [json.loads(raw) for raw in path.read_text().splitlines()]
    assert entries[0]["id"].startswith("batch_req_")
    assert entries[0]["response"]["status_code"] == 200
    assert entries[1]["error"] == {"code": "ReadTimeout", "message": "timed out"}
