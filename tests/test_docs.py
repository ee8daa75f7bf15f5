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

The reason is required.  Any other ``docs-test:`` comment, or one that is not followed by a
Python block, fails the test: a marker that attaches to nothing would skip nothing.

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
from dataclasses import dataclass
from pathlib import Path

import pytest

import throttle_trio

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TIMEOUT = 90  # seconds per page; the slowest pages take a few

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:(?P<directive>.*?)-->\s*$")
_SKIP = re.compile(r"^\s*skip\s*\((?P<reason>.*\S.*)\)\s*$")
_FILE = re.compile(r"# file: (?P<name>[\w./-]+\.py)\n")
PYTHON = {"python", "py", "python3"}
DOCTEST = {"pycon"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page: where it starts, its kind and its source."""

    line: int  # 1-based line of the first line of code, just after the opening fence
    kind: str  # "python", "doctest" or "file"
    source: str
    skip: str | None  # the reason, if a marker skips it


def pages() -> list[Path]:
    return [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else page.name


def parse(page: Path) -> list[Block]:
    """The Python blocks of a page; raises ValueError on a malformed marker or fence."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    marker: tuple[int, str] | None = None  # (line, directive) waiting for its block
    index = 0
    while index < len(lines):
        line = lines[index]
        if found := _MARKER.match(line):
            if marker is not None:
                raise ValueError(f"{page_id(page)}:{marker[0]}: docs-test marker without a block")
            marker = (index + 1, found["directive"])
            index += 1
            continue
        fence = _FENCE.match(line)
        if fence is None:
            if line.strip() and marker is not None:
                raise ValueError(f"{page_id(page)}:{marker[0]}: docs-test marker without a block")
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
            raise ValueError(f"{page_id(page)}:{start - 1}: the fence is never closed")
        index += 1
        source = "\n".join(body) + "\n"
        if info in DOCTEST or (info in PYTHON and source.lstrip().startswith(">>>")):
            kind = "doctest"
        elif info in PYTHON and (file := _FILE.match(source)):
            kind = "file"
            if ".." in file["name"].split("/") or file["name"].startswith("/"):
                raise ValueError(f"{page_id(page)}:{start}: a file block stays in its directory")
        elif info in PYTHON:
            kind = "python"
        else:
            kind = ""
        skip = None
        if marker is not None:
            if not kind:
                raise ValueError(
                    f"{page_id(page)}:{marker[0]}: docs-test marker on a {info!r} block"
                )
            skipped = _SKIP.match(marker[1])
            if skipped is None:
                raise ValueError(
                    f"{page_id(page)}:{marker[0]}: unknown docs-test marker {marker[1].strip()!r}; "
                    "the one marker is 'docs-test: skip (reason)', with a reason"
                )
            skip = skipped["reason"].strip()
            marker = None
        if kind:
            blocks.append(Block(start, kind, source, skip))
    if marker is not None:
        raise ValueError(f"{page_id(page)}:{marker[0]}: docs-test marker without a block")
    return blocks


# Runs in the subprocess: reads the page's blocks as JSON on stdin and runs them in order in
# one namespace.  Compiled with the page as the file name and the block's real line numbers.
RUNNER = r"""
import doctest, json, pathlib, subprocess, sys, traceback

page, path, blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
test_files = []


def failed(line):
    print(f"docs-test: FAILED {page}:{line}", file=sys.stderr, flush=True)
    sys.exit(1)


for block in blocks:
    line, kind, source = block["line"], block["kind"], block["source"]
    print(f"docs-test: running {page}:{line}", file=sys.stderr, flush=True)
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
        return f"{where}: the block failed\n{stdout}\n{stderr}"
    return None


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
    """Every docs-test marker is a skip with a reason, right before a Python block."""
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
