"""Every code block in the documentation runs, every page is on the site, every name documented.

Each page of ``docs/`` (and the README) with Python on it is one test.  Its ```python blocks
run in order in one namespace, like the cells of a notebook, in a fresh subprocess on the real
clock, with a timeout, in a scratch directory, with ``-W error``.  They get placeholder API keys
(the SDKs want one to build a client) and must need no network: the pages call the fake
provider of ``throttle_trio.testing`` (in process or on loopback), and start what else they
need (a redis-server).  A block that starts with ``>>>`` (or a ```pycon block) runs as a
doctest in that namespace.  Other fences (sh, console, text, toml, json) are not run.  A second
test per page checks with ruff (F821) that no block uses a name the page never defines, which
running alone would miss in the body of a function the page never calls.

A block whose first line is ``# file: NAME.py`` is not run: it is written to NAME.py in the
page's scratch directory (the current directory of the blocks, so later blocks and files can
import it).  After the page's blocks, pytest runs each ``test_*.py`` file written so, in that
directory (with any ``conftest.py`` the page wrote).

A block that cannot run here (it needs a real API key, say) is preceded by the line::

    <!-- docs-test: skip (the reason) -->

The reason is required.

A ```text block right after a ```python block (blank lines between, nothing else) shows the
block's output, and the test checks it: the runner writes a mark to stdout before each block, so
what a block printed (and the processes it ran) is compared on its own with the text block,
line by line, trailing whitespace aside.  In an expected line, ``...`` stands for any text (a
time, a port); a line that is only ``...`` stands for any number of lines.  When the output
varies as a whole (which task goes first, a measurement), the line right before the text block
says so, and it is not compared::

    <!-- docs-test: output varies (the reason) -->

Any other ``docs-test:`` comment, or one that is not right before what it names, fails the
test: a marker that attaches to nothing would skip nothing.

Failures name the page and the line of the block: the blocks are compiled with the page as
their file name and their own line numbers, so a traceback points into the Markdown.

Two more checks keep the site whole: every page under ``docs/`` is in mkdocs.yml's nav, and every
name in a public module's ``__all__`` has a ``::: module.name`` entry under ``docs/reference/``.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

import throttle_trio

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TIMEOUT = 90  # seconds per page; the slowest pages take a few

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:(?P<directive>.*?)-->\s*$")
_SKIP = re.compile(r"^\s*skip\s*\((?P<reason>.*\S.*)\)\s*$")
_VARIES = re.compile(r"^\s*output\s+varies\s*\((?P<reason>.*\S.*)\)\s*$")
_FILE = re.compile(r"# file: (?P<name>[\w./-]+\.py)\n")
PYTHON = {"python", "py", "python3"}
DOCTEST = {"pycon"}
OUTPUT = {"text"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page: where it starts, its kind and its source."""

    line: int  # 1-based line of the first line of code, just after the opening fence
    kind: str  # "python", "doctest" or "file"
    source: str
    skip: str | None  # the reason, if a marker skips it
    output: str | None = None  # the ```text block right after a "python" block: what it prints
    output_line: int = 0  # 1-based line of the output's first line
    varies: str | None = None  # the reason, if a marker says the output varies (not compared)


def pages() -> list[Path]:
    return [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else page.name


def parse(page: Path) -> list[Block]:
    """The Python blocks of a page; raises ValueError on a malformed marker or fence."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    marker: tuple[int, str] | None = None  # (line, directive) waiting for its block
    # The last block is a "python" block that only blank lines (and an output marker) follow:
    # a ```text block here is its output.
    awaiting_output = False
    index = 0

    def error(line: int, message: str) -> ValueError:
        return ValueError(f"{page_id(page)}:{line}: {message}")

    while index < len(lines):
        line = lines[index]
        if found := _MARKER.match(line):
            if marker is not None:
                raise error(marker[0], "docs-test marker without a block")
            marker = (index + 1, found["directive"])
            index += 1
            continue
        fence = _FENCE.match(line)
        if fence is None:
            if line.strip():
                if marker is not None:
                    raise error(marker[0], "docs-test marker without a block")
                awaiting_output = False
            index += 1
            continue
        indent, delimiter, info = fence["indent"], fence["fence"], fence["info"].lower()
        body: list[str] = []
        index += 1
        start = index + 1
        while index < len(lines):
            closing = lines[index].strip()
            if closing.startswith(delimiter) and not closing.strip(delimiter[0]):
                break
            body.append(lines[index].removeprefix(indent))
            index += 1
        else:
            raise error(start - 1, "the fence is never closed")
        index += 1
        source = "\n".join(body) + "\n"
        if info in DOCTEST or (info in PYTHON and source.lstrip().startswith(">>>")):
            kind = "doctest"
        elif info in PYTHON and (file := _FILE.match(source)):
            kind = "file"
            if ".." in file["name"].split("/") or file["name"].startswith("/"):
                raise error(start, "a file block stays in its directory")
        elif info in PYTHON:
            kind = "python"
        else:
            kind = ""
        is_output = awaiting_output and info in OUTPUT
        skip = varies = None
        if marker is not None:
            if (varied := _VARIES.match(marker[1])) is not None:
                if not is_output:
                    raise error(
                        marker[0],
                        "an output marker goes right before the ```text block that shows "
                        "the output of the ```python block just above it",
                    )
                varies = varied["reason"].strip()
            elif (skipped := _SKIP.match(marker[1])) is not None:
                if not kind:
                    raise error(marker[0], f"docs-test marker on a {info!r} block")
                skip = skipped["reason"].strip()
            else:
                raise error(
                    marker[0],
                    f"unknown docs-test marker {marker[1].strip()!r}; the markers are "
                    "'docs-test: skip (reason)' before a Python block and "
                    "'docs-test: output varies (reason)' before its output, with a reason",
                )
            marker = None
        if is_output:
            blocks[-1] = replace(blocks[-1], output=source, output_line=start, varies=varies)
        if kind:
            blocks.append(Block(start, kind, source, skip))
        awaiting_output = kind == "python"
    if marker is not None:
        raise error(marker[0], "docs-test marker without a block")
    return blocks


# Before each block, and after the last, the runner writes this line to stdout (with the
# block's line, or "end"): what comes between two of them is what a block printed, its own
# prints and those of the processes it ran.  \x1f, the unit separator, is in no page's output.
_OUTPUT_MARK = re.compile(r"\x1fdocs-test block (?P<line>\d+|end)\x1f\n")

# Runs in the subprocess: reads the page's blocks as JSON on stdin and runs them in order in
# one namespace.  Compiled with the page as the file name and the block's real line numbers.
RUNNER = r"""
import doctest, json, pathlib, subprocess, sys, traceback

page, path, blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
test_files = []
# As on a terminal: each line goes out when printed, in order with what a child process writes.
sys.stdout.reconfigure(line_buffering=True)


def mark(line):
    sys.stdout.flush()
    sys.__stdout__.write(f"\x1fdocs-test block {line}\x1f\n")
    sys.__stdout__.flush()


def failed(line):
    print(f"docs-test: FAILED {page}:{line}", file=sys.stderr, flush=True)
    sys.exit(1)


for block in blocks:
    line, kind, source = block["line"], block["kind"], block["source"]
    print(f"docs-test: running {page}:{line}", file=sys.stderr, flush=True)
    mark(line)
    if kind == "file":
        target = pathlib.Path(source.partition("\n")[0].removeprefix("# file: "))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
        if target.name.startswith("test_"):
            test_files.append((line, str(target)))
    elif kind == "python":
        try:
            exec(compile("\n" * (line - 1) + source, path, "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            failed(line)
    else:
        test = doctest.DocTestParser().get_doctest(source, namespace, page, path, line - 1)
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        runner = doctest.DocTestRunner(optionflags=flags)
        if runner.run(test, out=sys.stderr.write, clear_globs=False).failed:
            failed(line)
        namespace.update(test.globs)
mark("end")
for line, name in test_files:
    print(f"docs-test: running {page}:{line} (pytest {name})", file=sys.stderr, flush=True)
    command = [sys.executable, "-W", "error", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if subprocess.run([*command, "-p", "no:looptime_plugin", name], stdout=sys.stderr).returncode:
        failed(line)
"""


def run_blocks(name: str, path: Path, blocks: list[Block], cwd: Path) -> str | None:
    """Run the blocks as the page `name` in a fresh process; None, or what went wrong where."""
    payload = json.dumps(
        [name, str(path), [{"line": b.line, "kind": b.kind, "source": b.source} for b in blocks]]
    )
    # In a scratch directory (a block may write files), in a session of its own so that a
    # timeout also ends what the page started (a server).  No real API key reaches the blocks;
    # the SDKs refuse to build a client without one, so they get keys that are not.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {"OPENAI_API_KEY": "sk-docs-test", "ANTHROPIC_API_KEY": "sk-ant-docs-test"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-W", "error", "-c", RUNNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(payload, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        running = re.findall(r"^docs-test: running (\S+)", stderr, flags=re.MULTILINE)
        where = running[-1] if running else name
        return f"{where}: the page did not finish within {TIMEOUT} s\n{stdout}\n{stderr}"
    if process.returncode != 0:
        failed = re.findall(r"^docs-test: FAILED (\S+)", stderr, flags=re.MULTILINE)
        where = failed[-1] if failed else name
        return f"{where}: the block failed\n{_OUTPUT_MARK.sub('', stdout)}\n{stderr}"
    printed = split_output(stdout)
    problems = [
        f"{name}:{block.output_line + at}: the output shown is not what the block at line "
        f"{block.line} printed, from this line on (where a line varies, write '...' in it; "
        "where the whole output does, '<!-- docs-test: output varies (reason) -->' before it)\n"
        f"--- the page shows\n{block.output}--- the block printed\n{printed[block.line]}"
        for block in blocks
        if block.output is not None and block.varies is None
        if (at := output_mismatch(block.output, printed[block.line])) is not None
    ]
    return "\n".join(problems) or None


def split_output(stdout: str) -> dict[int, str]:
    """What each block printed, by the line of the block, from the runner's stdout."""
    parts = _OUTPUT_MARK.split(stdout)  # before the first mark, then (line, text) pairs
    return {
        int(line): text
        for line, text in zip(parts[1::2], parts[2::2], strict=True)
        if line != "end"
    }


def _line_matches(expected: str, actual: str) -> bool:
    if "..." not in expected:
        return expected == actual
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual, flags=re.DOTALL) is not None


def output_mismatch(expected: str, actual: str) -> int | None:
    """None if `actual` is what `expected` shows, else the 0-based expected line that differs.

    Line by line, trailing whitespace and trailing blank lines aside.  ``...`` in a line
    stands for any text within the line (doctest's ELLIPSIS, one line at a time); a line that
    is only ``...`` stands for any number of lines, none included.
    """

    def lines(text: str) -> list[str]:
        result = [line.rstrip() for line in text.splitlines()]
        while result and not result[-1]:
            result.pop()
        return result

    want, got = lines(expected), lines(actual)
    # reached[j]: the first i expected lines can match the first j printed ones.
    reached = [True] + [False] * len(got)
    for i, pattern in enumerate(want):
        if pattern.strip() == "...":
            for j in range(1, len(got) + 1):
                reached[j] = reached[j] or reached[j - 1]
        else:
            reached = [False] + [
                reached[j] and _line_matches(pattern, got[j]) for j in range(len(got))
            ]
        if not any(reached):
            return i
    return None if reached[-1] else len(want)


def _parsed(page: Path) -> list[Block]:
    try:
        return parse(page)
    except ValueError as error:
        pytest.fail(str(error), pytrace=False)


# Pages that look as if they hold Python blocks, by a looser pattern than the parser's, so that
# a fence the parser does not recognise (```Python, ```{.py}) fails instead of passing unrun.
_CLAIMS_PYTHON = re.compile(r"^\s*(`{3,}|~{3,})\s*\{?\.?(py|python3?|pycon)\b", re.I | re.M)
PAGES_WITH_CODE = [page for page in pages() if _CLAIMS_PYTHON.search(page.read_text("utf-8"))]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=page_id)
def test_page_code_blocks_run(page: Path, tmp_path: Path) -> None:
    """The page's Python blocks run in order in one namespace, each page in a fresh process."""
    blocks = _parsed(page)
    runnable = [block for block in blocks if block.skip is None]
    if not runnable:  # a page with Python on it runs some of it
        reasons = "; ".join(f"line {block.line}: {block.skip}" for block in blocks)
        pytest.fail(
            f"{page_id(page)}: has Python blocks but none runs ({reasons or 'none recognised'})",
            pytrace=False,
        )
    if (problem := run_blocks(page_id(page), page, runnable, tmp_path)) is not None:
        pytest.fail(problem, pytrace=False)


def test_the_runner_shares_a_namespace_and_names_the_failing_block(tmp_path: Path) -> None:
    """Blocks, doctests and file blocks see each other; a failure names its page and line."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = 41\n```\n"
        "```pycon\n>>> x + 1\n42\n>>> y = x * 2\n```\n"
        "```python\n# file: helper.py\nVALUE = 3\n```\n"
        "```python\nimport helper\n\nassert (y, helper.VALUE) == (82, 3)\n```\n"
        "```python\nraise RuntimeError('the docs are wrong')\n```\n"
    )
    problem = run_blocks("page.md", page, parse(page), tmp_path)
    assert problem is not None
    assert problem.startswith("page.md:19: the block failed")
    assert 'File "' + str(page) + '", line 19' in problem
    assert "RuntimeError: the docs are wrong" in problem
    page.write_text("```pycon\n>>> 1 + 1\n3\n```\n")
    assert (run_blocks("page.md", page, parse(page), tmp_path) or "").startswith("page.md:2: ")


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=page_id)
def test_page_uses_only_names_it_defines(page: Path, tmp_path: Path) -> None:
    """No block uses a name that its page never defines (ruff's F821, over the whole page).

    Running a block proves little about the body of a function that the page defines but never
    calls: an undefined name there would only fail in a reader's hands.
    """
    pytest.importorskip("ruff")  # a dev dependency
    # Every block at its own lines, the rest blank, so that ruff reports lines of the page.
    lines = [""] * len(page.read_text(encoding="utf-8").splitlines())
    for block in _parsed(page):
        if block.skip is None and block.kind != "doctest":
            body = block.source.splitlines()
            lines[block.line - 1 : block.line - 1 + len(body)] = body
    (tmp_path / "page.py").write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "F821",
         "--output-format", "concise", "page.py"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(result.stdout.replace("page.py:", f"{page_id(page)}:"), pytrace=False)


def test_markers_are_well_formed() -> None:
    """Every docs-test marker is a skip before a Python block, or says that the output after one
    varies, with a reason."""
    errors = []
    for page in pages():
        try:
            parse(page)
        except ValueError as error:
            errors.append(str(error))
    assert errors == []


def test_parse_finds_blocks_markers_and_line_numbers(tmp_path: Path) -> None:
    """The parser itself: kinds, indented fences, skip reasons and their errors."""
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n"
        "```python\nx = 1\n```\n"
        "<!-- docs-test: skip (needs a real API key (OpenAI's)) -->\n"
        "```python\nimport openai\n```\n"
        "```sh\nmake docs\n```\n"
        "!!! note\n    ```py\n    y = x\n    ```\n"
        "```pycon\n>>> x\n1\n```\n"
        "```python\n# file: test_x.py\nz = 1\n```\n"
    )
    assert parse(page) == [
        Block(3, "python", "x = 1\n", None),
        Block(7, "python", "import openai\n", "needs a real API key (OpenAI's)"),
        Block(14, "python", "y = x\n", None),
        Block(17, "doctest", ">>> x\n1\n", None),
        Block(21, "file", "# file: test_x.py\nz = 1\n", None),
    ]
    for bad in [
        "<!-- docs-test: skip -->\n```python\nx = 1\n```\n",
        "<!-- docs-test: skip () -->\n```python\nx = 1\n```\n",
        "<!-- docs-test: setup -->\n```python\nx = 1\n```\n",
        "<!-- docs-test: skip (why) -->\n```sh\nls\n```\n",
        "<!-- docs-test: skip (why) -->\ntext\n```python\nx = 1\n```\n",
        "<!-- docs-test: skip (why) -->\n",
        "```python\n# file: ../outside.py\nx = 1\n```\n",
        "```python\nx = 1\n",
    ]:
        page.write_text(bad)
        with pytest.raises(ValueError, match=r"^page\.md:[12]: "):
            parse(page)


def test_parse_takes_the_text_block_after_a_python_block_as_its_output(tmp_path: Path) -> None:
    """A ```text block that only blank lines (or an output marker) separate from a ```python
    block above it is that block's output; not after prose, a doctest or a file block."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nprint(1)\n```\n\n```text\n1\n```\n"  # 1-7
        "```python\nprint(2)\n```\n<!-- docs-test: output varies (a clock (ms)) -->\n\n"  # 8-12
        "```text\n2.3\n```\n"  # 13-15
        "```python\nprint(3)\n```\nIt prints:\n```text\n3\n```\n"  # 16-22
        "```pycon\n>>> 4\n4\n```\n```text\n4\n```\n"  # 23-29
        "```python\n# file: five.py\nprint(5)\n```\n```text\n5\n```\n"  # 30-36
        "!!! note\n    ```python\n    print(6)\n    ```\n\n    ```text\n    6\n    ```\n"  # 37-44
        "```python\nprint(7)\n```\n```text\n7\n```\n```text\nnot 7\n```\n"  # 45-53
        "<!-- docs-test: skip (needs a key) -->\n```python\nprint(8)\n```\n```text\n8\n```\n"
    )
    assert parse(page) == [
        Block(2, "python", "print(1)\n", None, "1\n", 6),
        Block(9, "python", "print(2)\n", None, "2.3\n", 14, "a clock (ms)"),
        Block(17, "python", "print(3)\n", None),
        Block(24, "doctest", ">>> 4\n4\n", None),
        Block(31, "file", "# file: five.py\nprint(5)\n", None),
        Block(39, "python", "print(6)\n", None, "6\n", 43),
        Block(46, "python", "print(7)\n", None, "7\n", 49),
        Block(56, "python", "print(8)\n", "needs a key", "8\n", 59),
    ]
    for bad in [
        "```python\nx = 1\n```\n<!-- docs-test: output varies -->\n```text\n1\n```\n",
        "```python\nx = 1\n```\n<!-- docs-test: output varies () -->\n```text\n1\n```\n",
        "```python\nx = 1\n```\n<!-- docs-test: output (why) -->\n```text\n1\n```\n",
        "```python\nx = 1\n```\n<!-- docs-test: output varies (why) -->\n```python\nx\n```\n",
        "```python\nx = 1\n```\n<!-- docs-test: output varies (why) -->\n```sh\nls\n```\n",
        "```python\nx = 1\n```\n<!-- docs-test: output varies (why) -->\nso\n```text\n1\n```\n",
        "```python\nx = 1\n```\n<!-- docs-test: skip (why) -->\n```text\n1\n```\n",
        "```python\nx = 1\n```\n<!-- docs-test: output varies (why) -->\n",
        "```python\nx = 1\n```\nso\n<!-- docs-test: output varies (why) -->\n```text\n1\n```\n",
        "```pycon\n>>> 1\n1\n```\n<!-- docs-test: output varies (why) -->\n```text\n1\n```\n",
        "<!-- docs-test: output varies (why) -->\n```text\n1\n```\n",
    ]:
        page.write_text(bad)
        with pytest.raises(ValueError, match=r"^page\.md:[1-5]: "):
            parse(page)


def test_output_mismatch_compares_lines_with_wildcards() -> None:
    """Line by line, trailing whitespace aside; `...` is any text in a line, or any lines."""
    assert output_mismatch("a\nb\n", "a\nb\n") is None
    assert output_mismatch("a  \nb\n\n", "a\nb   \n\n\n") is None  # trailing whitespace
    assert output_mismatch("", "") is None
    assert output_mismatch("t=...s\n", "t=0.25s\n") is None
    assert output_mismatch("t=...s\n", "t=s\n") is None  # `...` may stand for nothing
    assert output_mismatch("...: ... 429s\n", "run 1: 20 429s\n") is None
    assert output_mismatch("a\n...\nz\n", "a\nb\nc\nz\n") is None  # any lines
    assert output_mismatch("a\n...\nz\n", "a\nz\n") is None  # none included
    assert output_mismatch("a\n...\n", "a\nb\n") is None
    assert output_mismatch("...\n", "") is None
    assert output_mismatch("a\nb\n", "a\nc\n") == 1  # the first expected line that differs
    assert output_mismatch("t=...s\n", "t=0.25s!\n") == 0
    assert output_mismatch(" a\n", "a\n") == 0  # leading whitespace counts
    assert output_mismatch("a\n", "a\nb\n") == 1  # a line more than the page shows
    assert output_mismatch("a\nb\n", "a\n") == 1  # a line fewer
    assert output_mismatch("a\n...\nz\n", "a\nb\n") == 2
    assert output_mismatch("a\n\nb\n", "a\nb\n") == 1  # blank lines inside count


def test_the_runner_compares_each_blocks_output(tmp_path: Path) -> None:
    """Each block's stdout (and its child processes') is compared with its ```text block."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nprint('one')\nprint('two', end='')\n```\n"  # 1-4
        "```text\none\ntwo\n```\n"  # 5-8
        "```python\nimport subprocess, sys\n\nprint('before')\n"  # 9-12
        "subprocess.run([sys.executable, '-c', 'print(\"child\")'], check=True)\n"  # 13
        "print('after')\n```\n"  # 14-15
        "```text\nbefore\nchild\nafter\n```\n"  # 16-20
        "```pycon\n>>> print('doctest')\ndoctest\n```\n"  # 21-24
        "```python\nimport time\n\nprint(f'took {time.time()} s')\nprint('x')\n```\n"  # 25-30
        "```text\ntook ... s\ny\n```\n"  # 31-34: line 33 is wrong
        "```python\nprint(time.perf_counter())\n```\n"  # 35-37
        "<!-- docs-test: output varies (a clock) -->\n```text\n1.5\n```\n"  # 38-41
        "```python\nprint('unchecked')\n```\n"  # 42-44
        "```python\nprint('last')\n```\n```text\nlast\nmore\n```\n"  # 45-51: no "more"
    )
    problem = run_blocks("page.md", page, parse(page), tmp_path) or ""
    problems = re.findall(r"^page\.md:\d+: .*", problem, flags=re.MULTILINE)
    assert [found.partition(" is not what")[0] for found in problems] == [
        "page.md:33: the output shown",
        "page.md:50: the output shown",
    ]
    assert "at line 26 printed" in problems[0]
    assert "--- the block printed\ntook " in problem
    page.write_text("```python\nprint('shown')\n```\n```text\nshown\n```\n")
    assert run_blocks("page.md", page, parse(page), tmp_path) is None
    # A failing block's output keeps no markers of the runner's.
    page.write_text("```python\nprint('so far')\nraise SystemExit(3)\n```\n")
    problem = run_blocks("page.md", page, parse(page), tmp_path) or ""
    assert problem.startswith("page.md:2: the block failed\nso far\n")
    assert "\x1f" not in problem


def _nav_pages() -> set[str]:
    """The pages in mkdocs.yml's nav (read as text: the file needs no YAML tags resolved)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:") :]
    return set(re.findall(r"^\s+-\s+(?:[^\n:]+:\s+)?(\S+\.md)\s*$", nav, flags=re.MULTILINE))


def test_every_page_is_in_the_nav() -> None:
    """No orphan pages: every docs page is reachable from the site's navigation, and back."""
    on_disk = {page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md")}
    nav = _nav_pages()
    assert sorted(on_disk - nav) == []
    assert sorted(nav - on_disk) == []


def _reference_directives() -> set[str]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference").glob("*.md"))
    return set(re.findall(r"^::: (\S+)\s*$", text, flags=re.MULTILINE))


# Every module whose dotted name has no part starting with "_" is public.
PUBLIC_MODULES = ["throttle_trio"] + [
    module.name
    for module in pkgutil.walk_packages(throttle_trio.__path__, "throttle_trio.")
    if not any(part.startswith("_") for part in module.name.split("."))
]


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_is_in_the_reference(module: str) -> None:
    """Each name in a public module's __all__ has a `::: module.name` entry in docs/reference.

    The policies are documented once, as `throttle_trio.policy.NAME`, wherever they are
    re-exported; `__version__` is named on the reference index.
    """
    directives = _reference_directives()
    missing = [
        name
        for name in importlib.import_module(module).__all__
        if name != "__version__"
        and f"{module}.{name}" not in directives
        and f"throttle_trio.policy.{name}" not in directives
    ]
    assert missing == []
